// The relay's write path (net/outbound_queue.hpp, client_connection's
// write-through and per-read batching): bytes queued in pieces and written
// in part leave in order, and a relay whose peer takes its bytes slowly
// delivers every packet whole and in order, with its queue bounded. Real
// sockets on loopback; the broker and client ends are the test's.
#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <array>
#include <optional>

#include "auth/auth_result.hpp"
#include "mqtt/codec.hpp"
#include "net/client_connection.hpp"
#include "net/connection_registry.hpp"
#include "net/outbound_queue.hpp"

using namespace proxy;
namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

std::vector<std::uint8_t> sequence(std::size_t from, std::size_t count) {
  std::vector<std::uint8_t> out(count);
  for (std::size_t i = 0; i < count; ++i) out[i] = static_cast<std::uint8_t>((from + i) * 7 + 3);
  return out;
}

// Everything the queue would write, written `step` bytes at a time the way a
// non-blocking send takes part of what it is offered.
std::vector<std::uint8_t> drain_in_steps(outbound_queue& q, std::size_t step) {
  std::vector<std::uint8_t> out;
  while (!q.empty()) {
    const auto& buffers = q.begin_write();
    std::size_t taken = 0;
    for (const auto& b : buffers) {
      const auto* p = static_cast<const std::uint8_t*>(b.data());
      const std::size_t n = std::min(b.size(), step - taken);
      out.insert(out.end(), p, p + n);
      taken += n;
      if (taken == step) break;
    }
    CHECK(taken <= q.bytes_in_flight());
    q.commit_written(taken);
  }
  return out;
}

}  // namespace

TEST_SUITE("outbound_queue") {
  TEST_CASE("written in part, at every size: the rest leaves in order, counted") {
    for (std::size_t step : {1u, 3u, 255u, 256u, 1000u, 5000u, 70000u}) {
      outbound_queue q;
      std::vector<std::uint8_t> expected;
      std::size_t next = 0;
      // Small packets (coalesced into tails) and large ones (kept as they are).
      for (std::size_t size : {2u, 4u, 300u, 1024u, 1025u, 4000u, 2u, 17000u, 9u}) {
        auto packet = sequence(next, size);
        next += size;
        expected.insert(expected.end(), packet.begin(), packet.end());
        if (size % 2) q.push(std::move(packet));
        else q.push(std::span<const std::uint8_t>(packet));
      }
      CHECK(q.bytes_queued() == expected.size());
      CHECK(drain_in_steps(q, step) == expected);
      CHECK(q.bytes_queued() == 0);
      CHECK(q.buffer_count() == 0);
    }
  }

  TEST_CASE("a push after a partial write goes behind the unwritten rest") {
    outbound_queue q;
    const auto first = sequence(0, 600);
    q.push(std::span<const std::uint8_t>(first));
    q.begin_write();
    q.commit_written(250);  // the send took 250 bytes
    const auto second = sequence(600, 100);
    q.push(std::span<const std::uint8_t>(second));  // may append to the same tail again
    CHECK(q.bytes_queued() == 450);
    CHECK(drain_in_steps(q, 64) == sequence(250, 450));
  }

  TEST_CASE("a write that took nothing keeps everything, and the tail takes pushes again") {
    outbound_queue q;
    const auto first = sequence(0, 10);
    q.push(std::span<const std::uint8_t>(first));
    q.begin_write();
    q.commit_written(0);
    const auto second = sequence(10, 10);
    q.push(std::span<const std::uint8_t>(second));
    CHECK(q.buffer_count() == 1);  // coalesced: nothing was in flight
    CHECK(drain_in_steps(q, 1 << 20) == sequence(0, 20));
  }
}

namespace {

class valid_auth final : public auth_client {
 public:
  explicit valid_auth(asio::io_context& io) : io_(io) {}
  pending_call validate(std::string, const std::string&, completion done) override {
    auto call = std::make_shared<int>(0);
    asio::post(io_, [weak = std::weak_ptr<int>(call), done] {
      if (weak.lock())
        done(auth_result{auth_result::verdict::valid, "alice", "7", acl{{"private/alice/#"}, {"private/alice/#"}},
                         std::chrono::seconds(3600), false, {}});
    });
    return call;
  }

