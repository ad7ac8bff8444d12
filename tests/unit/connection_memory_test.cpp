// What an idle connection holds (issue 14): the worker's deadline queue and
// service (one timer per worker instead of one per connection) and the
// in-object memory of a parked socket wait.
#include <doctest/doctest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include <type_traits>
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include "parked_wait_like.hpp"
#include "net/deadline_queue.hpp"
#include "net/deadline_service.hpp"
#include "net/handler_memory.hpp"
#include "net/client_connection.hpp"
#include "net/tcp_socket.hpp"
#include "net/tcp_transport.hpp"
#include "net/tls_transport.hpp"
#include "net/transport.hpp"
#include "support/block_recycler.hpp"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

using namespace std::chrono_literals;
using proxy::deadline_entry;
using proxy::deadline_queue;
using time_point = deadline_entry::time_point;
namespace asio = boost::asio;

namespace {

const time_point t0 = time_point{} + 1h;

// Records when it was called; may do something more when called.
struct probe : deadline_entry {
  explicit probe(std::vector<int>* log, int name) : log(log), name(name) {}
  std::vector<int>* log;
  int name;
  std::function<void()> then;
  void on_deadline() override {
    log->push_back(name);
    if (then) then();
  }
};

}  // namespace

TEST_CASE("deadline_queue: entries fire earliest first, only when due, and leave the queue") {
  std::vector<int> log;
  deadline_queue queue;
  probe a(&log, 1), b(&log, 2), c(&log, 3);
  CHECK(queue.earliest() == time_point::max());
  queue.schedule(b, t0 + 20ms);
  queue.schedule(a, t0 + 10ms);
  queue.schedule(c, t0 + 30ms);
  CHECK(queue.earliest() == t0 + 10ms);
  CHECK(queue.fire_due(t0 + 9ms) == 0);
  CHECK(queue.fire_due(t0 + 20ms) == 2);
  CHECK(log == std::vector<int>{1, 2});
  CHECK_FALSE(a.scheduled());
  CHECK_FALSE(b.scheduled());
  CHECK(c.scheduled());
  CHECK(c.due() == t0 + 30ms);
  CHECK(queue.earliest() == t0 + 30ms);
}

TEST_CASE("deadline_queue: scheduling again moves the entry; cancel removes it") {
  std::vector<int> log;
  deadline_queue queue;
  probe a(&log, 1), b(&log, 2);
  queue.schedule(a, t0 + 10ms);
  queue.schedule(b, t0 + 20ms);
  queue.schedule(a, t0 + 30ms);  // later than b now
  CHECK(queue.earliest() == t0 + 20ms);
  queue.cancel(b);
  queue.cancel(b);  // not scheduled: nothing
  CHECK_FALSE(b.scheduled());
  CHECK(queue.earliest() == t0 + 30ms);
  CHECK(queue.fire_due(t0 + 1h) == 1);
  CHECK(log == std::vector<int>{1});
  CHECK(queue.empty());
}

TEST_CASE("deadline_queue: an entry destroyed while scheduled leaves the queue; a destroyed queue lets go of its entries") {
  std::vector<int> log;
  auto kept = std::make_unique<probe>(&log, 1);
  {
    deadline_queue queue;
    auto gone = std::make_unique<probe>(&log, 2);
    queue.schedule(*gone, t0);
    queue.schedule(*kept, t0 + 1ms);
    gone.reset();
    CHECK(queue.earliest() == t0 + 1ms);
    CHECK(queue.fire_due(t0) == 0);
  }
  CHECK_FALSE(kept->scheduled());
  kept.reset();  // must not touch the destroyed queue (ASan would see it)
  CHECK(log.empty());
}

TEST_CASE("deadline_queue: a due entry may reschedule itself and destroy or cancel others") {
  std::vector<int> log;
  deadline_queue queue;
  probe a(&log, 1), c(&log, 3);
  auto b = std::make_unique<probe>(&log, 2);
  a.then = [&] {
    queue.schedule(a, t0 + 1h);  // its next deadline
    b.reset();                   // destroyed while due
    queue.cancel(c);             // cancelled while due
  };
  queue.schedule(a, t0);
  queue.schedule(*b, t0 + 1ms);
  queue.schedule(c, t0 + 2ms);
  CHECK(queue.fire_due(t0 + 1s) == 1);
  CHECK(log == std::vector<int>{1});
  CHECK(a.scheduled());
  CHECK(queue.earliest() == t0 + 1h);
}

