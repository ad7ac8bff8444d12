// The relay: a reader per peer that hands complete frames to the session,
// and a writer per peer that empties its queue. Reading from the client
// stops while either queue is over its high-water mark (the client's own
// flood of PINGREQs fills the queue back to the client), so nothing a peer
// sends can make the proxy queue more than that towards anyone.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <algorithm>
#include <array>
#include <optional>
#include <type_traits>

#include "net/client_connection.hpp"
#include "net/reactor_wait.hpp"

namespace proxy {

namespace asio = boost::asio;
using asio::ip::tcp;
namespace {
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t min_read = 512;
constexpr std::size_t max_read = 64 * 1024;
// Before the session relays, the client is not authenticated: the proxy's
// own answers to it (PINGRESP, CONNACK, refusals) need little room.
constexpr std::size_t unauthenticated_queue_limit = 64 * 1024;
// What the readers drop after the relay (discard): written, never read.
thread_local std::array<char, 4096> discard_sink;
}  // namespace

asio::awaitable<void> client_connection::read_client(self_ptr self) {
  // Each co_await initializes a local (GCC 12: see docs/STYLE.md).
  bool still_readable = true;
  if (listener_.proxy_protocol) {
    const bool header_read = co_await self->read_proxy_header();
    still_readable = header_read;
  }
  if (still_readable && state_ == lifecycle::handshaking && listener_.kind == transport_kind::tcp)
    enter(lifecycle::running);  // nothing to negotiate (client_handshake): no coroutine frame for it
  if (still_readable && state_ == lifecycle::handshaking) {
    const bool established = co_await self->client_handshake();
    still_readable = established;
  }
  if (still_readable && state_ == lifecycle::running) {
    // Read before the first wait: the CONNECT is often there already, and
    // when it is not, the empty read lets the wait skip epoll's re-arm.
    if (client_->immediate_io()) woken_[static_cast<std::size_t>(side::client)] = true;
    const bool relayed = co_await self->relay_from_client();
    still_readable = relayed;
    if (parked_[static_cast<std::size_t>(side::client)]) co_return;  // resume_client goes on
  }
  if (still_readable && client_established_) {
    if (client_->immediate_io()) {
      discard(side::client);
      co_return;
    }
    co_await discard_until_eof(*client_);
  }
  // A refused handshake (an HTTP error, a TLS alert) was the last thing sent:
  // drain so that closing with unread bytes does not turn it into an RST.
  if (!client_established_) co_await discard_until_eof(client_->socket());
}

// Hands every complete frame in the framer to the session.
// What the frames of one read make the proxy write goes out in one send per
// peer, after the last of them (flush_writes).
// A validation the auth client answers at once (its cache) is applied after
// the read's last frame, where a posted answer would have come: the frames
// behind the auth PUBLISH meet the same session state either way.
void client_connection::process_client_frames() {
  release_client_writes();  // the client sent more: it may wait for an answer to that
  const auto before = session_.current_state();
  batching_writes_ = true;
  std::optional<auth_result> answer;
  {
    // Cleared however the frames end (a throw included): nothing may keep
    // pointing at this frame's `answer` (a timer's re-validation would write it).
    answer_at_hand_ = &answer;
    struct clear_slot {
      std::optional<auth_result>*& slot;
      ~clear_slot() { slot = nullptr; }
    } cleared{answer_at_hand_};
    process_client_frames_batched();
  }
  hold_connack_for_answer(before);
  if (answer) on_answer(*answer);
  flush_writes();
}

void client_connection::process_client_frames_batched() {
  while (state_ == lifecycle::running) {
    auto next = client_framer_.next();
    if (!next) {
      apply(session_.on_client_framing_error(next.error()));
      return;
    }
    if (!*next) return;
    last_client_packet_ = std::chrono::steady_clock::now();
    apply(session_.on_client_frame(**next), &**next);
    const auto limit = session_.keep_alive_limit();
    if (state_ == lifecycle::running && limit.count() > 0 &&
        deadlines_[static_cast<std::size_t>(deadline::keep_alive)] == time_point::max())
      arm(deadline::keep_alive, last_client_packet_ + limit);
  }
}

// The client's reader after a parked wait: relaying, then read_client's ending.
asio::awaitable<void> client_connection::resume_client(self_ptr self) {
  const bool relayed = co_await self->relay_from_client();
  if (parked_[static_cast<std::size_t>(side::client)]) co_return;
  if (!relayed || !client_established_) co_return;
  if (client_->immediate_io()) {
    discard(side::client);
    co_return;
  }
  co_await discard_until_eof(*client_);
}

asio::awaitable<bool> client_connection::relay_from_client() {
  bool drained = false;  // the last read found the socket empty (nothing between it and park may suspend)
  while (state_ == lifecycle::running) {
    process_client_frames();  // whole packets the last read completed
    if (state_ != lifecycle::running) break;
    if (park(side::client, drained)) co_return true;
    const auto in = co_await read_into(*client_, client_framer_, side::client);
    drained = in.drained;
    if (in.error) {
      if (state_ == lifecycle::running) apply(session_.on_client_closed());
      co_return false;
    }
    bytes_from_client_ += in.bytes.size();
    if (state_ != lifecycle::running) break;
    if (!first_byte_seen_ && !in.bytes.empty()) {
      first_byte_seen_ = true;
      apply(session_.on_client_first_byte(in.bytes[0]));
    }
  }
  co_return true;
}

asio::awaitable<void> client_connection::read_upstream(self_ptr self) {
  const bool still_readable = co_await self->relay_from_upstream();
  if (parked_[static_cast<std::size_t>(side::upstream)]) co_return;  // unpark() calls read_upstream again
  if (!still_readable) co_return;
  if (upstream_->immediate_io()) {
    discard(side::upstream);
    co_return;
  }
  co_await discard_until_eof(*upstream_);
}

asio::awaitable<bool> client_connection::relay_from_upstream() {
  // As in relay_from_client. And for the first wait of a broker socket that
  // connected at once: no epoll_wait has run since it was registered
  // (EPOLL_CTL_ADD), so whatever readiness came since is still in epoll's
  // ready list, to be reported with this wait queued: as safe as after EAGAIN
  // (net/reactor_wait.hpp), one EPOLL_CTL_MOD less per session (issue 14).
  bool drained = upstream_never_polled_;
  upstream_never_polled_ = false;
  while (state_ == lifecycle::running) {
    if (park(side::upstream, drained)) co_return true;
    const auto in = co_await read_into(*upstream_, upstream_framer_, side::upstream);
    drained = in.drained;
    if (in.error) {
      if (state_ == lifecycle::running) apply(session_.on_upstream_closed());
      co_return false;
    }
    if (state_ != lifecycle::running) break;
    const bool framed = process_upstream_frames();
    if (!framed) co_return true;
  }
  co_return true;
}

// Every complete frame from the broker, their writes sent together after the
// last (as process_client_frames); false when the relay ends (a framing
// error, or the connection began closing).
bool client_connection::process_upstream_frames() {
  batching_writes_ = true;
  const bool framed = process_upstream_frames_batched();
  flush_writes();
  return framed;
}

bool client_connection::process_upstream_frames_batched() {
  for (;;) {
    auto next = upstream_framer_.next();
    if (!next) {
      apply(session_.on_upstream_closed());
      return false;
    }
    if (!*next) return true;
    release_client_writes();  // the broker's CONNACK: the auth answer follows the held CONNACK in this batch
    if (session_.current_state() == client_session::state::connecting_upstream) quick_ack_if_resumed(**next);
    apply(session_.on_upstream_frame(**next), nullptr, &**next);
    if (state_ != lifecycle::running) return false;
  }
}

std::size_t client_connection::client_queue_limit() const {
  if (session_.current_state() == client_session::state::relaying) return settings().write_high_water;
  return std::min(settings().write_high_water, unauthenticated_queue_limit);
}

// The client's reader waits while either queue is full; the broker's reader
// while the queue to the client is (what the broker sends goes there).
bool client_connection::over_high_water() const {
  return to_client_.bytes_queued() > client_queue_limit() || to_upstream_.bytes_queued() > settings().write_high_water;
}

// The broker's reader waits while what goes to the client is over the mark:
// the client queue, and deliveries the session holds for the client's
// Receive Maximum (a bridged 5.0 client), which go to that queue later.
bool client_connection::deliveries_over_high_water() const {
  return to_client_.bytes_queued() + session_.held_delivery_bytes() > settings().write_high_water;
}

// Whether the reader of `from` must wait for room before it reads.
bool client_connection::queues_full(side from) const {
  return from == side::client ? over_high_water() : deliveries_over_high_water();
}

asio::awaitable<void> client_connection::wait_for_room(side from) {
  for (;;) {
    if (!queues_full(from) || state_ != lifecycle::running) break;
    if (from == side::client) client_paused_ = true;
    if (!room_) room_ = std::make_unique<asio::steady_timer>(executor_, time_point::max());
    co_await room_->async_wait(as_tuple_awaitable);
  }
  if (from == side::client) client_paused_ = false;
}

void client_connection::wake_readers() {
  if (room_) room_->cancel();
}

// One read for either direction: waits for queue room (back-pressure), then
// until this socket has bytes, and reads them into the framer. An empty,
// error-free result means the connection began closing, or (drained) that a
// read without waiting found nothing.
asio::awaitable<client_connection::received> client_connection::read_into(transport& stream, mqtt::framer& framer,
                                                                          side from) {
  // Only a full queue needs the wait's coroutine: a frame per read otherwise (issue 14).
  if (queues_full(from)) co_await wait_for_room(from);
  if (state_ != lifecycle::running) co_return received{};
  if (stream.immediate_io()) {
    // Read first, wait only when nothing is there (and then hold no buffer).
    for (;;) {
      const bool reads = woken_[static_cast<std::size_t>(from)];
      const auto now = try_read(stream, framer, from);
      if (now) co_return *now;
      // Nothing there: the caller parks, with a wait that need not re-arm
      // (received::drained), or comes back here to wait.
      if (reads) co_return received{{}, {}, true};
      framer.release_if_empty();
      co_await stream.wait_readable();
      if (state_ != lifecycle::running) co_return received{};
      woken_[static_cast<std::size_t>(from)] = true;
    }
  }
  std::size_t chunk = std::clamp(stream.read_size_hint(), min_read, max_read);
  if (!std::exchange(woken_[static_cast<std::size_t>(from)], false)) {
    const std::size_t when_readable = co_await readable(stream, framer);
    chunk = when_readable;
  }
  auto space = framer.prepare(chunk);
  const auto [ec, n] = co_await stream.read_some(asio::buffer(space.data(), space.size()));
  if (ec) co_return received{ec, {}};
  framer.commit(n);
  co_return received{{}, space.first(n)};
}

// A read without waiting, right after the reactor said the socket is
// readable (an unparked reader, or a wait in read_into). Only then: every
// read goes through the reactor once, so a client that keeps its socket full
// cannot keep the worker from its other connections. Sized by the last reads
// (no FIONREAD): it doubles while reads fill it and halves when they use less
// than half. std::nullopt: nothing there, wait.
std::optional<client_connection::received> client_connection::try_read(transport& stream, mqtt::framer& framer,
                                                                        side from) {
  const auto i = static_cast<std::size_t>(from);
  if (!woken_[i]) return std::nullopt;
  woken_[i] = false;
  auto& chunk = read_chunk_[i];
  if (chunk == 0) chunk = static_cast<std::uint32_t>(2 * min_read);
  auto space = framer.prepare(chunk);
  const auto [ec, n] = stream.try_read_some(asio::buffer(space.data(), space.size()));
  if (ec == asio::error::would_block) return std::nullopt;
  if (ec) return received{ec, {}};
  framer.commit(n);
  // Not `drained`, even with fewer bytes than asked: the peer's FIN may have
  // come with them, and recv consumed it (Linux returns the bytes, and the
  // EOF raises no new edge). Only EAGAIN proves the socket empty (read_into,
  // relay_woken); a wait after bytes re-arms.
  if (n == chunk) {
    chunk = static_cast<std::uint32_t>(std::min<std::size_t>(2 * chunk, max_read));
  } else if (2 * n < chunk) {
    chunk = static_cast<std::uint32_t>(std::max<std::size_t>(chunk / 2, min_read));
  }
  return received{{}, space.first(n)};
}

// Idle connections are the common case, so between packets a reader holds
// no buffer where the stream allows it: it waits for the stream to become
// readable, then sizes the read by what is there (within bounds).
asio::awaitable<std::size_t> client_connection::readable(transport& stream, mqtt::framer& framer) {
  if (framer.buffered() == 0) {
    framer.release_if_empty();
    co_await stream.wait_readable();
  }
  co_return std::clamp(stream.read_size_hint(), min_read, max_read);
}

// Holding the connection, it may build its operation in the connection's
// own memory: asio frees that before it calls or destroys the handler.
struct client_connection::side_wait {
  self_ptr self;
  side from;
  using allocator_type = handler_allocator<void, parked_wait_size>;
  allocator_type get_allocator() const noexcept {
    return allocator_type(self->park_memory_[static_cast<std::size_t>(from)]);
  }
};

struct client_connection::parked_wait : side_wait {
  void operator()(boost::system::error_code) const {
    self->guarded([this] { self->unpark(from); });  // an error is the next read's to report
  }
};

// Parks the reader of `from` when it would only wait: nothing buffered, room
// in the queues, a stream whose readiness is its socket's. The framer gives
// its buffer back; the wait holds the connection as the coroutine did.
// `drained`: the reader's last read found a plain TCP socket empty (EAGAIN) and nothing
// has returned to the event loop since, so the wait need not re-arm epoll
// (net/reactor_wait.hpp says why that is safe then, and only then).
// The client's first park, in the accept's own turn of the event loop, needs
// no re-arm either, whatever its read gave: no epoll_wait has run since the
// socket was registered, so every edge it had (its CONNECT, a FIN behind it)
// is still on epoll's ready list, and the next epoll_wait reports the
// socket's readiness as it is then (one EPOLL_CTL_MOD less per session,
// issue 14).
bool client_connection::park(side from, bool drained) {
  if (from == side::client && client_unpolled_) drained = true;
  const auto i = static_cast<std::size_t>(from);
  auto& stream = from == side::client ? *client_ : *upstream_;
  auto& framer = from == side::client ? client_framer_ : upstream_framer_;
  if (woken_[i] || framer.buffered() != 0 || !stream.readable_when_socket_is()) return false;
  if (queues_full(from)) return false;
  framer.release_if_empty();
  parked_[i] = true;
  // asio finds the park memory's allocator through the base (side_wait).
  static_assert(std::is_same_v<asio::associated_allocator_t<parked_wait>, side_wait::allocator_type>);
  if (drained && stream.immediate_io()) {
    reactor_wait::async_wait_drained(stream.socket(), parked_wait{{shared_from_this(), from}});
  } else {
    stream.socket().async_wait(tcp_socket::wait_read, parked_wait{{shared_from_this(), from}});
  }
  return true;
}

// The socket is readable (or closed): the reader goes on where it parked,
// right here when relay_woken can, else in its coroutine.
void client_connection::unpark(side from) {
  const auto i = static_cast<std::size_t>(from);
  parked_[i] = false;
  woken_[i] = true;
  if (relay_woken(from)) return;
  auto self = shared_from_this();
  if (from == side::client) {
    spawn(resume_client(self));
  } else {
    spawn(read_upstream(self));
  }
}

// A woken reader's common case, without starting its coroutine again: one
// read of a plain TCP stream, its frames and their writes, and the reader
// parks again. It does what one turn of relay_from_client's or
// relay_from_upstream's loop does, in the same order; once the relay has
// ended it drains the socket to EOF itself (discard). false: the coroutine
// takes over where this stopped (not a plain TCP stream, the queues are
// full, a frame is cut): what was read is in the framer, which the
// coroutine processes first.
bool client_connection::relay_woken(side from) {
  auto& stream = from == side::client ? *client_ : *upstream_;
  auto& framer = from == side::client ? client_framer_ : upstream_framer_;
  if (!stream.immediate_io()) return false;
  if (state_ != lifecycle::running) {  // the coroutine would only drain the socket: done here
    discard(from);
    return true;
  }
  if (queues_full(from)) return false;  // read_into waits for room
  const auto in = try_read(stream, framer, from);
  if (!in) return park(from, true);  // woken, but nothing there: the socket is empty, and nothing ran since
  if (in->error) {  // as the relay loops: report, and the reader ends
    if (state_ == lifecycle::running)
      apply(from == side::client ? session_.on_client_closed() : session_.on_upstream_closed());
    return true;
  }
  if (from == side::client) {
    bytes_from_client_ += in->bytes.size();
    if (!first_byte_seen_ && !in->bytes.empty()) {
      first_byte_seen_ = true;
      apply(session_.on_client_first_byte(in->bytes[0]));
    }
    process_client_frames();
  } else {
    const bool framed = process_upstream_frames();
    if (!framed && state_ == lifecycle::running) return false;
  }
  // The relay ended: the socket is read to the peer's EOF here, not in a
  // coroutine spawned for it (two per session, issue 14).
  if (state_ != lifecycle::running) {
    discard(from);
    return true;
  }
  return park(from);  // bytes came: the wait re-arms (see try_read)
}

// Closing a socket with unread bytes makes the kernel send RST, and an RST
// can destroy data the peer has not read yet: our last packets to the
// client, or a DISCONNECT to the broker, which would then publish the will.
// So after the final FIN the proxy reads and drops until the peer closes.
asio::awaitable<void> client_connection::discard_until_eof(tcp_socket& socket) {
  std::array<char, 4096> sink;
  for (;;) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(sink), as_tuple_awaitable);
    if (ec) co_return;
  }
}

