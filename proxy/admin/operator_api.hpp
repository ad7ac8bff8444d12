// The operator endpoints on the admin port (README "Operating"):
//   GET  /v1/connections[?user=U][&limit=N][&after=ID|&offset=M]
//                                                 live connections, all workers, in pages
//   POST /v1/connections/kick?user=U|client_id=C|id=N   end them (5.0: DISCONNECT 0x98)
//   GET  /v1/explain?user=U&action=A&topic=T[&client_id=C][&listener=L]
//                                                 allow/deny and the ACL entry that decided
// Each needs "Authorization: Bearer <token>" with the token of
// `[admin] token_file` (401 without it or with another); with no token
// configured they answer 403 and say so. /healthz, /readyz and /metrics stay
// open (admin_server). Runs on worker 0's thread; connections are asked on
// their own workers' threads (co_spawn onto each worker's io_context).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <nlohmann/json.hpp>

#include "auth/auth_result.hpp"
#include "auth/http_connection.hpp"
#include "net/connection_registry.hpp"
#include "session/acl.hpp"

namespace proxy {

// One worker as the operator endpoints reach it.
struct operator_worker {
  boost::asio::io_context* io = nullptr;
  connection_registry* registry = nullptr;  // touched only on io's thread
};

struct operator_settings {
  std::string token;                                // empty: the endpoints are off (403)
  http_endpoint auth;                               // the API server, for GET /v1/users/{name}
  std::shared_ptr<boost::asio::ssl::context> auth_tls;
  std::string service_token;                        // Bearer for the API server
  std::chrono::milliseconds auth_timeout{3'000};
  acl templates;                                    // [acl_templates], as connections expand them
  acl_mode mode = acl_mode::enforce;                // [acl] mode, for explain's answer
  // The enabled listeners by their config name (tcp, tls, ws, wss), each
  // with the mode its connections get (its own acl_mode, else [acl] mode).
  std::map<std::string, acl_mode> listener_modes;
};

// A query string split into decoded parameters (pure, unit-tested). nullopt:
// malformed (a bad %-escape, a control character, too many parameters).
std::optional<std::map<std::string, std::string>> parse_query(std::string_view query);

class operator_api {
 public:
  using request = boost::beast::http::request<boost::beast::http::empty_body>;
  using response = boost::beast::http::response<boost::beast::http::string_body>;

  operator_api(boost::asio::io_context& io, operator_settings settings, std::vector<operator_worker> workers);
  // Whether the admin server should hand this target to us.
  static bool handles(std::string_view target);
  // Says at start-up whether the endpoints are on, and why not.
  void log_state() const;
  boost::asio::awaitable<response> serve(const request& req);

 private:
  boost::asio::awaitable<response> list(const request& req, std::map<std::string, std::string> query);
  boost::asio::awaitable<nlohmann::json> page_by_offset(std::string user, std::size_t limit, std::size_t offset);
  boost::asio::awaitable<nlohmann::json> page_after(std::string user, std::size_t limit, std::uint64_t after);
  boost::asio::awaitable<response> kick(const request& req, std::map<std::string, std::string> query);
  boost::asio::awaitable<response> explain(const request& req, std::map<std::string, std::string> query);
  // GET /v1/users/{name} of the API server: (status, body); status 0 when unreachable.
  boost::asio::awaitable<std::pair<unsigned, std::string>> fetch_user(std::string name);
  bool authorized(const request& req) const;
  std::optional<response> check(const request& req) const;
  std::optional<response> check_explain(const request& req, const std::map<std::string, std::string>& query) const;
  nlohmann::json explanation_json(const auth_result& parsed, acl_action action, const std::string& topic,
                                  const std::string& client_id, const std::optional<std::string>& listener) const;
  void add_acl_mode(nlohmann::json& out, const std::optional<std::string>& listener) const;

  boost::asio::io_context& io_;
  operator_settings settings_;
  std::vector<operator_worker> workers_;
};

}  // namespace proxy
