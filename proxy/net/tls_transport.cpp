#include "net/tls_transport.hpp"

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
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

tls_transport::tls_transport(asio::ip::tcp::socket socket, ssl_context_ptr context, handshake_type role,
                             std::string server_name)
    : context_(std::move(context)),
      stream_(std::move(socket), *context_),
      role_(role),
      server_name_(std::move(server_name)) {}

asio::awaitable<handshake_result> tls_transport::handshake(std::vector<std::uint8_t> initial) {
  if (role_ == asio::ssl::stream_base::client) {
    SSL_set_tlsext_host_name(stream_.native_handle(), server_name_.c_str());
    stream_.set_verify_mode(asio::ssl::verify_peer);
    stream_.set_verify_callback(asio::ssl::host_name_verification(server_name_));
  }
  auto [ec, used] = co_await stream_.async_handshake(role_, asio::buffer(initial), as_tuple_awaitable);
  (void)used;
  if (ec) co_return handshake_result{ec, "TLS: " + describe_tls_error(ec, stream_.native_handle()), {}};
  co_return handshake_result{};
}

asio::awaitable<io_result> tls_transport::read_some(asio::mutable_buffer buffer) {
  if (shutdown_requested_) {
    auto closed = co_await exchange_close_notify();
    co_return closed;
  }
  auto [ec, n] = co_await stream_.async_read_some(buffer, as_tuple_awaitable);
  if (ec && shutdown_requested_) {
    auto closed = co_await exchange_close_notify();
    co_return closed;
  }
  co_return io_result{ec, n};
}

asio::awaitable<io_result> tls_transport::write(const std::vector<asio::const_buffer>& buffers) {
  // Beast's ssl_stream gathers small buffers into one record instead of one record per packet.
  auto [ec, n] = co_await asio::async_write(stream_, buffers, as_tuple_awaitable);
  co_return io_result{ec, n};
}

// TLS has no half-close to call from the side: close_notify goes through the
// engine, which the outstanding read also uses. So shutdown() stops that read,
// and the reader, which owns the socket's read side, exchanges close_notify.
asio::awaitable<void> tls_transport::shutdown() {
  shutdown_requested_ = true;
  boost::system::error_code ignored;
  socket().cancel(ignored);
  co_return;
}

asio::awaitable<io_result> tls_transport::exchange_close_notify() {
  if (!close_notify_done_) {
    close_notify_done_ = true;
    // Sends close_notify, then reads until the peer's close_notify or EOF.
    auto [ec] = co_await stream_.async_shutdown(as_tuple_awaitable);
    (void)ec;  // a peer that just closes TCP is fine: MQTT frames its own data
    boost::system::error_code ignored;
    socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  }
  co_return io_result{asio::error::eof, 0};
}

}  // namespace proxy
