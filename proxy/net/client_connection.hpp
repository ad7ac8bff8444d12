// The one owner of a client connection: both transports (client and broker),
// the session state machine, one deadline timer and a write queue per
// direction. Coroutines on one io_context (one per core) carry out what the
// session asks; nothing else touches the connection, so it needs no locks.
//
// Lifecycle, moved only by enter():
//
//   handshaking --PROXY header, TLS / WebSocket handshake--> running
//   running --session closes, peer leaves, shut_down()--> closing (flush both queues)
//   closing --queues flushed or the flush deadline--> closed (FIN sent, logged, gauge released)
//
// The jobs live in their own files: connection_handshake.cpp (PROXY header,
// transport handshake), connection_relay.cpp (readers and writers),
// connection_upstream.cpp (dialling the broker), connection_closing.cpp.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "auth/auth_client.hpp"
#include "auth/auth_event.hpp"
#include "mqtt/framer.hpp"
#include "net/connection_registry.hpp"
#include "net/connection_snapshot.hpp"
#include "net/deadline_service.hpp"
#include "net/handler_memory.hpp"
#include "net/outbound_queue.hpp"
#include "net/proxy_context.hpp"
#include "net/transport.hpp"
#include "session/client_session.hpp"
#include "support/block_recycler.hpp"
#include "support/rare_string.hpp"

namespace proxy {

class reloadable_tls_context;

// What the connections of one worker share; it all outlives them.
struct connection_environment {
  const connection_settings& settings;
  metrics& counters;
  auth_client& auth;
  const reloadable_tls_context* upstream_tls = nullptr;  // null: plain TCP to the broker
  connection_registry* registry = nullptr;              // the worker's live connections
  // Several brokers: which to dial (shared by all workers); null: the one broker of settings.upstream.
  upstream_pool* upstream_nodes = nullptr;
  acl_pool* acls = nullptr;                             // the worker's shared ACLs (null: each session its own)
  support::block_recycler* connection_blocks = nullptr;  // the worker's recycled connection memory (null: the heap)
};

// Its deadlines wait in the worker's deadline_service (private deadline_entry).
class client_connection : public std::enable_shared_from_this<client_connection>, private deadline_entry {
 public:
  enum class lifecycle : std::uint8_t { handshaking, running, closing, closed };
  // The connection's deadlines: the session's four kinds, then its own.
  enum class deadline : std::size_t {
    handshake, session_expiry, revalidate, upstream_ping,  // = timer_kind
    keep_alive,           // 1.5 x the client's keep-alive without a packet [MQTT-3.1.2-24]
    transport_handshake,  // PROXY header + TLS / WebSocket handshake
    upstream_dial,        // resolve + connect + TLS to the broker
    connack_hold,         // a CONNACK held for the auth answer goes out by then (hold_connack_for_answer)
    flush,                // closing: peers that do not take our bytes
    linger,               // closed: peers that never close their side
  };
  static constexpr std::size_t deadline_count = 10;
  // Room for one parked socket wait's operation per side, built inside the
  // connection: 104 B with Boost 1.81 and GCC 12 on a tcp_socket (152 B on
  // asio's tcp::socket, whose any_io_executor the operation copies).
  // tests/unit/connection_memory_test.cpp checks it fits and that 8 B less
  // would not (public for that test).
  static constexpr std::size_t parked_wait_size = 104;

  client_connection(std::unique_ptr<transport> client, const listener_settings& listener,
                    const connection_environment& environment);
  ~client_connection();
  void start() { begin(false); }
  // The same, with the peer's address as accept() gave it (no getpeername()).
  // `no_delay_inherited`: the listening socket had TCP_NODELAY, which Linux
  // copies to the sockets it accepts (no setsockopt per connection).
  void start(const boost::asio::ip::tcp::endpoint& remote, bool no_delay_inherited = false);