 private:
  asio::io_context& io_;
};

mqtt::bytes wire_of(const mqtt::packet& p) {
  auto wire = mqtt::encode(p, mqtt::protocol_version::v3_1_1);
  REQUIRE(wire.has_value());
  return *wire;
}

// QoS 0 PUBLISHes to `topic` numbered from 0, 100 to 300 bytes of payload.
mqtt::bytes numbered_publishes(const std::string& topic, std::uint32_t count) {
  mqtt::bytes out;
  for (std::uint32_t i = 0; i < count; ++i) {
    mqtt::publish p;
    p.topic = topic;
    p.payload.resize(100 + (i * 37) % 200, static_cast<char>(i & 0xff));
    for (int k = 0; k < 4; ++k) p.payload[k] = static_cast<char>((i >> (8 * k)) & 0xff);
    const auto wire = wire_of(p);
    out.insert(out.end(), wire.begin(), wire.end());
  }
  return out;
}

// Checks a stream of PUBLISHes to `topic` as numbered_publishes made them,
// fed in chunks of any size; other packets before them are skipped.
struct publish_checker {
  std::string topic;
  mqtt::framer framer{1 << 20};
  std::uint32_t next = 0;
  bool broken = false;
  void feed(std::span<const std::uint8_t> bytes) {
    framer.feed(bytes);
    for (;;) {
      auto f = framer.next();
      if (!f) {
        broken = true;
        return;
      }
      if (!*f) return;
      const auto decoded = mqtt::decode((*f)->first_byte, (*f)->body, mqtt::protocol_version::v3_1_1);
      const auto* p = decoded ? std::get_if<mqtt::publish>(&*decoded) : nullptr;
      if (!p || p->topic != topic) {
        // Nothing else is sent once the flood began, but a DISCONNECT at the end.
        if (next > 0 && (*f)->first_byte != 0xE0) broken = true;
        continue;
      }
      std::uint32_t number = 0;
      if (p->payload.size() < 4) {
        broken = true;
        continue;
      }
      for (int k = 0; k < 4; ++k) number |= static_cast<std::uint32_t>(static_cast<std::uint8_t>(p->payload[k])) << (8 * k);
      const bool whole = p->payload.size() == 100 + (number * 37) % 200 &&
                         std::all_of(p->payload.begin() + 4, p->payload.end(),
                                     [&](char b) { return b == static_cast<char>(number & 0xff); });
      if (number != next || !whole) broken = true;
      ++next;
    }
  }
};

struct relay_harness {
  metrics counters;
  connection_registry registry;
  asio::io_context io;
  connection_settings settings;
  listener_settings listener;
  valid_auth auth{io};
  tcp::acceptor broker{io};
  std::optional<connection_environment> environment;
  std::shared_ptr<client_connection> connection;
  tcp::socket client{io};
  tcp::socket upstream{io};

  // A relaying session; `small_buffers`: the client's and the broker's
  // receive buffers are small, so the proxy's sends fill them quickly.
  explicit relay_harness(bool small_buffers) {
    broker.open(tcp::v4());
    if (small_buffers) broker.set_option(asio::socket_base::receive_buffer_size(4096));
    broker.bind({asio::ip::address_v4::loopback(), 0});
    broker.listen();
    settings.upstream.host = "127.0.0.1";
    settings.upstream.port = std::to_string(broker.local_endpoint().port());
    settings.connect_timeout = std::chrono::minutes(2);
    settings.session.auth_timeout = std::chrono::minutes(2);
    settings.session.upstream_username = "proxy";
    settings.write_high_water = 64 * 1024;
    environment.emplace(connection_environment{settings, counters, auth, nullptr, &registry});
    tcp::acceptor acceptor(io, {asio::ip::address_v4::loopback(), 0});
    client.open(tcp::v4());
    if (small_buffers) client.set_option(asio::socket_base::receive_buffer_size(4096));
    client.connect(acceptor.local_endpoint());
    connection = std::make_shared<client_connection>(make_client_transport(acceptor.accept(io), listener, nullptr),
                                                     listener, *environment);
    connection->start();
    mqtt::connect c;
    c.client_id = "relay";
    asio::write(client, asio::buffer(wire_of(c)));
    mqtt::publish auth_publish;
    auth_publish.topic = "service/auth/alice-token";
    asio::write(client, asio::buffer(wire_of(auth_publish)));
    bool accepted = false;
    broker.async_accept(upstream, [&](boost::system::error_code ec) { accepted = !ec; });
    REQUIRE(run_until([&] { return accepted; }));
    // The broker's side: the CONNECT, then its CONNACK.
    mqtt::framer framer(1 << 20);
    upstream.non_blocking(true);
    REQUIRE(run_until([&] {
      std::array<std::uint8_t, 4096> chunk;
      boost::system::error_code ec;
      framer.feed(std::span<const std::uint8_t>(chunk.data(), upstream.read_some(asio::buffer(chunk), ec)));
      auto f = framer.next();
      return f && *f;
    }));
    asio::write(upstream, asio::buffer(wire_of(mqtt::connack{})));
    client.non_blocking(true);
  }

