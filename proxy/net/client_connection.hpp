// The one owner of a client connection: both transports (client and broker),
// the session state machine, the timers and a write queue per direction. Coroutines on one
// io_context (one per core) carry out what the session asks; nothing else
// touches the connection, so it needs no locks.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <array>
#include <memory>

#include "auth/auth_client.hpp"
#include "mqtt/framer.hpp"
#include "net/proxy_context.hpp"
#include "net/transport.hpp"
#include "session/client_session.hpp"

namespace proxy {

class reloadable_tls_context;

// What the connections of one worker share; it all outlives them.
struct connection_environment {
  const connection_settings& settings;
  metrics& counters;
  auth_client& auth;
  const reloadable_tls_context* upstream_tls = nullptr;  // null: plain TCP to the broker
};

class client_connection : public std::enable_shared_from_this<client_connection> {
 public:
  client_connection(std::unique_ptr<transport> client, const listener_settings& listener,
                    const connection_environment& environment);
  ~client_connection();
  void start();

 private:
  // A write queue with one writer coroutine; bytes queued are counted for back-pressure.
  struct outbound {
    std::deque<mqtt::bytes> queue;
    std::size_t queued_bytes = 0;
    bool writing = false;
  };

  enum class side { client, upstream };

  // Coroutines that are spawned take `self`: their frame keeps the connection alive.
  using self_ptr = std::shared_ptr<client_connection>;
  boost::asio::awaitable<void> read_client(self_ptr self);
  boost::asio::awaitable<void> read_upstream();
  boost::asio::awaitable<bool> relay_from_client();  // false when the stream failed
  // Both false when the connection must end.
  boost::asio::awaitable<bool> read_proxy_header();
  boost::asio::awaitable<bool> client_handshake(self_ptr self);
  boost::asio::awaitable<handshake_result> handshake_within(self_ptr self, transport& stream,
                                                            std::chrono::milliseconds limit);
  void arm_handshake_deadline();
  boost::asio::awaitable<bool> closed_before_first_byte(boost::asio::ip::tcp::socket& socket);
  void process_client_frames();
  boost::asio::awaitable<bool> relay_from_upstream();
  boost::asio::awaitable<void> discard_until_eof(transport& stream);
  boost::asio::awaitable<void> discard_until_eof(boost::asio::ip::tcp::socket& socket);
  boost::asio::awaitable<std::size_t> readable(transport& stream, mqtt::framer& framer);
  struct received {
    boost::system::error_code error;
    std::span<const std::uint8_t> bytes;  // just read, valid until the framer's next prepare()
  };
  boost::asio::awaitable<received> read_into(transport& stream, mqtt::framer& framer, const outbound& other_side);
  boost::asio::awaitable<void> write(self_ptr self, side to);
  boost::asio::awaitable<void> shut_down(self_ptr self, transport& stream);
  boost::asio::awaitable<void> connect_upstream(self_ptr self, mqtt::bytes connect_packet);
  boost::asio::awaitable<bool> open_upstream(self_ptr self);  // false: reported to the session
  boost::asio::awaitable<void> watch_handshake(self_ptr self);
  boost::asio::awaitable<void> watch_keep_alive(self_ptr self);
  boost::asio::awaitable<void> watch_session_expiry(self_ptr self);
  boost::asio::awaitable<void> wait_for_room(const outbound& out);

  void apply(client_session::actions actions, const mqtt::frame* client_frame = nullptr,
             const mqtt::frame* upstream_frame = nullptr);
  void enqueue(side to, mqtt::bytes data);
  outbound& queue_of(side s) { return s == side::client ? to_client_ : to_upstream_; }
  void validate(const std::string& token);
  void begin_close(const std::string& reason);
  void finish_if_drained();
  void release_if_done();
  void close_sockets();
  void notify();
  void count_handshake_failure();
  void cancel_timers();

  std::unique_ptr<transport> client_;
  std::unique_ptr<transport> upstream_;  // created when the session asks for the broker
  boost::asio::any_io_executor executor_;
  const listener_settings& listener_;
  const connection_settings& settings_;
  metrics& metrics_;
  auth_client& auth_;
  const reloadable_tls_context* upstream_tls_;
  client_session session_;
  mqtt::framer client_framer_;
  mqtt::framer upstream_framer_;
  outbound to_client_;
  outbound to_upstream_;
  bool upstream_connected_ = false;
  bool upstream_requested_ = false;
  bool keep_alive_started_ = false;
  bool first_byte_seen_ = false;
  bool client_established_ = false;  // PROXY header and TLS / WebSocket handshake done: close gracefully
  bool handshake_timed_out_ = false;
  bool closing_ = false;
  bool drain_expired_ = false;    // a peer did not take our bytes in time
  bool closed_ = false;           // everything flushed, FIN sent
  bool client_reading_ = false;   // a reader coroutine still owns the socket's read side
  bool upstream_reading_ = false;
  auth_client::pending_call pending_validation_;
  std::string remote_address_;
  std::string close_reason_;
  boost::asio::steady_timer handshake_timer_;
  boost::asio::steady_timer handshake_deadline_;  // PROXY header + TLS / WebSocket handshake
  boost::asio::steady_timer keep_alive_timer_;
  boost::asio::steady_timer session_timer_;
  bool session_timer_started_ = false;
  boost::asio::steady_timer drain_timer_;
  boost::asio::steady_timer wakeup_;  // cancelled to wake coroutines waiting for queue room
  // session (issue 11/12): revalidate and upstream_ping deadlines, one timer each, made on first use.
  void arm_session_timer(timer_kind kind, std::chrono::milliseconds after);
  std::array<std::unique_ptr<boost::asio::steady_timer>, 2> session_kind_timers_;
  std::chrono::steady_clock::time_point last_client_packet_;
};

}  // namespace proxy
