// net/tcp_transport.cpp's try_write: one buffer goes out with send(),
// several with sendmsg's gather. Both report what the kernel took: all of
// it, part of it when the socket fills (the caller keeps the rest), nothing
// as would_block when it is full, and an error (not SIGPIPE) when the peer
// is gone. Real sockets on loopback, with small socket buffers so that
// "full" comes after a few hundred KiB.
#include <doctest/doctest.h>

#include <poll.h>
#include <sys/socket.h>

#include <cstdint>
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "net/tcp_transport.hpp"

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// The writer's transport and the peer's plain socket, both with small buffers.
struct transport_pair {
  asio::io_context io;
  proxy::tcp_acceptor acceptor{io, {asio::ip::address_v4::loopback(), 0}};
  proxy::tcp_socket peer{io};
  std::unique_ptr<proxy::tcp_transport> writer;

  transport_pair() {
    proxy::tcp_socket client{io};
    client.open(tcp::v4());
    client.set_option(asio::socket_base::send_buffer_size(16 * 1024));
    client.connect(acceptor.local_endpoint());
    peer = acceptor.accept();
    peer.set_option(asio::socket_base::receive_buffer_size(16 * 1024));
    writer = std::make_unique<proxy::tcp_transport>(std::move(client));
  }

  // Reads what is there now (non-blocking), appending to `into`; the bytes read.
  std::size_t drain(std::vector<std::uint8_t>& into) {
    std::size_t total = 0;
    std::uint8_t chunk[65536];
    for (;;) {
      const auto n = ::recv(peer.native_handle(), chunk, sizeof chunk, MSG_DONTWAIT);
      if (n <= 0) return total;
      into.insert(into.end(), chunk, chunk + n);
      total += static_cast<std::size_t>(n);
    }
  }

  // Reads until `into` holds `size` bytes: the writer has sent them all, so
  // each wait is for bytes already on their way (bounded, so that a lost
  // byte fails the test instead of hanging it).
  void read_all(std::vector<std::uint8_t>& into, std::size_t size) {
    while (into.size() < size) {
      pollfd readable{peer.native_handle(), POLLIN, 0};
      REQUIRE(::poll(&readable, 1, 5000) == 1);
      REQUIRE(drain(into) > 0);
    }
  }
};

std::vector<std::uint8_t> pattern(std::size_t size, std::uint8_t seed) {
  std::vector<std::uint8_t> bytes(size);
  for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::uint8_t>(seed + i * 7 + i / 251);
  return bytes;
}

// Offers `buffers` (minus what was already taken) until all went out, reading
// the peer whenever the socket is full. Checks that every short write is
// followed by would_block or more progress, never by a lost byte.
struct write_log {
  int partial = 0;      // writes that took part of what they were offered
  int would_block = 0;  // writes that took nothing
};

write_log write_everything(transport_pair& pair, const std::vector<std::vector<std::uint8_t>>& pieces,
                           std::vector<std::uint8_t>& received) {
  write_log log;
  std::size_t piece = 0, offset = 0;  // the first byte not yet taken
  while (piece < pieces.size()) {
    std::vector<asio::const_buffer> buffers;
    buffers.push_back(asio::buffer(pieces[piece].data() + offset, pieces[piece].size() - offset));
    for (std::size_t i = piece + 1; i < pieces.size(); ++i) buffers.push_back(asio::buffer(pieces[i]));
    std::size_t offered = 0;
    for (const auto& b : buffers) offered += b.size();
    const auto [ec, n] = pair.writer->try_write(buffers);
    if (ec == asio::error::would_block) {
      CHECK(n == 0);
      ++log.would_block;
      pair.drain(received);
      continue;
    }
    REQUIRE_FALSE(ec);
    if (n < offered) ++log.partial;
    std::size_t taken = n;
    while (taken > 0) {
      const std::size_t left_in_piece = pieces[piece].size() - offset;
      if (taken < left_in_piece) {
        offset += taken;
        taken = 0;
      } else {
        taken -= left_in_piece;
        ++piece;
        offset = 0;
      }
    }
  }
  return log;
}

