// TLS over a TCP socket that OpenSSL reads and writes itself (SSL_set_fd),
// driven by Asio readiness waits; an Asio AsyncStream, so Beast's WebSocket
// runs over it too.
//
// Why not asio::ssl::stream: it feeds OpenSSL through a memory BIO pair and
// keeps 17 KB buffers each way on top of the pair's own, about 90 KB per
// connection even when idle. Here nothing is buffered between calls
// (SSL_MODE_RELEASE_BUFFERS hands OpenSSL's record buffers back), so an idle
// TLS connection costs a few KB, and whether a read would block can be asked
// of the socket once SSL_has_pending() says OpenSSL holds nothing.
//
// One read and one write may be outstanding at once: both run on the
// connection's executor, so calls into the SSL object never overlap.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <utility>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/compose.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/role.hpp>

#include "net/tcp_socket.hpp"

namespace proxy {

namespace tls_detail {

enum class step { done, want_read, want_write, failed };

// What an SSL_* call's result asks for next; `error` is set when it failed.
step classify(SSL* ssl, int result, boost::system::error_code& error);

}  // namespace tls_detail

class tls_stream {
 public:
  using executor_type = tcp_socket::executor_type;
  using next_layer_type = tcp_socket;
  using lowest_layer_type = tcp_socket;
  enum class role { client, server };

  tls_stream(tcp_socket socket, std::shared_ptr<boost::asio::ssl::context> context);
  tls_stream(tls_stream&&) = default;

  executor_type get_executor() { return socket_.get_executor(); }
  tcp_socket& next_layer() { return socket_; }
  tcp_socket& lowest_layer() { return socket_; }
  SSL* native_handle() { return ssl_.get(); }

  // Client role: the name sent as SNI and required in the server's certificate.
  void expect_server_name(const std::string& name);
  // True when OpenSSL holds bytes already taken from the socket.
  bool has_pending() const { return SSL_has_pending(ssl_.get()) == 1; }

  // All three complete with (error_code, bytes); the handshake's bytes are 0.
  template <class Token>
  auto async_handshake(role as, Token&& token) {
    attach(as);
    return run(token, [this](boost::system::error_code& ec) {
      return result{tls_detail::classify(ssl_.get(), SSL_do_handshake(ssl_.get()), ec), 0};
    });
  }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    const auto target = first_buffer(buffers);
    return run(token, [this, target](boost::system::error_code& ec) {
      if (target.size() == 0) return result{tls_detail::step::done, 0};
      const int n = SSL_read(ssl_.get(), target.data(), static_cast<int>(std::min<std::size_t>(target.size(), 1 << 30)));
      return result{tls_detail::classify(ssl_.get(), n, ec), n > 0 ? static_cast<std::size_t>(n) : 0};
    });
  }

  // Small buffers are gathered into one record (a WebSocket frame header and
  // its payload, or many MQTT packets) instead of one record each. A retry
  // after WANT_WRITE passes the same bytes, as OpenSSL requires.
  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    auto pending = std::make_shared<std::string>(gather(buffers));
    return run(token, [this, pending](boost::system::error_code& ec) {
      if (pending->empty()) return result{tls_detail::step::done, 0};
      const int n = SSL_write(ssl_.get(), pending->data(), static_cast<int>(pending->size()));
      return result{tls_detail::classify(ssl_.get(), n, ec), n > 0 ? static_cast<std::size_t>(n) : 0};
    });
  }

  // Sends close_notify without waiting for the peer's (mosquitto and most
  // clients answer it, or just close TCP), then half-closes TCP. A read
  // outstanding meanwhile ends at the peer's close_notify or EOF.
  void shutdown_send();

 private:
  static constexpr std::size_t max_gather = 16 * 1024;  // one TLS record
  struct result {
    tls_detail::step next;
    std::size_t bytes;
  };

  // Repeats one non-blocking SSL call, waiting for the socket in between,
  // until it is done or failed. A result on the first try is posted, never
  // delivered from inside the initiating call, as Asio's composed operations
  // (Beast's among them) expect.
  template <class Token, class Attempt>
  auto run(Token& token, Attempt attempt) {
    return boost::asio::async_compose<Token, void(boost::system::error_code, std::size_t)>(
        [this, attempt, first = true](auto& self, boost::system::error_code ec = {}) mutable {
          const bool immediate = std::exchange(first, false);
          result outcome{tls_detail::step::failed, 0};
          if (!ec) {
            ERR_clear_error();  // the error queue is per thread, shared by every connection on it
            outcome = attempt(ec);
          }
          if (outcome.next == tls_detail::step::want_read || outcome.next == tls_detail::step::want_write) {
            socket_.async_wait(outcome.next == tls_detail::step::want_read ? tcp_socket::wait_read
                                                                          : tcp_socket::wait_write,
                               std::move(self));
            return;
          }
          if (!immediate) return self.complete(ec, outcome.bytes);
          boost::asio::post(socket_.get_executor(), [self = std::move(self), ec, bytes = outcome.bytes]() mutable {
            self.complete(ec, bytes);
          });
        },
        token, socket_);
  }

  template <class Buffers>
  static boost::asio::mutable_buffer first_buffer(const Buffers& buffers) {
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers); ++it)
      if (boost::asio::mutable_buffer b(*it); b.size() > 0) return b;
    return {};
  }

  template <class Buffers>
  static std::string gather(const Buffers& buffers) {
    std::string out;
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers); ++it) {
      if (out.size() >= max_gather) break;
      boost::asio::const_buffer b(*it);
      out.append(static_cast<const char*>(b.data()), std::min(b.size(), max_gather - out.size()));
    }
    return out;
  }

  void attach(role as);

  struct ssl_free {
    void operator()(SSL* ssl) const { SSL_free(ssl); }
  };

  tcp_socket socket_;
  // The SSL object holds its own reference to the SSL_CTX (SSL_new takes
  // one), so the context wrapper is not kept: 16 B, and the function-pointer
  // deleter 8 B more, per TLS connection (issue 14). Contexts given here must
  // have no Asio verify or password callback, which the wrapper's destructor
  // would free under a live SSL (tls_context.cpp sets none).
  std::unique_ptr<SSL, ssl_free> ssl_;
};

// Beast's WebSocket closes its next layer through this (found by ADL).
template <class Handler>
void async_teardown(boost::beast::role_type, tls_stream& stream, Handler&& handler) {
  stream.shutdown_send();
  // Read until the peer closes, as Beast does for TCP, then close.
  auto sink = std::make_shared<std::array<char, 512>>();
  boost::asio::async_compose<Handler, void(boost::system::error_code)>(
      [&stream, sink](auto& self, boost::system::error_code ec = {}, std::size_t = 0) {
        // First call: ec is clear; later calls: a read finished (data is dropped).
        if (ec) {
          boost::system::error_code ignored;
          stream.next_layer().close(ignored);
          return self.complete(ec == boost::asio::error::eof || ec == boost::asio::ssl::error::stream_truncated
                                   ? boost::system::error_code{}
                                   : ec);
        }
        stream.async_read_some(boost::asio::buffer(*sink), std::move(self));
      },
      handler, stream.next_layer());
}

}  // namespace proxy
