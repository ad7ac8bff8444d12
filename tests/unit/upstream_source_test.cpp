// upstream.bind_addresses over real loopback sockets: the listening side
// (standing in for the broker) sees the chosen source address, round robin.
#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <set>
#include <string>

#include "net/upstream_source.hpp"

using boost::asio::ip::make_address;
using boost::asio::ip::tcp;

namespace {

// Connects from a socket bound by bind_upstream_source; the peer address the acceptor saw.
std::string source_seen(boost::asio::io_context& io, tcp::acceptor& broker,
                        const std::vector<boost::asio::ip::address>& sources) {
  proxy::tcp_socket socket(io);
  socket.open(tcp::v4());
  REQUIRE_FALSE(proxy::bind_upstream_source(socket, broker.local_endpoint(), sources));
  socket.connect(broker.local_endpoint());
  tcp::socket accepted = broker.accept();
  CHECK(accepted.remote_endpoint().port() == socket.local_endpoint().port());
  return accepted.remote_endpoint().address().to_string();
}

}  // namespace

TEST_SUITE("upstream source addresses") {
  TEST_CASE("each dial takes the next source address; the broker sees it") {
    boost::asio::io_context io;
    tcp::acceptor broker(io, tcp::endpoint(make_address("127.0.0.1"), 0));
    const std::vector sources{make_address("127.0.0.2"), make_address("127.0.0.3")};
    std::multiset<std::string> seen;
    for (int i = 0; i < 4; ++i) seen.insert(source_seen(io, broker, sources));
    CHECK(seen.count("127.0.0.2") == 2);
    CHECK(seen.count("127.0.0.3") == 2);
    CHECK(source_seen(io, broker, {}) == "127.0.0.1");  // none configured: the kernel's choice
  }

  TEST_CASE("no source of the broker's family, or one not on this host: an error, not a silent default") {
    boost::asio::io_context io;
    tcp::acceptor broker(io, tcp::endpoint(make_address("127.0.0.1"), 0));
    proxy::tcp_socket socket(io);
    socket.open(tcp::v4());
    CHECK(proxy::bind_upstream_source(socket, broker.local_endpoint(), {make_address("::1")}));
    proxy::tcp_socket other(io);
    other.open(tcp::v4());
    // TEST-NET-1 (RFC 5737) is assigned to no interface here.
    CHECK(proxy::bind_upstream_source(other, broker.local_endpoint(), {make_address("192.0.2.1")}));
  }
}
