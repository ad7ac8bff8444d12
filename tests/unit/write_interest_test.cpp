// net/write_interest.hpp: taking EPOLLOUT out of asio's record of a socket's
// registration loses nothing. Reads still complete, and a write that must
// wait for room puts EPOLLOUT back and completes once the peer reads. Real
// sockets on loopback, each wait bounded.
#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <vector>

#include "net/write_interest.hpp"
#include "run_until.hpp"

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

// A client socket connected the way the broker dial connects: non-blocking
// connect, then a wait for writability through asio (which adds EPOLLOUT).
struct dialled_pair {
  asio::io_context io;
  tcp::acceptor acceptor{io, {asio::ip::address_v4::loopback(), 0}};
  tcp::socket client{io};
  tcp::socket server{io};
  dialled_pair() {
    client.open(tcp::v4());
    client.non_blocking(true);
    boost::system::error_code ignored;
    client.connect(acceptor.local_endpoint(), ignored);  // EINPROGRESS, or done at once on loopback
    bool connected = false;
    client.async_wait(tcp::socket::wait_write, [&](boost::system::error_code ec) { connected = !ec; });
    run_until([&] { return connected; });
    server = acceptor.accept();
  }
  template <class Predicate>
  bool run_until(Predicate done, std::chrono::milliseconds limit = 5000ms) {
    return test::run_until(io, done, limit);
  }
};

constexpr bool has_write_interest_supported() {
#if defined(PROXY_HAS_WRITE_INTEREST)
  return true;
#else
  return false;
#endif
}

}  // namespace

TEST_SUITE("write_interest") {
  TEST_CASE("the connect's wait leaves EPOLLOUT registered; forget_write_interest takes it out") {
    dialled_pair p;
    if (!has_write_interest_supported()) return;
    CHECK(proxy::has_write_interest(p.client));
    proxy::forget_write_interest(p.client);
    CHECK_FALSE(proxy::has_write_interest(p.client));
  }

  TEST_CASE("after it, a read wait still completes when bytes arrive") {
    dialled_pair p;
    proxy::forget_write_interest(p.client);
    for (int round = 0; round < 20; ++round) {
      bool readable = false;
      p.client.async_wait(tcp::socket::wait_read, [&](boost::system::error_code ec) { readable = !ec; });
      p.io.run_for(1ms);
      p.io.restart();
      const char byte = 'x';
      asio::write(p.server, asio::buffer(&byte, 1));
      REQUIRE(p.run_until([&] { return readable; }));
      char got = 0;
      REQUIRE(p.client.read_some(asio::buffer(&got, 1)) == 1);
    }
  }

  TEST_CASE("after it, a write larger than the socket buffers waits for room and completes once the peer reads") {
    dialled_pair p;
    proxy::forget_write_interest(p.client);
    const std::vector<char> big(8 * 1024 * 1024, 'y');  // far more than loopback's buffers hold
    bool written = false;
    asio::async_write(p.client, asio::buffer(big), [&](boost::system::error_code ec, std::size_t n) {
      written = !ec && n == big.size();
    });
    p.io.run_for(20ms);  // the write fills the buffers and must wait for EPOLLOUT
    p.io.restart();
    REQUIRE_FALSE(written);
    if (has_write_interest_supported()) CHECK(proxy::has_write_interest(p.client));  // put back by asio
    std::vector<char> sink(big.size());
    std::size_t received = 0;
    p.server.non_blocking(true);
    const bool done = p.run_until([&] {
      boost::system::error_code ec;
      received += p.server.read_some(asio::buffer(sink.data() + received, sink.size() - received), ec);
      return written && received == big.size();
    }, 20000ms);
    CHECK(done);
  }
}
