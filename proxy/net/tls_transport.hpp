// TLS over TCP, either end: clients on the tls listener, or the proxy as a
// client of a broker's TLS listener.
#pragma once

#include <boost/beast/ssl/ssl_stream.hpp>

#include "net/transport.hpp"

namespace proxy {

std::string describe_tls_error(const boost::system::error_code& ec, SSL* ssl);
std::string certificate_subject(SSL* ssl);

class tls_transport final : public transport {
 public:
  using handshake_type = boost::asio::ssl::stream_base::handshake_type;
  // `server_name` (client role only) is sent as SNI and checked against the certificate.
  tls_transport(boost::asio::ip::tcp::socket socket, ssl_context_ptr context, handshake_type role,
                std::string server_name = {});

  boost::asio::ip::tcp::socket& socket() override { return stream_.next_layer(); }
  boost::asio::awaitable<handshake_result> handshake(std::vector<std::uint8_t> initial) override;
  boost::asio::awaitable<void> wait_readable() override { co_return; }
  // Small: the buffer stays allocated while the connection idles (TLS cannot be polled).
  std::size_t read_size_hint() override { return 4 * 1024; }
  boost::asio::awaitable<io_result> read_some(boost::asio::mutable_buffer buffer) override;
  boost::asio::awaitable<io_result> write(const std::vector<boost::asio::const_buffer>& buffers) override;
  boost::asio::awaitable<void> shutdown() override;
  std::string peer_certificate_subject() override { return certificate_subject(stream_.native_handle()); }

 private:
  boost::asio::awaitable<io_result> exchange_close_notify();

  ssl_context_ptr context_;  // the context this connection began with, kept across a reload
  boost::beast::ssl_stream<boost::asio::ip::tcp::socket> stream_;
  handshake_type role_;
  std::string server_name_;
  bool shutdown_requested_ = false;
  bool close_notify_done_ = false;
};

}  // namespace proxy