  template <class Predicate>
  bool run_until(Predicate done, std::chrono::milliseconds limit = 20000ms) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      io.run_for(1ms);
      io.restart();
      if (done()) return true;
    }
    return false;
  }
};

// Sends as much of `bytes` from `sent` on as the socket takes now.
void send_some(tcp::socket& socket, const mqtt::bytes& bytes, std::size_t& sent, std::size_t at_most) {
  if (sent == bytes.size()) return;
  boost::system::error_code ec;
  sent += socket.write_some(asio::buffer(bytes.data() + sent, std::min(at_most, bytes.size() - sent)), ec);
}

// Reads at most `at_most` bytes now into the checker.
void read_some(tcp::socket& socket, publish_checker& checker, std::size_t at_most) {
  std::array<std::uint8_t, 65536> chunk;
  boost::system::error_code ec;
  const auto n = socket.read_some(asio::buffer(chunk.data(), std::min(at_most, chunk.size())), ec);
  checker.feed(std::span<const std::uint8_t>(chunk.data(), ec ? 0 : n));
}

}  // namespace

TEST_SUITE("relay") {
  TEST_CASE("a client that reads slowly while the broker floods gets every PUBLISH, whole and in order") {
    relay_harness h(true);
    constexpr std::uint32_t count = 20000;
    const auto flood = numbered_publishes("private/alice/flood", count);
    publish_checker checker{"private/alice/flood"};
    std::size_t sent = 0, most_queued = 0, reads = 0;
    const bool done = h.run_until(
        [&] {
          send_some(h.upstream, flood, sent, 1 + (sent * 131) % 20000);  // odd sizes: packets cut anywhere
          most_queued = std::max(most_queued, h.connection->queued_to_client());
          if (++reads % 3 == 0) read_some(h.client, checker, 1 + reads % 1500);  // slowly, in small pieces
          return checker.next == count || checker.broken;
        },
        60s);
    CHECK(done);
    CHECK_FALSE(checker.broken);
    CHECK(checker.next == count);
    // Bounded: the high-water mark plus what one read of the broker brings.
    MESSAGE("most queued to the client: " << most_queued);
    CHECK(most_queued > h.settings.write_high_water / 2);  // the slow reader did hold the relay back
    CHECK(most_queued <= h.settings.write_high_water + 64 * 1024 + 300);
    CHECK(h.connection->state() == client_connection::lifecycle::running);
  }

  TEST_CASE("a client that floods PUBLISHes to a broker that reads slowly: every one arrives, whole and in order") {
    relay_harness h(true);
    constexpr std::uint32_t count = 20000;
    const auto flood = numbered_publishes("private/alice/up", count);
    publish_checker checker{"private/alice/up"};
    std::size_t sent = 0, most_queued = 0, reads = 0;
    const bool done = h.run_until(
        [&] {
          send_some(h.client, flood, sent, 1 + (sent * 131) % 20000);
          most_queued = std::max(most_queued, h.connection->queued_to_upstream());
          if (++reads % 3 == 0) read_some(h.upstream, checker, 1 + reads % 1500);
          return checker.next == count || checker.broken;
        },
        60s);
    CHECK(done);
    CHECK_FALSE(checker.broken);
    CHECK(checker.next == count);
    MESSAGE("most queued to the broker: " << most_queued);
    CHECK(most_queued > h.settings.write_high_water / 2);  // the slow reader did hold the relay back
    CHECK(most_queued <= h.settings.write_high_water + 64 * 1024 + 300);
    CHECK(h.connection->state() == client_connection::lifecycle::running);
  }

  TEST_CASE("packets sent together, the last a DISCONNECT: all reach the broker before the end") {
    relay_harness h(false);
    auto burst = numbered_publishes("private/alice/last", 50);
    const auto disconnect = wire_of(mqtt::disconnect{});
    burst.insert(burst.end(), disconnect.begin(), disconnect.end());
    asio::write(h.client, asio::buffer(burst));  // one write: the proxy reads them together
    publish_checker checker{"private/alice/last"};
    bool ended = false;
    CHECK(h.run_until([&] {
      std::array<std::uint8_t, 65536> chunk;
      boost::system::error_code ec;
      const auto n = h.upstream.read_some(asio::buffer(chunk), ec);
      checker.feed(std::span<const std::uint8_t>(chunk.data(), ec ? 0 : n));
      ended = ec == asio::error::eof;
      return ended;
    }));
    CHECK(ended);
    CHECK_FALSE(checker.broken);
    CHECK(checker.next == 50);
  }
}

