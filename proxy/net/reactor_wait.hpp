// A wait for a socket to become readable that does not re-arm epoll.
//
// Why (issue 14): Asio 1.81's async_wait is a non-speculative reactor
// operation, and epoll_reactor::start_op issues EPOLL_CTL_MOD for every one.
// The descriptor is registered edge-triggered; the MOD makes the kernel look
// at its readiness again, because an edge that arrived while no operation
// was queued was dropped by perform_io. That is one syscall per parked wait:
// per relayed packet and direction, and ~4 per new session. HAProxy pays
// nothing of the kind. A *read* operation started with allow_speculative,
// whose speculative perform() declines, is queued with no epoll_ctl at all
// (start_op's speculative branch re-arms only for write operations); the
// next edge makes perform_io perform it again, and then it completes.
//
// When it is correct: only right after a read that found the socket empty
// (recv said EAGAIN), with no return to the event loop between that read and
// this call. Not after a read that gave fewer bytes than asked: the peer's
// FIN may have been behind them, consumed by that recv, and an EOF raises no
// new edge (the wait would never complete: the client's drop unnoticed, its
// will unpublished). Edges are taken
// only by epoll_wait, which runs only from the event loop of the (one)
// thread: every byte whose edge an earlier epoll_wait took was taken by that
// read, and a byte that arrives later raises an edge that the next epoll_wait
// reports, when this operation is already queued. Also right after a
// socket's registration (EPOLL_CTL_ADD) with no epoll_wait since, whatever
// the reads gave: its edges are all still on epoll's ready list (the
// client's first park, connection_relay.cpp). Never after a read that
// filled its buffer, after any suspension, for a socket's first wait after
// an epoll_wait, nor for
// streams that hold bytes of their own (TLS, WebSocket): use async_wait then.
// A listening socket (held in a tcp::socket: the acceptor's implementation
// is private) likewise: right after accept() said EAGAIN; it has no FIN to
// lose, and every connection queued later raises an edge.
//
// It reaches into Asio's detail namespace (the socket's implementation and
// its service's start_op, through derived-class member pointers), so it is
// compiled only for the Boost it was read against, on epoll; anywhere else
// async_wait_drained is the plain async_wait. Keep it to this file.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/version.hpp>

#include "net/tcp_socket.hpp"

#if BOOST_VERSION == 108100 && defined(BOOST_ASIO_HAS_EPOLL) && !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT) && \
    !defined(BOOST_ASIO_ENABLE_HANDLER_TRACKING)
#define PROXY_HAS_REACTOR_WAIT 1
#include <boost/asio/detail/bind_handler.hpp>
#include <boost/asio/detail/fenced_block.hpp>
#include <boost/asio/detail/handler_alloc_helpers.hpp>
#include <boost/asio/detail/handler_work.hpp>
#include <boost/asio/detail/memory.hpp>
#include <boost/asio/detail/reactive_socket_service_base.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#endif

namespace proxy::reactor_wait {

#if defined(PROXY_HAS_REACTOR_WAIT)

namespace detail {

namespace asio = boost::asio;

// True only while async_wait_drained starts its operation, on this thread:
// the operation's speculative perform() then declines (no syscall, no
// completion), and it is queued. Called from perform_io, when an edge came,
// it completes. Per thread, so another thread's reactor is never confused.
inline thread_local bool starting = false;

// Asio's reactive_wait_op (what async_wait builds) but for its perform():
// the same layout and size, the same handler allocation and work tracking.
template <typename Handler, typename IoExecutor>
class drained_wait_op : public asio::detail::reactor_op {
 public:
  BOOST_ASIO_DEFINE_HANDLER_PTR(drained_wait_op);

  drained_wait_op(Handler& handler, const IoExecutor& io_ex)
      : reactor_op(boost::system::error_code(), &drained_wait_op::do_perform, &drained_wait_op::do_complete),
        handler_(std::move(handler)),
        work_(handler_, io_ex) {}

  static status do_perform(reactor_op*) { return starting ? not_done : done; }

  static void do_complete(void* owner, asio::detail::operation* base, const boost::system::error_code&,
                          std::size_t) {
    auto* o = static_cast<drained_wait_op*>(base);
    ptr p = {asio::detail::addressof(o->handler_), o, o};
    asio::detail::handler_work<Handler, IoExecutor> w(std::move(o->work_));
    // The handler is moved out before the memory goes back: it may own that memory.
    asio::detail::binder1<Handler, boost::system::error_code> handler(o->handler_, o->ec_);
    p.h = asio::detail::addressof(handler.handler_);
    p.reset();
    if (owner) {
      asio::detail::fenced_block b(asio::detail::fenced_block::half);
      w.complete(handler, handler.handler_);
    }
  }

 private:
  Handler handler_;
  asio::detail::handler_work<Handler, IoExecutor> work_;
};

using socket_service_base = asio::detail::reactive_socket_service_base;

// The socket's implementation (descriptor, state, reactor data): a protected
// member of basic_socket, named through a derived class.
struct socket_access : tcp_socket {
  static auto& implementation(tcp_socket& socket) {
    constexpr auto impl = &socket_access::impl_;
    return socket.*impl;
  }
};

// reactive_socket_service_base::start_op (protected): sets the descriptor
// non-blocking if it is not yet, then the reactor's start_op.
struct service_access : socket_service_base {
  static void start_read(tcp_socket& socket, asio::detail::reactor_op* op) {
    constexpr auto start_op = &service_access::start_op;
    auto& impl = socket_access::implementation(socket);
    socket_service_base& service = impl.get_service();
    starting = true;
    (service.*start_op)(impl.get_implementation(), asio::detail::reactor::read_op, op, false,
                        /*is_non_blocking (allow_speculative)*/ true, /*noop*/ false);
    starting = false;
  }
};

template <typename Handler>
using operation_for = drained_wait_op<std::decay_t<Handler>, tcp_socket::executor_type>;

}  // namespace detail

constexpr bool skips_rearm = true;

// Calls `handler(error_code)` once `socket` is readable (or closed, or
// cancelled), like socket.async_wait(wait_read, handler), without the
// EPOLL_CTL_MOD. Only on the conditions above.
template <typename Handler>
void async_wait_drained(tcp_socket& socket, Handler handler) {
  using op = detail::operation_for<Handler>;
  typename op::ptr p = {boost::asio::detail::addressof(handler), op::ptr::allocate(handler), 0};
  p.p = new (p.v) op(handler, socket.get_executor());
  detail::service_access::start_read(socket, p.p);
  p.v = p.p = 0;
}

#else  // another Boost or reactor: the plain wait, re-armed

constexpr bool skips_rearm = false;

template <typename Handler>
void async_wait_drained(tcp_socket& socket, Handler handler) {
  socket.async_wait(tcp_socket::wait_read, std::move(handler));
}

#endif

}  // namespace proxy::reactor_wait
