// Plain TCP: the cheapest transport. Idle connections hold no read buffer,
// because the stream can be polled for readability.
#pragma once

#include "net/transport.hpp"

namespace proxy {

class tcp_transport final : public transport {
 public:
  explicit tcp_transport(tcp_socket socket) : socket_(std::move(socket)) {}

  tcp_socket& socket() override { return socket_; }
  boost::asio::awaitable<handshake_result> handshake() override { co_return handshake_result{}; }
  boost::asio::awaitable<void> wait_readable() override;
  bool readable_when_socket_is() const override { return true; }
  std::size_t read_size_hint() override;
  boost::asio::awaitable<io_result> read_some(boost::asio::mutable_buffer buffer) override;
  boost::asio::awaitable<io_result> write(const std::vector<boost::asio::const_buffer>& buffers) override;
  boost::asio::awaitable<void> shutdown() override;
  bool immediate_io() const override { return true; }
  io_result try_read_some(boost::asio::mutable_buffer buffer) override;
  io_result try_write(const std::vector<boost::asio::const_buffer>& buffers) override;

 private:
  io_result send_one(boost::asio::const_buffer buffer);

  tcp_socket socket_;
};

}  // namespace proxy
