// Accepts client connections of one kind (tcp, tls, ws, wss) on one
// io_context. Every worker thread has its own listener on the same port
// (SO_REUSEPORT), so the kernel spreads connections across cores and no
// connection ever changes thread.
#pragma once

#include <chrono>
#include <cstddef>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "net/client_connection.hpp"
#include "net/proxy_context.hpp"

namespace proxy {

class reloadable_tls_context;

// Clients that fit in an open-file limit of `file_limit`: two descriptors
// each (client, broker), less a reserve for what the process holds besides
// (event loops, listeners, admin, the API server's connections, the event
// stream: `process_reserve`, see main.cpp) and 1/256 of the limit, at most
// half of it. Pure.
std::size_t descriptor_capacity(std::size_t file_limit, std::size_t process_reserve = 64);
// The smallest open-file limit whose descriptor_capacity holds `clients`. Pure.
std::size_t descriptors_needed(std::size_t clients, std::size_t process_reserve = 64);

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
  boost::asio::ip::tcp::endpoint local_endpoint() const { return listening_.local_endpoint(); }
  transport_kind kind() const { return settings_.kind; }

 private:
  boost::asio::awaitable<void> accept_loop();
  std::shared_ptr<client_connection> make_connection(std::unique_ptr<transport> stream);
  void refuse_without_descriptors(const boost::system::error_code& ec);
  bool at_connection_limit() const;
  std::size_t connection_limit() const;
  void note_refused_over_limit();
  void report_refusals();

  // The listening socket, held in a tcp::socket rather than an acceptor: the
  // accept loop waits on it with net/reactor_wait.hpp, which needs a socket's
  // implementation (an acceptor's is private).
  tcp_socket listening_;  // on this worker's io_context
  const listener_settings& settings_;
  const connection_environment& environment_;
  const reloadable_tls_context* tls_;
  bool accepted_no_delay_ = false;  // the listening socket has TCP_NODELAY, which accepted sockets inherit
  int reserve_fd_ = -1;  // /dev/null, closed for a moment when descriptors run out
  std::size_t refused_without_descriptors_ = 0;
  std::chrono::steady_clock::time_point last_descriptor_warning_{};
  std::size_t file_limit_ = 0;           // RLIMIT_NOFILE's soft limit when the listener was made
  std::size_t refused_over_limit_ = 0;  // since the last report
  boost::asio::steady_timer report_timer_;
  bool report_armed_ = false;           // a report is due when report_timer_ fires
};

}  // namespace proxy