// TLS and WebSocket: through the stream, which decodes what it drops.
asio::awaitable<void> client_connection::discard_until_eof(transport& stream) {
  for (;;) {
    const auto [ec, n] = co_await stream.read_some(asio::buffer(discard_sink));
    if (ec) co_return;
  }
}

// Plain TCP: a non-blocking read into the worker's sink, then a bare socket
// wait (as try_read: a peer that keeps sending goes through the reactor at
// every read, so it cannot hold the worker), until the peer's EOF. Neither a
// coroutine frame per read nor one for the loop (issue 14): the wait's
// handler holds the connection, as the coroutine did, and builds its
// operation in the side's park memory (the reader is not parked meanwhile).
struct client_connection::discard_wait : side_wait {
  void operator()(boost::system::error_code ec) const {
    if (!ec) self->guarded([this] { self->discard(from); });  // an error: the socket was closed (linger) or failed
  }
};

void client_connection::discard(side from) {
  auto& stream = from == side::client ? *client_ : *upstream_;
  if (!stream.socket().is_open()) return;  // closed already (a client that left, the linger deadline)
  const auto [ec, n] = stream.try_read_some(asio::buffer(discard_sink));
  if (ec == asio::error::eof && from == side::upstream) reset_on_close_after_broker_left();
  if (ec && ec != asio::error::would_block) return;  // the EOF, or the socket failed
  static_assert(std::is_same_v<asio::associated_allocator_t<discard_wait>, side_wait::allocator_type>);
  stream.socket().async_wait(tcp_socket::wait_read, discard_wait{{shared_from_this(), from}});
}