TEST_CASE("deadline_service: one timer per io_context fires each entry at its time, earlier ones re-arming it") {
  asio::io_context io;
  auto& service = proxy::deadline_service::of(io.get_executor());
  CHECK(&service == &proxy::deadline_service::of(io.get_executor()));
  std::vector<int> log;
  probe late(&log, 1), early(&log, 2), cancelled(&log, 3);
  const auto start = std::chrono::steady_clock::now();
  std::optional<std::chrono::steady_clock::duration> early_at;
  early.then = [&] { early_at = std::chrono::steady_clock::now() - start; };
  service.schedule(late, start + 1s);
  service.schedule(cancelled, start + 10ms);
  service.schedule(early, start + 50ms);  // earlier than the armed 1 s, later than 10 ms
  service.cancel(cancelled);
  const auto run_until = [&](std::size_t fired) {
    while (log.size() < fired && std::chrono::steady_clock::now() < start + 10s) io.run_one_for(100ms);
  };
  run_until(1);
  REQUIRE(log == std::vector<int>{2});
  CHECK(*early_at >= 50ms);
  CHECK(late.scheduled());
  run_until(2);
  CHECK(log == std::vector<int>{2, 1});
  CHECK(std::chrono::steady_clock::now() - start >= 1s);
  CHECK_FALSE(late.scheduled());
}

TEST_CASE("deadline_service: entries outliving the io_context, and the context outliving entries, are safe") {
  std::vector<int> log;
  auto outlives = std::make_unique<probe>(&log, 1);
  {
    asio::io_context io;
    auto& service = proxy::deadline_service::of(io.get_executor());
    probe short_lived(&log, 2);
    service.schedule(short_lived, std::chrono::steady_clock::now() + 1h);
    service.schedule(*outlives, std::chrono::steady_clock::now() + 1h);
  }
  CHECK_FALSE(outlives->scheduled());
  outlives.reset();
  CHECK(log.empty());
}

using owner = test::wait_owner;
using test::parked_wait_like;

TEST_CASE("handler_memory: a parked socket wait is built in the owner's memory, exactly once at a time") {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::address_v4::loopback(), 0});
  proxy::tcp_socket client(io);
  client.connect(acceptor.local_endpoint());
  auto server = acceptor.accept(io);
  auto o = std::make_shared<owner>();
  proxy::tcp_socket& waiting = server;  // the type the proxy's transports hand out
  waiting.async_wait(proxy::tcp_socket::wait_read, parked_wait_like{o, 0});
  // If this fails, Boost or the compiler made the operation larger:
  // client_connection::parked_wait_size must grow with it.
  CHECK(o->memory.in_use());
  // A second wait while the first is pending goes to the heap.
  proxy::tcp_socket& other = client;
  other.async_wait(proxy::tcp_socket::wait_read, parked_wait_like{o, 1});
  CHECK(o->memory.in_use());
  const char byte = 'x';
  asio::write(client, asio::buffer(&byte, 1));
  asio::write(server, asio::buffer(&byte, 1));
  io.run_for(1s);
  CHECK(o->woken == 2);
  CHECK_FALSE(o->memory.in_use());  // freed before the handler ran
  // Pending when the context is destroyed: freed, the owner released.
  waiting.async_wait(proxy::tcp_socket::wait_read, parked_wait_like{o, 0});
  CHECK(o->memory.in_use());
}

