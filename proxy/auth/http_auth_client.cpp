#include "auth/http_auth_client.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "mqtt/topic.hpp"

namespace proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

std::string redact(std::string_view secret) {
  if (secret.size() <= 8) return "****";
  return std::string(secret.substr(0, 4)) + "..." + std::string(secret.substr(secret.size() - 4));
}

std::optional<http_endpoint> parse_http_url(std::string_view url) {
  constexpr std::string_view scheme = "http://";
  if (!url.starts_with(scheme)) return std::nullopt;
  url.remove_prefix(scheme.size());
  const auto slash = url.find('/');
  auto authority = url.substr(0, slash);
  std::string path = slash == std::string_view::npos ? "" : std::string(url.substr(slash));
  while (!path.empty() && path.back() == '/') path.pop_back();
  const auto colon = authority.rfind(':');
  http_endpoint endpoint;
  if (colon == std::string_view::npos) {
    endpoint.host = std::string(authority);
    endpoint.port = "80";
  } else {
    endpoint.host = std::string(authority.substr(0, colon));
    endpoint.port = std::string(authority.substr(colon + 1));
  }
  if (endpoint.host.empty() || endpoint.port.empty()) return std::nullopt;
  endpoint.base_path = std::move(path);
  return endpoint;
}

namespace {

std::vector<std::string> filters_from(const nlohmann::json& list) {
  std::vector<std::string> filters;
  if (!list.is_array()) return filters;
  for (const auto& item : list)
    if (item.is_string() && mqtt::topic::is_valid_filter(item.get<std::string>())) filters.push_back(item);
  return filters;
}

auth_result unavailable(std::string detail) {
  auth_result r;
  r.outcome = auth_result::verdict::unavailable;
  r.detail = std::move(detail);
  return r;
}

}  // namespace

auth_result parse_validation_response(unsigned status, std::string_view body) {
  if (status == 401 || status == 404 || status == 403) {
    auth_result r;
    r.outcome = auth_result::verdict::invalid;
    r.detail = "API server answered " + std::to_string(status);
    return r;
  }
  if (status != 200) return unavailable("API server answered " + std::to_string(status));
  const auto json = nlohmann::json::parse(body, nullptr, false);
  if (json.is_discarded() || !json.is_object()) return unavailable("API server sent malformed JSON");
  const auto user = json.find("user");
  if (user == json.end() || !user->is_string() || user->get<std::string>().empty())
    return unavailable("API server answer has no user");
  auth_result r;
  r.outcome = auth_result::verdict::valid;
  r.user = user->get<std::string>();
  if (auto acl_json = json.find("acl"); acl_json != json.end() && acl_json->is_object()) {
    r.permissions.publish = filters_from(acl_json->value("publish", nlohmann::json::array()));
    r.permissions.subscribe = filters_from(acl_json->value("subscribe", nlohmann::json::array()));
  }
  if (auto expires = json.find("expires_in"); expires != json.end() && expires->is_number_integer())
    r.expires_in = std::chrono::seconds(expires->get<long long>());
  return r;
}

http_auth_client::http_auth_client(asio::io_context& io, http_endpoint endpoint, std::chrono::milliseconds timeout,
                                   std::size_t max_idle_connections)
    : io_(io), endpoint_(std::move(endpoint)), timeout_(timeout), max_idle_(max_idle_connections) {}

auth_client::pending_call http_auth_client::validate(const std::string& token, const std::string& remote_address,
                                                     completion done) {
  auto [waiters, first] = in_flight_.try_emplace(token);
  waiters->second.push_back(std::move(done));
  if (!first) return nullptr;  // coalesced onto the call already under way
  asio::co_spawn(io_, call(token, remote_address), [this, token](std::exception_ptr error, auth_result result) {
    if (error) result = unavailable("internal error in the auth client");
    auto node = in_flight_.extract(token);
    for (auto& waiter : node.mapped()) waiter(result);
  });
  return nullptr;
}

asio::awaitable<std::unique_ptr<beast::tcp_stream>> http_auth_client::open_connection() {
  asio::ip::tcp::resolver resolver(io_);
  auto stream = std::make_unique<beast::tcp_stream>(io_);
  stream->expires_after(timeout_);
  const auto endpoints = co_await resolver.async_resolve(endpoint_.host, endpoint_.port, asio::use_awaitable);
  co_await stream->async_connect(endpoints, asio::use_awaitable);
  stream->socket().set_option(asio::ip::tcp::no_delay(true));
  co_return stream;
}

asio::awaitable<std::pair<auth_result, bool>> http_auth_client::exchange(beast::tcp_stream& stream,
                                                                          const std::string& body) {
  http::request<http::string_body> request{http::verb::post, endpoint_.base_path + "/v1/sessions/validate", 11};
  request.set(http::field::host, endpoint_.host);
  request.set(http::field::content_type, "application/json");
  request.set(http::field::user_agent, "mqtt-proxy");
  request.keep_alive(true);
  request.body() = body;
  request.prepare_payload();
  stream.expires_after(timeout_);
  co_await http::async_write(stream, request, asio::use_awaitable);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024);  // an ACL is small; a huge answer is an error, not a reason to buffer
  co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
  stream.expires_never();
  auto response = parser.release();
  co_return std::pair{parse_validation_response(response.result_int(), response.body()), response.keep_alive()};
}

asio::awaitable<auth_result> http_auth_client::call(std::string token, std::string remote_address) {
  nlohmann::json request{{"session", token}};
  if (!remote_address.empty()) request["remote_addr"] = remote_address;
  const auto body = request.dump();
  // A pooled connection may have been closed by the server while idle: one
  // retry on a fresh connection tells that apart from a real failure.
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::unique_ptr<beast::tcp_stream> stream;
    const bool reused = !idle_.empty();
    try {
      if (reused) {
        stream = std::move(idle_.back());
        idle_.pop_back();
      } else {
        auto fresh = co_await open_connection();
        stream = std::move(fresh);
      }
      auto [result, reusable] = co_await exchange(*stream, body);
      if (reusable && idle_.size() < max_idle_) idle_.push_back(std::move(stream));
      co_return result;
    } catch (const boost::system::system_error& e) {
      if (reused && e.code() != beast::error::timeout) continue;
      co_return unavailable(e.code() == beast::error::timeout ? "API server timed out"
                                                              : "API server unreachable: " + e.code().message());
    }
  }
  co_return unavailable("API server unreachable");
}

}  // namespace proxy
