// net/accepted_socket.hpp: an accepted socket closed without asio's explicit
// EPOLL_CTL_DEL leaves epoll all the same, so the next socket that gets the
// same descriptor number registers and works; a dial's connect() is seen
// through at once when it is done.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "net/accepted_socket.hpp"

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// An accepted socket (with its peer) whose first async read takes what the peer wrote.
struct accepted_pair {
  tcp::socket server;
  tcp::socket client;
};

accepted_pair accept_one(asio::io_context& io, tcp::acceptor& acceptor, tcp::endpoint& peer) {
  tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  tcp::socket server(io);
  acceptor.accept(server, peer);
  return {std::move(server), std::move(client)};
}

std::string async_read_of(asio::io_context& io, tcp::socket& socket, std::size_t n) {
  std::array<char, 16> buffer{};
  boost::system::error_code result = asio::error::would_block;
  std::size_t got = 0;
  asio::async_read(socket, asio::buffer(buffer.data(), n), [&](boost::system::error_code ec, std::size_t size) {
    result = ec;
    got = size;
  });
  io.restart();
  io.run();
  REQUIRE_FALSE(result);
  return std::string(buffer.data(), got);
}

}  // namespace

TEST_CASE("an accepted socket is no possible duplicate once told so, and its descriptor is reused cleanly") {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::endpoint peer;
  auto first = accept_one(io, acceptor, peer);
  CHECK(peer == first.client.local_endpoint());  // accept() gave the peer's address
  CHECK(proxy::possible_dup(first.server));            // asio's view of every socket it did not open
  proxy::forget_possible_dup(first.server);
  CHECK_FALSE(proxy::possible_dup(first.server));
  asio::write(first.client, asio::buffer("abc", 3));
  CHECK(async_read_of(io, first.server, 3) == "abc");  // registered with the reactor and working
  const int number = first.server.native_handle();
  first.server.close();  // no EPOLL_CTL_DEL: close() alone takes it out of epoll
  first.client.close();

  // The same descriptor number again: asio registers it anew (EPOLL_CTL_ADD
  // would fail with EEXIST had the old file stayed in the set) and it reads.
  auto second = accept_one(io, acceptor, peer);
  CHECK(second.server.native_handle() == number);
  proxy::forget_possible_dup(second.server);
  asio::write(second.client, asio::buffer("defg", 4));
  CHECK(async_read_of(io, second.server, 4) == "defg");

  // A socket that was never opened: nothing to change.
  tcp::socket closed(io);
  proxy::forget_possible_dup(closed);
  CHECK_FALSE(closed.is_open());
}

TEST_CASE("a socket opened non-blocking is known to asio as such and connects") {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket socket(io);
  boost::system::error_code ec;
  proxy::open_non_blocking(socket, tcp::v4(), ec);
  REQUIRE_FALSE(ec);
  CHECK(socket.is_open());
  CHECK(socket.non_blocking());  // no ioctl needed, none made
  CHECK_FALSE(proxy::possible_dup(socket));
  // The descriptor itself is non-blocking: a read with nothing there says so at once.
  const int flags = ::fcntl(socket.native_handle(), F_GETFL);
  CHECK((flags & O_NONBLOCK) != 0);
  CHECK((::fcntl(socket.native_handle(), F_GETFD) & FD_CLOEXEC) != 0);
  boost::system::error_code connected = asio::error::would_block;
  socket.async_connect(acceptor.local_endpoint(), [&](boost::system::error_code e) { connected = e; });
  io.run();
  CHECK_FALSE(connected);
  tcp::socket server(io);
  acceptor.accept(server);
  asio::write(socket, asio::buffer("hi", 2));
  CHECK(async_read_of(io, server, 2) == "hi");
}