namespace {

// One QoS 0 PUBLISH to `topic` of exactly `size` bytes on the wire.
mqtt::bytes publish_of_size(const std::string& topic, std::size_t size, char fill) {
  mqtt::publish p;
  p.topic = topic;
  p.payload.assign(size - topic.size() - 5, fill);
  for (int attempt = 0; attempt < 4; ++attempt) {
    const auto wire = wire_of(p);
    if (wire.size() == size) return wire;
    p.payload.resize(p.payload.size() + size - wire.size());
  }
  const auto wire = wire_of(p);
  REQUIRE(wire.size() == size);
  return wire;
}

// What the proxy relayed between the test's two ends: it forwards 3.1.1
// PUBLISHes as they came, so `to` must read exactly the bytes `from` sent.
struct relayed_bytes {
  relay_harness& h;
  tcp::socket& from;
  tcp::socket& to;
  mqtt::bytes received;

  // Sends `bytes` in `piece`-byte writes, running the proxy `pause` between
  // them, then waits (bounded) until `to` has read them all.
  bool relay(const mqtt::bytes& bytes, std::size_t piece, std::chrono::milliseconds pause) {
    received.clear();
    std::size_t sent = 0;
    while (sent < bytes.size()) {
      const std::size_t before = sent;
      send_some(from, bytes, sent, piece);
      read_available();
      if (pause.count() > 0 || sent == before) h.run_until([] { return false; }, std::max(pause, 1ms));
    }
    const bool all = h.run_until([&] {
      read_available();
      return received.size() >= bytes.size();
    });
    return all && received == bytes;
  }

  // Client to broker (direction 0) or broker to client (1), started.
  static relayed_bytes one_way(relay_harness& h, int direction) {
    relayed_bytes r{h, direction == 0 ? h.client : h.upstream, direction == 0 ? h.upstream : h.client, {}};
    r.start();
    return r;
  }

  // Whatever `to` had before (the CONNACK), read and dropped.
  relayed_bytes& start() {
    h.run_until([] { return false; }, 20ms);
    read_available();
    received.clear();
    return *this;
  }

  void read_available() {
    std::array<std::uint8_t, 65536> chunk;
    for (;;) {
      boost::system::error_code ec;
      const auto n = to.read_some(asio::buffer(chunk), ec);
      if (ec) return;
      received.insert(received.end(), chunk.begin(), chunk.begin() + static_cast<long>(n));
    }
  }
};

}  // namespace

