// What asio assumes about a socket it did not open itself, corrected for a
// socket fresh from accept() (issue 14: syscalls per new session).
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <boost/asio/basic_socket.hpp>
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
