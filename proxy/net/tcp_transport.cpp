#include "net/tcp_transport.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cerrno>

namespace proxy {

namespace asio = boost::asio;
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

asio::awaitable<void> tcp_transport::wait_readable() {
  auto [ec] = co_await socket_.async_wait(tcp_socket::wait_read, as_tuple_awaitable);
  (void)ec;  // the read that follows reports any error
}

std::size_t tcp_transport::read_size_hint() {
  boost::system::error_code ec;
  return socket_.available(ec);
}

asio::awaitable<io_result> tcp_transport::read_some(asio::mutable_buffer buffer) {
  auto [ec, n] = co_await socket_.async_read_some(buffer, as_tuple_awaitable);
  co_return io_result{ec, n};
}

asio::awaitable<io_result> tcp_transport::write(const std::vector<asio::const_buffer>& buffers) {
  auto [ec, n] = co_await asio::async_write(socket_, buffers, as_tuple_awaitable);
  co_return io_result{ec, n};
}

namespace {
io_result from_errno() {
  if (errno == EAGAIN || errno == EWOULDBLOCK) return {asio::error::would_block, 0};
  return {boost::system::error_code(errno, boost::system::system_category()), 0};
}
}  // namespace

// MSG_DONTWAIT on the call, not O_NONBLOCK on the socket: Asio keeps its own
// idea of the descriptor's mode, and its waits re-arm epoll (EPOLL_CTL_MOD),
// so bytes moved behind its back are never a readiness it misses. (The one
// wait that does not re-arm, net/reactor_wait.hpp, follows only an EAGAIN.)
io_result tcp_transport::try_read_some(asio::mutable_buffer buffer) {
  for (;;) {
    const auto n = ::recv(socket_.native_handle(), buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (n > 0) return {{}, static_cast<std::size_t>(n)};
    if (n == 0) return {buffer.size() == 0 ? boost::system::error_code{} : asio::error::eof, 0};
    if (errno != EINTR) return from_errno();
  }
}

// One buffer (the relay's common case: one packet, or a batch the queue
// coalesced) goes out with send(), as HAProxy's do: sendmsg would copy a
// msghdr and an iovec array in from user space and check the control
// fields first (0.1-0.6 us more per call on this VM, docs/benchmarks.md
// round 6), for the same TCP send. Several buffers keep sendmsg's gather.
io_result tcp_transport::try_write(const std::vector<asio::const_buffer>& buffers) {
  if (buffers.size() == 1) return send_one(buffers.front());
  constexpr std::size_t max_iov = 64;  // outbound_queue::max_buffers_per_write
  std::array<iovec, max_iov> iov{};
  const std::size_t count = std::min(buffers.size(), max_iov);
  for (std::size_t i = 0; i < count; ++i)
    iov[i] = iovec{const_cast<void*>(buffers[i].data()), buffers[i].size()};
  msghdr message{};
  message.msg_iov = iov.data();
  message.msg_iovlen = count;
  for (;;) {
    // MSG_NOSIGNAL: a peer gone is an EPIPE to handle, not a SIGPIPE.
    const auto n = ::sendmsg(socket_.native_handle(), &message, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) return {{}, static_cast<std::size_t>(n)};
    if (errno != EINTR) return from_errno();
  }
}

io_result tcp_transport::send_one(asio::const_buffer buffer) {
  for (;;) {
    const auto n = ::send(socket_.native_handle(), buffer.data(), buffer.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) return {{}, static_cast<std::size_t>(n)};
    if (errno != EINTR) return from_errno();
  }
}

asio::awaitable<void> tcp_transport::shutdown() {
  boost::system::error_code ignored;
  socket_.shutdown(tcp_socket::shutdown_send, ignored);
  co_return;
}

}  // namespace proxy
