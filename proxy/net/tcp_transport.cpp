#include "net/tcp_transport.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace proxy {

namespace asio = boost::asio;
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

asio::awaitable<void> tcp_transport::wait_readable() {
  auto [ec] = co_await socket_.async_wait(asio::ip::tcp::socket::wait_read, as_tuple_awaitable);
  (void)ec;  // the read that follows reports any error
}

std::size_t tcp_transport::read_size_hint() {
  boost::system::error_code ec;
  return socket_.available(ec);
}

asio::awaitable<io_result> tcp_transport::read_some(asio::mutable_buffer buffer) {
  auto [ec, n] = co_await socket_.async_read_some(buffer, as_tuple_awaitable);
  co_return io_result{ec, n};
}

asio::awaitable<io_result> tcp_transport::write(const std::vector<asio::const_buffer>& buffers) {
  auto [ec, n] = co_await asio::async_write(socket_, buffers, as_tuple_awaitable);
  co_return io_result{ec, n};
}

asio::awaitable<void> tcp_transport::shutdown() {
  boost::system::error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  co_return;
}

}  // namespace proxy
