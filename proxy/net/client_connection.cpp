#include "net/client_connection.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <algorithm>
#include <array>
#include <random>

#include <spdlog/spdlog.h>

#include "net/proxy_protocol.hpp"
#include "net/tls_context.hpp"

#include "support/overloaded.hpp"

namespace proxy {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

namespace {

constexpr std::size_t min_read = 512;
constexpr std::size_t max_read = 64 * 1024;
constexpr auto linger_period = std::chrono::seconds(2);
constexpr std::size_t max_buffers_per_write = 64;
// Packets from the broker were checked by whoever published them; the proxy
// only needs a bound so a broken broker cannot exhaust memory.
constexpr std::size_t min_upstream_packet_limit = 16 * 1024 * 1024;

std::string address_of(tcp::socket& socket) {
  boost::system::error_code ec;
  const auto endpoint = socket.remote_endpoint(ec);
  if (ec) return "unknown";
  return endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
}

void log_failure(std::exception_ptr error) {
  if (!error) return;
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    spdlog::error("connection task failed: {}", e.what());
  }
}

}  // namespace

client_connection::client_connection(std::unique_ptr<transport> client, const listener_settings& listener,
                                     const connection_environment& environment)
    : client_(std::move(client)),
      executor_(client_->socket().get_executor()),
      listener_(listener),
      settings_(environment.settings),
      metrics_(environment.counters),
      auth_(environment.auth),
      upstream_tls_(environment.upstream_tls),
      session_(settings_.session, metrics_, "proxy-" + std::to_string(std::random_device{}()) + "-" +
                                               std::to_string(std::random_device{}())),
      client_framer_(settings_.max_packet_size),
      upstream_framer_(std::max(settings_.max_packet_size, min_upstream_packet_limit)),
      handshake_timer_(executor_),
      handshake_deadline_(executor_),
      keep_alive_timer_(executor_),
      session_timer_(executor_),
      drain_timer_(executor_),
      wakeup_(executor_, std::chrono::steady_clock::time_point::max()) {}

client_connection::~client_connection() = default;

void client_connection::start() {
  remote_address_ = address_of(client_->socket());
  boost::system::error_code ignored;
  client_->socket().set_option(tcp::no_delay(true), ignored);
  metrics_.connections_open++;
  metrics_.connections_total++;
  metrics_.connections_by_transport[static_cast<std::size_t>(listener_.kind)]++;
  last_client_packet_ = std::chrono::steady_clock::now();
  handshake_timer_.expires_after(settings_.connect_timeout);
  auto self = shared_from_this();
  asio::co_spawn(executor_, watch_handshake(self), log_failure);
  arm_handshake_deadline();
  client_reading_ = true;
  asio::co_spawn(executor_, read_client(self), log_failure);
}

// ------------------------------------------------------------------ actions

void client_connection::apply(client_session::actions actions, const mqtt::frame* client_frame,
                              const mqtt::frame* upstream_frame) {
  for (const auto& a : actions) {
    std::visit(support::overloaded{
                   [&](const action::send_to_client& s) { enqueue(side::client, s.data); },
                   [&](const action::send_to_upstream& s) { enqueue(side::upstream, s.data); },
                   [&](const action::forward_to_upstream&) {
                     if (!client_frame) return;
                     metrics_.packets_client_to_upstream++;
                     metrics_.bytes_client_to_upstream += client_frame->bytes.size();
                     enqueue(side::upstream, {client_frame->bytes.begin(), client_frame->bytes.end()});
                   },
                   [&](const action::forward_to_client&) {
                     if (!upstream_frame) return;
                     metrics_.packets_upstream_to_client++;
                     metrics_.bytes_upstream_to_client += upstream_frame->bytes.size();
                     enqueue(side::client, {upstream_frame->bytes.begin(), upstream_frame->bytes.end()});
                   },
                   [&](const action::validate_session& v) { validate(v.token); },
                   [&](const action::connect_upstream& c) {
                     if (upstream_requested_) return;
                     upstream_requested_ = true;
                     auto self = shared_from_this();
                     asio::co_spawn(executor_, connect_upstream(self, c.connect_packet), log_failure);
                   },
                   [&](const action::disarm_timer& t) {
                     if (t.kind == timer_kind::handshake)
                       handshake_timer_.expires_at(std::chrono::steady_clock::time_point::max());
                     // session (issue 11/12): revalidate and upstream_ping
                     const auto index = t.kind == timer_kind::revalidate ? 0 : 1;
                     if ((t.kind == timer_kind::revalidate || t.kind == timer_kind::upstream_ping) &&
                         session_kind_timers_[index])
                       session_kind_timers_[index]->cancel();
                   },
                   [&](const action::arm_timer& t) {
                     if (t.kind == timer_kind::handshake) return (void)handshake_timer_.expires_after(t.after);
                     // session (issue 11/12): revalidate and upstream_ping
                     if (t.kind == timer_kind::revalidate || t.kind == timer_kind::upstream_ping)
                       return arm_session_timer(t.kind, t.after);
                     if (t.kind != timer_kind::session_expiry) return;  // TODO(issue 12): one deadline timer for all kinds
                     session_timer_.expires_after(t.after);
                     if (session_timer_started_) return;
                     session_timer_started_ = true;
                     asio::co_spawn(executor_, watch_session_expiry(shared_from_this()), log_failure);
                   },
                   [&](const action::close& c) { begin_close(c.reason); },
               },
               a);
  }
}