  // An event from the API server's stream (revocation, ACL change, resync).
  void on_auth_event(const auth_event& event);
  // The proxy is shutting down: the session says goodbye (5.0: DISCONNECT
  // 0x8B) and, unless `fire_will`, ends the broker side without a will.
  void shut_down(bool fire_will);
  // The drain deadline passed: close at once, unflushed, and log the line.
  void cut(const std::string& reason);

  // For the operator (admin/operator_api.hpp): what GET /v1/connections
  // lists, and POST /v1/connections/kick. On the connection's thread only.
  connection_snapshot snapshot() const;
  const std::string& user() const { return session_.user(); }  // empty until authenticated
  std::uint64_t id() const { return membership_.id(); }          // 0 until started
  void kick();

  lifecycle state() const { return state_; }
  std::size_t queued_to_client() const { return to_client_.bytes_queued(); }
  std::size_t queued_to_upstream() const { return to_upstream_.bytes_queued(); }
  bool client_paused() const { return client_paused_; }

 private:
  enum class side { client, upstream };
  enum class link : std::uint8_t { none, dialing, open };  // the broker connection

  // Counts the connection in connections_open from start() until it is
  // closed or destroyed, whichever comes first: a coroutine that dies by an
  // exception cannot leave the gauge (which gates admission) too high.
  class open_gauge {
   public:
    void acquire(metrics& counters) {
      counters_ = &counters;
      counters.connections_open++;
    }
    void release() {
      if (counters_) std::exchange(counters_, nullptr)->connections_open--;
    }
    ~open_gauge() { release(); }

   private:
    metrics* counters_ = nullptr;
  };

  using self_ptr = std::shared_ptr<client_connection>;
  using time_point = std::chrono::steady_clock::time_point;

  void enter(lifecycle next);
  void spawn(boost::asio::awaitable<void> task);
  // What a connection's task threw: logged, and the connection cut (not the
  // listener whose accept loop, or the worker whose io.run(), called it).
  static void report_internal_error(const std::weak_ptr<client_connection>& weak, std::exception_ptr error);
  // The plain-TCP paths run inline what a spawned coroutine used to run
  // (start, the parked and draining waits, the answer's dial): with the same
  // guard as spawn()'s completion handler.
  template <class Step>
  void guarded(Step&& step) noexcept {
    try {
      step();
    } catch (...) {
      report_internal_error(weak_from_this(), std::current_exception());
    }
  }

  // connection_handshake.cpp
  boost::asio::awaitable<bool> read_proxy_header();
  boost::asio::awaitable<bool> client_handshake();

  // connection_relay.cpp
  boost::asio::awaitable<void> read_client(self_ptr self);
  boost::asio::awaitable<void> read_upstream(self_ptr self);
  boost::asio::awaitable<bool> relay_from_client();
  boost::asio::awaitable<bool> relay_from_upstream();
  void process_client_frames();
  void process_client_frames_batched();
  bool process_upstream_frames();
  bool process_upstream_frames_batched();
  struct received {
    boost::system::error_code error;
    std::span<const std::uint8_t> bytes;  // just read, valid until the framer's next prepare()
    bool drained = false;  // a read without waiting found nothing (EAGAIN): the socket was empty
  };
  boost::asio::awaitable<received> read_into(transport& stream, mqtt::framer& framer, side from);
  boost::asio::awaitable<std::size_t> readable(transport& stream, mqtt::framer& framer);
  std::optional<received> try_read(transport& stream, mqtt::framer& framer, side from);
  boost::asio::awaitable<void> wait_for_room(side from);
  bool over_high_water() const;
  bool deliveries_over_high_water() const;
  bool queues_full(side from) const;
  std::size_t client_queue_limit() const;
  boost::asio::awaitable<void> discard_until_eof(transport& stream);  // TLS, WebSocket
  void discard(side from);  // the same on plain TCP, without a coroutine
  struct discard_wait;
  // An idle reader parks: its coroutine ends and a bare socket wait (a few
  // dozen bytes) stands in for the chain of coroutine frames (~2.4 KiB per
  // side, profiled), which is most of what an idle connection cost.
  bool park(side from, bool drained = false);
  void unpark(side from);
  bool relay_woken(side from);  // a woken reader's common case, without its coroutine
  boost::asio::awaitable<void> resume_client(self_ptr self);
  // A side's socket wait (parked_wait, discard_wait): its handler keeps the
  // connection alive and builds its operation in park_memory_ (net/handler_memory.hpp).
  struct side_wait;
  struct parked_wait;
  using park_memory = handler_memory<parked_wait_size>;
  boost::asio::awaitable<void> discard_until_eof(tcp_socket& socket);
  void enqueue(side to, std::span<const std::uint8_t> data);
  void enqueue(side to, mqtt::bytes&& data);
  void start_writer(side to);
  bool write_through(side to);
  void flush_writes();
  void hold_connack_for_answer(client_session::state before_read);
  void release_client_writes();
  boost::asio::awaitable<void> write(self_ptr self, side to);

