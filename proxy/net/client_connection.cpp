// The connection's core: its lifecycle, the actions the session asks for,
// and the one deadline timer. The jobs are in connection_*.cpp.
#include "net/client_connection.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <algorithm>
#include <charconv>
#include <random>
#include <utility>

#include <openssl/rand.h>

#include <spdlog/spdlog.h>

#include "net/log_field.hpp"
#include "support/overloaded.hpp"

namespace proxy {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// Packets from the broker were checked by whoever published them; the proxy
// only needs a bound so a broken broker cannot exhaust memory.
constexpr std::size_t min_upstream_packet_limit = 16 * 1024 * 1024;

// "address:port" for any address, through asio's own formatting.
std::string text_of_any(const tcp::endpoint& endpoint) {
  return endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
}

// "a.b.c.d:port" as inet_ntop writes it, without its sprintf: ~1.3k
// instructions of every new session (issue 14). IPv6 as before.
std::string text_of(const tcp::endpoint& endpoint) {
  if (!endpoint.address().is_v4()) return text_of_any(endpoint);
  char text[sizeof "255.255.255.255:65535"];
  char* const last = text + sizeof text;
  char* end = text;
  for (const auto byte : endpoint.address().to_v4().to_bytes()) {
    if (end != text) *end++ = '.';
    end = std::to_chars(end, last, static_cast<unsigned>(byte)).ptr;
  }
  // Never taken (15 characters at most so far): it tells the compiler, which
  // under LTO sees to_chars' error return, that ':' stays inside `text`.
  if (end == last) return text_of_any(endpoint);
  *end++ = ':';
  end = std::to_chars(end, last, static_cast<unsigned>(endpoint.port())).ptr;
  return std::string(text, end);
}

std::string address_of(tcp_socket& socket) {
  boost::system::error_code ec;
  const auto endpoint = socket.remote_endpoint(ec);
  if (ec) return "unknown";
  return text_of(endpoint);
}

// For generated client ids, which a 5.0 client sees (Assigned Client
// Identifier): unpredictable, from OpenSSL's CSPRNG (a user-space DRBG, cheap
// per call), so no client can guess the id the proxy gives another (an ACL
// template with %c would otherwise be open to it). A std::random_device per
// connection cost 12 % of the proxy's CPU per new session on a VM (its
// construction traps to the hypervisor); a seeded std::mt19937 is cheap but
// its state can be recovered from 624 outputs.
unsigned worker_random() {
  unsigned value = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&value), sizeof value) != 1) {
    thread_local std::mt19937 fallback{std::random_device{}()};  // only if OpenSSL's RNG failed
    value = static_cast<unsigned>(fallback());
  }
  return value;
}

// Made only for a client that sends an empty client id (client_session).
std::string generated_client_id() {
  return "proxy-" + std::to_string(worker_random()) + "-" + std::to_string(worker_random());
}

}  // namespace

// The session's timer kinds are the first deadlines, in the same order.
static_assert(static_cast<std::size_t>(client_connection::deadline::handshake) ==
              static_cast<std::size_t>(timer_kind::handshake));
static_assert(static_cast<std::size_t>(client_connection::deadline::session_expiry) ==
              static_cast<std::size_t>(timer_kind::session_expiry));
static_assert(static_cast<std::size_t>(client_connection::deadline::revalidate) ==
              static_cast<std::size_t>(timer_kind::revalidate));
static_assert(static_cast<std::size_t>(client_connection::deadline::upstream_ping) ==
              static_cast<std::size_t>(timer_kind::upstream_ping));
static_assert(timer_kind_count == 4);
static_assert(static_cast<std::size_t>(client_connection::deadline::linger) + 1 == client_connection::deadline_count);

// The registry's members, held weakly while the callback runs: it may end
// any of them (see connection_registry.hpp).
void connection_registry::for_each(const std::function<void(client_connection&)>& fn) const {
  std::vector<std::weak_ptr<client_connection>> snapshot;
  snapshot.reserve(members_.size());
  for (const auto& member : members_) snapshot.push_back(member.connection_->weak_from_this());
  for (const auto& weak : snapshot)
    if (auto connection = weak.lock()) fn(*connection);
}