void client_connection::enqueue(side to, mqtt::bytes data) {
  if (closed_) return;
  auto& out = queue_of(to);
  out.queued_bytes += data.size();
  out.queue.push_back(std::move(data));
  const bool can_write = to == side::client || upstream_connected_;
  if (out.writing || !can_write) return;
  out.writing = true;
  asio::co_spawn(executor_, write(shared_from_this(), to), log_failure);
}

void client_connection::validate(const std::string& token) {
  auto self = shared_from_this();
  const auto started = std::chrono::steady_clock::now();
  spdlog::debug("validating session {} for {}", redact(token), remote_address_);
  pending_validation_ = auth_.validate(token, remote_address_, [self, started](const auth_result& result) {
    const auto elapsed = std::chrono::steady_clock::now() - started;
    self->metrics_.auth_latency_ms_sum += static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count());
    self->metrics_.auth_latency_count++;
    if (result.outcome != auth_result::verdict::valid)
      spdlog::debug("session validation for {}: {}", self->remote_address_, result.detail);
    // Never inline: the session may be in the middle of emitting actions.
    asio::post(self->executor_, [self, result] {
      if (!self->closing_) self->apply(self->session_.on_auth_result(result));
    });
  });
}

// ------------------------------------------------------------------ readers

asio::awaitable<void> client_connection::wait_for_room(const outbound& out) {
  while (out.queued_bytes > settings_.write_high_water && !closing_) co_await wakeup_.async_wait(as_tuple_awaitable);
}

void client_connection::notify() { wakeup_.cancel(); }

void client_connection::count_handshake_failure() {
  metrics_.handshake_failures[static_cast<std::size_t>(listener_.kind)]++;
}

asio::awaitable<void> client_connection::read_client(self_ptr self) {
  bool still_readable = true;
  if (listener_.proxy_protocol) still_readable = co_await self->read_proxy_header();
  if (still_readable && !closing_) still_readable = co_await self->client_handshake(self);
  if (still_readable && !closing_) still_readable = co_await self->relay_from_client();
  if (still_readable && client_established_) co_await discard_until_eof(*client_);
  // A refused handshake (an HTTP error, a TLS alert) was the last thing sent:
  // drain so that closing with unread bytes does not turn it into an RST.
  if (!client_established_) co_await discard_until_eof(client_->socket());
  client_reading_ = false;
  release_if_done();
}

