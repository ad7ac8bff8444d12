// TLS contexts from files: bad files are configuration errors naming the key,
// and a failed reload keeps the context in use.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "config/config.hpp"
#include "net/tls_context.hpp"

using namespace proxy;
namespace fs = std::filesystem;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const config_error& e) {
    return e.what();
  }
  return "";
}

// A self-signed certificate made with the openssl command line.
struct certificate_files {
  fs::path dir = fs::temp_directory_path() / ("mqtt-proxy-tls-" + std::to_string(::getpid()));
  std::string cert = (dir / "cert.pem").string();
  std::string key = (dir / "key.pem").string();
  std::string other_key = (dir / "other.pem").string();

  certificate_files() {
    fs::create_directories(dir);
    const std::string make = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
                             "-subj /CN=localhost -keyout " + key + " -out " + cert + " 2>/dev/null";
    REQUIRE(std::system(make.c_str()) == 0);
    const std::string make_key = "openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:prime256v1 -out " + other_key +
                                 " 2>/dev/null";
    REQUIRE(std::system(make_key.c_str()) == 0);
  }
  ~certificate_files() { fs::remove_all(dir); }
};

}  // namespace

TEST_SUITE("tls contexts") {
  TEST_CASE("a good pair loads; missing, mismatched and absent files name their key") {
    certificate_files files;
    CHECK(make_server_tls_context({files.cert, files.key, ""}, "listeners.tls.") != nullptr);
    CHECK(make_server_tls_context({files.cert, files.key, files.cert}, "listeners.tls.") != nullptr);  // mTLS CA

    CHECK(error_of([&] { make_server_tls_context({files.cert + ".missing", files.key, ""}, "listeners.tls."); })
              .find("listeners.tls.cert_file") != std::string::npos);
    CHECK(error_of([&] { make_server_tls_context({files.cert, files.other_key, ""}, "listeners.wss."); })
              .find("listeners.wss.key_file") != std::string::npos);
    CHECK(error_of([&] { make_server_tls_context({files.cert, files.key, "/nonexistent/ca.pem"}, "listeners.tls."); })
              .find("listeners.tls.client_ca_file") != std::string::npos);
    CHECK(error_of([&] { make_server_tls_context({"", files.key, ""}, "listeners.tls."); }).find("required") !=
          std::string::npos);

    upstream_settings upstream;
    upstream.ca_file = "/nonexistent/ca.pem";
    CHECK(error_of([&] { make_upstream_tls_context(upstream); }).find("upstream.ca_file") != std::string::npos);
    upstream.ca_file = files.cert;
    upstream.cert_file = files.cert;
    CHECK(error_of([&] { make_upstream_tls_context(upstream); }).find("upstream.cert_file") != std::string::npos);
  }

  TEST_CASE("a failed reload keeps the context in use") {
    certificate_files files;
    tls_files paths{files.cert, files.key, ""};
    reloadable_tls_context context([&] { return make_server_tls_context(paths, "listeners.tls."); });
    const auto first = context.current();
    CHECK(context.reload().empty());
    CHECK(context.current() != first);
    const auto second = context.current();
    paths.key_file = files.other_key;
    CHECK(context.reload().find("listeners.tls.key_file") != std::string::npos);
    CHECK(context.current() == second);
  }
}
