// Accepts client connections of one kind (tcp, tls, ws, wss) on one
// io_context. Every worker thread has its own listener on the same port
// (SO_REUSEPORT), so the kernel spreads connections across cores and no
// connection ever changes thread.
#pragma once

#include <chrono>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "net/client_connection.hpp"
#include "net/proxy_context.hpp"

namespace proxy {

class reloadable_tls_context;

class listener {
 public:
  // `tls` is required for tls and wss listeners and read at every accept, so
  // a reloaded certificate applies to the next connection.
  listener(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& endpoint, const listener_settings& settings,
           const connection_environment& environment, const reloadable_tls_context* tls);
  ~listener();
  listener(const listener&) = delete;
  listener& operator=(const listener&) = delete;
  void start();
  void stop();  // stop accepting; connections already open go on
  boost::asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
  transport_kind kind() const { return settings_.kind; }

 private:
  boost::asio::awaitable<void> accept_loop();
  void refuse_without_descriptors(const boost::system::error_code& ec);

  boost::asio::ip::tcp::acceptor acceptor_;
  const listener_settings& settings_;
  const connection_environment& environment_;
  const reloadable_tls_context* tls_;
  int reserve_fd_ = -1;  // /dev/null, closed for a moment when descriptors run out
  std::size_t refused_without_descriptors_ = 0;
  std::chrono::steady_clock::time_point last_descriptor_warning_{};
};

}  // namespace proxy
