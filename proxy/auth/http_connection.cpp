#include "auth/http_connection.hpp"

#include <poll.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>

namespace proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
}

std::optional<http_endpoint> parse_http_url(std::string_view url) {
  http_endpoint endpoint;
  if (url.starts_with("http://")) {
    url.remove_prefix(7);
  } else if (url.starts_with("https://")) {
    url.remove_prefix(8);
    endpoint.tls = true;
  } else {
    return std::nullopt;
  }
  const auto slash = url.find('/');
  auto authority = url.substr(0, slash);
  std::string path = slash == std::string_view::npos ? "" : std::string(url.substr(slash));
  while (!path.empty() && path.back() == '/') path.pop_back();
  const auto colon = authority.rfind(':');
  if (colon == std::string_view::npos || authority.ends_with(']')) {
    endpoint.host = std::string(authority);
    endpoint.port = endpoint.tls ? "443" : "80";
  } else {
    endpoint.host = std::string(authority.substr(0, colon));
    endpoint.port = std::string(authority.substr(colon + 1));
  }
  if (endpoint.host.size() > 2 && endpoint.host.front() == '[' && endpoint.host.back() == ']')
    endpoint.host = endpoint.host.substr(1, endpoint.host.size() - 2);
  if (endpoint.host.empty() || endpoint.port.empty() ||
      endpoint.port.find_first_not_of("0123456789") != std::string::npos || endpoint.port.size() > 5 ||
      std::stoul(endpoint.port) > 65535)
    return std::nullopt;
  endpoint.base_path = std::move(path);
  return endpoint;
}

std::shared_ptr<asio::ssl::context> make_api_tls_context(const std::string& ca_file) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
  if (ca_file.empty()) context->set_default_verify_paths();
  else context->load_verify_file(ca_file);
  context->set_verify_mode(asio::ssl::verify_peer);
  return context;
}

http_connection::http_connection(asio::io_context& io) { plain_.emplace(io); }
http_connection::http_connection(asio::io_context& io, asio::ssl::context& tls) { tls_.emplace(io, tls); }

beast::tcp_stream& http_connection::tcp() { return plain_ ? *plain_ : tls_->next_layer(); }
const beast::tcp_stream& http_connection::tcp() const { return plain_ ? *plain_ : tls_->next_layer(); }

std::unique_ptr<http_connection> http_connection::create(asio::io_context& io, asio::ssl::context* tls) {
  return std::unique_ptr<http_connection>(tls ? new http_connection(io, *tls) : new http_connection(io));
}

asio::awaitable<error_code> http_connection::connect(const http_endpoint& endpoint, asio::ip::tcp::resolver& resolver) {
  auto [resolve_error, endpoints] = co_await resolver.async_resolve(endpoint.host, endpoint.port, use_tuple);
  if (resolve_error) co_return resolve_error;
  auto [connect_error, connected] = co_await tcp().async_connect(endpoints, use_tuple);
  (void)connected;
  if (connect_error) co_return connect_error;
  error_code ec;
  tcp().socket().set_option(asio::ip::tcp::no_delay(true), ec);
  if (!tls_) co_return error_code{};
  // SNI, and the name the certificate must carry (checked by OpenSSL).
  if (!SSL_set_tlsext_host_name(tls_->native_handle(), endpoint.host.c_str()))
    co_return error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category());
  tls_->set_verify_callback(asio::ssl::host_name_verification(endpoint.host));
  auto [handshake_error] = co_await tls_->async_handshake(asio::ssl::stream_base::client, use_tuple);
  co_return handshake_error;
}

asio::awaitable<error_code> http_connection::exchange(const http_request& request, http_response& response,
                                                      std::size_t body_limit) {
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(body_limit);
  if (plain_) {
    auto [write_error, written] = co_await http::async_write(*plain_, request, use_tuple);
    if (write_error) co_return write_error;
    auto [read_error, read] = co_await http::async_read(*plain_, buffer, parser, use_tuple);
    if (read_error) co_return read_error;
    (void)written;
    (void)read;
  } else {
    auto [write_error, written] = co_await http::async_write(*tls_, request, use_tuple);
    if (write_error) co_return write_error;
    auto [read_error, read] = co_await http::async_read(*tls_, buffer, parser, use_tuple);
    if (read_error) co_return read_error;
    (void)written;
    (void)read;
  }
  response = parser.release();
  co_return error_code{};
}

bool http_connection::unusable_when_idle() const {
  const auto& socket = tcp().socket();
  if (!socket.is_open()) return true;
  pollfd fd{};
  fd.fd = const_cast<asio::ip::tcp::socket&>(socket).native_handle();
  fd.events = POLLIN | POLLRDHUP;
  const int ready = ::poll(&fd, 1, 0);
  return ready != 0;  // readable, hung up, errored, or poll failed
}

void http_connection::abort() {
  error_code ignored;
  tcp().socket().cancel(ignored);
  tcp().socket().close(ignored);
}

bool http_connection::is_open() const { return tcp().socket().is_open(); }

}  // namespace proxy
