// net/accepted_socket.hpp: an accepted socket closed without asio's explicit
// EPOLL_CTL_DEL leaves epoll all the same, so the next socket that gets the
// same descriptor number registers and works.
#include <doctest/doctest.h>

#include <fcntl.h>

#include <array>

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