// The readers park between packets with a wait that does not re-arm epoll
// when their last read drained the socket (net/reactor_wait.hpp), and are
// relayed inline when woken (client_connection::relay_woken). Every case
// below ends with the peer silent: a lost wake-up leaves bytes in the
// proxy's socket and fails the bounded wait.
TEST_SUITE("relay wake-ups") {
  TEST_CASE("a PUBLISH written one byte at a time, with pauses, in both directions") {
    relay_harness h(false);
    for (int direction = 0; direction < 2; ++direction) {
      CAPTURE(direction);
      auto r = relayed_bytes::one_way(h, direction);
      mqtt::bytes two;
      for (char fill : {'a', 'b'}) {
        const auto p = publish_of_size("private/alice/bytes", 40, fill);
        two.insert(two.end(), p.begin(), p.end());
      }
      CHECK(r.relay(two, 1, 3ms));  // a wake-up per byte, most with a cut frame
      CHECK(r.relay(two, 7, 0ms));
      CHECK(r.relay(publish_of_size("private/alice/bytes", 300, 'c'), 1, 0ms));
    }
    CHECK(h.connection->state() == client_connection::lifecycle::running);
  }

  TEST_CASE("bursts exactly the size of the read, then silence: each arrives whole, in both directions") {
    relay_harness h(false);
    // A read without waiting asks 512 B to 64 KiB, doubling while reads
    // fill it and halving when they use less than half: bursts of these
    // sizes fill reads exactly, and nothing follows them.
    const std::vector<std::size_t> sizes = {1024, 2048, 4096, 8192, 16384, 32768, 65536, 65536,
                                            1024, 512,  1023, 1025, 2048, 65535, 65537, 131072};
    for (int direction = 0; direction < 2; ++direction) {
      CAPTURE(direction);
      auto r = relayed_bytes::one_way(h, direction);
      for (std::size_t size : sizes) {
        CAPTURE(size);
        CHECK(r.relay(publish_of_size("private/alice/exact", size, static_cast<char>('a' + size % 26)), size, 0ms));
      }
      // The same sizes made of several packets.
      for (std::size_t size : {1024u, 2048u, 4096u}) {
        CAPTURE(size);
        mqtt::bytes burst;
        for (int k = 0; k < 4; ++k) {
          const auto p = publish_of_size("private/alice/exact", size / 4, static_cast<char>('k' + k));
          burst.insert(burst.end(), p.begin(), p.end());
        }
        REQUIRE(burst.size() == size);
        CHECK(r.relay(burst, size, 0ms));
      }
    }
    CHECK(h.connection->state() == client_connection::lifecycle::running);
  }

  TEST_CASE("bursts of packets that end exactly where a read ends, then silence: all arrive, in both directions") {
    // The case the re-arm exists for: a read that fills its buffer and ends
    // at a packet boundary leaves the framer empty, so the reader parks
    // while more bytes wait in the socket and nothing new will arrive.
    // Packets of 512 or 256 B: every read (512 B doubling to 64 KiB) ends
    // between two of them. A reader that parked without re-arming here
    // would strand the rest of the burst.
    relay_harness h(false);
    for (int direction = 0; direction < 2; ++direction) {
      CAPTURE(direction);
      auto r = relayed_bytes::one_way(h, direction);
      for (std::size_t packet_size : {512u, 256u, 512u}) {
        for (std::size_t count : {2u, 3u, 8u, 64u, 300u}) {
          CAPTURE(packet_size);
          CAPTURE(count);
          // Small packets one at a time first: the reads shrink to 512 B.
          for (int k = 0; k < 3; ++k) CHECK(r.relay(publish_of_size("private/alice/aligned", 40, 's'), 40, 0ms));
          mqtt::bytes burst;
          for (std::size_t k = 0; k < count; ++k) {
            const auto p = publish_of_size("private/alice/aligned", packet_size, static_cast<char>('a' + k % 26));
            burst.insert(burst.end(), p.begin(), p.end());
          }
          CHECK(r.relay(burst, burst.size(), 0ms));
        }
      }
    }
    CHECK(h.connection->state() == client_connection::lifecycle::running);
  }

  TEST_CASE("many packets pipelined, then silence: all arrive, in both directions") {
    relay_harness h(false);
    for (int direction = 0; direction < 2; ++direction) {
      CAPTURE(direction);
      auto r = relayed_bytes::one_way(h, direction);
      const auto pipelined = numbered_publishes("private/alice/pipelined", 2000);  // ~0.4 MB
      CHECK(r.relay(pipelined, pipelined.size(), 0ms));
      // Then a single small packet after the quiet spell: the reader parked again.
      h.run_until([] { return false; }, 20ms);
      CHECK(r.relay(publish_of_size("private/alice/pipelined", 64, 'z'), 64, 0ms));
    }
    CHECK(h.connection->state() == client_connection::lifecycle::running);
  }

  TEST_CASE("both directions at once, in odd pieces: every packet arrives whole and in order") {
    relay_harness h(false);
    constexpr std::uint32_t count = 3000;
    const auto up = numbered_publishes("private/alice/up", count);
    const auto down = numbered_publishes("private/alice/down", count);
    publish_checker at_broker{"private/alice/up"};
    publish_checker at_client{"private/alice/down"};
    std::size_t sent_up = 0, sent_down = 0, turns = 0;
    const bool done = h.run_until(
        [&] {
          ++turns;
          send_some(h.client, up, sent_up, 1 + (turns * 61) % 3000);
          send_some(h.upstream, down, sent_down, 1 + (turns * 113) % 5000);
          read_some(h.upstream, at_broker, 65536);
          read_some(h.client, at_client, 65536);
          return (at_broker.next == count && at_client.next == count) || at_broker.broken || at_client.broken;
        },
        60s);
    CHECK(done);
    CHECK_FALSE(at_broker.broken);
    CHECK_FALSE(at_client.broken);
    CHECK(at_broker.next == count);
    CHECK(at_client.next == count);
  }
}

