// net/reactor_wait.hpp: a read wait that does not re-arm epoll completes
// for every byte that arrives after the read that drained the socket, and
// (the reason it may only follow such a read) misses bytes whose edge the
// event loop already took. Real sockets on loopback, each wait bounded: a
// lost edge fails the test instead of hanging it.
#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <chrono>
#include <memory>

#include <sys/socket.h>
#include <unistd.h>

#include "parked_wait_like.hpp"
#include "run_until.hpp"
#include "net/handler_memory.hpp"
#include "net/reactor_wait.hpp"

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

struct socket_pair {
  asio::io_context io;
  proxy::tcp_socket client{io};  // the proxy's socket type
  proxy::tcp_socket server{io};
  socket_pair() {
    tcp::acceptor acceptor(io, {asio::ip::address_v4::loopback(), 0});
    client.connect(acceptor.local_endpoint());
    server = acceptor.accept(io);
  }
  void send(std::size_t bytes) {
    const std::vector<char> data(bytes, 'x');
    asio::write(client, asio::buffer(data));
  }
  // What the relay does: a non-blocking recv of up to `asked`; the byte count.
  long drain(std::size_t asked = 65536) {
    std::vector<char> sink(asked);
    return ::recv(server.native_handle(), sink.data(), sink.size(), MSG_DONTWAIT);
  }
  // Runs the loop until `done` or `limit`; true when done.
  template <class Predicate>
  bool run_until(Predicate done, std::chrono::milliseconds limit = 5000ms) {
    return test::run_until(io, done, limit);
  }
  // One turn of the event loop long enough for epoll_wait to report (and,
  // with no operation queued on the socket, drop) any pending edge.
  // (A timer keeps the loop in epoll_wait when nothing else is pending.)
  void spin(std::chrono::milliseconds for_how_long = 50ms) {
    asio::steady_timer t(io, for_how_long);
    t.async_wait([](boost::system::error_code) {});
    io.run_for(for_how_long + 10ms);
    io.restart();
  }
};

struct counter {
  int woken = 0;
  boost::system::error_code last;
};

struct on_wake {
  std::shared_ptr<counter> c;
  void operator()(boost::system::error_code ec) const {
    c->woken++;
    c->last = ec;
  }
};

}  // namespace

TEST_SUITE("reactor_wait") {
  TEST_CASE("after a draining read, bytes that come later complete the wait") {
    socket_pair p;
    p.send(10);
    p.spin();  // the edge of these bytes is taken by the loop, with nothing waiting
    CHECK(p.drain() == 10);
    CHECK(p.drain() == -1);  // EAGAIN: empty
    for (int round = 0; round < 50; ++round) {
      auto c = std::make_shared<counter>();
      proxy::reactor_wait::async_wait_drained(p.server, on_wake{c});
      p.spin(2ms);  // the loop runs with the wait queued and nothing there
      CHECK(c->woken == 0);
      p.send(1 + round * 97);
      REQUIRE(p.run_until([&] { return c->woken == 1; }));
      CHECK_FALSE(c->last);
      CHECK(p.drain() == 1 + round * 97);  // all of it, in one read
    }
  }

  TEST_CASE("bytes that arrive between the draining read and the wait complete it") {
    socket_pair p;
    p.send(100);
    p.spin();
    CHECK(p.drain(1000) == 100);  // fewer than asked: drained
    p.send(5);                    // no event loop turn in between: its edge is still pending
    auto c = std::make_shared<counter>();
    proxy::reactor_wait::async_wait_drained(p.server, on_wake{c});
    REQUIRE(p.run_until([&] { return c->woken == 1; }));
    CHECK(p.drain() == 5);
  }

  TEST_CASE("the peer's close and a reset complete a drained wait") {
    socket_pair p;
    p.send(3);
    p.spin();
    CHECK(p.drain() == 3);
    auto c = std::make_shared<counter>();
    proxy::reactor_wait::async_wait_drained(p.server, on_wake{c});
    p.client.shutdown(tcp::socket::shutdown_send);
    REQUIRE(p.run_until([&] { return c->woken == 1; }));
    CHECK(p.drain() == 0);  // EOF
    // A reset: linger 0 and close.
    socket_pair q;
    auto d = std::make_shared<counter>();
    CHECK(q.drain() == -1);
    proxy::reactor_wait::async_wait_drained(q.server, on_wake{d});
    q.client.set_option(asio::socket_base::linger(true, 0));
    q.client.close();
    REQUIRE(q.run_until([&] { return d->woken == 1; }));
  }

  TEST_CASE("closing the socket completes a pending drained wait with operation_aborted") {
    socket_pair p;
    CHECK(p.drain() == -1);
    auto c = std::make_shared<counter>();
    proxy::reactor_wait::async_wait_drained(p.server, on_wake{c});
    p.server.close();
    REQUIRE(p.run_until([&] { return c->woken == 1; }));
    CHECK(c->last == asio::error::operation_aborted);
  }

  TEST_CASE("why it may only follow a draining read: an edge the loop took is not seen again") {
    if (!proxy::reactor_wait::skips_rearm) return;  // the fallback is the plain, re-armed wait
    socket_pair p;
    p.send(10);
    p.spin();  // the edge is taken and dropped: nothing was waiting
    // Wrongly used (bytes are there, their edge gone): the wait does not
    // complete. This is what the tests above would catch if the relay
    // called it after a full read.
    auto c = std::make_shared<counter>();
    proxy::reactor_wait::async_wait_drained(p.server, on_wake{c});
    p.spin(200ms);
    CHECK(c->woken == 0);
    p.server.cancel();
    REQUIRE(p.run_until([&] { return c->woken == 1; }));
    CHECK(c->last == asio::error::operation_aborted);
    // The plain wait (first in the descriptor's queue) re-arms with
    // EPOLL_CTL_MOD, which reports the bytes at once.
    auto plain = std::make_shared<counter>();
    p.server.async_wait(tcp::socket::wait_read, on_wake{plain});
    REQUIRE(p.run_until([&] { return plain->woken == 1; }));
    CHECK_FALSE(plain->last);
    CHECK(p.drain() == 10);
  }
}

