#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "auth/http_auth_client.hpp"
#include "config/config.hpp"

using namespace proxy;

namespace {

parsed_command_line parse(std::vector<std::string> args) {
  std::vector<const char*> argv{"mqtt-proxy"};
  for (auto& a : args) argv.push_back(a.c_str());
  return parse_command_line(static_cast<int>(argv.size()), argv.data());
}

std::string error_of(std::vector<std::string> args) {
  try {
    parse(std::move(args));
  } catch (const config_error& e) {
    return e.what();
  }
  return "";
}

std::string write_file(const std::string& name, const std::string& text) {
  auto path = std::filesystem::temp_directory_path() / name;
  std::ofstream(path) << text;
  return path.string();
}

}  // namespace

TEST_SUITE("config") {
  TEST_CASE("defaults of the design card") {
    auto c = parse({}).config;
    CHECK(c.listen.host == "0.0.0.0");
    CHECK(c.listen.port == "5000");
    CHECK(c.connection.upstream.port == "1883");
    CHECK(c.auth_url == "http://127.0.0.1:8080");
    CHECK(c.admin.port == "9100");
  }

  TEST_CASE("flags") {
    auto c = parse({"--listen", "127.0.0.1:6000", "--upstream=[::1]:1884", "--upstream-username", "p",
                    "--auth-url", "http://auth:9000/api", "--max-packet-size", "2048", "--threads", "3"})
                 .config;
    CHECK(c.listen.port == "6000");
    CHECK(c.connection.upstream.host == "::1");
    CHECK(c.connection.upstream.port == "1884");
    CHECK(c.connection.session.upstream_username == "p");
    CHECK(c.connection.max_packet_size == 2048);
    CHECK(c.connection.session.max_packet_size == 2048);
    CHECK(c.threads == 3);
    CHECK(parse({"--help"}).show_help);
  }

  TEST_CASE("the sample configuration file loads, and flags override it") {
    auto c = parse({"--config", std::string(MQTT_SOURCE_DIR) + "/deploy/mqtt-proxy.toml", "--listen", "127.0.0.1:7000"}).config;
    CHECK(c.listen.port == "7000");
    CHECK(c.connection.session.upstream_password == "change-me");
    CHECK(c.connection.session.templates.publish == std::vector<std::string>{"private/%u/#"});
    CHECK(c.connection.session.auth_timeout == std::chrono::milliseconds(10'000));
  }

  TEST_CASE("errors name the key") {
    CHECK(error_of({"--listen", "nowhere"}).find("'--listen'") != std::string::npos);
    CHECK(error_of({"--upstream", "h:99999"}).find("port") != std::string::npos);
    CHECK(error_of({"--auth-url", "ftp://x"}).find("auth.url") != std::string::npos);
    CHECK(error_of({"--log-level", "loud"}).find("log_level") != std::string::npos);
    CHECK(error_of({"--bogus", "1"}).find("unknown flag") != std::string::npos);
    CHECK(error_of({"--max-connections", "0"}).find("positive") != std::string::npos);
    CHECK(error_of({"--threads"}).find("needs a value") != std::string::npos);

    auto unknown = write_file("mqtt-proxy-unknown.toml", "[limits]\nmax_packet = 5\n");
    CHECK(error_of({"--config", unknown}).find("limits.max_packet") != std::string::npos);
    auto wrong_type = write_file("mqtt-proxy-type.toml", "[upstream]\naddress = 1883\n");
    CHECK(error_of({"--config", wrong_type}).find("upstream.address") != std::string::npos);
    auto bad_filter = write_file("mqtt-proxy-filter.toml", "[acl_templates]\npublish = [\"a/#/b\"]\n");
    CHECK(error_of({"--config", bad_filter}).find("acl_templates.publish") != std::string::npos);
    auto broken = write_file("mqtt-proxy-broken.toml", "listen = \n");
    CHECK(error_of({"--config", broken}).find("cannot parse") != std::string::npos);
  }

  TEST_CASE("API server answers become auth results") {
    auto ok = parse_validation_response(200, R"({"user":"u","acl":{"publish":["a/#","bad/#/x"],"subscribe":["s/+"]},"expires_in":60})");
    CHECK(ok.outcome == auth_result::verdict::valid);
    CHECK(ok.user == "u");
    CHECK(ok.permissions.publish == std::vector<std::string>{"a/#"});  // invalid filters are dropped
    CHECK(ok.expires_in == std::chrono::seconds(60));
    CHECK(parse_validation_response(401, "{}").outcome == auth_result::verdict::invalid);
    CHECK(parse_validation_response(404, "").outcome == auth_result::verdict::invalid);
    CHECK(parse_validation_response(500, "").outcome == auth_result::verdict::unavailable);
    CHECK(parse_validation_response(200, "not json").outcome == auth_result::verdict::unavailable);
    CHECK(parse_validation_response(200, R"({"acl":{}})").outcome == auth_result::verdict::unavailable);
    CHECK(redact("0123456789abcdef") == "0123...cdef");
    CHECK(redact("short") == "****");
  }
}
