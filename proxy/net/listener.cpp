#include "net/listener.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "net/client_connection.hpp"
#include "net/tls_context.hpp"

namespace proxy {

namespace asio = boost::asio;
using asio::ip::tcp;

listener::listener(asio::io_context& io, const tcp::endpoint& endpoint, const listener_settings& settings,
                   const connection_environment& environment, const reloadable_tls_context* tls)
    : acceptor_(io), settings_(settings), environment_(environment), tls_(tls) {
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  const int on = 1;
  ::setsockopt(acceptor_.native_handle(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof on);
  acceptor_.bind(endpoint);
  acceptor_.listen(asio::socket_base::max_listen_connections);
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
  const int fd = ::accept4(acceptor_.native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
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
  asio::co_spawn(acceptor_.get_executor(), accept_loop(), [kind = settings_.kind](std::exception_ptr error) {
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
  acceptor_.close(ignored);
}

asio::awaitable<void> listener::accept_loop() {
  while (acceptor_.is_open()) {
    auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec == asio::error::no_descriptors || ec == boost::system::errc::too_many_files_open_in_system) {
      refuse_without_descriptors(ec);
      asio::steady_timer pause(acceptor_.get_executor(), std::chrono::milliseconds(10));
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    if (ec) {
      // Anything else: back off instead of spinning.
      spdlog::warn("accept failed: {}", ec.message());
      asio::steady_timer pause(acceptor_.get_executor(), std::chrono::milliseconds(100));
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    const auto limit = environment_.settings.max_connections;
    if (environment_.counters.connections_open.load() >= static_cast<std::int64_t>(limit)) {
      environment_.counters.connections_refused++;
      spdlog::warn("connection limit {} reached, refusing a connection", limit);
      continue;  // the socket closes as it goes out of scope
    }
    auto stream = make_client_transport(std::move(socket), settings_, tls_ ? tls_->current() : nullptr);
    std::make_shared<client_connection>(std::move(stream), settings_, environment_)->start();
  }
}

}  // namespace proxy