// The PROXY header comes before anything else, TLS included. It is taken
// from the socket to its last byte and not one further (peek, then consume),
// so whatever follows is still in the kernel for the transport's handshake.
asio::awaitable<bool> client_connection::read_proxy_header() {
  auto& socket = client_->socket();
  std::vector<std::uint8_t> header;  // consumed so far, all of it header
  for (;;) {
    auto [wait_error] = co_await socket.async_wait(tcp::socket::wait_read, as_tuple_awaitable);
    if (closing_) co_return false;
    std::array<std::uint8_t, proxy_protocol::max_header_size> peeked;
    boost::system::error_code ec = wait_error;
    std::size_t n = 0;
    if (!ec) n = socket.receive(asio::buffer(peeked.data(), peeked.size() - header.size()), tcp::socket::message_peek, ec);
    if (!ec && n == 0) ec = asio::error::eof;
    if (ec == asio::error::eof && header.empty()) {
      begin_close("closed before the handshake");  // a load balancer's TCP health check
      co_return false;
    }
    if (ec) {
      count_handshake_failure();
      const auto why = handshake_timed_out_ ? "no PROXY protocol header within " +
                                                  std::to_string(settings_.handshake_timeout.count()) + " ms"
                                            : "closed within the PROXY protocol header: " + ec.message();
      spdlog::warn("connection from {} refused: {}", remote_address_, why);
      begin_close(why);
      co_return false;
    }
    std::vector<std::uint8_t> candidate = header;
    candidate.insert(candidate.end(), peeked.begin(), peeked.begin() + static_cast<long>(n));
    const auto parsed = proxy_protocol::parse(candidate);
    if (parsed.state == proxy_protocol::status::invalid) {
      count_handshake_failure();
      spdlog::warn("connection from {} refused: {}", remote_address_, parsed.error);
      begin_close("bad PROXY protocol header: " + parsed.error);
      co_return false;
    }
    const std::size_t take = parsed.state == proxy_protocol::status::need_more ? n : parsed.value.size - header.size();
    std::array<std::uint8_t, proxy_protocol::max_header_size> consumed;
    socket.receive(asio::buffer(consumed.data(), take), 0, ec);  // bytes already seen: does not block
    header.insert(header.end(), consumed.begin(), consumed.begin() + static_cast<long>(take));
    if (parsed.state == proxy_protocol::status::need_more) continue;
    if (!parsed.value.source.empty()) remote_address_ = parsed.value.source;
    co_return true;
  }
}

// TLS and/or WebSocket handshake, bounded by handshake_timeout. A failure
// ends only this connection, counted per listener kind.
asio::awaitable<bool> client_connection::client_handshake(self_ptr self) {
  (void)self;
  if (listener_.kind == transport_kind::tcp) {  // nothing to negotiate
    client_established_ = true;
    handshake_deadline_.cancel();
    co_return true;
  }
  const bool peer_closed = co_await closed_before_first_byte(client_->socket());
  handshake_result result{asio::error::eof, {}};
  if (!peer_closed) result = co_await client_->handshake();
  if (result.error && handshake_timed_out_)
    result.detail = "no handshake within " + std::to_string(settings_.handshake_timeout.count()) + " ms";
  if (closing_) co_return false;
  if (result.error == asio::error::eof && result.detail.empty()) {
    // Connected and closed without a byte: a load balancer's TCP health check, not a failed handshake.
    begin_close("closed before the handshake");
    co_return false;
  }
  if (result.error) {
    count_handshake_failure();
    spdlog::warn("{} handshake with {} failed: {}", to_string(listener_.kind), remote_address_, result.detail);
    begin_close(std::string(to_string(listener_.kind)) + " handshake failed: " + result.detail);
    co_return false;
  }
  client_established_ = true;
  handshake_deadline_.cancel();
  if (const auto subject = client_->peer_certificate_subject(); !subject.empty())
    spdlog::debug("{} presented client certificate {}", remote_address_, subject);
  co_return true;
}

// Deadlines close the socket rather than cancel operations: every stream
// layer honours a closed socket, not all honour per-operation cancellation.
// The client's covers the PROXY header and the TLS / WebSocket handshake.
void client_connection::arm_handshake_deadline() {
  if (!listener_.proxy_protocol && listener_.kind == transport_kind::tcp) return;
  handshake_deadline_.expires_after(settings_.handshake_timeout);
  handshake_deadline_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec || self->client_established_ || self->closing_) return;
    self->handshake_timed_out_ = true;
    self->client_->close();
  });
}

// The broker's TLS handshake, within what is left of the connect timeout.
asio::awaitable<handshake_result> client_connection::handshake_within(self_ptr self, transport& stream,
                                                                      std::chrono::milliseconds limit) {
  auto deadline = std::make_shared<asio::steady_timer>(executor_, limit);
  auto finished = std::make_shared<bool>(false);
  deadline->async_wait([self, &stream, finished](boost::system::error_code ec) {
    if (!ec && !*finished) stream.close();
  });
  auto result = co_await stream.handshake();
  *finished = true;
  deadline->cancel();
  if (result.error && deadline->expiry() <= std::chrono::steady_clock::now())
    result.detail = "no handshake within " + std::to_string(limit.count()) + " ms";
  co_return result;
}