const char* to_string(client_connection::lifecycle state) {
  switch (state) {
    case client_connection::lifecycle::handshaking: return "handshaking";
    case client_connection::lifecycle::running: return "running";
    case client_connection::lifecycle::closing: return "closing";
    case client_connection::lifecycle::closed: return "closed";
  }
  return "?";
}

client_connection::client_connection(std::unique_ptr<transport> client, const listener_settings& listener,
                                     const connection_environment& environment)
    : client_(std::move(client)),
      executor_(client_->socket().get_executor()),
      listener_(listener),
      environment_(environment),
      metrics_(environment.counters),
      session_(environment.settings.session, metrics_, &generated_client_id),
      client_framer_(settings().max_packet_size),
      upstream_framer_(std::max(settings().max_packet_size, min_upstream_packet_limit)),
      worker_deadlines_(deadline_service::of(executor_)) {
  deadlines_.fill(time_point::max());
  session_.share_acls_through(environment.acls);
  if (listener_.acl_enforcement) session_.set_acl_mode(*listener_.acl_enforcement);
  dial_target_ = &settings().upstream;
  metrics_.connections_alive++;
}

client_connection::~client_connection() {
  // Large queues: their memory is freed now; the worker may give it back.
  constexpr std::size_t large = 256 * 1024;
  // The registry through the membership, which knows whether it still
  // exists (the environment may not, see client_connection.hpp).
  auto* registry = membership_.registry();
  if (registry && peak_queued_ >= large) {
    to_client_.clear();
    to_upstream_.clear();
    registry->released(peak_queued_);
  }
  // The sockets close with the members, just after this: another worker's
  // accept may meanwhile count one connection too many, which the
  // descriptor reserve covers.
  metrics_.connections_alive--;
}

void client_connection::start(const tcp::endpoint& remote, bool no_delay_inherited) {
  remote_address_ = text_of(remote);
  begin(no_delay_inherited);
}

void client_connection::begin(bool no_delay_inherited) {
  if (remote_address_.empty()) remote_address_ = address_of(client_->socket());
  boost::system::error_code ignored;
  if (!no_delay_inherited) client_->socket().set_option(tcp::no_delay(true), ignored);
  gauge_.acquire(metrics_);
  metrics_.connections_total++;
  metrics_.connections_by_transport[static_cast<std::size_t>(listener_.kind)]++;
  if (environment_.registry) environment_.registry->add(membership_, *this);
  last_client_packet_ = std::chrono::steady_clock::now();
  arm_after(deadline::handshake, settings().connect_timeout);
  // Deadlines close the socket rather than cancel operations: every stream
  // layer honours a closed socket, not all honour per-operation cancellation.
  if (listener_.proxy_protocol || listener_.kind != transport_kind::tcp) {
    arm_after(deadline::transport_handshake, settings().handshake_timeout);
  } else if (client_->immediate_io()) {
    // Plain TCP: nothing to negotiate, and the reader starts as a woken one
    // does (read_client's first read: the CONNECT is often there already).
    // A coroutine only if the reader must wait in one (unpark): no co_spawn
    // and no chain of frames per session for it (issue 14).
    enter(lifecycle::running);
    client_unpolled_ = true;
    guarded([this] { unpark(side::client); });
    client_unpolled_ = false;
    return;
  }
  spawn(read_client(shared_from_this()));
}

// The one place the lifecycle moves, always forward.
void client_connection::enter(lifecycle next) {
  if (next <= state_) return;
  state_ = next;
  switch (next) {
    case lifecycle::handshaking: break;
    case lifecycle::running:
      client_established_ = true;
      disarm(deadline::transport_handshake);
      break;
    case lifecycle::closing: on_closing(); break;
    case lifecycle::closed: on_closed(); break;
  }
}

// ------------------------------------------------------------------ actions

