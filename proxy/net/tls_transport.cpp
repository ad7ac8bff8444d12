#include "net/tls_transport.hpp"

#include <openssl/x509.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace proxy {

namespace asio = boost::asio;
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

std::string describe_tls_error(const boost::system::error_code& ec, SSL* ssl) {
  std::string text = ec.message();
  if (ssl) {
    const long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) text += std::string(" (certificate: ") + X509_verify_cert_error_string(verify) + ")";
  }
  return text;
}

std::string certificate_subject(SSL* ssl) {
  if (!ssl) return {};
  X509* peer = SSL_get1_peer_certificate(ssl);
  if (!peer) return {};
  char buffer[256] = {};
  X509_NAME_oneline(X509_get_subject_name(peer), buffer, sizeof buffer);
  X509_free(peer);
  return buffer;
}

tls_transport::tls_transport(tcp_socket socket, ssl_context_ptr context, tls_stream::role role,
                             std::string server_name)
    : stream_(std::move(socket), std::move(context)) {
  // The SSL object keeps the role (SSL_is_server): no member of ours for it.
  if (role == tls_stream::role::server) {
    SSL_set_accept_state(stream_.native_handle());
  } else {
    SSL_set_connect_state(stream_.native_handle());
    stream_.expect_server_name(server_name);
  }
}

asio::awaitable<handshake_result> tls_transport::handshake() {
  const auto role = SSL_is_server(stream_.native_handle()) ? tls_stream::role::server : tls_stream::role::client;
  auto [ec, n] = co_await stream_.async_handshake(role, as_tuple_awaitable);
  (void)n;
  if (ec) co_return handshake_result{ec, "TLS: " + describe_tls_error(ec, stream_.native_handle())};
  co_return handshake_result{};
}

// OpenSSL keeps nothing between records here, so an idle connection can wait
// on the socket without a buffer, as plain TCP does.
asio::awaitable<void> tls_transport::wait_readable() {
  if (stream_.has_pending()) co_return;
  auto [ec] = co_await socket().async_wait(tcp_socket::wait_read, as_tuple_awaitable);
  (void)ec;  // the read that follows reports any error
}

bool tls_transport::readable_when_socket_is() const { return !stream_.has_pending(); }

std::size_t tls_transport::read_size_hint() {
  boost::system::error_code ec;
  return socket().available(ec);  // ciphertext: a little more than the plaintext it holds
}

asio::awaitable<io_result> tls_transport::read_some(asio::mutable_buffer buffer) {
  auto [ec, n] = co_await stream_.async_read_some(buffer, as_tuple_awaitable);
  co_return io_result{ec, n};
}

asio::awaitable<io_result> tls_transport::write(const std::vector<asio::const_buffer>& buffers) {
  auto [ec, n] = co_await asio::async_write(stream_, buffers, as_tuple_awaitable);
  co_return io_result{ec, n};
}

asio::awaitable<void> tls_transport::shutdown() {
  stream_.shutdown_send();
  co_return;
}

}  // namespace proxy
