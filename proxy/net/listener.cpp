#include "net/listener.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "net/accepted_socket.hpp"
#include "net/client_connection.hpp"
#include "net/reactor_wait.hpp"
#include "net/tls_context.hpp"

namespace proxy {

namespace asio = boost::asio;
using asio::ip::tcp;

std::size_t descriptor_capacity(std::size_t file_limit, std::size_t process_reserve) {
  const std::size_t reserve = std::min(file_limit / 2, process_reserve + file_limit / 256);
  return (file_limit - reserve) / 2;
}

// descriptor_capacity never falls as the limit grows: a binary search.
std::size_t descriptors_needed(std::size_t clients, std::size_t process_reserve) {
  std::size_t low = 0, high = 4 * clients + 2 * process_reserve + 256;  // holds them
  while (low < high) {
    const std::size_t middle = low + (high - low) / 2;
    if (descriptor_capacity(middle, process_reserve) >= clients) high = middle;
    else low = middle + 1;
  }
  return low;
}

listener::listener(asio::io_context& io, const tcp::endpoint& endpoint, const listener_settings& settings,
                   const connection_environment& environment, const reloadable_tls_context* tls)
    : listening_(io), settings_(settings), environment_(environment), tls_(tls), report_timer_(io) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
    file_limit_ = static_cast<std::size_t>(limit.rlim_cur);
  tcp::acceptor acceptor(io);
  acceptor.open(endpoint.protocol());
  acceptor.set_option(tcp::acceptor::reuse_address(true));
  const int on = 1;
  ::setsockopt(acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof on);
  // Linux copies TCP_NODELAY to the sockets accept() returns: one setsockopt
  // per listener instead of one per connection (issue 14).
  boost::system::error_code no_delay_error;
  acceptor.set_option(tcp::no_delay(true), no_delay_error);
#if defined(__linux__)
  accepted_no_delay_ = !no_delay_error;
#endif
  acceptor.bind(endpoint);
  acceptor.listen(asio::socket_base::max_listen_connections);
  listening_.assign(endpoint.protocol(), acceptor.release());
  listening_.non_blocking(true);  // accept_loop's accept4 must not block when no one waits
  // Kept in reserve for the moment descriptors run out (see refuse_without_descriptors).
  reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

listener::~listener() {
  if (reserve_fd_ >= 0) ::close(reserve_fd_);
}

// Out of file descriptors (EMFILE: the process's limit; ENFILE: the
// system's). The pending client would wait in the backlog, retried in a
// loop; instead the reserved descriptor is given back for a moment to take
// the connection and close it at once, so the client is refused cleanly.
// Logged as itself, with the limit, at most every 5 s.
void listener::refuse_without_descriptors(const boost::system::error_code& ec) {
  if (reserve_fd_ >= 0) {
    ::close(reserve_fd_);
    reserve_fd_ = -1;
  }
  const int fd = ::accept4(listening_.native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd >= 0) {
    ::close(fd);
    environment_.counters.connections_refused++;
    ++refused_without_descriptors_;
  }
  reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const auto now = std::chrono::steady_clock::now();
  if (now - last_descriptor_warning_ < std::chrono::seconds(5)) return;
  last_descriptor_warning_ = now;
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  spdlog::error("accept failed: {} (open file limit {}): refused {} connections since the last report",
                ec.message(), static_cast<unsigned long long>(limit.rlim_cur), refused_without_descriptors_);
  refused_without_descriptors_ = 0;
}

// `detached` would drop an exception without a word: log it, the listener is gone.
void listener::start() {
  asio::co_spawn(listening_.get_executor(), accept_loop(), [kind = settings_.kind](std::exception_ptr error) {
    if (!error) return;
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      spdlog::critical("{} listener stopped accepting: {}", to_string(kind), e.what());
    } catch (...) {
      spdlog::critical("{} listener stopped accepting: unknown exception", to_string(kind));
    }
  });
}

void listener::stop() {
  boost::system::error_code ignored;
  listening_.close(ignored);
  report_timer_.cancel();
}

// max_connections, or fewer when the open-file limit cannot hold that many:
// a client accepted beyond the descriptors would only fail its broker dial
// with EMFILE after authenticating (issue 14: 198 of 300 at the 20,000 limit).
// Refused here instead, at accept, before it costs anything.
std::size_t listener::connection_limit() const {
  const auto configured = environment_.settings.max_connections;
  if (file_limit_ == 0) return configured;
  return std::min(configured, descriptor_capacity(file_limit_, environment_.settings.descriptor_reserve));
}

// Open connections against max_connections; against the descriptors, every
// connection that still holds its sockets, the closing ones included: a
// connection lingers up to 2 s for its peers' FIN after it stopped counting
// as open, and a client accepted into that gap would fail its broker dial.
bool listener::at_connection_limit() const {
  const auto& counters = environment_.counters;
  if (counters.connections_open.load() >= static_cast<std::int64_t>(environment_.settings.max_connections)) return true;
  return file_limit_ != 0 &&
         counters.connections_alive.load() >=
             static_cast<std::int64_t>(descriptor_capacity(file_limit_, environment_.settings.descriptor_reserve));
}

// A flood of refusals must not flood the log: the first one is logged at
// once, naming the limit; the rest are counted and logged every 5 s while
// they go on.
void listener::note_refused_over_limit() {
  environment_.counters.connections_refused++;
  ++refused_over_limit_;
  if (!report_armed_) report_refusals();
}

