// test-broker: a small, single-threaded MQTT 3.1.1 and 5.0 broker on Asio
// that reuses the proxy's codec and topic logic. It serves the tests and the
// quick start; production uses Mosquitto or RabbitMQ.
//
// The broker owns the sessions, the retained messages and the routing; a
// client_link (one per TCP connection) owns its socket and write queue and
// attaches to a session. Everything runs on one io_context, so nothing locks.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio.hpp>

#include "mqtt/codec.hpp"

namespace broker {

namespace asio = boost::asio;
using asio::ip::tcp;

struct broker_options {
  std::chrono::seconds sys_interval{10};
  std::optional<std::string> username;  // when set, CONNECT must carry these credentials
  std::optional<std::string> password;
  std::size_t max_queued_messages = 1000;      // per offline or slow session (QoS 1/2)
  std::size_t max_inflight = 100;              // per session, toward the client
  std::size_t max_write_queue_bytes = 1 << 20; // QoS 0 beyond this is dropped and counted
  std::size_t max_packet_size = 1 << 20;
};

// An application message as it travels through the broker.
struct message {
  std::string topic;
  std::string payload;
  mqtt::qos qos = mqtt::qos::at_most_once;
  bool retain = false;
  mqtt::properties props;  // 5.0 message properties, passed on unchanged
  std::string origin;      // publishing client id, for no-local
};

// A message on its way to one session, at the QoS that session gets.
struct delivery {
  message msg;
  mqtt::qos qos;
  bool retain;
  std::vector<std::uint32_t> subscription_ids;
};

struct outgoing {
  delivery d;
  bool released = false;  // PUBREC received, waiting for PUBCOMP
};

struct subscription {
  mqtt::subscribe_options options;
  std::optional<std::uint32_t> id;  // 5.0 subscription identifier
};

class client_link;

struct session {
  std::string client_id;
  mqtt::protocol_version version = mqtt::protocol_version::v3_1_1;
  std::map<std::string, subscription> subscriptions;  // by filter as sent ($share/... included)
  std::map<std::uint16_t, outgoing> inflight;
  std::deque<delivery> queued;
  std::set<std::uint16_t> inbound_qos2;  // PUBREC sent, PUBREL awaited
  std::uint16_t next_packet_id = 1;
  std::uint32_t expiry_seconds = 0;      // 0: ends with the connection; UINT32_MAX: never
  std::uint32_t receive_maximum = 65535;
  std::weak_ptr<client_link> link;
  std::optional<mqtt::will_message> will;
  std::unique_ptr<asio::steady_timer> will_timer;
  std::unique_ptr<asio::steady_timer> expiry_timer;
  std::uint64_t dropped = 0;
};

struct broker_stats {
  std::uint64_t messages_received = 0;
  std::uint64_t messages_sent = 0;
  std::uint64_t messages_dropped = 0;
  std::uint64_t connections_total = 0;
};

class broker {
 public:
  broker(asio::io_context& io, broker_options options);
  void listen(const tcp::endpoint& endpoint);
  tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
  const broker_options& options() const { return options_; }
  broker_stats& stats() { return stats_; }

  // For client_link.
  struct attach_result {
    session* s = nullptr;
    bool session_present = false;
    mqtt::reason_code refusal = mqtt::reason_code::success;
    std::string assigned_id;
  };
  attach_result attach(const std::shared_ptr<client_link>& link, const mqtt::connect& c);
  void detach(session& s, bool publish_will);
  void route(message m);
  // Stores a subscription; true when it replaced one with the same filter.
  bool add_subscription(session& s, const mqtt::subscription& sub, std::optional<std::uint32_t> id);
  // Retained messages for a new subscription, as its retain handling asks.
  void send_retained(session& s, const mqtt::subscription& sub, std::optional<std::uint32_t> id, bool existed);
  bool unsubscribe(session& s, const std::string& filter);
  void pump(session& s);  // send what the inflight window allows
  void acknowledge(session& s, std::uint16_t packet_id);  // PUBACK or PUBCOMP
  void set_session_expiry(session& s, std::uint32_t seconds) { s.expiry_seconds = seconds; }

 private:
  asio::awaitable<void> accept_loop();
  asio::awaitable<void> sys_loop();
  void deliver(session& s, delivery d);
  void route_shared(const message& m);
  void publish_will(session& s);
  void end_session(const std::string& client_id);
  void publish_sys(const std::string& topic, const std::string& value);
  std::uint16_t allocate_packet_id(session& s);

  asio::io_context& io_;
  broker_options options_;
  tcp::acceptor acceptor_;
  std::unordered_map<std::string, std::unique_ptr<session>> sessions_;
  std::map<std::string, message> retained_;
  std::map<std::string, std::size_t> share_cursor_;  // round robin per "$share/group/filter"
  broker_stats stats_;
  std::uint64_t assigned_ids_ = 0;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace broker
