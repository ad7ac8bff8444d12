// Accepts client connections on one io_context. Every worker thread has its
// own listener on the same port (SO_REUSEPORT), so the kernel spreads
// connections across cores and no connection ever changes thread.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "auth/auth_client.hpp"
#include "net/proxy_context.hpp"

namespace proxy {

class listener {
 public:
  listener(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& endpoint,
           const connection_settings& settings, metrics& counters, auth_client& auth);
  void start();
  void stop();  // stop accepting; connections already open go on
  boost::asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

 private:
  boost::asio::awaitable<void> accept_loop();

  boost::asio::ip::tcp::acceptor acceptor_;
  const connection_settings& settings_;
  metrics& metrics_;
  auth_client& auth_;
};

}  // namespace proxy
