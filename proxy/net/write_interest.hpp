// Asio's epoll reactor adds EPOLLOUT to a descriptor's registration the first
// time a write (or a wait for writability: the broker dial's non-blocking
// connect) has to wait, and never takes it away. The broker socket then
// carries EPOLLOUT for its whole life, and since it is almost always
// writable, every EPOLL_CTL_MOD that re-arms its read wait finds it "ready"
// and queues an event: the worker's next epoll_wait returns at once with a
// bare EPOLLOUT that no operation wants (strace of paced traffic: one
// epoll_wait in three per relayed message, issue 14).
//
// forget_write_interest() takes EPOLLOUT out of asio's record of the
// registration, so the next re-arm (asio builds its mask from that record)
// registers reads only. Nothing is lost: a write that must wait later adds EPOLLOUT
// back itself (epoll_reactor::start_op checks the record for that), and an
// EPOLLOUT still reported before the next re-arm completes nothing.
//
// The record is a private member of asio's descriptor_state, named here
// through an explicit instantiation (which may name private members,
// [temp.explicit]/14): pinned to Boost 1.81's epoll reactor; elsewhere it
// does nothing and the socket behaves as asio made it.
#pragma once

#include <sys/epoll.h>

#include <cstdint>

#include <boost/asio/basic_socket.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/version.hpp>

#include "net/accepted_socket.hpp"  // socket_state_detail::access: the socket's implementation

#if BOOST_VERSION == 108100 && defined(BOOST_ASIO_HAS_EPOLL) && !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT) && \
    !defined(BOOST_ASIO_HAS_IOCP)
#define PROXY_HAS_WRITE_INTEREST 1
#include <boost/asio/detail/epoll_reactor.hpp>
#endif

namespace proxy {

#if defined(PROXY_HAS_WRITE_INTEREST)
namespace write_interest_detail {

using descriptor_state = boost::asio::detail::epoll_reactor::descriptor_state;
using descriptor_mutex = boost::asio::detail::conditionally_enabled_mutex;

template <typename Tag, typename Tag::type Member>
struct expose {
  friend typename Tag::type member_of(Tag) { return Member; }
};
struct registered_events_tag {
  using type = std::uint32_t descriptor_state::*;
  friend type member_of(registered_events_tag);
};
struct mutex_tag {
  using type = descriptor_mutex descriptor_state::*;
  friend type member_of(mutex_tag);
};
template struct expose<registered_events_tag, &descriptor_state::registered_events_>;
template struct expose<mutex_tag, &descriptor_state::mutex_>;

template <typename Protocol, typename Executor>
descriptor_state* state_of(boost::asio::basic_socket<Protocol, Executor>& socket) {
  return socket_state_detail::access<Protocol, Executor>::implementation(socket).reactor_data_;
}

}  // namespace write_interest_detail

// Call only when no write waits on the socket (after the connect completed,
// before any writer or TLS handshake): a write already queued would lose
// its EPOLLOUT at the next re-arm and never wake.
template <typename Protocol, typename Executor>
void forget_write_interest(boost::asio::basic_socket<Protocol, Executor>& socket) {
  using namespace write_interest_detail;
  if (!socket.is_open()) return;
  descriptor_state* state = state_of(socket);
  if (!state) return;
  descriptor_mutex::scoped_lock lock(state->*member_of(mutex_tag{}));
  state->*member_of(registered_events_tag{}) &= ~static_cast<std::uint32_t>(EPOLLOUT);
}

// Whether asio's record of the registration holds EPOLLOUT (tests).
template <typename Protocol, typename Executor>
bool has_write_interest(boost::asio::basic_socket<Protocol, Executor>& socket) {
  using namespace write_interest_detail;
  descriptor_state* state = socket.is_open() ? state_of(socket) : nullptr;
  return state && (state->*member_of(registered_events_tag{}) & EPOLLOUT) != 0;
}

#else

template <typename Protocol, typename Executor>
void forget_write_interest(boost::asio::basic_socket<Protocol, Executor>&) {}
template <typename Protocol, typename Executor>
bool has_write_interest(boost::asio::basic_socket<Protocol, Executor>&) {
  return true;
}

#endif

}  // namespace proxy
