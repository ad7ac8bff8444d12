// Dialling the broker: resolve, connect and (for a TLS broker) handshake,
// all within the upstream connect timeout (the upstream_dial deadline closes
// the socket and cancels the resolver). Errors are error codes reported as
// themselves: out of file descriptors is EMFILE, not a timeout.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <spdlog/spdlog.h>

#include "net/accepted_socket.hpp"
#include "net/client_connection.hpp"
#include "net/tls_context.hpp"
#include "net/upstream_source.hpp"
#include "net/write_interest.hpp"

namespace proxy {

namespace asio = boost::asio;
using asio::ip::tcp;
namespace {
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

// A literal address and numeric port need no resolver: asio's resolver hands
// getaddrinfo to its own thread and back, a round trip per dial (issue 14).
std::optional<tcp::endpoint> parse_literal_endpoint(const upstream_settings& where) {
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(where.host, ec);
  if (ec) return std::nullopt;
  unsigned port = 0;
  const auto* end = where.port.data() + where.port.size();
  const auto [rest, error] = std::from_chars(where.port.data(), end, port);
  if (error != std::errc{} || rest != end || where.port.empty() || port > 65535) return std::nullopt;
  return tcp::endpoint(address, static_cast<unsigned short>(port));
}

// The last node's parse, kept per worker: every dial of one broker parsed
// the same strings again (inet_pton, ~1k instructions per session, issue 14).
// Keyed by the strings themselves, so a failover's per-attempt settings and
// a reloaded configuration are parsed afresh.
std::optional<tcp::endpoint> literal_endpoint(const upstream_settings& where) {
  struct parsed {
    std::string host, port;
    std::optional<tcp::endpoint> endpoint;
  };
  thread_local parsed last{"", "", std::nullopt};  // "" is no literal address: agrees with the parse
  if (where.host != last.host || where.port != last.port) last = {where.host, where.port, parse_literal_endpoint(where)};
  return last.endpoint;
}

// The handshake's last ACK waits for our first bytes (the CONNECT, a TLS
// ClientHello) and goes out with them: one segment fewer per dial, and the
// broker accepts a connection whose CONNECT is already there (HAProxy calls
// this tcp-smart-connect; its mode tcp leaves it off). TCP_DEFER_ACCEPT on a
// connecting socket delays that one ACK only (Linux, tcp_rcv_synsent_state_process),
// at most 200 ms; TCP_QUICKACK 0 would delay later ACKs too, and Nagle in a
// broker without TCP_NODELAY (Mosquitto's default) would hold its second
// packet after the CONNACK for our delayed ACK. Best effort: a refusal only
// costs the segment.
void hold_handshake_ack(tcp_socket& socket) {
  const int seconds = 1;
  ::setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_DEFER_ACCEPT, &seconds, sizeof seconds);
}

// A non-blocking connect: its outcome when it is known at once, else
// std::nullopt, and the caller waits for writability, then reads SO_ERROR
// (connect_error). asio's async_connect does the same plus a poll() of the
// socket before SO_ERROR (a guard against spurious wake-ups of its reactor):
// one more syscall per session (issue 14). epoll reports a connecting TCP
// socket writable only once the handshake is done or failed. A plain function
// and the wait in dial_upstream's own frame: a coroutine here cost a frame
// per dial. `at_once`: connected without a wait, so without a return to the
// event loop.
// `probe`: sees whether a connect() that said EINPROGRESS is done already
// (client_connection::send_while_connecting).
template <typename Probe>
std::optional<boost::system::error_code> start_connect(tcp_socket& socket, const tcp::endpoint& target,
                                                       bool& at_once, Probe probe) {
  at_once = false;
  boost::system::error_code ec;
  if (!socket.non_blocking()) socket.non_blocking(true, ec);  // open_non_blocking: already
  if (ec) return ec;
  hold_handshake_ack(socket);
  if (::connect(socket.native_handle(), target.data(), static_cast<socklen_t>(target.size())) == 0) return ec;
  // EINTR: a signal came first, and the handshake goes on regardless (POSIX
  // connect()): wait for it as for EINPROGRESS; calling connect again would
  // only say EALREADY.
  if (errno != EINPROGRESS && errno != EINTR) return boost::system::error_code(errno, boost::system::system_category());
  if (const auto outcome = probe()) {
    at_once = !*outcome;
    return *outcome;
  }
  return std::nullopt;
}

// After the wait for writability: how the handshake ended.
boost::system::error_code connect_error(tcp_socket& socket) {
  int error = 0;
  socklen_t size = sizeof error;
  if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_ERROR, &error, &size) != 0) error = errno;
  return boost::system::error_code(error, boost::system::system_category());
}
}  // namespace

