// A byte stream to one peer, whatever carries it: plain TCP, TLS, WebSocket
// or WebSocket over TLS. The connection owner drives the MQTT session over
// this interface and never learns which one it has.
//
// Contract: at most one read and one write are outstanding at a time, both
// from the connection's own executor. shutdown() may be called while a read
// is outstanding; that read (or the next) then ends once the peer has closed.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include "net/proxy_context.hpp"
#include "net/tcp_socket.hpp"

namespace proxy {

struct io_result {
  boost::system::error_code error;
  std::size_t bytes = 0;
};

struct handshake_result {
  boost::system::error_code error;
  std::string detail;  // why it failed, for the log
};

class transport {
 public:
  virtual ~transport() = default;

  // The TCP socket underneath: addresses, socket options, connecting, the PROXY header.
  virtual tcp_socket& socket() = 0;

  // TLS and/or WebSocket opening handshake; nothing has been read from the
  // socket before it but an exact PROXY protocol header.
  virtual boost::asio::awaitable<handshake_result> handshake() = 0;

  // Waits until a read would not block, without holding a buffer, where the
  // stream allows it (TCP, and TLS when OpenSSL holds nothing); WebSocket
  // returns at once, as Beast may hold bytes it has not handed out.
  virtual boost::asio::awaitable<void> wait_readable() = 0;
  // True when readiness of socket() is all wait_readable() waits for (TCP;
  // TLS while OpenSSL holds no bytes): an idle reader may then wait with a
  // bare socket wait instead of a parked coroutine (client_connection::park).
  virtual bool readable_when_socket_is() const { return false; }
  // How many bytes the next read should offer room for.
  virtual std::size_t read_size_hint() = 0;
  virtual boost::asio::awaitable<io_result> read_some(boost::asio::mutable_buffer buffer) = 0;
  // Writes all of the buffers (one WebSocket message for a WebSocket).
  virtual boost::asio::awaitable<io_result> write(const std::vector<boost::asio::const_buffer>& buffers) = 0;

  // Without waiting, where the stream allows it (plain TCP: a relayed packet
  // then costs one send or recv, not a trip through the reactor and the
  // scheduler): what a non-blocking recv or send moved, would_block when
  // nothing, eof when the peer closed. Streams that frame or encrypt their
  // bytes (TLS, WebSocket) keep the default: immediate_io() false, and the
  // caller reads with read_some() and writes with write().
  virtual bool immediate_io() const { return false; }
  virtual io_result try_read_some(boost::asio::mutable_buffer) {
    return {boost::asio::error::operation_not_supported, 0};
  }
  // May take part of the buffers; the caller keeps the rest in order.
  virtual io_result try_write(const std::vector<boost::asio::const_buffer>&) {
    return {boost::asio::error::operation_not_supported, 0};
  }

  // Ends our direction cleanly once everything is written: TCP FIN, TLS
  // close_notify, WebSocket close frame.
  virtual boost::asio::awaitable<void> shutdown() = 0;

  // Subject of the peer's certificate, when it presented one (mTLS).
  virtual std::string peer_certificate_subject() { return {}; }

  void close() {
    boost::system::error_code ignored;
    socket().close(ignored);
  }
};

using ssl_context_ptr = std::shared_ptr<boost::asio::ssl::context>;

// A client's stream on a listener of the given kind; `tls` is required for tls and wss.
std::unique_ptr<transport> make_client_transport(tcp_socket socket, const listener_settings& listener,
                                                 ssl_context_ptr tls);
// The stream to the broker: plain TCP, or TLS when `tls` is set.
std::unique_ptr<transport> make_upstream_transport(const boost::asio::io_context::executor_type& executor,
                                                   const upstream_settings& upstream, ssl_context_ptr tls);

}  // namespace proxy
