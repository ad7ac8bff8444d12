// The source address of each connection to the broker (`upstream.bind_addresses`).
// One source address reaches one broker address:port over at most ~64k
// ephemeral ports (net.ipv4.ip_local_port_range), so a proxy with more
// clients than that needs several: each dial takes the next one, round robin.
#pragma once

#include <vector>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>

#include "net/tcp_socket.hpp"

namespace proxy {

// Binds the opened, unconnected `socket` to the next of `sources` of the
// broker's address family, port 0. The port is chosen at connect time
// (IP_BIND_ADDRESS_NO_PORT), so each source has the whole ephemeral range
// per broker address rather than per source. Nothing to do when `sources`
// is empty; an error when none is of the broker's family.
boost::system::error_code bind_upstream_source(tcp_socket& socket,
                                               const boost::asio::ip::tcp::endpoint& broker,
                                               const std::vector<boost::asio::ip::address>& sources);

}  // namespace proxy