std::vector<std::uint8_t> joined(const std::vector<std::vector<std::uint8_t>>& pieces) {
  std::vector<std::uint8_t> all;
  for (const auto& p : pieces) all.insert(all.end(), p.begin(), p.end());
  return all;
}

}  // namespace

TEST_SUITE("tcp_transport try_write") {
  TEST_CASE("one buffer: every byte arrives, the count is the buffer's size") {
    transport_pair pair;
    const auto packet = pattern(282, 1);
    const auto [ec, n] = pair.writer->try_write({asio::buffer(packet)});
    REQUIRE_FALSE(ec);
    CHECK(n == packet.size());
    std::vector<std::uint8_t> received;
    pair.read_all(received, packet.size());
    CHECK(received == packet);
  }

  TEST_CASE("several buffers: gathered in order into one write") {
    transport_pair pair;
    const std::vector<std::vector<std::uint8_t>> pieces{pattern(4, 2), pattern(282, 3), pattern(1000, 4)};
    std::vector<asio::const_buffer> buffers;
    for (const auto& p : pieces) buffers.push_back(asio::buffer(p));
    const auto [ec, n] = pair.writer->try_write(buffers);
    REQUIRE_FALSE(ec);
    CHECK(n == 1286);
    std::vector<std::uint8_t> received;
    pair.read_all(received, 1286);
    CHECK(received == joined(pieces));
  }

  TEST_CASE("one buffer larger than the socket takes: part, then would_block, and the rest after the peer reads") {
    transport_pair pair;
    const std::vector<std::vector<std::uint8_t>> pieces{pattern(4 * 1024 * 1024, 5)};
    std::vector<std::uint8_t> received;
    const auto log = write_everything(pair, pieces, received);
    CHECK(log.partial > 0);
    CHECK(log.would_block > 0);
    pair.read_all(received, pieces[0].size());
    CHECK(received == pieces[0]);
  }

  TEST_CASE("several buffers larger than the socket takes: cut anywhere, nothing lost or reordered") {
    transport_pair pair;
    std::vector<std::vector<std::uint8_t>> pieces;
    for (int i = 0; i < 64; ++i) pieces.push_back(pattern(4 + static_cast<std::size_t>(i) * 4099, static_cast<std::uint8_t>(i)));
    std::vector<std::uint8_t> received;
    const auto log = write_everything(pair, pieces, received);
    CHECK(log.partial > 0);
    CHECK(log.would_block > 0);
    const auto all = joined(pieces);
    pair.read_all(received, all.size());
    CHECK(received == all);
  }

  TEST_CASE("a full socket: one buffer and several both take nothing, would_block") {
    transport_pair pair;
    const auto big = pattern(4 * 1024 * 1024, 6);
    std::size_t sent = 0;
    for (;;) {  // fill it
      const auto [ec, n] = pair.writer->try_write({asio::buffer(big.data() + sent, big.size() - sent)});
      if (ec == asio::error::would_block) break;
      REQUIRE_FALSE(ec);
      sent += n;
      REQUIRE(sent < big.size());
    }
    const auto packet = pattern(282, 7);
    const auto one = pair.writer->try_write({asio::buffer(packet)});
    CHECK(one.error == asio::error::would_block);
    CHECK(one.bytes == 0);
    const auto several = pair.writer->try_write({asio::buffer(packet), asio::buffer(packet)});
    CHECK(several.error == asio::error::would_block);
    CHECK(several.bytes == 0);
  }

  TEST_CASE("the peer gone: an error, not SIGPIPE, for one buffer and for several") {
    transport_pair pair;
    pair.peer.set_option(asio::socket_base::linger(true, 0));  // close with RST
    pair.peer.close();
    const auto packet = pattern(282, 8);
    boost::system::error_code one, several;
    for (int i = 0; i < 100 && !one; ++i) one = pair.writer->try_write({asio::buffer(packet)}).error;
    for (int i = 0; i < 100 && !several; ++i)
      several = pair.writer->try_write({asio::buffer(packet), asio::buffer(packet)}).error;
    CHECK(one);
    CHECK(one != asio::error::would_block);
    CHECK(several);
    CHECK(several != asio::error::would_block);
  }
}
