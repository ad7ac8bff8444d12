// Load for mqtt-proxy (not a test: bench/run.sh runs it and records the
// figures). Phase 1 opens N connections that each CONNECT and authenticate
// and then stay idle; phase 2 measures relay throughput of QoS 0 PUBLISHes
// from one client to another through the proxy and the broker.
//   proxy_bench PORT SESSION USER CONNECTIONS MESSAGES
#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>

#include <atomic>
#include <chrono>
#include <iostream>

#include "mqtt/codec.hpp"
#include "mqtt/framer.hpp"

namespace asio = boost::asio;
using asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

namespace {

struct mqtt_link {
  tcp::socket socket;
  mqtt::framer framer{1 << 20};

  asio::awaitable<void> send(const mqtt::packet& p) {
    auto wire = *mqtt::encode(p, mqtt::protocol_version::v3_1_1);
    co_await asio::async_write(socket, asio::buffer(wire), asio::use_awaitable);
  }
  asio::awaitable<mqtt::packet> receive() {
    for (;;) {
      auto next = framer.next();
      if (!next) throw std::runtime_error(next.error().message());
      if (*next) {
        auto packet = *mqtt::decode((*next)->first_byte, (*next)->body, mqtt::protocol_version::v3_1_1);
        co_return packet;
      }
      auto space = framer.prepare(16 * 1024);
      const auto n = co_await socket.async_read_some(asio::buffer(space.data(), space.size()), asio::use_awaitable);
      framer.commit(n);
    }
  }
};

asio::awaitable<std::unique_ptr<mqtt_link>> authenticated(unsigned short port, std::string id, std::string session) {
  auto executor = co_await asio::this_coro::executor;
  auto link = std::make_unique<mqtt_link>(mqtt_link{tcp::socket(executor)});
  co_await link->socket.async_connect({asio::ip::make_address("127.0.0.1"), port}, asio::use_awaitable);
  link->socket.set_option(tcp::no_delay(true));
  mqtt::connect c;
  c.client_id = std::move(id);
  c.keep_alive = 0;
  co_await link->send(c);
  auto ack = co_await link->receive();
  if (!std::holds_alternative<mqtt::connack>(ack)) throw std::runtime_error("no CONNACK");
  mqtt::publish auth{"service/auth/" + session, "", mqtt::qos::at_most_once, false, false, 0, {}};
  co_await link->send(auth);
  auto answer = co_await link->receive();
  if (!std::holds_alternative<mqtt::publish>(answer) ||
      std::get<mqtt::publish>(answer).payload.find("\"ok\"") == std::string::npos)
    throw std::runtime_error("not authenticated");
  co_return link;
}

struct bench_state {
  unsigned short port;
  std::string session;
  std::string user;
  int connections;
  int messages;
  std::vector<std::unique_ptr<mqtt_link>> idle;
  int failures = 0;
  int running = 0;
  double throughput = 0;
};

asio::awaitable<void> open_one(bench_state& s, int i) {
  try {
    auto link = co_await authenticated(s.port, "idle-" + std::to_string(i), s.session);
    s.idle.push_back(std::move(link));
  } catch (const std::exception&) {
    s.failures++;
  }
  s.running--;
}

asio::awaitable<void> open_all(bench_state& s) {
  constexpr int in_flight = 200;  // handshakes at once, as a fleet reconnecting would
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer pause(executor);
  for (int next = 0; next < s.connections || s.running > 0;) {
    while (s.running < in_flight && next < s.connections) {
      s.running++;
      asio::co_spawn(executor, open_one(s, next++), asio::detached);
    }
    pause.expires_after(std::chrono::milliseconds(2));
    co_await pause.async_wait(asio::use_awaitable);
  }
}

asio::awaitable<void> publish_all(mqtt_link& pub, std::string topic, int messages) {
  const mqtt::publish message{topic, std::string(64, 'x'), mqtt::qos::at_most_once, false, false, 0, {}};
  for (int i = 0; i < messages; ++i) co_await pub.send(message);
}

asio::awaitable<void> relay_throughput(bench_state& s) {
  auto sub = co_await authenticated(s.port, "bench-sub", s.session);
  auto pub = co_await authenticated(s.port, "bench-pub", s.session);
  const std::string topic = "private/" + s.user + "/bench";
  // Built before the co_await: GCC 12 rejects initializer lists in a co_await expression.
  mqtt::subscribe request{1, {}, {{topic, {mqtt::qos::at_most_once}}}};
  co_await sub->send(request);
  co_await sub->receive();  // SUBACK
  const auto t0 = clock_type::now();
  auto executor = co_await asio::this_coro::executor;
  asio::co_spawn(executor, publish_all(*pub, topic, s.messages), asio::detached);
  for (int received = 0; received < s.messages;) {
    auto p = co_await sub->receive();
    if (std::holds_alternative<mqtt::publish>(p)) ++received;
  }
  s.throughput = s.messages / std::chrono::duration<double>(clock_type::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::cerr << "usage: proxy_bench PORT SESSION USER CONNECTIONS MESSAGES\n";
    return 2;
  }
  asio::io_context io;  // before the state: its sockets must go before the io_context does
  bench_state s{static_cast<unsigned short>(std::stoi(argv[1])), argv[2], argv[3], std::stoi(argv[4]),
                std::stoi(argv[5]), {}};
  const auto start = clock_type::now();
  asio::co_spawn(io, open_all(s), asio::detached);
  io.run();
  io.restart();
  const double setup = std::chrono::duration<double>(clock_type::now() - start).count();
  std::cout << "connections=" << s.idle.size() << " failed=" << s.failures << " setup_seconds=" << setup;
  asio::co_spawn(io, relay_throughput(s), asio::detached);
  io.run();
  std::cout << " messages=" << s.messages << " messages_per_second=" << static_cast<long>(s.throughput) << std::endl;
  return s.failures == 0 ? 0 : 1;
}