// ------------------------------------------------------------------ writers

void client_connection::enqueue(side to, std::span<const std::uint8_t> data) {
  if (state_ == lifecycle::closed) return;
  auto& out = queue_of(to);
  out.push(data);
  peak_queued_ = std::max(peak_queued_, out.bytes_queued());
  start_writer(to);
}

void client_connection::enqueue(side to, mqtt::bytes&& data) {
  if (state_ == lifecycle::closed) return;
  auto& out = queue_of(to);
  out.push(std::move(data));
  peak_queued_ = std::max(peak_queued_, out.bytes_queued());
  start_writer(to);
}

void client_connection::start_writer(side to) {
  auto& out = queue_of(to);
  if (out.writing || out.empty() || state_ == lifecycle::closed) return;
  if (to == side::client && client_writes_held_) return;  // release_client_writes() starts it
  if (to == side::upstream && upstream_link_ != link::open) return;
  if (batching_writes_) return;  // flush_writes() starts it after the read's last frame
  if (write_through(to)) return;
  out.writing = true;
  spawn(write(shared_from_this(), to));
}

// The end of a read's frames (or a close among them): what they queued goes out.
void client_connection::flush_writes() {
  batching_writes_ = false;
  start_writer(side::upstream);
  start_writer(side::client);
}

