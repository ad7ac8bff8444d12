// The HTTP API of the auth server (see auth/API.md), on cpp-httplib's
// thread-pooled server. Login's KDF runs in at most half of the threads, so
// session validations always have threads to run on.
#pragma once

#include <httplib.h>

#include <chrono>
#include <memory>
#include <semaphore>
#include <string>

#include <nlohmann/json.hpp>

#include "http/login_throttle.hpp"
#include "store/auth_store.hpp"

namespace auth {

struct api_settings {
  std::int64_t session_ttl = 3600;       // seconds
  std::size_t threads = 8;
  std::size_t max_body = 8 * 1024;       // bytes; larger bodies are refused with 413
  std::size_t max_login_failures = 5;    // per user and per address, within the window
  std::chrono::seconds throttle_window{300};
};

// The ACL of a user: publish and subscribe private/<user>/#, group/<g>/# for
// each group, and the user's own extra filters.
nlohmann::json acl_of(const user_record& user);

// Names that become topic levels: 1 to 64 bytes of UTF-8, no '/', '+', '#'
// or control characters.
bool is_valid_name(const std::string& name);

class api_server {
 public:
  api_server(auth_store& store, api_settings settings);
  bool listen(const std::string& host, int port);  // blocks until stop()
  bool bind(const std::string& host, int port);     // for tests: bind, then listen_after_bind()
  bool listen_after_bind();
  void stop();

 private:
  void routes();
  void login(const httplib::Request& request, httplib::Response& response);
  void validate(const httplib::Request& request, httplib::Response& response);
  void logout(const httplib::Request& request, httplib::Response& response);
  void refresh(const httplib::Request& request, httplib::Response& response);
  void health(const httplib::Request& request, httplib::Response& response);

  auth_store& store_;
  api_settings settings_;
  login_throttle throttle_;
  std::counting_semaphore<1024> kdf_slots_;
  std::string decoy_hash_;  // verified against when the user does not exist, so timing does not tell
  httplib::Server server_;
};

}  // namespace auth