// One plain-TCP broker at a literal address is dialled right here: to a
// broker on this host the connect is done within connect() (see
// connect_outcome_at_once), so the session goes on without a coroutine. A
// connect still under way, a host name, TLS or several nodes go on in
// connect_upstream's coroutine, whose co_spawn and frames were a fifth of the
// allocations left per session (issue 14).
void client_connection::start_upstream(mqtt::bytes connect_packet) {
  const auto& where = *dial_target_;
  const bool plain = !environment_.upstream_nodes && !environment_.upstream_tls;
  const auto literal = plain ? literal_endpoint(where) : std::nullopt;
  if (!literal) return spawn(connect_upstream(shared_from_this(), std::move(connect_packet), false));
  enqueue(side::upstream, std::move(connect_packet));  // waits in the queue for the link
  upstream_ = make_upstream_transport(executor_, where, nullptr);
  boost::system::error_code ec;
  open_non_blocking(upstream_->socket(), literal->protocol(), ec);  // no FIONBIO later
  if (!ec) ec = bind_upstream_source(upstream_->socket(), *literal, where.bind_addresses);
  bool at_once = false;
  std::optional<boost::system::error_code> outcome = ec;
  if (ec) {
    dial_local_error_ = true;  // out of descriptors: said as such
  } else {
    outcome = start_connect(upstream_->socket(), *literal, at_once, [this] { return send_while_connecting(); });
  }
  if (!outcome) {
    // Under way: the coroutine waits for it, within the dial deadline.
    arm_after(deadline::upstream_dial, where.connect_timeout);
    return spawn(connect_upstream(shared_from_this(), {}, true));
  }
  upstream_never_polled_ = at_once && upstream_->immediate_io();
  const std::string failure = *outcome ? outcome->message() : std::string();
  if (failure.empty()) upstream_connected();
  if (!upstream_dialled(failure)) spawn(read_upstream(shared_from_this()));
}

// A connect() that said EINPROGRESS, seen through by sending the CONNECT
// queued for the link (as connect_outcome_at_once's zero-length send, which
// Linux answers the same way: EAGAIN while the handshake goes on, the
// connect's error if it failed): the dial and the CONNECT's write in one
// syscall instead of two (issue 14). What the send took leaves the queue;
// the writer sends any rest once the link is open. Not where the CONNECT
// must not go out raw (TLS) or the queue is not the node's (the failover
// greets each node itself), nor with nothing queued: the zero-length send.
std::optional<boost::system::error_code> client_connection::send_while_connecting() {
  if (!upstream_->immediate_io() || environment_.upstream_nodes || to_upstream_.empty())
    return connect_outcome_at_once(upstream_->socket());
  const auto [ec, n] = upstream_->try_write(to_upstream_.begin_write());
  to_upstream_.commit_written(ec ? 0 : n);
  if (ec == asio::error::would_block) return std::nullopt;
  return ec;
}

// `connecting`: start_upstream's connect is under way; it is waited for, not started again.
asio::awaitable<void> client_connection::connect_upstream(self_ptr self, mqtt::bytes connect_packet, bool connecting) {
  // One broker: the CONNECT waits in the queue for the link. Several: the
  // failover sends it to each node it tries (connection_failover.cpp).
  const mqtt::bytes* greeting = environment_.upstream_nodes ? &connect_packet : nullptr;
  if (!greeting && !connecting) enqueue(side::upstream, std::move(connect_packet));
  std::string failure;
  if (greeting) {
    std::string from_nodes = co_await self->dial_with_failover(greeting);
    failure = std::move(from_nodes);
  } else {
    std::string from_broker = co_await self->dial_upstream(connecting);  // one broker: no failover frame around it
    failure = std::move(from_broker);
  }
  if (self->upstream_dialled(failure)) co_return;
  co_await read_upstream(self);
}

// The dial's outcome: reported when it failed, else the link opens and its
// reader parks (relay_from_upstream's first step, done here so that its two
// coroutine frames are made only when it cannot, issue 14). false: the
// reader could not park and must run (read_upstream).
bool client_connection::upstream_dialled(const std::string& failure) {
  if (state_ != lifecycle::running) return true;  // closing while dialling: nothing left to report
  if (!failure.empty()) {
    upstream_link_ = link::none;
    const auto& where = *dial_target_;
    spdlog::warn("upstream {}:{} unreachable: {}", where.host, where.port, failure);
    apply(session_.on_upstream_connect_failed(failure));
    release_client_writes();  // no broker CONNACK will come to end a held CONNACK's wait
    return true;
  }
  upstream_link_ = link::open;
  start_writer(side::upstream);
  if (upstream_framer_.buffered() != 0) process_upstream_frames();  // the node's answer, read by greet_node
  if (state_ == lifecycle::running && park(side::upstream, upstream_never_polled_)) {
    upstream_never_polled_ = false;
    return true;
  }
  return false;
}

// A connected broker socket: no Nagle, and no EPOLLOUT left registered by
// the connect's wait for writability, which the first read wait would
// re-arm (net/write_interest.hpp).
void client_connection::upstream_connected() {
  boost::system::error_code ignored;
  upstream_->socket().set_option(tcp::no_delay(true), ignored);
  forget_write_interest(upstream_->socket());
}