// A client that sent its auth PUBLISH right behind its CONNECT (both in one
// read) is not waiting for the CONNACK but for the auth answer, so the
// proxy's CONNACK waits in the queue for that answer and both go out in one
// write: one sendmsg, one TCP segment and one wake-up of the client instead
// of two each (issue 14). MQTT lets a client send before the CONNACK and
// the server answer later (3.1.1 and 5.0, section 3.1.4). The hold is
// bounded (settings connack_hold, 50 ms): a slow or dead API server, or a
// slow broker dial, delays the CONNACK by that at most, far below any
// client's CONNACK timeout (seconds), and a cached answer with a broker on
// the same host comes well within it. It ends at the first of: the broker's
// CONNACK (the answer is queued in the same batch), an answer that does not
// dial (a refusal), a failed dial, anything more from the client (it may be
// waiting for a PINGRESP or a SUBACK), closing, the bound. A client that
// sends its CONNECT alone is not held: it waits for that CONNACK. Direct
// mode (the session in CONNECT's password) sends no CONNACK of the proxy's.
void client_connection::hold_connack_for_answer(client_session::state before_read) {
  using state = client_session::state;
  if (settings().connack_hold.count() <= 0 || state_ != lifecycle::running) return;
  if (before_read != state::awaiting_connect || session_.current_state() != state::authenticating) return;
  if (to_client_.empty() || to_client_.writing) return;
  client_writes_held_ = true;
  arm_after(deadline::connack_hold, settings().connack_hold);
}

