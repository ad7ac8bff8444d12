// Before MQTT: the PROXY protocol header and the transport's handshake (TLS,
// WebSocket), both within the handshake deadline.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <array>

#include <spdlog/spdlog.h>

#include "net/client_connection.hpp"
#include "net/log_field.hpp"
#include "net/proxy_protocol.hpp"

namespace proxy {

namespace asio = boost::asio;
using asio::ip::tcp;
namespace {
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

// Waits for the first byte without taking it: true when the peer closed instead.
asio::awaitable<bool> closed_before_first_byte(tcp_socket& socket) {
  auto [wait_error] = co_await socket.async_wait(tcp_socket::wait_read, as_tuple_awaitable);
  if (wait_error) co_return false;  // the deadline closed the socket: the handshake reports it
  std::uint8_t first = 0;
  boost::system::error_code ec;
  const std::size_t n = socket.receive(asio::buffer(&first, 1), tcp_socket::message_peek, ec);
  co_return n == 0 && (!ec || ec == asio::error::eof);
}
}  // namespace

// The PROXY header comes before anything else, TLS included. It is taken
// from the socket to its last byte and not one further (peek, then consume),
// so whatever follows is still in the kernel for the transport's handshake.
asio::awaitable<bool> client_connection::read_proxy_header() {
  auto& socket = client_->socket();
  std::vector<std::uint8_t> header;  // consumed so far, all of it header
  for (;;) {
    auto [wait_error] = co_await socket.async_wait(tcp_socket::wait_read, as_tuple_awaitable);
    if (state_ != lifecycle::handshaking) co_return false;
    std::array<std::uint8_t, proxy_protocol::max_header_size> peeked;
    boost::system::error_code ec = wait_error;
    std::size_t n = 0;
    if (!ec) n = socket.receive(asio::buffer(peeked.data(), peeked.size() - header.size()), tcp_socket::message_peek, ec);
    if (!ec && n == 0) ec = asio::error::eof;
    if (ec == asio::error::eof && header.empty()) {
      begin_close("closed before the handshake");  // a load balancer's TCP health check
      co_return false;
    }
    if (ec) {
      count_handshake_failure();
      const auto limit = std::to_string(settings().handshake_timeout.count());
      const auto why = !handshake_failure_.empty() ? "no PROXY protocol header within " + limit + " ms"
                                                   : "closed within the PROXY protocol header: " + ec.message();
      spdlog::warn("connection from {} refused: {}", remote_address_, why);
      begin_close(why);
      co_return false;
    }
    std::vector<std::uint8_t> candidate = header;
    candidate.insert(candidate.end(), peeked.begin(), peeked.begin() + static_cast<long>(n));
    const auto parsed = proxy_protocol::parse(candidate);
    if (parsed.state == proxy_protocol::status::invalid) {
      count_handshake_failure();
      spdlog::warn("connection from {} refused: {}", remote_address_, parsed.error);
      begin_close("bad PROXY protocol header: " + parsed.error);
      co_return false;
    }
    const std::size_t take = parsed.state == proxy_protocol::status::need_more ? n : parsed.value.size - header.size();
    std::array<std::uint8_t, proxy_protocol::max_header_size> consumed;
    socket.receive(asio::buffer(consumed.data(), take), 0, ec);  // bytes already seen: does not block
    header.insert(header.end(), consumed.begin(), consumed.begin() + static_cast<long>(take));
    if (parsed.state == proxy_protocol::status::need_more) continue;
    if (!parsed.value.source.empty()) remote_address_ = parsed.value.source;
    co_return true;
  }
}

// TLS and/or WebSocket handshake, bounded by the transport_handshake
// deadline. A failure ends only this connection, counted per listener kind.
// true: the connection is running.
asio::awaitable<bool> client_connection::client_handshake() {
  if (listener_.kind == transport_kind::tcp) {  // nothing to negotiate
    enter(lifecycle::running);
    co_return true;
  }
  const bool peer_closed = co_await closed_before_first_byte(client_->socket());
  handshake_result result{asio::error::eof, {}};
  if (!peer_closed) {
    auto negotiated = co_await client_->handshake();
    result = std::move(negotiated);
  }
  if (result.error && !handshake_failure_.empty()) result.detail = handshake_failure_;
  if (state_ != lifecycle::handshaking) co_return false;
  if (result.error == asio::error::eof && result.detail.empty()) {
    // Connected and closed without a byte: a load balancer's TCP health check, not a failed handshake.
    begin_close("closed before the handshake");
    co_return false;
  }
  if (result.error) {
    count_handshake_failure();
    spdlog::warn("{} handshake with {} failed: {}", to_string(listener_.kind), remote_address_, result.detail);
    begin_close(std::string(to_string(listener_.kind)) + " handshake failed: " + result.detail);
    co_return false;
  }
  enter(lifecycle::running);
  if (const auto subject = client_->peer_certificate_subject(); !subject.empty())
    spdlog::debug("{} presented client certificate {}", remote_address_, log_field(subject, true));
  co_return true;
}

}  // namespace proxy
