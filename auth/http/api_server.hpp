// The HTTP API of the auth server (see auth/API.md), on cpp-httplib's
// thread-pooled server with bounded requests (bounded_server). Login's KDF
// runs in at most half of the threads and event long-polls in at most a
// quarter, so session validations always have threads to run on.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <semaphore>
#include <string>

#include <nlohmann/json.hpp>

#include "http/bounded_server.hpp"
#include "http/console_files.hpp"
#include "http/cors.hpp"
#include "http/event_hub.hpp"
#include "http/login_throttle.hpp"
#include "policy/policy.hpp"
#include "store/auth_store.hpp"

namespace auth {

struct api_settings {
  std::int64_t session_ttl = 3600;       // seconds
  std::size_t threads = 8;
  std::size_t max_body = 8 * 1024;       // bytes; larger bodies are refused with 413
  login_throttle::limits throttle;
  std::int64_t validate_max_age = 60;    // seconds: Cache-Control max-age on validate answers
  std::size_t max_long_polls = 0;        // concurrent GET /v1/events waits; 0: a quarter of the threads
  std::chrono::milliseconds event_poll_interval{100};
  std::string service_token;             // empty: /v1/events is open and the operator endpoints are off
  bounded_server::limits connection;
  std::vector<std::string> cors_origins;  // pages allowed to call the API from a browser (cors.hpp)
  std::string console_dir;                // empty: no web console at /console/
};

class api_server {
 public:
  api_server(auth_store& store, api_settings settings);
  ~api_server();
  bool listen(const std::string& host, int port);  // blocks until stop()
  bool bind(const std::string& host, int port);     // bind (backlog = somaxconn), then listen_after_bind()
  bool listen_after_bind();
  void stop();
  int backlog() const { return server_.backlog(); }

 private:
  void routes();
  void login(const httplib::Request& request, httplib::Response& response, const std::string& body);
  void validate(const httplib::Request& request, httplib::Response& response, const std::string& body);
  void revoke(const httplib::Request& request, httplib::Response& response, const std::string& body);
  void refresh(const httplib::Request& request, httplib::Response& response, const std::string& body);
  void events(const httplib::Request& request, httplib::Response& response);
  void modify_user(const httplib::Request& request, httplib::Response& response, const std::string& body);
  void delete_user(const httplib::Request& request, httplib::Response& response);
  // GET /v1/users/{name}: the user's ACL exactly as validate returns it (operator endpoint).
  void get_user(const httplib::Request& request, httplib::Response& response);
  void health(const httplib::Request& request, httplib::Response& response);
  // The session of logout and refresh: Authorization: Bearer, else the body's "session".
  std::optional<std::string> session_of(const httplib::Request& request, httplib::Response& response,
                                        const std::string& body);
  // Whether the request carries the service token (401 written when not).
  bool authorized(const httplib::Request& request, httplib::Response& response);
  // Operator endpoints exist only with a service token (404 otherwise).
  bool operator_enabled(const httplib::Request& request, httplib::Response& response);
  // CORS preflights and headers, and the web console's files (when configured).
  void browser_routes();
  void console(const httplib::Request& request, httplib::Response& response);

  auth_store& store_;
  api_settings settings_;
  login_throttle throttle_;
  std::counting_semaphore<1024> kdf_slots_;
  std::counting_semaphore<1024> delay_slots_;  // logins waiting out a per-user delay
  std::atomic<std::size_t> long_polls_{0};
  std::string decoy_hash_;  // verified against when the user does not exist, so timing does not tell
  event_hub hub_;
  cors_policy cors_;
  std::optional<console_files> console_;
  bounded_server server_;
};

}  // namespace auth