void client_connection::release_client_writes() {
  if (!client_writes_held_) return;
  client_writes_held_ = false;
  disarm(deadline::connack_hold);
  start_writer(side::client);
}

// No writer runs and the queue holds bytes: send them now, without waiting,
// where the stream allows it. Only from the queue's front, and only while no
// writer owns it, so nothing overtakes bytes queued before. True when all
// went out; otherwise (the socket is full, or failed) the writer coroutine
// takes the rest, waits for room and reports any error.
bool client_connection::write_through(side to) {
  auto& stream = to == side::client ? *client_ : *upstream_;
  if (!stream.immediate_io()) return false;
  auto& out = queue_of(to);
  std::size_t written = 0;
  while (!out.empty()) {
    const auto& buffers = out.begin_write();
    const std::size_t offered = out.bytes_in_flight();
    const auto [ec, n] = stream.try_write(buffers);
    out.commit_written(ec ? 0 : n);
    if (ec) break;
    written += n;
    if (n < offered) break;
  }
  if (to == side::client) bytes_to_client_ += written;
  if (written > 0) wake_readers();
  if (!out.empty()) return false;
  finish_if_flushed();
  return true;
}

asio::awaitable<void> client_connection::write(self_ptr self, side to) {
  auto& out = self->queue_of(to);
  auto& stream = to == side::client ? *client_ : *upstream_;
  while (!out.empty() && state_ != lifecycle::closed) {
    const auto& buffers = out.begin_write();
    const auto [ec, n] = co_await stream.write(buffers);
    if (ec) {
      out.clear();
      out.writing = false;
      if (state_ == lifecycle::running)
        apply(to == side::client ? session_.on_client_closed() : session_.on_upstream_closed());
      wake_readers();
      finish_if_flushed();
      co_return;
    }
    out.commit_write();
    if (to == side::client) bytes_to_client_ += n;
    wake_readers();
  }
  out.writing = false;
  finish_if_flushed();
}

}  // namespace proxy