TEST_SUITE("acl receive, validated once") {
  TEST_CASE("subscribe_entries_valid: false when any entry is not a valid filter") {
    CHECK(acl{{}, {"private/alice/#", "$share/g/x/+", "+/y", "#", "a/+/b"}}.subscribe_entries_valid());
    CHECK(acl{{}, {}}.subscribe_entries_valid());
    CHECK_FALSE(acl{{}, {"private/alice/#", "a/#/b"}}.subscribe_entries_valid());
    CHECK_FALSE(acl{{}, {"$share//x"}}.subscribe_entries_valid());
    CHECK_FALSE(acl{{}, {"a+"}}.subscribe_entries_valid());
    CHECK_FALSE(acl{{}, {""}}.subscribe_entries_valid());
  }

  TEST_CASE("an answer's ACL knows its subscribe entries' validity from when it was made") {
    // The session takes the answer's word instead of validating the rules
    // again (set_answered_acl): the word must be the rules' own.
    const std::vector<std::vector<std::string>> lists = {
        {"private/alice/#", "$share/g/x/+", "+/y"}, {}, {"private/alice/#", "a/#/b"}, {"$share//x"}, {"a+"}, {""}};
    for (const auto& subscribe : lists) {
      const shared_acl answered(acl{{"p"}, subscribe});
      const shared_acl copied = answered;  // as the validation cache hands it out
      const bool expected = acl{{}, subscribe}.subscribe_entries_valid();
      CHECK(answered.subscribe_entries_valid() == expected);
      CHECK(copied.subscribe_entries_valid() == expected);
      CHECK(answered->subscribe == subscribe);
    }
    CHECK(shared_acl{}.subscribe_entries_valid());  // no rules: nothing invalid
  }

  TEST_CASE("allows_receive_of_valid answers as allows(receive) for valid entries") {
    const std::vector<acl> acls = {
        acl{{}, {"private/alice/#"}},
        acl{{}, {"$share/g/x/+", "sport/+/score"}},
        acl{{}, {"#"}},
        acl{{}, {"+/+"}},
        acl{{}, {"$SYS/#", "a/b"}},
        acl{{}, {}},
    };
    const std::vector<std::string> topics = {"private/alice/x", "private/alice", "private/bob/x", "x/a", "x/b",
                                             "sport/tennis/score", "sport/score", "$SYS/load", "a/b", "a/b/c",
                                             "/", "a", "$share/g/x/a"};
    for (const auto& a : acls) {
      REQUIRE(a.subscribe_entries_valid());
      for (const auto& topic : topics) {
        CAPTURE(topic);
        CHECK(a.allows_receive_of_valid(topic) == a.allows(acl_action::receive, topic));
      }
    }
  }
}

// An abrupt drop whose last packet and FIN the proxy reads together: the
// short read consumes the FIN, and the EOF raises no new edge. The reader
// must not park with a wait that does not re-arm then, or the broker side
// is never closed and the will never published (review of the drained wait).
TEST_CASE("a PUBLISH and the client's FIN read together: the broker side is closed (the will fires)") {
  relay_harness h(false);
  h.run_until([] { return false; }, 100ms);  // the client's reader parks
  mqtt::publish p;
  p.topic = "private/alice/last-words";
  p.payload = "bye";
  asio::write(h.client, asio::buffer(wire_of(p)));
  h.client.shutdown(tcp::socket::shutdown_send);  // no DISCONNECT; both pending before the proxy runs
  std::size_t got = 0;
  h.upstream.non_blocking(true);
  CHECK_MESSAGE(h.run_until(
                    [&] {
                      std::array<std::uint8_t, 65536> chunk;
                      boost::system::error_code ec;
                      const auto n = h.upstream.read_some(asio::buffer(chunk), ec);
                      if (!ec) got += n;
                      return ec && ec != asio::error::would_block;
                    },
                    5000ms),
                "the proxy never closed the broker side after the client's FIN");
  CHECK(got == wire_of(p).size());  // the last PUBLISH went first
}
