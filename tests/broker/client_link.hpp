// One client's TCP connection to the broker: reads and decodes packets, keeps
// one write queue, and attaches to a session after CONNECT.
#pragma once

#include "broker.hpp"
#include "mqtt/framer.hpp"

namespace broker {

class client_link : public std::enable_shared_from_this<client_link> {
 public:
  client_link(tcp::socket socket, broker& owner);
  void start();

  void send(const mqtt::packet& p);
  void send_publish(const delivery& d, std::uint16_t packet_id, bool dup);
  // Another connection took over this client id [MQTT-3.1.4-2].
  void taken_over();
  mqtt::protocol_version version() const { return version_; }

 private:
  using self_ptr = std::shared_ptr<client_link>;
  asio::awaitable<void> read_loop(self_ptr self);
  asio::awaitable<void> write_loop(self_ptr self);
  asio::awaitable<void> keep_alive_loop(self_ptr self);

  void handle(const mqtt::packet& p);
  void on_connect(const mqtt::connect& c);
  void on_publish(const mqtt::publish& p);
  void on_subscribe(const mqtt::subscribe& s);
  void on_unsubscribe(const mqtt::unsubscribe& u);
  void on_disconnect(const mqtt::disconnect& d);
  void resend_inflight();
  // Ends the connection: flushes, then closes. The will goes out unless the
  // client said goodbye with DISCONNECT.
  void close(bool publish_will, std::optional<mqtt::reason_code> reason = std::nullopt);
  void wake() { wake_.cancel(); }

  tcp::socket socket_;
  broker& broker_;
  session* session_ = nullptr;
  mqtt::protocol_version version_ = mqtt::protocol_version::v3_1_1;
  bool connected_ = false;
  bool closing_ = false;
  mqtt::framer framer_;
  std::deque<mqtt::bytes> queue_;
  std::size_t queued_bytes_ = 0;
  asio::steady_timer wake_;
  asio::steady_timer keep_alive_;
  std::chrono::steady_clock::time_point last_packet_ = std::chrono::steady_clock::now();
  std::chrono::milliseconds keep_alive_limit_{0};
};

}  // namespace broker
