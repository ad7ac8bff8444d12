// One HTTP/1.1 connection to the API server, plain or TLS, for the auth
// client and the event feed. Errors are codes (no exceptions on the data
// path); the caller owns the deadline: it calls abort() when time is up or
// when nobody waits any more, which makes the pending operation fail.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

namespace proxy {

struct http_endpoint {
  std::string host;
  std::string port;
  std::string base_path;  // without a trailing '/'
  bool tls = false;       // https://
};

// Parses "http://host[:port][/base]" and "https://host[:port][/base]".
std::optional<http_endpoint> parse_http_url(std::string_view url);

// A client TLS context that verifies the server's certificate against
// `ca_file` (empty: the system's trust store). Throws at start-up only.
std::shared_ptr<boost::asio::ssl::context> make_api_tls_context(const std::string& ca_file);

using http_request = boost::beast::http::request<boost::beast::http::string_body>;
using http_response = boost::beast::http::response<boost::beast::http::string_body>;

class http_connection {
 public:
  using clock = std::chrono::steady_clock;

  // tls: null for http://.
  static std::unique_ptr<http_connection> create(boost::asio::io_context& io, boost::asio::ssl::context* tls);

  // Resolves, connects and (https) handshakes with hostname verification.
  // `resolver` belongs to the caller so that it can be cancelled.
  boost::asio::awaitable<boost::system::error_code> connect(const http_endpoint& endpoint,
                                                            boost::asio::ip::tcp::resolver& resolver);

  // One request, one response (at most body_limit bytes of body).
  boost::asio::awaitable<boost::system::error_code> exchange(const http_request& request, http_response& response,
                                                             std::size_t body_limit);

  // Idle HTTP/1.1 connections have nothing to say: if this one is readable,
  // the server closed it (EOF) or sent garbage, and it must not be reused.
  bool unusable_when_idle() const;
  // Cancels whatever is pending and closes the socket.
  void abort();
  bool is_open() const;

  clock::time_point idle_since{};

 private:
  explicit http_connection(boost::asio::io_context& io);
  http_connection(boost::asio::io_context& io, boost::asio::ssl::context& tls);
  boost::beast::tcp_stream& tcp();
  const boost::beast::tcp_stream& tcp() const;

  std::optional<boost::beast::tcp_stream> plain_;
  std::optional<boost::beast::ssl_stream<boost::beast::tcp_stream>> tls_;
};

}  // namespace proxy