// Hands every complete frame in the framer to the session.
void client_connection::process_client_frames() {
  while (!closing_) {
    auto next = client_framer_.next();
    if (!next) {
      apply(session_.on_client_framing_error(next.error()));
      return;
    }
    if (!*next) return;
    last_client_packet_ = std::chrono::steady_clock::now();
    apply(session_.on_client_frame(**next), &**next);
    if (!closing_ && !keep_alive_started_ && session_.keep_alive_limit().count() > 0) {
      keep_alive_started_ = true;
      asio::co_spawn(executor_, watch_keep_alive(shared_from_this()), log_failure);
    }
  }
}

// Waits for the first byte without taking it: true when the peer closed instead.
asio::awaitable<bool> client_connection::closed_before_first_byte(tcp::socket& socket) {
  auto [wait_error] = co_await socket.async_wait(tcp::socket::wait_read, as_tuple_awaitable);
  if (wait_error) co_return false;  // the deadline closed the socket: the handshake reports it
  std::uint8_t first = 0;
  boost::system::error_code ec;
  const std::size_t n = socket.receive(asio::buffer(&first, 1), tcp::socket::message_peek, ec);
  co_return n == 0 && (!ec || ec == asio::error::eof);
}

asio::awaitable<bool> client_connection::relay_from_client() {
  while (!closing_) {
    process_client_frames();  // whole packets the last read completed
    if (closing_) break;
    const auto in = co_await read_into(*client_, client_framer_, to_upstream_);
    if (in.error) {
      if (!closing_) apply(session_.on_client_closed());
      co_return false;
    }
    if (closing_) break;
    if (!first_byte_seen_ && !in.bytes.empty()) {
      first_byte_seen_ = true;
      apply(session_.on_client_first_byte(in.bytes[0]));
    }
  }
  co_return true;
}

asio::awaitable<void> client_connection::read_upstream() {
  const bool still_readable = co_await relay_from_upstream();
  if (still_readable) co_await discard_until_eof(*upstream_);
  upstream_reading_ = false;
  release_if_done();
}

asio::awaitable<bool> client_connection::relay_from_upstream() {
  while (!closing_) {
    const auto in = co_await read_into(*upstream_, upstream_framer_, to_client_);
    if (in.error) {
      if (!closing_) apply(session_.on_upstream_closed());
      co_return false;
    }
    if (closing_) break;
    for (;;) {
      auto next = upstream_framer_.next();
      if (!next) {
        apply(session_.on_upstream_closed());
        co_return true;
      }
      if (!*next) break;
      apply(session_.on_upstream_frame(**next), nullptr, &**next);
      if (closing_) co_return true;
    }
  }
  co_return true;
}

// One read for either direction: waits until the other direction has room
// (back-pressure), then until this socket has bytes, and reads them into the
// framer. An empty, error-free result means the connection began closing.
asio::awaitable<client_connection::received> client_connection::read_into(transport& stream, mqtt::framer& framer,
                                                                          const outbound& other_side) {
  co_await wait_for_room(other_side);
  if (closing_) co_return received{};
  const std::size_t chunk = co_await readable(stream, framer);
  auto space = framer.prepare(chunk);
  const auto [ec, n] = co_await stream.read_some(asio::buffer(space.data(), space.size()));
  if (ec) co_return received{ec, {}};
  framer.commit(n);
  co_return received{{}, space.first(n)};
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

// Closing a socket with unread bytes makes the kernel send RST, and an RST
// can destroy data the peer has not read yet: our last packets to the
// client, or a DISCONNECT to the broker, which would then publish the will.
// So after the final FIN the proxy reads and drops until the peer closes.
asio::awaitable<void> client_connection::discard_until_eof(tcp::socket& socket) {
  std::array<char, 4096> sink;
  for (;;) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(sink), as_tuple_awaitable);
    if (ec) co_return;
  }
}

asio::awaitable<void> client_connection::discard_until_eof(transport& stream) {
  std::array<char, 4096> sink;
  for (;;) {
    const auto [ec, n] = co_await stream.read_some(asio::buffer(sink));
    if (ec) co_return;
  }
}

// ------------------------------------------------------------------ writers