namespace {
// A non-blocking connect to `target` from a socket opened as the dial opens it: true when it said EINPROGRESS.
bool connect_in_progress(tcp::socket& socket, const tcp::endpoint& target) {
  boost::system::error_code ec;
  proxy::open_non_blocking(socket, target.protocol(), ec);
  REQUIRE_FALSE(ec);
  const int result = ::connect(socket.native_handle(), target.data(), static_cast<socklen_t>(target.size()));
  if (result == 0) return false;
  REQUIRE((errno == EINPROGRESS || errno == EINTR));
  return true;
}
}  // namespace

TEST_CASE("a dial's connect is seen through at once when it is done, refused or still going on") {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto listening = acceptor.local_endpoint();

  SUBCASE("done: a loopback listener answered within connect(), and the socket writes") {
    tcp::socket socket(io);
    if (connect_in_progress(socket, listening)) {
      const auto outcome = proxy::connect_outcome_at_once(socket);
      REQUIRE(outcome.has_value());
      CHECK_FALSE(*outcome);
    }
    tcp::socket server(io);
    acceptor.accept(server);
    asio::write(socket, asio::buffer("hi", 2));
    std::array<char, 2> got{};
    asio::read(server, asio::buffer(got));
    CHECK(std::string(got.data(), 2) == "hi");
  }

  SUBCASE("refused: nobody listens, and the error is the connect's own") {
    acceptor.close();  // its port is now closed: the SYN gets a RST
    tcp::socket socket(io);
    if (connect_in_progress(socket, listening)) {
      const auto outcome = proxy::connect_outcome_at_once(socket);
      REQUIRE(outcome.has_value());
      CHECK(*outcome == boost::system::errc::connection_refused);
    }
  }

  SUBCASE("still going on: a SYN nobody answers yet (a full backlog drops it) is waited for") {
    // listen(0) keeps one connection waiting; the kernel drops further SYNs
    // (tcp_abort_on_overflow is 0 by default) and the client retransmits.
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(fd, 0) == 0);
    socklen_t size = sizeof address;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) == 0);
    const tcp::endpoint full(asio::ip::make_address("127.0.0.1"), ntohs(address.sin_port));
    std::vector<tcp::socket> fillers;
    bool seen_going_on = false;
    for (int i = 0; i < 8 && !seen_going_on; ++i) {  // the backlog's exact size differs between kernels
      fillers.emplace_back(io);
      if (!connect_in_progress(fillers.back(), full)) continue;
      const auto outcome = proxy::connect_outcome_at_once(fillers.back());
      if (!outcome) seen_going_on = true;
      else CHECK_FALSE(*outcome);  // accepted into the backlog: done
    }
    CHECK(seen_going_on);
    ::close(fd);
  }
}

TEST_CASE("accept_non_blocking: a non-blocking, close-on-exec socket asio need not set, with the peer's address") {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto listening_at = acceptor.local_endpoint();
  tcp::socket listening(io);  // as the listener holds it
  listening.assign(tcp::v4(), acceptor.release());
  listening.non_blocking(true);
  tcp::endpoint peer;
  boost::system::error_code ec;
  auto none = proxy::accept_non_blocking(listening, peer, ec);
  CHECK(ec == asio::error::would_block);  // nobody waiting: no blocking
  CHECK_FALSE(none.is_open());

  tcp::socket client(io);
  client.connect(listening_at);
  auto server = proxy::accept_non_blocking(listening, peer, ec);
  REQUIRE_FALSE(ec);
  CHECK(peer == client.local_endpoint());
  CHECK((::fcntl(server.native_handle(), F_GETFL) & O_NONBLOCK) != 0);
  CHECK((::fcntl(server.native_handle(), F_GETFD) & FD_CLOEXEC) != 0);
  CHECK_FALSE(server.non_blocking());  // asio's synchronous calls still wait, as on an accepted socket
  CHECK_FALSE(proxy::possible_dup(server));
  asio::write(client, asio::buffer("xyz", 3));
  CHECK(async_read_of(io, server, 3) == "xyz");  // registered with the reactor and working
}
