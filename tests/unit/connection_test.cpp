// The connection owner itself, over real loopback sockets with tcp_transport
// (the "fake" transport: no Mosquitto, no HTTP). The test plays the client
// and the broker on raw sockets; a fake auth_client answers on the io_context.
#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <sstream>

#include "mqtt/codec.hpp"
#include "net/client_connection.hpp"
#include "net/connection_registry.hpp"
#include "net/log_field.hpp"

using namespace proxy;
namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

class fake_auth final : public auth_client {
 public:
  explicit fake_auth(asio::io_context& io) : io_(io) {}
  pending_call validate(std::string, const std::string&, completion done) override {
    auto call = std::make_shared<int>(0);
    asio::post(io_, [weak = std::weak_ptr<int>(call), done, answer = answer] {
      if (weak.lock()) done(answer);
    });
    calls++;
    return call;
  }
  // With `at_once`, every answer is had at once (as a cache's is): validate() is not called.
  std::optional<auth_result> answer_at_once(std::string_view) override {
    if (!at_once) return std::nullopt;
    at_once_calls++;
    return answer;
  }
  auth_result answer{auth_result::verdict::valid, "alice", "7", acl{{"private/alice/#"}, {"private/alice/#"}},
                     std::chrono::seconds(3600), false, {}};
  int calls = 0;
  bool at_once = false;
  int at_once_calls = 0;

 private:
  asio::io_context& io_;
};

// Captures the log lines of one test.
struct captured_log {
  std::ostringstream text;
  std::shared_ptr<spdlog::logger> previous = spdlog::default_logger();
  captured_log() {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_st>(text);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
  }
  ~captured_log() { spdlog::set_default_logger(previous); }
  std::string str() const { return text.str(); }
};

mqtt::bytes wire_of(const mqtt::packet& p, mqtt::protocol_version v = mqtt::protocol_version::v3_1_1) {
  auto wire = mqtt::encode(p, v);
  REQUIRE(wire.has_value());
  return *wire;
}

mqtt::bytes connect_packet(std::string client_id, mqtt::protocol_version v = mqtt::protocol_version::v3_1_1) {
  mqtt::connect c;
  c.version = v;
  c.client_id = std::move(client_id);
  return wire_of(c, v);
}

mqtt::bytes auth_publish(mqtt::protocol_version v = mqtt::protocol_version::v3_1_1) {
  mqtt::publish p;
  p.topic = "service/auth/alice-token";
  return wire_of(p, v);
}

struct harness {
  metrics own_counters;
  metrics& counters;
  connection_registry registry;  // before io: connections leave it as io is destroyed
  asio::io_context io;
  connection_settings settings;
  listener_settings listener;
  fake_auth auth{io};
  tcp::acceptor broker{io, {asio::ip::address_v4::loopback(), 0}};
  std::optional<connection_environment> environment;
  std::shared_ptr<client_connection> connection;

  harness() : harness(own_counters) {}
  explicit harness(metrics& m) : counters(m) {
    settings.upstream.host = "127.0.0.1";
    // Long enough that no test meets the auth deadline by accident, even
    // under a sanitizer; the tests about deadlines set their own.
    settings.connect_timeout = std::chrono::minutes(2);
    settings.session.auth_timeout = std::chrono::minutes(2);
    settings.upstream.port = std::to_string(broker.local_endpoint().port());
    settings.session.upstream_username = "proxy";
  }

  // The test's end of a new client connection; the proxy's end is running.
  tcp::socket connect_client(int receive_buffer = 0) {
    environment.emplace(connection_environment{settings, counters, auth, nullptr, &registry});
    tcp::acceptor acceptor(io, {asio::ip::address_v4::loopback(), 0});
    tcp::socket peer(io);
    if (receive_buffer) peer.open(tcp::v4()), peer.set_option(asio::socket_base::receive_buffer_size(receive_buffer));
    peer.connect(acceptor.local_endpoint());
    auto accepted = acceptor.accept(io);  // a tcp_socket, on the io_context executor as the listener's
    connection = std::make_shared<client_connection>(make_client_transport(std::move(accepted), listener, nullptr),
                                                     listener, *environment);
    connection->start();
    return peer;
  }