using owner = test::wait_owner;
using test::parked_wait_like;

TEST_CASE("reactor_wait: a drained wait is built in the owner's memory, freed before its handler runs") {
  socket_pair p;
  auto o = std::make_shared<owner>();
  CHECK(p.drain() == -1);
  proxy::reactor_wait::async_wait_drained(p.server, parked_wait_like{o, 0});
  // If this fails, the operation outgrew client_connection::parked_wait_size.
  CHECK(o->memory.in_use());
  p.send(1);
  REQUIRE(p.run_until([&] { return o->woken == 1; }));
  CHECK_FALSE(o->memory.in_use());
  // Pending when the context is destroyed: freed, the owner released (ASan: no leak).
  CHECK(p.drain() == 1);
  proxy::reactor_wait::async_wait_drained(p.server, parked_wait_like{o, 0});
  CHECK(o->memory.in_use());
}

TEST_CASE("reactor_wait: a listening socket's drained wait completes for a connection after accept said EAGAIN") {
  asio::io_context io;
  tcp::acceptor acceptor(io, {asio::ip::address_v4::loopback(), 0});
  const auto listening_at = acceptor.local_endpoint();
  proxy::tcp_socket listening(io);  // as net/listener.cpp holds it
  listening.assign(tcp::v4(), acceptor.release());
  listening.non_blocking(true);
  const auto accept_now = [&] { return ::accept4(listening.native_handle(), nullptr, nullptr, SOCK_NONBLOCK); };
  REQUIRE(accept_now() < 0);  // EAGAIN: nobody waits
  bool woken = false;
  proxy::reactor_wait::async_wait_drained(listening, [&](boost::system::error_code) { woken = true; });
  io.run_for(50ms);  // no connection yet: the wait stays queued
  io.restart();
  CHECK_FALSE(woken);
  tcp::socket client(io);
  client.connect(listening_at);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!woken && std::chrono::steady_clock::now() < deadline) {
    io.run_for(5ms);
    io.restart();
  }
  CHECK(woken);
  const int accepted = accept_now();
  CHECK(accepted >= 0);
  ::close(accepted);

  // Closing the listening socket completes a pending drained wait (operation_aborted).
  REQUIRE(accept_now() < 0);
  boost::system::error_code result;
  bool done = false;
  proxy::reactor_wait::async_wait_drained(listening, [&](boost::system::error_code e) {
    result = e;
    done = true;
  });
  listening.close();
  io.run_for(50ms);
  io.restart();
  CHECK(done);
  CHECK(result == asio::error::operation_aborted);
}