// The session's actions, owned here: nothing refers back into the session,
// so whatever runs inline (a spawned coroutine, a re-entrant event) cannot
// invalidate them.
void client_connection::apply(session_actions actions, const mqtt::frame* client_frame,
                              const mqtt::frame* upstream_frame) {
  for (auto& a : actions) {
    std::visit(support::overloaded{
                   [&](action::send_to_client& s) { enqueue(side::client, std::move(s.data)); },
                   [&](action::send_to_upstream& s) {
                     note_to_upstream(s.data.empty() ? 0 : s.data[0]);
                     enqueue(side::upstream, std::move(s.data));
                   },
                   [&](action::forward_to_upstream&) {
                     if (!client_frame) return;
                     note_to_upstream(client_frame->first_byte);
                     metrics_.packets_client_to_upstream++;
                     metrics_.bytes_client_to_upstream += client_frame->bytes.size();
                     enqueue(side::upstream, client_frame->bytes);
                   },
                   [&](action::forward_to_client&) {
                     if (!upstream_frame) return;
                     metrics_.packets_upstream_to_client++;
                     metrics_.bytes_upstream_to_client += upstream_frame->bytes.size();
                     enqueue(side::client, upstream_frame->bytes);
                   },
                   [&](action::validate_session& v) { validate(std::move(v.token)); },
                   [&](action::connect_upstream& c) {
                     if (upstream_link_ != link::none || state_ != lifecycle::running) return;
                     upstream_link_ = link::dialing;
                     start_upstream(std::move(c.connect_packet));
                   },
                   [&](action::arm_timer& t) {
                     if (state_ < lifecycle::closing) arm_after(static_cast<deadline>(t.kind), t.after);
                   },
                   [&](action::disarm_timer& t) { disarm(static_cast<deadline>(t.kind)); },
                   [&](action::close& c) {
                     client_left_ = client_left_ || c.client_left;
                     flush_writes();  // what this read's frames queued goes before the end
                     begin_close(std::move(c.reason));
                   },
                   [&](action::acl_report& r) { log_acl_report(r); },
               },
               a);
  }
  client_session::recycle(std::move(actions));
}

void client_connection::validate(std::string token) {
  // The arguments are built before spdlog looks at the level: only when logged.
  if (spdlog::should_log(spdlog::level::debug))
    spdlog::debug("validating session {} for {}", redact(token), remote_address_);
  if (answer_at_hand_) {
    auto answer = environment_.auth.answer_at_once(token);
    // Either way it supersedes what an earlier question of this read had
    // (as a new validate() drops the pending one): one answer applies.
    answer_at_hand_->reset();
    if (answer) {
      pending_validation_.reset();
      *answer_at_hand_ = std::move(answer);
      return;
    }
  }
  // The callback keeps the connection alive: once a client has sent all it
  // will (CONNECT, auth PUBLISH, held packets, DISCONNECT, FIN) nothing else
  // may hold it while the answer is awaited. The cycle (connection -> pending
  // call -> callback -> connection) ends when the call completes, which its
  // deadline guarantees, or when closing drops the pending call. Only a miss
  // of the cache comes here while a client's read is processed (above).
  pending_validation_ = environment_.auth.validate(
      std::move(token), remote_address_, [self = shared_from_this()](const auth_result& result) {
        // Never inline (auth_client's promise): the session is not in the
        // middle of emitting actions, so the answer applies here, without a
        // second post and a second copy of the result (issue 14).
        self->pending_validation_.reset();
        self->on_answer(result);
      });
}

// The answer to the session's validation: admitted (the dial follows) or refused.
void client_connection::on_answer(const auth_result& result) {
  if (result.outcome != auth_result::verdict::valid)
    spdlog::debug("session validation for {}: {}", remote_address_, result.detail);
  if (state_ != lifecycle::running) return;
  guarded([this, &result] {
    apply(session_.on_auth_result(result));
    // A held CONNACK waits on for the broker's, unless no dial follows.
    if (session_.current_state() != client_session::state::connecting_upstream) release_client_writes();
  });
}

void client_connection::on_auth_event(const auth_event& event) {
  if (state_ != lifecycle::running) return;
  apply(session_.on_auth_event(event));
}

void client_connection::shut_down(bool fire_will) {
  if (state_ >= lifecycle::closing) return;
  if (state_ == lifecycle::running) apply(session_.on_shutdown(fire_will));
  // A session that had nothing to say (no CONNECT yet) closes all the same.
  begin_close("proxy shutting down");
}

void client_connection::cut(const std::string& reason) {
  if (state_ < lifecycle::closing) close_reason_ = reason;
  forced_ = true;
  if (state_ < lifecycle::closing) enter(lifecycle::closing);
  if (state_ < lifecycle::closed) enter(lifecycle::closed);
  close_sockets();
}

