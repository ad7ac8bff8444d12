// auth-server's browser-facing rules without sockets: which origins CORS
// accepts (cors_policy) and which request paths map to console files
// (console_files::relative_path). The HTTP behaviour is tested over real
// sockets in tests/integration/auth_server_test.cpp.
#include <doctest/doctest.h>

#include "http/console_files.hpp"
#include "http/cors.hpp"

using auth::console_files;
using auth::cors_policy;

TEST_SUITE("auth: browser access") {
  TEST_CASE("only scheme://host[:port] is an origin") {
    for (const char* good : {"http://127.0.0.1:8080", "https://app.example", "https://app.example:8443",
                             "http://[::1]:3000", "http://localhost"})
      CHECK_MESSAGE(cors_policy::is_valid_origin(good), good);
    for (const char* bad : {"*", "null", "", "app.example", "https://", "https://:80", "https://app.example/",
                            "https://app.example/path", "https://user@app.example", "ftp://app.example",
                            "https://app.example?x", "https://app example", "javascript://x"})
      CHECK_FALSE_MESSAGE(cors_policy::is_valid_origin(bad), bad);
  }

  TEST_CASE("allowed origins match exactly, ignoring ASCII case; nothing is allowed by default") {
    const cors_policy none;
    CHECK_FALSE(none.enabled());
    CHECK_FALSE(none.allows("https://app.example"));
    const cors_policy policy({"https://App.Example", "http://127.0.0.1:3000"});
    CHECK(policy.enabled());
    CHECK(policy.allows("https://app.example"));
    CHECK(policy.allows("HTTPS://APP.EXAMPLE"));
    CHECK(policy.allows("http://127.0.0.1:3000"));
    for (const char* other : {"", "null", "*", "https://app.example:443", "https://app.example.evil", "http://app.example",
                              "https://evil.example", "http://127.0.0.1:30000", "http://127.0.0.1"})
      CHECK_FALSE_MESSAGE(policy.allows(other), other);
  }

  TEST_CASE("console paths: plain names with known extensions and the MQTT.js alias, nothing else") {
    CHECK(console_files::relative_path("") == std::filesystem::path("index.html"));
    CHECK(console_files::relative_path("console.js") == std::filesystem::path("console.js"));
    CHECK(console_files::relative_path("vendor/mqtt.min.js") ==
          std::filesystem::path("node_modules/mqtt/dist/mqtt.min.js"));
    for (const char* bad : {"..", "../x.js", "..%2fx.js", "./x.js", ".hidden.js", "a/b.js", "/etc/passwd", "x.md",
                            "x", "x.js/", "vendor/../x.js", "vendor/mqtt.js", "node_modules/mqtt/dist/mqtt.min.js",
                            "a\\b.js", "x y.js"})
      CHECK_FALSE_MESSAGE(console_files::relative_path(bad).has_value(), bad);
    CHECK_FALSE(console_files::relative_path(std::string("x.js\0.txt", 9)).has_value());
    CHECK_FALSE(console_files::relative_path(std::string(101, 'a') + ".js").has_value());
  }
}