  template <class Predicate>
  bool run_until(Predicate done, std::chrono::milliseconds limit = 5000ms) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      io.run_for(5ms);
      io.restart();
      if (done()) return true;
    }
    return false;
  }
  // Runs the io_context for `span`, whatever happens meanwhile.
  void run_for(std::chrono::milliseconds span) {
    run_until([] { return false; }, span);
  }
  // Whether the connection starts closing within `limit` (a deadline fired, a peer left).
  bool closes_within(std::chrono::milliseconds limit) {
    return run_until([&] { return connection->state() >= client_connection::lifecycle::closing; }, limit);
  }

  // Reads one whole MQTT packet from a socket, running the io_context meanwhile.
  std::optional<mqtt::bytes> read_packet(tcp::socket& socket, mqtt::bytes& buffer) {
    socket.non_blocking(true);
    std::optional<mqtt::bytes> packet;
    run_until([&] {
      std::array<std::uint8_t, 4096> chunk;
      boost::system::error_code ec;
      const auto n = socket.read_some(asio::buffer(chunk), ec);
      if (!ec) buffer.insert(buffer.end(), chunk.begin(), chunk.begin() + static_cast<long>(n));
      mqtt::framer framer(1 << 20);
      auto space = framer.prepare(buffer.size());
      std::copy(buffer.begin(), buffer.end(), space.begin());
      framer.commit(buffer.size());
      auto next = framer.next();
      if (!next || !*next) return ec && ec != asio::error::would_block;
      packet = mqtt::bytes((*next)->bytes.begin(), (*next)->bytes.end());
      buffer.erase(buffer.begin(), buffer.begin() + static_cast<long>(packet->size()));
      return true;
    });
    return packet;
  }

  // Accepts the proxy's broker connection and answers its CONNECT.
  tcp::socket accept_upstream(mqtt::protocol_version v = mqtt::protocol_version::v3_1_1) {
    tcp::socket upstream(io);
    bool accepted = false;
    broker.async_accept(upstream, [&](boost::system::error_code ec) { accepted = !ec; });
    REQUIRE(run_until([&] { return accepted; }));
    mqtt::bytes buffer;
    auto connect = read_packet(upstream, buffer);
    REQUIRE(connect);
    CHECK((*connect)[0] == 0x10);
    asio::write(upstream, asio::buffer(wire_of(mqtt::connack{}, v)));
    return upstream;
  }

  // Reads until EOF (true) or an error other than would_block.
  bool ends(tcp::socket& socket) {
    socket.non_blocking(true);
    return run_until([&] {
      std::array<std::uint8_t, 4096> chunk;
      boost::system::error_code ec;
      socket.read_some(asio::buffer(chunk), ec);
      return ec == asio::error::eof || ec == asio::error::connection_reset;
    });
  }
};

}  // namespace