// A coroutine of the connection ended by an exception: a bug, never flow
// (errors on the data path are error codes). Log it, whatever was thrown,
// and cut the connection so it does not hang half-alive.
void client_connection::spawn(asio::awaitable<void> task) {
  asio::co_spawn(executor_, std::move(task), [weak = weak_from_this()](std::exception_ptr error) {
    if (error) report_internal_error(weak, error);
  });
}

void client_connection::report_internal_error(const std::weak_ptr<client_connection>& weak, std::exception_ptr error) {
  std::string what = "unknown exception";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  auto self = weak.lock();
  spdlog::error("connection task failed: remote={} {}", self ? self->remote_address_ : "-", what);
  if (self) self->cut("internal error: " + what);
}

void client_connection::count_handshake_failure() {
  metrics_.handshake_failures[static_cast<std::size_t>(listener_.kind)]++;
}

// ------------------------------------------------------------------ deadlines

// The worker's queue is asked to move the connection only when a deadline
// comes before the wake-up already due. A deadline disarmed or moved later
// leaves the wake-up where it was: it then finds nothing due and re-arms for
// what is left (on_timer_fired). Most sessions end before that wake-up and
// leave the queue with it; the exact re-arm was a scan and a tree erase and
// insert, 13 per session (issue 14). So while scheduled, due() is at or
// before the earliest deadline; while not, none is set (except inside
// on_timer_fired(), which re-arms once it is done).
void client_connection::arm(deadline kind, time_point at) {
  deadlines_[static_cast<std::size_t>(kind)] = at;
  if (scheduled()) {
    if (at < due()) worker_deadlines_.schedule(*this, at);
    return;
  }
  if (at != time_point::max()) rearm_timer();
}

void client_connection::disarm_all() {
  deadlines_.fill(time_point::max());
  rearm_timer();
}

// The connection waits in the worker's deadline queue for its earliest
// deadline, and is out of it while none is set. The queue holds no
// reference: a deadline never keeps the connection alive (the entry leaves
// the queue when the connection is destroyed).
void client_connection::rearm_timer() {
  const auto earliest = *std::min_element(deadlines_.begin(), deadlines_.end());
  if (earliest == time_point::max()) return worker_deadlines_.cancel(*this);
  if (scheduled() && due() == earliest) return;
  worker_deadlines_.schedule(*this, earliest);
}

void client_connection::on_deadline() {
  if (auto self = weak_from_this().lock()) self->on_timer_fired();
}

// Every deadline that has passed, earliest first; each is cleared before it
// fires, so a handler may set it again.
void client_connection::on_timer_fired() {
  const auto now = std::chrono::steady_clock::now();
  for (;;) {
    const auto next = std::min_element(deadlines_.begin(), deadlines_.end());
    if (*next > now) break;
    *next = time_point::max();
    fire(static_cast<deadline>(next - deadlines_.begin()));
  }
  rearm_timer();
}

void client_connection::fire(deadline kind) {
  switch (kind) {
    case deadline::handshake:
    case deadline::session_expiry:
    case deadline::revalidate:
    case deadline::upstream_ping:
      if (state_ < lifecycle::closing) apply(session_.on_timer(static_cast<timer_kind>(kind)));
      return;
    case deadline::keep_alive: return keep_alive_check();
    case deadline::transport_handshake:
      if (state_ != lifecycle::handshaking) return;
      handshake_failure_ = "no handshake within " + std::to_string(settings().handshake_timeout.count()) + " ms";
      client_->close();
      return;
    case deadline::upstream_dial: return upstream_dial_expired();
    case deadline::connack_hold: return release_client_writes();
    case deadline::flush:
      // A peer that does not take our bytes cannot hold the connection open.
      forced_ = true;
      enter(lifecycle::closed);
      return;
    case deadline::linger: return close_sockets();  // peers that never close their side
  }
}

// [MQTT-3.1.2-24]: no packet for 1.5 times the keep-alive. The deadline is
// set once and moved only when it passes, not at every packet.
void client_connection::keep_alive_check() {
  const auto limit = session_.keep_alive_limit();
  if (state_ != lifecycle::running || limit.count() <= 0) return;
  const auto due = last_client_packet_ + limit;
  if (std::chrono::steady_clock::now() >= due) return apply(session_.on_keep_alive_expired());
  arm(deadline::keep_alive, due);
}

}  // namespace proxy
