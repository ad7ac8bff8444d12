// A blocking MQTT client made of a TCP socket and our codec: it sends exactly
// the packets a test builds and hands back exactly what the peer sent.
#pragma once

#include <sys/socket.h>
#include <sys/time.h>

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>

#include <boost/asio.hpp>

#include "mqtt/codec.hpp"
#include "mqtt/framer.hpp"

namespace test {

class raw_client {
 public:
  raw_client(unsigned short port, mqtt::protocol_version version)
      : io_(std::make_unique<boost::asio::io_context>()), socket_(*io_), version_(version) {
    socket_.connect({boost::asio::ip::make_address("127.0.0.1"), port});
    socket_.set_option(boost::asio::ip::tcp::no_delay(true));
  }

  void send(const mqtt::packet& p) { send_bytes(*mqtt::encode(p, version_)); }
  void send_bytes(const mqtt::bytes& data) { boost::asio::write(socket_, boost::asio::buffer(data)); }

  // The next packet, or nothing when the timeout passes or the peer closes.
  std::optional<mqtt::packet> receive(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto next = framer_.next();
      if (!next) throw std::runtime_error("framing error: " + next.error().message());
      if (*next) {
        auto decoded = mqtt::decode((*next)->first_byte, (*next)->body, version_);
        if (!decoded) throw std::runtime_error("peer sent a packet we reject: " + decoded.error().message());
        return *decoded;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || closed_) return std::nullopt;
      set_receive_timeout(left);
      auto space = framer_.prepare(4096);
      const ssize_t n = ::recv(socket_.native_handle(), space.data(), space.size(), 0);
      if (n == 0) closed_ = true;
      if (n > 0) framer_.commit(static_cast<std::size_t>(n));
    }
  }

  template <class T>
  T expect(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto p = receive(timeout);
    if (!p) throw std::runtime_error("expected a packet, got nothing");
    if (!std::holds_alternative<T>(*p))
      throw std::runtime_error("expected another packet type, got " + std::string(mqtt::to_string(mqtt::type_of(*p))));
    return std::get<T>(*p);
  }

  // True when the peer closes the connection within the timeout.
  bool closed_by_peer(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      try {
        if (!receive(std::chrono::milliseconds(100)) && closed_) return true;
      } catch (const std::exception&) {
        return closed_;
      }
    }
    return closed_;
  }

  // Drops the TCP connection without DISCONNECT, as a crashing client would.
  void abort_connection() {
    socket_.set_option(boost::asio::socket_base::linger(true, 0));
    socket_.close();
  }

 private:
  void set_receive_timeout(std::chrono::milliseconds timeout) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    if (tv.tv_sec == 0 && tv.tv_usec == 0) tv.tv_usec = 1000;
    ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  std::unique_ptr<boost::asio::io_context> io_;  // owned apart so the client can move
  boost::asio::ip::tcp::socket socket_;
  mqtt::protocol_version version_;
  mqtt::framer framer_{1 << 20};
  bool closed_ = false;
};

}  // namespace test