TEST_SUITE("client_connection") {
  TEST_CASE("a client that floods PINGREQs and never reads is paused, its queue bounded") {
    harness h;
    auto peer = h.connect_client(4096);
    asio::write(peer, asio::buffer(connect_packet("pinger")));
    peer.non_blocking(true);
    std::vector<std::uint8_t> flood;
    for (std::size_t i = 0; i < 32 * 1024; ++i) flood.insert(flood.end(), {0xC0, 0x00});
    std::size_t sent = 0;
    const bool paused = h.run_until(
        [&] {
          boost::system::error_code ec;
          sent += peer.write_some(asio::buffer(flood), ec);
          return h.connection->client_paused();
        },
        30s);  // a liveness bound: the Debug + ASan build of tests/run.sh needs ~7 s here
    CHECK(paused);
    CHECK(sent > 64 * 1024);
    // Unauthenticated: at most 64 KiB queued, plus what one read (64 KiB of PINGREQs) answers.
    CHECK(h.connection->queued_to_client() <= 64 * 1024 + 64 * 1024);
    CHECK(h.connection->state() == client_connection::lifecycle::running);
  }

  // A cached answer is applied after the read's last packet, where a posted
  // one came: the CONNACK still waits for the broker's, and a PUBLISH read
  // behind a re-authentication is judged by the ACL in force when it was read.
  TEST_CASE("an answer the auth client has at once applies after the read, as a posted answer did") {
    harness h;
    h.auth.at_once = true;
    h.settings.connack_hold = std::chrono::minutes(1);  // only the broker's CONNACK releases it
    auto peer = h.connect_client();
    auto hello = connect_packet("at-once");
    const auto auth = auth_publish();
    hello.insert(hello.end(), auth.begin(), auth.end());
    asio::write(peer, asio::buffer(hello));

    tcp::socket upstream(h.io);
    bool accepted = false;
    h.broker.async_accept(upstream, [&](boost::system::error_code ec) { accepted = !ec; });
    REQUIRE(h.run_until([&] { return accepted; }));
    mqtt::bytes from_proxy;
    const auto connect = h.read_packet(upstream, from_proxy);
    REQUIRE(connect);
    CHECK((*connect)[0] == 0x10);
    h.run_for(50ms);
    peer.non_blocking(true);
    std::array<std::uint8_t, 64> probe{};
    boost::system::error_code nothing_yet;
    peer.read_some(asio::buffer(probe), nothing_yet);
    CHECK(nothing_yet == asio::error::would_block);  // the CONNACK waits for the broker's
    asio::write(upstream, asio::buffer(wire_of(mqtt::connack{})));
    mqtt::bytes to_client;
    const auto connack = h.read_packet(peer, to_client);
    REQUIRE(connack);
    CHECK((*connack)[0] == 0x20);
    const auto answer = h.read_packet(peer, to_client);
    REQUIRE(answer);
    CHECK(((*answer)[0] & 0xF0) == 0x30);
    CHECK(h.auth.calls == 0);
    CHECK(h.auth.at_once_calls == 1);

    // Re-authentication narrowing the ACL, with a PUBLISH in the same read:
    // that PUBLISH was read under the old ACL and goes to the broker; the
    // next read's is refused under the new one, and the one after is allowed.
    h.auth.answer.permissions = acl{{"other/#"}, {"other/#"}};
    auto reauth = auth_publish();
    const auto old_acl = wire_of(mqtt::publish{"private/alice/read-before", "a", mqtt::qos::at_most_once, false, false, 0, {}});
    reauth.insert(reauth.end(), old_acl.begin(), old_acl.end());
    asio::write(peer, asio::buffer(reauth));
    const auto relayed = h.read_packet(upstream, from_proxy);
    REQUIRE(relayed);
    CHECK(std::get<mqtt::publish>(*mqtt::decode(*relayed, mqtt::protocol_version::v3_1_1)).topic ==
          "private/alice/read-before");
    const auto reanswer = h.read_packet(peer, to_client);
    REQUIRE(reanswer);
    CHECK(((*reanswer)[0] & 0xF0) == 0x30);
    CHECK(h.auth.at_once_calls == 2);
    asio::write(peer, asio::buffer(wire_of(mqtt::publish{"private/alice/read-after", "b", mqtt::qos::at_most_once, false, false, 0, {}})));
    asio::write(peer, asio::buffer(wire_of(mqtt::publish{"other/allowed", "c", mqtt::qos::at_most_once, false, false, 0, {}})));
    const auto next = h.read_packet(upstream, from_proxy);
    REQUIRE(next);
    CHECK(std::get<mqtt::publish>(*mqtt::decode(*next, mqtt::protocol_version::v3_1_1)).topic == "other/allowed");
    CHECK(h.auth.calls == 0);
  }

  TEST_CASE("a paused client that reads again gets every answer and is unpaused") {
    harness h;
    auto peer = h.connect_client(4096);
    asio::write(peer, asio::buffer(connect_packet("reader")));
    peer.non_blocking(true);
    std::vector<std::uint8_t> flood;
    for (std::size_t i = 0; i < 32 * 1024; ++i) flood.insert(flood.end(), {0xC0, 0x00});
    std::size_t sent = 0;  // PINGREQ bytes; the stream stays aligned whatever write_some takes
    auto send_more = [&](std::size_t limit) {
      boost::system::error_code ec;
      const std::size_t offset = sent % flood.size();
      const std::size_t n = std::min(flood.size() - offset, limit);
      sent += peer.write_some(asio::buffer(flood.data() + offset, n), ec);
    };
    REQUIRE(h.run_until([&] {
      send_more(flood.size());
      return h.connection->client_paused();
    }, 30s));
    std::size_t received = 0;
    CHECK(h.run_until(
        [&] {
          if (sent % 2) send_more(1);  // complete the last PINGREQ
          boost::system::error_code ec;
          std::array<std::uint8_t, 65536> chunk;
          received += peer.read_some(asio::buffer(chunk), ec);
          return sent % 2 == 0 && received == 4 + sent;  // CONNACK, then a 2-byte PINGRESP per PINGREQ
        },
        30s));
    CHECK(received == 4 + sent);
    CHECK_FALSE(h.connection->client_paused());
    CHECK(h.connection->queued_to_client() == 0);
  }

  TEST_CASE("closing ends both sides and logs the connection's line, escaped") {
    captured_log log;
    harness h;
    auto peer = h.connect_client();
    asio::write(peer, asio::buffer(connect_packet("evil\nclient id=x")));
    asio::write(peer, asio::buffer(auth_publish()));
    auto upstream = h.accept_upstream();
    mqtt::bytes buffer;
    auto connack = h.read_packet(peer, buffer);
    REQUIRE(connack);
    CHECK((*connack)[0] == 0x20);
    peer.shutdown(tcp::socket::shutdown_send);  // the client leaves without DISCONNECT
    CHECK(h.ends(upstream));                    // the broker sees FIN, no RST
    CHECK(h.ends(peer));
    CHECK(h.connection->state() == client_connection::lifecycle::closed);
    const auto text = log.str();
    CHECK(text.find("connection closed") != std::string::npos);
    CHECK(text.find("client_id=evil\\nclient\\x20id=x user=alice") != std::string::npos);
    CHECK(text.find("evil\nclient") == std::string::npos);
    CHECK(h.counters.connections_open == 0);
    // Closed, but its object (and so its sockets) still held: it counts
    // against the descriptors until it goes.
    CHECK(h.counters.connections_alive == 1);
    h.connection.reset();  // the last holders are handlers still queued in the io_context
    CHECK(h.run_until([&] { return h.counters.connections_alive == 0; }, 2000ms));
  }

  TEST_CASE("deadlines fire earliest first, from one timer") {
    // A PROXY-protocol client that sends nothing meets two deadlines; the
    // log says which ended it.
    const auto log_when_first_fires = [](std::chrono::milliseconds handshake, std::chrono::milliseconds connect) {
      captured_log log;
      harness h;
      h.listener.proxy_protocol = true;
      h.settings.handshake_timeout = handshake;
      h.settings.connect_timeout = connect;
      auto peer = h.connect_client();
      CHECK(h.closes_within(1000ms));
      return log.str();
    };
    SUBCASE("the transport handshake deadline before the connect timeout") {
      CHECK(log_when_first_fires(50ms, 2000ms).find("no PROXY protocol header within 50 ms") != std::string::npos);
    }
    SUBCASE("the connect timeout before the transport handshake deadline") {
      CHECK(log_when_first_fires(2000ms, 50ms).find("no CONNECT within the connect timeout") != std::string::npos);
    }
    SUBCASE("keep-alive: 1.5 times the client's, moved by every packet") {
      captured_log log;
      harness h;
      auto peer = h.connect_client();
      mqtt::connect c;
      c.client_id = "sleepy";
      c.keep_alive = 1;
      asio::write(peer, asio::buffer(wire_of(c)));
      const auto started = std::chrono::steady_clock::now();
      for (int i = 0; i < 4; ++i) {  // a PINGREQ every 0.5 s keeps it open for 2 s
        h.run_for(500ms);
        asio::write(peer, asio::buffer(wire_of(mqtt::pingreq{})));
      }
      CHECK(h.connection->state() == client_connection::lifecycle::running);
      CHECK(h.closes_within(3000ms));
      CHECK(std::chrono::steady_clock::now() - started >= 3000ms);  // 2 s of pings + 1.5 s
      CHECK(log.str().find("keep-alive expired") != std::string::npos);
    }
    SUBCASE("a deadline after a disarmed earliest one still fires (the early wake-up re-arms for it)") {
      captured_log log;
      harness h;
      h.settings.session.auth_timeout = 300ms;  // the handshake deadline: the earliest, disarmed once relaying
      auto peer = h.connect_client();
      mqtt::connect c;
      c.client_id = "relaying";
      c.keep_alive = 1;  // 1.5 s: after the disarmed deadline's wake-up
      asio::write(peer, asio::buffer(wire_of(c)));
      asio::write(peer, asio::buffer(auth_publish()));
      auto upstream = h.accept_upstream();
      mqtt::bytes buffer;
      auto connack = h.read_packet(peer, buffer);
      REQUIRE(connack);
      CHECK((*connack)[0] == 0x20);
      CHECK(h.connection->state() == client_connection::lifecycle::running);
      CHECK(h.closes_within(5000ms));
      CHECK(log.str().find("keep-alive expired") != std::string::npos);
    }
  }

  TEST_CASE("the open-connections gauge returns to 0, even when a connection is never closed") {
    metrics counters;
    {
      harness h(counters);
      auto peer = h.connect_client();
      auto second = h.connect_client();
      h.run_for(50ms);
      CHECK(counters.connections_open == 2);
      CHECK(counters.connections_alive == 2);
      peer.set_option(asio::socket_base::linger(true, 0));
      peer.close();  // reset by the peer: an error, not a goodbye
      CHECK(h.run_until([&] { return counters.connections_open == 1; }, 2000ms));
      h.connection.reset();
    }  // the io_context goes away with the second connection's coroutines parked in it
    CHECK(counters.connections_open == 0);
    CHECK(counters.connections_alive == 0);
  }

  TEST_CASE("shut_down: 5.0 DISCONNECT 0x8B to the client, a normal DISCONNECT to the broker") {
    harness h;
    auto peer = h.connect_client();
    asio::write(peer, asio::buffer(connect_packet("leaving", mqtt::protocol_version::v5)));
    asio::write(peer, asio::buffer(auth_publish(mqtt::protocol_version::v5)));
    auto upstream = h.accept_upstream(mqtt::protocol_version::v5);
    mqtt::bytes client_buffer, upstream_buffer;
    REQUIRE(h.read_packet(peer, client_buffer));  // CONNACK
    REQUIRE(h.read_packet(peer, client_buffer));  // the auth answer
    h.registry.for_each([](client_connection& c) { c.shut_down(false); });
    auto to_client = h.read_packet(peer, client_buffer);
    REQUIRE(to_client);
    CHECK((*to_client)[0] == 0xE0);
    CHECK((*to_client)[2] == 0x8B);
    auto to_broker = h.read_packet(upstream, upstream_buffer);
    REQUIRE(to_broker);
    CHECK((*to_broker)[0] == 0xE0);
    CHECK((to_broker->size() == 2 || (*to_broker)[2] == 0x00));  // normal disconnection: no will
    CHECK(h.ends(upstream));
    CHECK(h.ends(peer));
  }

  TEST_CASE("shut_down with wills firing: no DISCONNECT to the broker, only the end of the stream") {
    harness h;
    auto peer = h.connect_client();
    asio::write(peer, asio::buffer(connect_packet("crashing")));
    asio::write(peer, asio::buffer(auth_publish()));
    auto upstream = h.accept_upstream();
    mqtt::bytes client_buffer;
    REQUIRE(h.read_packet(peer, client_buffer));  // CONNACK
    h.connection->shut_down(true);
    upstream.non_blocking(true);
    mqtt::bytes received;
    bool ended = h.run_until([&] {
      std::array<std::uint8_t, 4096> chunk;
      boost::system::error_code ec;
      const auto n = upstream.read_some(asio::buffer(chunk), ec);
      received.insert(received.end(), chunk.begin(), chunk.begin() + static_cast<long>(n));
      return ec == asio::error::eof;
    });
    CHECK(ended);
    CHECK(std::find(received.begin(), received.end(), std::uint8_t{0xE0}) == received.end());
    CHECK(h.ends(peer));
  }

  TEST_CASE("registry: each connection gets an id as it joins, increasing along the list, never reused") {
    harness h;
    std::vector<tcp::socket> peers;
    for (int i = 0; i < 3; ++i) peers.push_back(h.connect_client());
    std::vector<std::uint64_t> ids;
    h.registry.for_each([&](client_connection& c) { ids.push_back(c.id()); });
    REQUIRE(ids.size() == 3);
    CHECK(ids[0] > 0);
    CHECK(std::is_sorted(ids.begin(), ids.end()));
    CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end());
    CHECK(h.connection->snapshot().id == ids.back());
    // One leaves, one joins: the newcomer's id is above every id given before.
    peers.front().close();
    CHECK(h.run_until([&] { return h.registry.size() == 2; }));
    peers.push_back(h.connect_client());
    CHECK(h.connection->id() > ids.back());
  }

  TEST_CASE("registry: for_each is safe when the callback closes connections") {
    captured_log log;
    harness h;
    std::vector<tcp::socket> peers;
    for (int i = 0; i < 5; ++i) peers.push_back(h.connect_client());
    h.connection.reset();
    h.run_for(20ms);
    CHECK(h.registry.size() == 5);
    int visited = 0;
    h.registry.for_each([&](client_connection& c) {
      ++visited;
      c.cut("drain deadline");
    });
    CHECK(visited == 5);
    for (auto& p : peers) CHECK(h.ends(p));
    CHECK(h.run_until([&] { return h.registry.size() == 0; }, 3000ms));
    CHECK(h.counters.connections_open == 0);
    std::size_t lines = 0;
    for (auto pos = log.str().find("reason=\"drain deadline\""); pos != std::string::npos;
         pos = log.str().find("reason=\"drain deadline\"", pos + 1))
      ++lines;
    CHECK(lines == 5);
  }
}

TEST_SUITE("log_field") {
  TEST_CASE("control characters, quotes, backslashes and (bare) spaces are escaped") {
    CHECK(log_field("plain-id_1") == "plain-id_1");
    CHECK(log_field("a\nb\rc\td") == "a\\nb\\rc\\td");
    CHECK(log_field("x user=admin") == "x\\x20user=admin");
    CHECK(log_field("x user", true) == "x user");
    CHECK(log_field("q\"b\\") == "q\\\"b\\\\");
    CHECK(log_field(std::string("\x01\x7f", 2)) == "\\x01\\x7f");
    CHECK(log_field("Zoë") == "Zoë");
  }
}