  // connection_upstream.cpp
  void begin(bool no_delay_inherited);
  void start_upstream(mqtt::bytes connect_packet);
  boost::asio::awaitable<void> connect_upstream(self_ptr self, mqtt::bytes connect_packet, bool connecting);
  bool upstream_dialled(const std::string& failure);
  void upstream_connected();
  std::optional<boost::system::error_code> send_while_connecting();
  void quick_ack_if_resumed(const mqtt::frame& broker_connack);
  boost::asio::awaitable<std::string> dial_upstream(bool connecting = false);  // empty: connected
  void upstream_dial_expired();

  // connection_failover.cpp: dial_upstream() on each planned node in turn.
  // With several nodes, `connect_packet` is sent by it: a node counts as up
  // only once it answers (greet_node); the answer is left in upstream_framer_.
  boost::asio::awaitable<std::string> dial_with_failover(const mqtt::bytes* connect_packet);  // empty: connected
  boost::asio::awaitable<void> leave_node_without_will();
  boost::asio::awaitable<void> drain_left_node();
  boost::asio::awaitable<std::string> greet_node(const mqtt::bytes& connect_packet,
                                                 std::chrono::steady_clock::time_point answer_by);

  // connection_closing.cpp
  void begin_close(std::string reason);
  void on_closing();
  void on_closed();
  void close_sockets();
  void finish_if_flushed();
  boost::asio::awaitable<void> end_stream(self_ptr self, transport& stream);
  void log_closed();
  void note_to_upstream(std::uint8_t first_byte);
  bool ends_upstream_itself() const;
  void reset_on_close_after_broker_left();

  // client_connection.cpp
  void apply(session_actions actions, const mqtt::frame* client_frame = nullptr,
             const mqtt::frame* upstream_frame = nullptr);
  void validate(std::string token);
  void on_answer(const auth_result& result);
  void count_handshake_failure();
  outbound_queue& queue_of(side s) { return s == side::client ? to_client_ : to_upstream_; }
  const connection_settings& settings() const { return environment_.settings; }
  void wake_readers();
  // The single deadline timer: one deadline per kind, the timer armed for the earliest.
  void arm(deadline kind, time_point at);
  void arm_after(deadline kind, std::chrono::milliseconds after) { arm(kind, std::chrono::steady_clock::now() + after); }
  void disarm(deadline kind) { arm(kind, time_point::max()); }
  void disarm_all();
  void rearm_timer();
  void on_timer_fired();
  void on_deadline() override;  // the worker's deadline_service: the earliest of deadlines_ is due
  void fire(deadline kind);
  void keep_alive_check();

  std::unique_ptr<transport> client_;
  std::unique_ptr<transport> upstream_;  // created when the session asks for the broker
  // The worker's io_context: 8 B where an any_io_executor takes 56.
  boost::asio::io_context::executor_type executor_;
  const listener_settings& listener_;
  // The worker's settings, auth client, broker TLS context and nodes, through
  // one reference (8 B) instead of one each. What the destructor uses is
  // kept apart (the metrics here, the registry in membership_): the worker's
  // io_context, whose destruction may destroy the last connections, outlives
  // the environment (main's worker, the tests' harnesses).
  const connection_environment& environment_;
  metrics& metrics_;
  client_session session_;
  mqtt::framer client_framer_;
  mqtt::framer upstream_framer_;
  outbound_queue to_client_;
  std::size_t peak_queued_ = 0;  // the most either queue held: a large one is trimmed back at the end
  outbound_queue to_upstream_;

