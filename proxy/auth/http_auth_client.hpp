// Validates sessions with the API server: POST {base}/v1/sessions/validate.
// One instance per io_context (per worker thread), so it needs no locks.
//  - keep-alive: idle HTTP connections are pooled and reused;
//  - timeout: each call has a deadline; late or failed calls are "unavailable";
//  - coalescing: concurrent validations of one token share one HTTP call.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <utility>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "auth/auth_client.hpp"

namespace proxy {

struct http_endpoint {
  std::string host;
  std::string port;
  std::string base_path;  // without a trailing '/'
};

// Parses "http://host:port/base"; https is not supported yet.
std::optional<http_endpoint> parse_http_url(std::string_view url);

// Turns the API server's answer into an auth_result (pure, unit-tested).
auth_result parse_validation_response(unsigned status, std::string_view body);

class http_auth_client final : public auth_client {
 public:
  http_auth_client(boost::asio::io_context& io, http_endpoint endpoint, std::chrono::milliseconds timeout,
                   std::size_t max_idle_connections = 4);

  pending_call validate(const std::string& token, const std::string& remote_address, completion done) override;

 private:
  boost::asio::awaitable<auth_result> call(std::string token, std::string remote_address);
  // The answer, and whether the connection may be reused.
  boost::asio::awaitable<std::pair<auth_result, bool>> exchange(boost::beast::tcp_stream& stream,
                                                                const std::string& body);
  boost::asio::awaitable<std::unique_ptr<boost::beast::tcp_stream>> open_connection();

  boost::asio::io_context& io_;
  http_endpoint endpoint_;
  std::chrono::milliseconds timeout_;
  std::size_t max_idle_;
  std::vector<std::unique_ptr<boost::beast::tcp_stream>> idle_;
  std::unordered_map<std::string, std::vector<completion>> in_flight_;  // token -> waiters
};

}  // namespace proxy