// The slot is the operation's size, not more: each byte of it is paid by
// every idle connection, twice. When Boost or the compiler make the
// operation smaller, this fails: shrink client_connection::parked_wait_size.
TEST_CASE("handler_memory: a parked socket wait needs all of parked_wait_size") {
  constexpr std::size_t smaller = test::parked_wait_size - 8;
  using smaller_owner = test::basic_wait_owner<smaller>;
  using smaller_wait = test::basic_parked_wait_like<smaller>;
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::address_v4::loopback(), 0});
  proxy::tcp_socket client(io);
  client.connect(acceptor.local_endpoint());
  auto server = acceptor.accept(io);
  auto o = std::make_shared<smaller_owner>();
  server.async_wait(proxy::tcp_socket::wait_read, smaller_wait{o, 0});
  CHECK_FALSE(o->memory.in_use());  // it did not fit: the heap took it
  const char byte = 'x';
  asio::write(client, asio::buffer(&byte, 1));
  io.run_for(1s);
  CHECK(o->woken == 1);
}

// asio's tcp::socket keeps an any_io_executor (56 B); the proxy's sockets
// keep the io_context's executor (8 B), in the socket and in each operation.
TEST_CASE("tcp_socket: the proxy's sockets carry the io_context's executor, not a polymorphic one") {
  static_assert(std::is_same_v<proxy::tcp_socket::executor_type, asio::io_context::executor_type>);
  static_assert(std::is_same_v<decltype(std::declval<proxy::transport&>().socket()), proxy::tcp_socket&>);
  CHECK(sizeof(proxy::tcp_socket) + 48 == sizeof(asio::ip::tcp::socket));
}

// Every idle client holds one client_connection and two transports (one
// TLS for a TLS client). Growing them is a choice against issue 14's budget
// (3 KiB TCP, 16 KiB TLS, the latter with ~300 B of margin): raise these
// only knowingly. Sizes for GCC 12 and Boost 1.81 (x86-64).
TEST_CASE("idle connection objects stay within their budget") {
  // 1240: round 5 added the CONNACK hold's deadline slot (8 B) to the memory helper's 1232.
  // 1232: round 11's slot for an answer at hand (8 B) paid for by the queues'
  // holes (two 8 B) and the flags packed into one byte.
  CHECK(sizeof(proxy::client_connection) <= 1232);
  CHECK(sizeof(proxy::tcp_transport) <= 48);
  CHECK(sizeof(proxy::tls_transport) <= 56);  // with its malloc header, one 64 B block
}

TEST_CASE("handler_memory: too large or too aligned a request goes to the heap") {
  proxy::handler_memory<16> memory;
  void* big = memory.allocate(32, 8);
  CHECK_FALSE(memory.in_use());
  void* fits = memory.allocate(16, 8);
  CHECK(memory.in_use());
  void* second = memory.allocate(8, 8);
  CHECK(second != fits);
  memory.deallocate(second);
  memory.deallocate(big);
  CHECK(memory.in_use());
  memory.deallocate(fits);
  CHECK_FALSE(memory.in_use());
  void* aligned = memory.allocate(8, 64);
  CHECK_FALSE(memory.in_use());
  memory.deallocate(aligned);
}

TEST_CASE("block_recycler: a freed block of its size goes to the next request, at most `keep` of them") {
  support::block_recycler recycler(2);
  struct alignas(16) object {
    std::byte bytes[1240];
  };
  using allocator = support::recycled_allocator<object>;
  auto first = std::allocate_shared<object>(allocator(recycler));
  const void* first_block = first.get();
  first.reset();
  CHECK(recycler.kept() == 1);
#if defined(__SANITIZE_ADDRESS__)
  // A kept block is poisoned but for its link: a use after the end is caught.
  CHECK(__asan_address_is_poisoned(static_cast<const std::byte*>(first_block) + 64));
#endif
  auto second = std::allocate_shared<object>(allocator(recycler));
  CHECK(static_cast<const void*>(second.get()) == first_block);  // the same block, not malloc's
  CHECK(recycler.kept() == 0);

  // Another size is the heap's, both ways.
  void* other = recycler.allocate(64);
  recycler.deallocate(other, 64);
  CHECK(recycler.kept() == 0);

  // Three freed at once: two kept, the third back to the heap.
  std::vector<std::shared_ptr<object>> many;
  for (int i = 0; i < 3; ++i) many.push_back(std::allocate_shared<object>(allocator(recycler)));
  second.reset();
  many.clear();
  CHECK(recycler.kept() == 2);
}