  lifecycle state_ = lifecycle::handshaking;
  link upstream_link_ = link::none;
  bool client_paused_ = false;   // reading from the client waits for queue room
  std::array<bool, 2> parked_{};  // by side: the reader waits in a bare socket wait
  std::array<bool, 2> woken_{};   // by side: that wait completed, read without waiting again
  // Relay (connection_relay.cpp): a read's frames queue their writes, sent
  // together once the read's frames are done; per side, the size of the next
  // read without waiting.
  bool batching_writes_ = false;
  std::array<std::uint32_t, 2> read_chunk_{};
  bool first_byte_seen_ = false;
  bool client_established_ = false;  // PROXY header and TLS / WebSocket handshake done
  // Flags in one byte: each bool beside them would cost a byte of the
  // connection, and the next pointer eight (issue 14).
  bool forced_ : 1 = false;       // the flush deadline passed: cut, do not be polite
  bool client_left_ : 1 = false;  // the client sent DISCONNECT: its socket closes without waiting for its FIN
  bool client_unpolled_ : 1 = false;  // begin()'s first read: no epoll_wait since accept registered the socket
  bool dial_local_error_ : 1 = false;  // the last dial failed here (no descriptor), not at the broker
  bool disconnect_to_upstream_ : 1 = false;  // the last packet queued to the broker was a DISCONNECT
  // The proxy's CONNACK waits in the queue for the auth answer (hold_connack_for_answer).
  bool client_writes_held_ : 1 = false;
  // The broker socket connected at once (plain TCP) and the event loop has
  // not run since it was registered: its first wait need not re-arm epoll
  // (relay_from_upstream).
  bool upstream_never_polled_ : 1 = false;
  // greet_node waits for a node's answer to the CONNECT: its deadline cancels
  // the wait instead of closing, so the node can still be sent a DISCONNECT.
  bool greeting_node_ : 1 = false;
  rare_string handshake_failure_;  // set by the transport handshake deadline
  rare_string dial_failure_;       // set by the upstream dial deadline
  const upstream_settings* dial_target_ = nullptr;  // the node dial_upstream() dials

  auth_client::pending_call pending_validation_;
  // While a read's frames are processed: where validate() leaves an answer
  // the auth client had at once, applied once the frames are done
  // (process_client_frames). Null otherwise: the answer is waited for.
  std::optional<auth_result>* answer_at_hand_ = nullptr;
  // Only while a host name is resolved (a literal address needs none): 80 B
  // per connection otherwise (issue 14).
  std::unique_ptr<boost::asio::ip::tcp::resolver> resolver_;
  std::string remote_address_;
  rare_string close_reason_;

  std::array<time_point, deadline_count> deadlines_;
  // The worker's one timer, scheduled for the earliest of deadlines_ (this
  // connection is its entry): no steady_timer and no pending wait per connection.
  deadline_service& worker_deadlines_;
  std::array<park_memory, 2> park_memory_;  // by side: the parked wait's operation
  // Cancelled to wake readers waiting for queue room; made by the first such
  // wait (back-pressure is rare: 120 B per connection otherwise).
  std::unique_ptr<boost::asio::steady_timer> room_;
  time_point last_client_packet_;

  // For the operator's listing (connection_operator.cpp).
  std::chrono::system_clock::time_point since_ = std::chrono::system_clock::now();
  std::uint64_t bytes_from_client_ = 0;  // read from the client's transport (MQTT bytes)
  std::uint64_t bytes_to_client_ = 0;    // written to it
  void log_acl_report(const action::acl_report& report) const;

  open_gauge gauge_;
  connection_registry::membership membership_;
};

const char* to_string(client_connection::lifecycle state);

}  // namespace proxy
