#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "auth/http_auth_client.hpp"
#include "command_line_helpers.hpp"
#include "config/config.hpp"

using namespace proxy;

using test::error_of;
using test::parse;
using test::write_file;

TEST_SUITE("config") {
  TEST_CASE("defaults of the design card") {
    auto c = parse({}).config;
    CHECK(c.listener(transport_kind::tcp).enabled);
    CHECK(c.listener(transport_kind::tcp).address.host == "0.0.0.0");
    CHECK(c.listener(transport_kind::tcp).address.port == "5000");
    CHECK_FALSE(c.listener(transport_kind::tls).enabled);
    CHECK(c.listener(transport_kind::tls).address.port == "8883");
    CHECK(c.listener(transport_kind::ws).address.port == "8080");
    CHECK(c.listener(transport_kind::wss).address.port == "8443");
    CHECK(c.listener(transport_kind::ws).settings.websocket.path == "/mqtt");
    CHECK_FALSE(c.connection.upstream.tls);
    CHECK(c.connection.upstream.port == "1883");
    CHECK(c.auth_url == "http://127.0.0.1:8080");
    CHECK(c.admin.port == "9100");
  }

  TEST_CASE("flags") {
    auto c = parse({"--listen", "127.0.0.1:6000", "--upstream=[::1]:1884", "--upstream-username", "p",
                    "--auth-url", "http://auth:9000/api", "--max-packet-size", "2048", "--threads", "3"})
                 .config;
    CHECK(c.listener(transport_kind::tcp).address.port == "6000");
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
    CHECK(c.listener(transport_kind::tcp).address.port == "7000");
    CHECK(c.connection.session.upstream_password == "change-me");
    CHECK(c.connection.session.templates.publish == std::vector<std::string>{"private/%u/#"});
    CHECK(c.connection.session.auth_timeout == std::chrono::milliseconds(10'000));
  }

  TEST_CASE("listener flags: each transport on its own, TLS files shared by tls and wss") {
    auto c = parse({"--listen", "off", "--tls-listen", "127.0.0.1:8883", "--wss-listen", "127.0.0.1:8443", "--ws-listen",
                    "127.0.0.1:8080", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-client-ca", "ca.pem",
                    "--ws-path", "/ws", "--ws-allowed-origin", "https://a.example", "--proxy-protocol",
                    "--upstream-tls", "--upstream-ca", "bca.pem", "--handshake-timeout-ms", "1500"})
                 .config;
    CHECK_FALSE(c.listener(transport_kind::tcp).enabled);
    for (auto kind : {transport_kind::tls, transport_kind::ws, transport_kind::wss}) {
      CHECK(c.listener(kind).enabled);
      CHECK(c.listener(kind).settings.proxy_protocol);
      CHECK(c.listener(kind).settings.kind == kind);
    }
    CHECK(c.listener(transport_kind::wss).tls.cert_file == "c.pem");
    CHECK(c.listener(transport_kind::tls).tls.client_ca_file == "ca.pem");
    CHECK(c.listener(transport_kind::wss).settings.websocket.path == "/ws");
    CHECK(c.listener(transport_kind::ws).settings.websocket.allowed_origins == std::vector<std::string>{"https://a.example"});
    CHECK(c.connection.upstream.tls);
    CHECK(c.connection.upstream.ca_file == "bca.pem");
    CHECK(c.connection.handshake_timeout == std::chrono::milliseconds(1500));
  }

  TEST_CASE("listener tables in the file: present means on, proxy_protocol per listener") {
    auto file = write_file("mqtt-proxy-listeners.toml", R"(
proxy_protocol = true
[listeners.tcp]
enabled = false
[listeners.ws]
address = "127.0.0.1:9080"
proxy_protocol = false
allowed_origins = ["https://app.example"]
[listeners.tls]
address = "127.0.0.1:9883"
cert_file = "s.pem"
key_file = "s.key"
[upstream]
tls = true
server_name = "broker.internal"
)");
    auto c = parse({"--config", file}).config;
    CHECK_FALSE(c.listener(transport_kind::tcp).enabled);
    CHECK(c.listener(transport_kind::ws).enabled);
    CHECK(c.listener(transport_kind::ws).address.port == "9080");
    CHECK_FALSE(c.listener(transport_kind::ws).settings.proxy_protocol);
    CHECK(c.listener(transport_kind::tls).settings.proxy_protocol);
    CHECK(c.listener(transport_kind::tls).tls.key_file == "s.key");
    CHECK_FALSE(c.listener(transport_kind::wss).enabled);
    CHECK(c.connection.upstream.server_name == "broker.internal");
  }

  TEST_CASE("listener errors name the key") {
    CHECK(error_of({"--tls-listen", "127.0.0.1:8883"}).find("listeners.tls.cert_file") != std::string::npos);
    CHECK(error_of({"--wss-listen", "127.0.0.1:8443", "--tls-cert", "c"}).find("listeners.wss.key_file") != std::string::npos);
    CHECK(error_of({"--ws-listen", "127.0.0.1:8080", "--ws-path", "mqtt"}).find("listeners.ws.path") != std::string::npos);
    CHECK(error_of({"--listen", "off"}).find("every listener is switched off") != std::string::npos);
    auto wrong_key = write_file("mqtt-proxy-wskey.toml", "[listeners.tcp]\npath = \"/mqtt\"\n");
    CHECK(error_of({"--config", wrong_key}).find("listeners.tcp.path") != std::string::npos);
    auto wrong_kind = write_file("mqtt-proxy-kind.toml", "[listeners.quic]\n");
    CHECK(error_of({"--config", wrong_kind}).find("listeners.quic") != std::string::npos);
  }

  TEST_CASE("upstream source addresses: the file's list, replaced by flags, literal addresses only") {
    CHECK(parse({}).config.connection.upstream.bind_addresses.empty());
    auto file = write_file("mqtt-proxy-bind.toml", "[upstream]\nbind_addresses = [\"127.0.0.2\", \"::1\"]\n");
    auto from_file = parse({"--config", file}).config.connection.upstream.bind_addresses;
    REQUIRE(from_file.size() == 2);
    CHECK(from_file[0].to_string() == "127.0.0.2");
    CHECK(from_file[1].to_string() == "::1");
    auto flags = parse({"--config", file, "--upstream-bind-address", "127.0.0.3", "--upstream-bind-address", "127.0.0.4"})
                     .config.connection.upstream.bind_addresses;
    REQUIRE(flags.size() == 2);
    CHECK(flags[0].to_string() == "127.0.0.3");
    CHECK(flags[1].to_string() == "127.0.0.4");
    CHECK(error_of({"--upstream-bind-address", "localhost"}).find("--upstream-bind-address") != std::string::npos);
    auto by_name = write_file("mqtt-proxy-bind-name.toml", "[upstream]\nbind_addresses = [\"10.0.0.1:5\"]\n");
    CHECK(error_of({"--config", by_name}).find("upstream.bind_addresses") != std::string::npos);
    auto not_list = write_file("mqtt-proxy-bind-type.toml", "[upstream]\nbind_addresses = \"10.0.0.1\"\n");
    CHECK(error_of({"--config", not_list}).find("upstream.bind_addresses") != std::string::npos);
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

  TEST_CASE("every numeric flag is range-checked and names itself") {
    for (const std::string flag : {"--threads", "--max-connections", "--max-packet-size", "--handshake-timeout-ms",
                                   "--auth-timeout-ms", "--thread-slice-us"}) {
      CAPTURE(flag);
      for (const std::string value : {"99999999999999999999", "-1", "12abc", "", "0x10", "1e3"}) {
        CAPTURE(value);
        CHECK(error_of({flag, value}).find("'" + flag + "'") != std::string::npos);
      }
    }
    CHECK(error_of({"--threads", "99999999999999999999"}).find("from 0 to 1024") != std::string::npos);
    CHECK(error_of({"--threads", "1025"}).find("from 0 to 1024") != std::string::npos);
    CHECK(parse({"--threads", "0"}).config.threads == 0);
    CHECK(parse({}).config.thread_slice_us == 100);  // the measured default (docs/benchmarks.md, round 6)
    CHECK(parse({"--thread-slice-us", "0"}).config.thread_slice_us == 0);  // the kernel's own
    CHECK(parse({"--thread-slice-us", "100"}).config.thread_slice_us == 100);
    CHECK(error_of({"--thread-slice-us", "99"}).find("'thread_slice_us'") != std::string::npos);  // the kernel's floor
    CHECK(error_of({"--thread-slice-us", "100001"}).find("from 0 to 100000") != std::string::npos);
    auto slice = test::write_file("mqtt-proxy-slice.toml", "thread_slice_us = 250\n");
    CHECK(parse({"--config", slice}).config.thread_slice_us == 250);
    CHECK(error_of({"--max-packet-size", "268435456"}).find("268435455") != std::string::npos);
    CHECK(parse({"--max-packet-size", "268435455"}).config.connection.max_packet_size == 268435455);
    CHECK(error_of({"--listen", "127.0.0.1:99999999999999999999"}).find("port") != std::string::npos);
  }

  TEST_CASE("every numeric key in the file is range-checked and names itself") {
    const std::vector<std::pair<std::string, std::string>> keys{
        {"", "threads"},
        {"upstream", "connect_timeout_ms"},
        {"auth", "timeout_ms"},
        {"limits", "max_packet_size"},
        {"limits", "max_connections"},
        {"limits", "max_held_packets"},
        {"limits", "max_held_bytes"},
        {"limits", "max_subscriptions"},
        {"limits", "write_high_water"},
        {"timeouts", "connect_ms"},
        {"timeouts", "handshake_ms"},
        {"timeouts", "auth_ms"},
        {"timeouts", "drain_ms"},
    };
    for (const auto& [table, key] : keys) {
      const std::string name = table.empty() ? key : table + "." + key;
      for (const std::string value : {"-1", "9223372036854775807"}) {
        CAPTURE(name);
        CAPTURE(value);
        const auto path = write_file("mqtt-proxy-range.toml",
                                     (table.empty() ? "" : "[" + table + "]\n") + key + " = " + value + "\n");
        CHECK(error_of({"--config", path}).find("'" + name + "'") != std::string::npos);
      }
    }
  }

  TEST_CASE("drain wills: suppress by default, fire on request, anything else names the key") {
    CHECK_FALSE(parse({}).config.drain_fire_wills);
    CHECK(parse({"--drain-wills", "fire"}).config.drain_fire_wills);
    CHECK_FALSE(parse({"--drain-wills", "suppress"}).config.drain_fire_wills);
    CHECK(error_of({"--drain-wills", "maybe"}).find("'--drain-wills'") != std::string::npos);
    auto fire = write_file("mqtt-proxy-drain.toml", "[drain]\nwills = \"fire\"\n");
    CHECK(parse({"--config", fire}).config.drain_fire_wills);
    auto bad = write_file("mqtt-proxy-drain-bad.toml", "[drain]\nwills = \"sometimes\"\n");
    CHECK(error_of({"--config", bad}).find("'drain.wills'") != std::string::npos);
  }

  TEST_CASE("upstream kind: generic by default, the flag and the file, anything else names the key") {
    CHECK(parse({}).config.connection.session.upstream == upstream_kind::generic);
    CHECK(parse({"--upstream-kind", "rabbitmq"}).config.connection.session.upstream == upstream_kind::rabbitmq);
    CHECK(error_of({"--upstream-kind", "kafka"}).find("'--upstream-kind'") != std::string::npos);
    auto file = write_file("mqtt-proxy-kind.toml", "[upstream]\nkind = \"mosquitto\"\n");
    CHECK(parse({"--config", file}).config.connection.session.upstream == upstream_kind::mosquitto);
    auto bad = write_file("mqtt-proxy-kind-bad.toml", "[upstream]\nkind = \"kafka\"\n");
    CHECK(error_of({"--config", bad}).find("'upstream.kind'") != std::string::npos);
  }

  TEST_CASE("API server answers become auth results") {
    auto ok = parse_validation_response(200, R"({"user":"u","acl":{"publish":["a/#","bad/#/x"],"subscribe":["s/+"]},"expires_in":60})");
    CHECK(ok.outcome == auth_result::verdict::valid);
    CHECK(ok.user == "u");
    CHECK(ok.permissions->publish == std::vector<std::string>{"a/#"});  // invalid filters are dropped
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
