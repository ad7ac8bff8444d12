// What asio assumes about a socket it did not open itself, corrected for a
// socket fresh from accept() or socket(), and a dial's connect() seen
// through at once (issue 14: syscalls per new session).
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <optional>

#include <boost/asio/basic_socket.hpp>
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/version.hpp>

namespace proxy {

namespace socket_state_detail {
// The socket's implementation (its descriptor and asio's state bits): a
// protected member of basic_socket, named through a class derived from it.
template <typename Protocol, typename Executor>
struct access : boost::asio::basic_socket<Protocol, Executor> {
  static auto& implementation(boost::asio::basic_socket<Protocol, Executor>& socket) {
    return (socket.*(&access::impl_)).get_implementation();
  }
};
}  // namespace socket_state_detail

// Asio marks every socket it did not open itself (accept, assign) as a
// "possible duplicate" descriptor, and so removes it from its epoll set with
// an explicit EPOLL_CTL_DEL before closing it: closing one of two
// descriptors of the same file would leave the file registered. A socket
// just returned by accept() is the only descriptor of its file, so close()
// alone removes it (as for sockets asio opens itself): one syscall less per
// connection. Only for asio's epoll reactor (the one Linux build here, Boost
// 1.81); elsewhere nothing changes and asio deletes as before. Call it before
// the descriptor can be duplicated, i.e. right after the accept; the proxy
// never dups its sockets.
template <typename Protocol, typename Executor>
void forget_possible_dup(boost::asio::basic_socket<Protocol, Executor>& socket) {
#if !defined(BOOST_ASIO_HAS_IOCP) && !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT) && \
    !defined(BOOST_ASIO_WINDOWS_RUNTIME) && BOOST_VERSION >= 107000
  if (!socket.is_open()) return;
  auto& implementation = socket_state_detail::access<Protocol, Executor>::implementation(socket);
  implementation.state_ &= static_cast<boost::asio::detail::socket_ops::state_type>(
      ~boost::asio::detail::socket_ops::possible_dup);
#else
  (void)socket;
#endif
}

// Opens `socket` as asio's open() does, but non-blocking from the start
// (SOCK_NONBLOCK | SOCK_CLOEXEC) and known to asio as such, so neither asio
// (before its first operation) nor a caller's non_blocking(true) needs an
// ioctl(FIONBIO) for it: one syscall less per upstream dial (issue 14). The
// descriptor is fresh, no duplicate (see forget_possible_dup). Elsewhere
// than asio's epoll reactor: open() and non_blocking(true) as before.
template <typename Protocol, typename Executor>
void open_non_blocking(boost::asio::basic_socket<Protocol, Executor>& socket, const Protocol& protocol,
                       boost::system::error_code& ec) {
#if !defined(BOOST_ASIO_HAS_IOCP) && !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT) && \
    !defined(BOOST_ASIO_WINDOWS_RUNTIME) && BOOST_VERSION >= 107000 && defined(SOCK_NONBLOCK)
  const int fd = ::socket(protocol.family(), protocol.type() | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol.protocol());
  if (fd < 0) {
    ec = boost::system::error_code(errno, boost::system::system_category());
    return;
  }
  socket.assign(protocol, fd, ec);
  if (ec) {
    ::close(fd);
    return;
  }
  namespace ops = boost::asio::detail::socket_ops;
  auto& implementation = socket_state_detail::access<Protocol, Executor>::implementation(socket);
  implementation.state_ = static_cast<ops::state_type>(
      (implementation.state_ & ~ops::possible_dup) | ops::user_set_non_blocking | ops::internal_non_blocking);
#else
  socket.open(protocol, ec);
  if (!ec) socket.non_blocking(true, ec);
#endif
}

// The next connection waiting on `listening` (a listening socket, held in a
// tcp::socket so that net/reactor_wait.hpp can wait on it; non-blocking:
// would_block when none waits), taken with accept4(SOCK_NONBLOCK |
// SOCK_CLOEXEC), so the socket is non-blocking from the start and known to
// asio as such: asio's own accept() takes a blocking descriptor and sets it
// non-blocking with an ioctl(FIONBIO) before its first operation, one
// syscall per connection (issue 14). Only asio's internal flag is set, as
// that ioctl sets it: asio's synchronous calls on the socket still wait as
// they did. No possible duplicate either (forget_possible_dup). `peer`: the
// client's address. Elsewhere than asio's epoll reactor, asio's flags stay
// as assign() leaves them.
template <typename Executor>
boost::asio::basic_stream_socket<boost::asio::ip::tcp, Executor> accept_non_blocking(
    boost::asio::basic_stream_socket<boost::asio::ip::tcp, Executor>& listening, boost::asio::ip::tcp::endpoint& peer,
    boost::system::error_code& ec) {
  boost::asio::basic_stream_socket<boost::asio::ip::tcp, Executor> socket(listening.get_executor());
  auto size = static_cast<socklen_t>(peer.capacity());
  const int fd = ::accept4(listening.native_handle(), peer.data(), &size, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    ec = boost::system::error_code(errno, boost::system::system_category());
    return socket;
  }
  peer.resize(size);
  socket.assign(peer.protocol(), fd, ec);
  if (ec) {
    ::close(fd);
    return socket;
  }
#if !defined(BOOST_ASIO_HAS_IOCP) && !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT) && \
    !defined(BOOST_ASIO_WINDOWS_RUNTIME) && BOOST_VERSION >= 107000
  namespace ops = boost::asio::detail::socket_ops;
  using access = socket_state_detail::access<boost::asio::ip::tcp, Executor>;
  auto& implementation = access::implementation(socket);
  implementation.state_ =
      static_cast<ops::state_type>((implementation.state_ & ~ops::possible_dup) | ops::internal_non_blocking);
#endif
  return socket;
}

// Whether a non-blocking connect() that said EINPROGRESS has finished
// already (nullopt: not yet, wait for writability as before): to a
// broker on the same host (loopback) the SYN-ACK is processed within the
// connect() call, so the handshake is done when it returns (200 of 200 dials
// on this VM). A zero-length send answers in one syscall what the wait
// answers in three (EPOLL_CTL_MOD for EPOLLOUT, epoll_wait, SO_ERROR), and
// the socket is never registered for EPOLLOUT, whose edges would wake the
// loop again at every ACK (issue 14). Linux's tcp_sendmsg checks the state
// before the length: EAGAIN while the handshake goes on, the socket's error
// (taken, as SO_ERROR takes it) if it failed, 0 once established.
template <typename Protocol, typename Executor>
inline std::optional<boost::system::error_code> connect_outcome_at_once(
    boost::asio::basic_socket<Protocol, Executor>& socket) {
  if (::send(socket.native_handle(), nullptr, 0, MSG_NOSIGNAL | MSG_DONTWAIT) == 0) return boost::system::error_code{};
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return std::nullopt;  // still connecting: wait
  return boost::system::error_code(errno, boost::system::system_category());
}

// Whether asio still treats the socket as a possible duplicate (tests).
template <typename Protocol, typename Executor>
bool possible_dup(boost::asio::basic_socket<Protocol, Executor>& socket) {
#if !defined(BOOST_ASIO_HAS_IOCP) && !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT) && \
    !defined(BOOST_ASIO_WINDOWS_RUNTIME) && BOOST_VERSION >= 107000
  return (socket_state_detail::access<Protocol, Executor>::implementation(socket).state_ &
          boost::asio::detail::socket_ops::possible_dup) != 0;
#else
  (void)socket;
  return true;
#endif
}

}  // namespace proxy