asio::awaitable<void> client_connection::write(self_ptr self, side to) {
  (void)self;
  auto& out = queue_of(to);
  auto& stream = to == side::client ? *client_ : *upstream_;
  std::vector<asio::const_buffer> buffers;
  while (!out.queue.empty() && !closed_) {
    buffers.clear();
    const std::size_t count = std::min(out.queue.size(), max_buffers_per_write);
    for (std::size_t i = 0; i < count; ++i) buffers.push_back(asio::buffer(out.queue[i]));
    const auto [ec, n] = co_await stream.write(buffers);
    if (ec) {
      out.queue.clear();
      out.queued_bytes = 0;
      out.writing = false;
      if (!closing_) apply(to == side::client ? session_.on_client_closed() : session_.on_upstream_closed());
      finish_if_drained();
      co_return;
    }
    for (std::size_t i = 0; i < count; ++i) {
      out.queued_bytes -= out.queue.front().size();
      out.queue.pop_front();
    }
    notify();
  }
  out.writing = false;
  finish_if_drained();
}

// ----------------------------------------------------------------- upstream

asio::awaitable<void> client_connection::connect_upstream(self_ptr self, mqtt::bytes connect_packet) {
  enqueue(side::upstream, std::move(connect_packet));
  const bool opened = co_await open_upstream(self);
  if (!opened || closed_) co_return;
  upstream_connected_ = true;
  upstream_reading_ = true;
  if (!to_upstream_.queue.empty() && !to_upstream_.writing) {
    to_upstream_.writing = true;
    asio::co_spawn(executor_, write(self, side::upstream), log_failure);
  }
  co_await read_upstream();
}

// Resolve, connect and (for a TLS broker) handshake, all within the upstream
// connect timeout. A failure is handed to the session, which tells the client.
asio::awaitable<bool> client_connection::open_upstream(self_ptr self) {
  using namespace asio::experimental::awaitable_operators;
  const auto& where = settings_.upstream;
  upstream_ = make_upstream_transport(executor_, where, upstream_tls_ ? upstream_tls_->current() : nullptr);
  const auto started = std::chrono::steady_clock::now();
  std::string failure;
  try {
    asio::steady_timer deadline(executor_, where.connect_timeout);
    tcp::resolver resolver(executor_);
    auto resolved = co_await (resolver.async_resolve(where.host, where.port, asio::use_awaitable) ||
                              deadline.async_wait(asio::use_awaitable));
    if (resolved.index() == 1) throw boost::system::system_error(asio::error::timed_out);
    auto connected = co_await (asio::async_connect(upstream_->socket(), std::get<0>(resolved), asio::use_awaitable) ||
                               deadline.async_wait(asio::use_awaitable));
    if (connected.index() == 1) throw boost::system::system_error(asio::error::timed_out);
  } catch (const boost::system::system_error& e) {
    failure = e.code().message();
  }
  if (failure.empty()) {
    boost::system::error_code ignored;
    upstream_->socket().set_option(tcp::no_delay(true), ignored);
    const auto left = where.connect_timeout - std::chrono::duration_cast<std::chrono::milliseconds>(
                                                  std::chrono::steady_clock::now() - started);
    auto result =
        co_await handshake_within(self, *upstream_, std::max(left, std::chrono::milliseconds(1)));
    if (result.error) failure = result.detail;
  }
  if (closing_) co_return false;
  if (failure.empty()) co_return true;
  spdlog::warn("upstream {}:{} unreachable: {}", where.host, where.port, failure);
  apply(session_.on_upstream_connect_failed(failure));
  co_return false;
}

// ------------------------------------------------------------------ timers

asio::awaitable<void> client_connection::watch_handshake(self_ptr self) {
  (void)self;
  while (!closing_) {
    co_await handshake_timer_.async_wait(as_tuple_awaitable);
    if (closing_) co_return;
    if (handshake_timer_.expiry() <= std::chrono::steady_clock::now()) {
      handshake_timer_.expires_at(std::chrono::steady_clock::time_point::max());
      apply(session_.on_timer(timer_kind::handshake));
    }
  }
}

