// The type of every socket a client connection holds: a TCP stream socket on
// the worker's io_context executor. asio's default tcp::socket carries an
// any_io_executor (56 B) where the io_context's executor is 8 B, and every
// operation started on the socket keeps a copy of it: a parked socket wait
// 104 B instead of 152. Two sockets and two parked waits per idle client
// (issue 14: ~190 B per client).
#pragma once

#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace proxy {

using tcp_socket = boost::asio::basic_stream_socket<boost::asio::ip::tcp, boost::asio::io_context::executor_type>;
// Accepts tcp_sockets (a listener's accept hands out sockets of its own executor type).
using tcp_acceptor = boost::asio::basic_socket_acceptor<boost::asio::ip::tcp, boost::asio::io_context::executor_type>;

}  // namespace proxy