void listener::report_refusals() {
  if (refused_over_limit_ == 0) {
    report_armed_ = false;
    return;
  }
  const auto configured = environment_.settings.max_connections;
  const auto limit = connection_limit();
  if (limit < configured)
    spdlog::warn("{} listener: connection limit {} reached (open file limit {} holds {} clients at 2 descriptors each, "
                 "fewer than max_connections {}): refused {} connections at accept",
                 to_string(settings_.kind), limit, file_limit_, limit, configured, refused_over_limit_);
  else
    spdlog::warn("{} listener: connection limit {} reached (max_connections): refused {} connections at accept",
                 to_string(settings_.kind), limit, refused_over_limit_);
  refused_over_limit_ = 0;
  report_armed_ = true;
  report_timer_.expires_after(std::chrono::seconds(5));
  // The timer is the listener's: cancelled (operation_aborted) before the listener goes.
  report_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    report_refusals();
  });
}

namespace {

// What accept4 may say of one connection that is gone already, or of the
// network (accept(2), "Error handling"): take the next one at once.
bool only_this_connection_failed(const boost::system::error_code& ec) {
  namespace errc = boost::system::errc;
  if (!ec) return false;  // the common case, without the comparisons below
  return ec == errc::connection_aborted || ec == errc::protocol_error || ec == errc::interrupted ||
         ec == errc::network_down || ec == errc::no_protocol_option || ec == errc::host_unreachable ||
         ec == errc::operation_not_supported || ec == errc::network_unreachable;
}

// Waits for the next connection without re-arming epoll (net/reactor_wait.hpp):
// only right after accept4 said EAGAIN, nothing between.
struct wait_after_eagain {
  tcp_socket* listening;
  template <typename Handler>
  void operator()(Handler&& handler) const {
    reactor_wait::async_wait_drained(*listening, std::forward<Handler>(handler));
  }
};

}  // namespace

// accept4 until EAGAIN (accepted_socket.hpp: non-blocking from the start,
// no FIONBIO per connection), then a wait that need not re-arm epoll, as
// asio's speculative accept does (issue 14).
// In the worker's recycled memory when it has some (main's workers), so a
// new session does not take malloc's slow path for a block the last one
// just freed (support/block_recycler.hpp).
std::shared_ptr<client_connection> listener::make_connection(std::unique_ptr<transport> stream) {
  if (!environment_.connection_blocks) return std::make_shared<client_connection>(std::move(stream), settings_, environment_);
  return std::allocate_shared<client_connection>(support::recycled_allocator<client_connection>(*environment_.connection_blocks),
                                                 std::move(stream), settings_, environment_);
}

asio::awaitable<void> listener::accept_loop() {
  constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);
  constexpr unsigned accepts_per_turn = 4;
  unsigned accepted_in_a_row = 0;
  while (listening_.is_open()) {
    // With the peer's address: accept4() fills it in, no getpeername() after (issue 14).
    tcp::endpoint peer;
    boost::system::error_code ec;
    auto socket = accept_non_blocking(listening_, peer, ec);
    if (ec == asio::error::would_block) {
      accepted_in_a_row = 0;
      auto [wait_error] = co_await asio::async_initiate<decltype(as_tuple_awaitable), void(boost::system::error_code)>(
          wait_after_eagain{&listening_}, as_tuple_awaitable);
      if (wait_error == asio::error::operation_aborted || !listening_.is_open()) co_return;
      continue;
    }
    if (!listening_.is_open()) co_return;
    if (only_this_connection_failed(ec)) continue;
    if (ec == asio::error::no_descriptors || ec == boost::system::errc::too_many_files_open_in_system) {
      refuse_without_descriptors(ec);
      asio::steady_timer pause(listening_.get_executor(), std::chrono::milliseconds(10));
      co_await pause.async_wait(as_tuple_awaitable);
      continue;
    }
    if (ec) {
      // Anything else: back off instead of spinning.
      spdlog::warn("accept failed: {}", ec.message());
      asio::steady_timer pause(listening_.get_executor(), std::chrono::milliseconds(100));
      co_await pause.async_wait(as_tuple_awaitable);
      continue;
    }
    if (at_connection_limit()) {
      note_refused_over_limit();
      boost::system::error_code ignored;
      socket.close(ignored);  // now, not after the post below: the refusal is the client's answer
    } else {
      auto stream = make_client_transport(std::move(socket), settings_, tls_ ? tls_->current() : nullptr);
      make_connection(std::move(stream))->start(peer, accepted_no_delay_);
    }
    // A few connections per turn of the event loop, then the worker's other
    // connections get theirs. Not one: the post after each accept sent the
    // loop through a non-blocking epoll_wait before the next accept4 (the
    // reactor's turn comes before handlers posted after it), a syscall per
    // session for a queue that was nearly always empty (issue 14). Not many:
    // a burst accepted at once made the new connections' allocations miss
    // malloc's per-thread cache (callgrind: +3.6k instructions per session
    // with 16 in a row).
    if (++accepted_in_a_row < accepts_per_turn) continue;
    accepted_in_a_row = 0;
    co_await asio::post(listening_.get_executor(), asio::use_awaitable);
  }
}

}  // namespace proxy