// hold_handshake_ack sent the CONNECT within Linux's delayed-ACK time of the
// SYN-ACK, which makes the link "interactive": our ACKs wait to ride on our
// next packet (or the timer, 40 ms). For the CONNACK that saves a segment
// when the broker has nothing more to send unasked: a new session has no
// subscriptions yet. A resumed one (Session Present) may have messages
// queued right behind the CONNACK, and a broker with Nagle on (Mosquitto's
// default) would hold them for that ACK: it goes now, and ACKs stay quick.
void client_connection::quick_ack_if_resumed(const mqtt::frame& broker_connack) {
  const bool connack = (broker_connack.first_byte >> 4) == 2;
  if (!connack || broker_connack.body.empty() || (broker_connack.body[0] & 0x01) == 0) return;
  const int on = 1;
  ::setsockopt(upstream_->socket().native_handle(), IPPROTO_TCP, TCP_QUICKACK, &on, sizeof on);
}

asio::awaitable<std::string> client_connection::dial_upstream(bool connecting) {
  const auto& where = *dial_target_;
  const auto* tls = environment_.upstream_tls;
  if (!connecting) {
    upstream_ = make_upstream_transport(executor_, where, tls ? tls->current() : nullptr);
    arm_after(deadline::upstream_dial, where.connect_timeout);
  }
  std::string failure;
  const auto literal = literal_endpoint(where);
  std::vector<tcp::endpoint> resolved;  // a literal needs no vector: one allocation less per dial
  std::span<const tcp::endpoint> targets;
  if (literal) {
    targets = {&*literal, 1};
  } else {
    resolver_ = std::make_unique<tcp::resolver>(executor_);
    auto [resolve_error, endpoints] = co_await resolver_->async_resolve(where.host, where.port, as_tuple_awaitable);
    if (resolve_error) failure = "cannot resolve " + where.host + ": " + resolve_error.message();
    for (const auto& entry : endpoints) resolved.push_back(entry.endpoint());
    targets = resolved;
  }
  if (failure.empty()) {
    // Each address in turn, opening the socket here: asio's range connect
    // turns a failed open (EMFILE) into "Operation canceled".
    boost::system::error_code last_error = asio::error::host_not_found;
    for (const auto& target : targets) {
      if (state_ != lifecycle::running || !dial_failure_.empty()) break;
      bool at_once = false;
      std::optional<boost::system::error_code> outcome;  // none: under way, wait for it
      if (!std::exchange(connecting, false)) {
        boost::system::error_code ec;
        upstream_->socket().close(ec);
        open_non_blocking(upstream_->socket(), target.protocol(), ec);  // no FIONBIO later
        if (!ec) ec = bind_upstream_source(upstream_->socket(), target, where.bind_addresses);
        if (ec) {
          dial_local_error_ = true;
          last_error = ec;  // out of descriptors: said as such
          continue;
        }
        outcome = start_connect(upstream_->socket(), target, at_once, [this] { return send_while_connecting(); });
      }
      if (!outcome) {
        auto [wait_error] = co_await upstream_->socket().async_wait(tcp_socket::wait_write, as_tuple_awaitable);
        // An error of the wait: the dial deadline or closing closed the socket.
        outcome = wait_error ? wait_error : connect_error(upstream_->socket());
      }
      upstream_never_polled_ = at_once && upstream_->immediate_io();
      last_error = *outcome;
      if (!last_error) break;
    }
    if (last_error) failure = last_error.message();
  }
  if (failure.empty() && state_ == lifecycle::running) upstream_connected();
  // Plain TCP (immediate_io) has no handshake: no coroutine frame for it.
  if (failure.empty() && state_ == lifecycle::running && !upstream_->immediate_io()) {
    const auto result = co_await upstream_->handshake();
    if (result.error) failure = result.detail.empty() ? result.error.message() : result.detail;
  }
  disarm(deadline::upstream_dial);
  resolver_.reset();
  // The deadline cut the dial short: that, not the aborted operation, is the cause.
  if (!failure.empty() && !dial_failure_.empty()) failure = dial_failure_;
  co_return failure;
}

void client_connection::upstream_dial_expired() {
  if (upstream_link_ != link::dialing) return;
  dial_failure_ = "no connection within " + std::to_string(dial_target_->connect_timeout.count()) + " ms";
  if (resolver_) resolver_->cancel();
  if (!upstream_) return;
  boost::system::error_code ignored;
  if (greeting_node_) {
    // greet_node says goodbye, then the node is closed. A cancel aborts only
    // what is pending now (an operation whose completion is already queued
    // escapes it): should the greeting still be waiting shortly, it is closed.
    upstream_->socket().cancel(ignored);
    greeting_node_ = false;
    arm_after(deadline::upstream_dial, std::chrono::milliseconds(200));
    return;
  }
  upstream_->close();
}

}  // namespace proxy
