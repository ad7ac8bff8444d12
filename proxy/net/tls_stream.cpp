#include "net/tls_stream.hpp"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <boost/asio/ip/address.hpp>

namespace proxy {

namespace tls_detail {

step classify(SSL* ssl, int result, boost::system::error_code& error) {
  if (result > 0) return step::done;
  switch (SSL_get_error(ssl, result)) {
    case SSL_ERROR_WANT_READ:
      return step::want_read;
    case SSL_ERROR_WANT_WRITE:
      return step::want_write;
    case SSL_ERROR_ZERO_RETURN:  // the peer's close_notify
      error = boost::asio::error::eof;
      return step::failed;
    case SSL_ERROR_SYSCALL:
      // OpenSSL 3 reports a TCP close without close_notify as SSL_ERROR_SSL
      // (unexpected eof); older ones as SYSCALL with errno 0.
      error = errno ? boost::system::error_code(errno, boost::system::system_category())
                    : boost::system::error_code(boost::asio::ssl::error::stream_truncated);
      return step::failed;
    default: {
      const unsigned long code = ERR_get_error();
      if (ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        error = boost::asio::ssl::error::stream_truncated;
      } else {
        error = boost::system::error_code(static_cast<int>(code), boost::asio::error::get_ssl_category());
      }
      return step::failed;
    }
  }
}

}  // namespace tls_detail

tls_stream::tls_stream(tcp_socket socket, std::shared_ptr<boost::asio::ssl::context> context)
    : socket_(std::move(socket)), ssl_(SSL_new(context->native_handle())) {
  if (!ssl_) throw std::bad_alloc();
  // Partial writes give async_write_some its meaning; a retried write may
  // come from a buffer that moved.
  SSL_set_mode(ssl_.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

void tls_stream::expect_server_name(const std::string& name) {
  boost::system::error_code not_an_address;
  boost::asio::ip::make_address(name, not_an_address);
  if (not_an_address) {
    SSL_set_tlsext_host_name(ssl_.get(), name.c_str());  // SNI carries names, never addresses (RFC 6066 3)
    SSL_set1_host(ssl_.get(), name.c_str());
  } else {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_.get()), name.c_str());
  }
  SSL_set_verify(ssl_.get(), SSL_VERIFY_PEER, nullptr);
}

void tls_stream::attach(role as) {
  // OpenSSL reads and writes the socket itself; Asio only waits for readiness.
  boost::system::error_code ignored;
  socket_.non_blocking(true, ignored);
  SSL_set_fd(ssl_.get(), static_cast<int>(socket_.native_handle()));
  if (as == role::server) {
    SSL_set_accept_state(ssl_.get());
  } else {
    SSL_set_connect_state(ssl_.get());
  }
}

void tls_stream::shutdown_send() {
  ERR_clear_error();
  if (SSL_is_init_finished(ssl_.get())) SSL_shutdown(ssl_.get());  // queues close_notify; the socket is non-blocking
  ERR_clear_error();
  boost::system::error_code ignored;
  socket_.shutdown(tcp_socket::shutdown_send, ignored);
}

}  // namespace proxy