asio::awaitable<void> client_connection::watch_keep_alive(self_ptr self) {
  (void)self;
  while (!closing_) {
    const auto deadline = last_client_packet_ + session_.keep_alive_limit();
    if (std::chrono::steady_clock::now() >= deadline) {
      apply(session_.on_keep_alive_expired());
      co_return;
    }
    keep_alive_timer_.expires_at(deadline);
    co_await keep_alive_timer_.async_wait(as_tuple_awaitable);
  }
}

asio::awaitable<void> client_connection::watch_session_expiry(self_ptr self) {
  (void)self;
  while (!closing_) {
    co_await session_timer_.async_wait(as_tuple_awaitable);
    if (closing_) co_return;
    // A re-authentication moved the expiry while we waited: wait again.
    if (session_timer_.expiry() <= std::chrono::steady_clock::now()) {
      apply(session_.on_timer(timer_kind::session_expiry));
      co_return;
    }
  }
}

// session (issue 11/12): the revalidate and upstream_ping deadlines. Moving
// one cancels its pending wait (operation_aborted), so only the latest fires.
void client_connection::arm_session_timer(timer_kind kind, std::chrono::milliseconds after) {
  auto& timer = session_kind_timers_[kind == timer_kind::revalidate ? 0 : 1];
  if (!timer) timer = std::make_unique<asio::steady_timer>(executor_);
  timer->expires_after(after);
  timer->async_wait([self = shared_from_this(), kind](boost::system::error_code ec) {
    if (ec || self->closing_) return;
    self->apply(self->session_.on_timer(kind));
  });
}

// ----------------------------------------------------------------- closing

void client_connection::begin_close(const std::string& reason) {
  if (closing_) return;
  closing_ = true;
  close_reason_ = reason;
  cancel_timers();
  notify();
  // A peer that does not read cannot hold the connection open forever.
  drain_timer_.expires_after(settings_.drain_timeout);
  auto self = shared_from_this();
  drain_timer_.async_wait([self](boost::system::error_code ec) {
    if (!ec) {
      self->drain_expired_ = true;
      self->to_client_.writing = self->to_upstream_.writing = false;
      self->finish_if_drained();
    }
  });
  finish_if_drained();
}

void client_connection::finish_if_drained() {
  if (!closing_ || closed_) return;
  if (to_client_.writing || (upstream_connected_ && to_upstream_.writing)) return;
  closed_ = true;
  // Close our direction after everything queued (FIN, close_notify or a
  // close frame); no DISCONNECT goes upstream unless the session queued one,
  // so the broker decides on the will as it should. A writer cut off by the
  // drain timeout leaves nothing to be polite about.
  const bool forced = drain_expired_;
  auto self = shared_from_this();
  if (forced) {
    client_->close();
  } else if (client_established_) {
    asio::co_spawn(executor_, shut_down(self, *client_), log_failure);
  } else {
    boost::system::error_code ignored;
    client_->socket().shutdown(tcp::socket::shutdown_send, ignored);
  }
  if (upstream_ && upstream_connected_ && !forced) {
    asio::co_spawn(executor_, shut_down(self, *upstream_), log_failure);
  } else if (upstream_) {
    upstream_->close();
  }
  cancel_timers();
  wakeup_.cancel();
  metrics_.connections_open--;
  spdlog::info("connection closed remote={} client_id={} user={} reason=\"{}\"", remote_address_,
               session_.client_id().empty() ? "-" : session_.client_id(),
               session_.user().empty() ? "-" : session_.user(), close_reason_);
  // Peers that never close their side are cut off after the linger period.
  drain_timer_.expires_after(linger_period);
  drain_timer_.async_wait([self](boost::system::error_code ec) {
    if (!ec) self->close_sockets();
  });
  release_if_done();
}

// The watchers' timers; the drain timer and the wake-up have their own rules.
void client_connection::cancel_timers() {
  handshake_timer_.cancel();
  handshake_deadline_.cancel();
  keep_alive_timer_.cancel();
  session_timer_.cancel();
  for (auto& timer : session_kind_timers_)
    if (timer) timer->cancel();
}

void client_connection::release_if_done() {
  if (closed_ && !client_reading_ && !upstream_reading_) close_sockets();
}

void client_connection::close_sockets() {
  drain_timer_.cancel();
  client_->close();
  if (upstream_) upstream_->close();
}

asio::awaitable<void> client_connection::shut_down(self_ptr self, transport& stream) {
  (void)self;
  co_await stream.shutdown();
}

}  // namespace proxy
