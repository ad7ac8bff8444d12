// MQTT over WebSocket (MQTT 5.0 / 3.1.1 section 6) with Boost.Beast, over
// TCP or TLS. The WebSocket is a byte stream to the session: a packet may be
// split across frames and messages or several packed into one; the framer
// reassembles either way. Beast answers pings and completes the close
// handshake on its own.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include "net/tls_transport.hpp"
#include "net/transport.hpp"
#include "net/websocket_policy.hpp"

namespace proxy {

template <class NextLayer>
class websocket_transport final : public transport {
  static constexpr bool over_tls = !std::is_same_v<NextLayer, boost::asio::ip::tcp::socket>;

 public:
  websocket_transport(boost::asio::ip::tcp::socket socket, const websocket_options& options, ssl_context_ptr context)
      : context_(std::move(context)), ws_(make_next_layer(std::move(socket), context_)), options_(options) {}

  boost::asio::ip::tcp::socket& socket() override { return boost::beast::get_lowest_layer(ws_); }

  boost::asio::awaitable<handshake_result> handshake() override {
    namespace http = boost::beast::http;
    if constexpr (over_tls) {
      auto [ec, n] = co_await ws_.next_layer().async_handshake(tls_stream::role::server, as_tuple_awaitable());
      (void)n;
      if (ec) co_return handshake_result{ec, "TLS: " + describe_tls_error(ec, ws_.next_layer().native_handle())};
    }
    boost::beast::flat_buffer buffer;
    http::request_parser<http::empty_body> parser;
    parser.header_limit(8 * 1024);
    auto [read_error, read_bytes] = co_await http::async_read(ws_.next_layer(), buffer, parser, as_tuple_awaitable());
    (void)read_bytes;
    if (read_error) {
      // Not HTTP at all (or cut short): answer 400 if the peer is still there.
      if (read_error != http::error::end_of_stream) co_await refuse(400, "malformed HTTP request");
      co_return handshake_result{read_error, "HTTP: " + read_error.message()};
    }
    const auto& request = parser.get();
    websocket_policy::upgrade_request summary{request.method_string(), request.target(),
                                              boost::beast::websocket::is_upgrade(request), std::nullopt,
                                              request[http::field::sec_websocket_protocol]};
    if (auto origin = request.find(http::field::origin); origin != request.end()) summary.origin = origin->value();
    const auto verdict = websocket_policy::check(summary, options_);
    if (verdict.status != 101) {
      co_await refuse(verdict.status, verdict.reason);
      co_return handshake_result{boost::beast::websocket::error::no_connection_upgrade,
                                 "WebSocket upgrade refused with " + std::to_string(verdict.status) + ": " + verdict.reason};
    }
    ws_.set_option(boost::beast::websocket::stream_base::decorator(
        [subprotocol = verdict.subprotocol](boost::beast::websocket::response_type& response) {
          response.set(http::field::sec_websocket_protocol, subprotocol);
          response.set(http::field::server, "mqtt-proxy");
        }));
    ws_.binary(true);
    ws_.auto_fragment(false);  // one message per batch of packets
    ws_.read_message_max(0);   // packets are bounded by the framer, messages need not be
    auto [accept_error] = co_await ws_.async_accept(request, as_tuple_awaitable());
    if (accept_error) co_return handshake_result{accept_error, "WebSocket: " + accept_error.message()};
    established_ = true;
    co_return handshake_result{};
  }

  boost::asio::awaitable<void> wait_readable() override { co_return; }
  std::size_t read_size_hint() override { return 4 * 1024; }  // held while idle: keep it small

  boost::asio::awaitable<io_result> read_some(boost::asio::mutable_buffer buffer) override {
    auto [ec, n] = co_await ws_.async_read_some(buffer, as_tuple_awaitable());
    // MQTT-6.0.0-1: a text frame closes the connection.
    if (!ec && !ws_.got_binary()) co_return io_result{boost::beast::websocket::error::bad_data_frame, 0};
    co_return io_result{ec, n};
  }

  boost::asio::awaitable<io_result> write(const std::vector<boost::asio::const_buffer>& buffers) override {
    auto [ec, n] = co_await ws_.async_write(buffers, as_tuple_awaitable());
    co_return io_result{ec, n};
  }

  // Beast allows the close while a read is outstanding: that read ends when
  // the peer's close frame arrives, then Beast tears down TCP (and TLS).
  boost::asio::awaitable<void> shutdown() override {
    if (!established_ || !ws_.is_open()) {
      boost::system::error_code ignored;
      socket().shutdown(boost::asio::ip::tcp::socket::shutdown_send, ignored);
      co_return;
    }
    auto [ec] = co_await ws_.async_close(boost::beast::websocket::close_code::normal, as_tuple_awaitable());
    (void)ec;
  }

  std::string peer_certificate_subject() override {
    if constexpr (over_tls) return certificate_subject(ws_.next_layer().native_handle());
    return {};
  }

 private:
  static auto as_tuple_awaitable() { return boost::asio::as_tuple(boost::asio::use_awaitable); }

  static NextLayer make_next_layer(boost::asio::ip::tcp::socket socket, const ssl_context_ptr& context) {
    if constexpr (over_tls) {
      return NextLayer(std::move(socket), context);
    } else {
      return socket;
    }
  }

  boost::asio::awaitable<void> refuse(unsigned status, const std::string& reason) {
    namespace http = boost::beast::http;
    http::response<http::string_body> response{static_cast<http::status>(status), 11};
    response.set(http::field::server, "mqtt-proxy");
    response.set(http::field::connection, "close");
    response.set(http::field::content_type, "text/plain");
    if (status == 426) response.set(http::field::upgrade, "websocket");
    response.body() = reason + "\n";
    response.prepare_payload();
    auto [ec, n] = co_await http::async_write(ws_.next_layer(), response, as_tuple_awaitable());
    (void)ec;
    (void)n;
  }

  ssl_context_ptr context_;  // null for plain WebSocket
  boost::beast::websocket::stream<NextLayer> ws_;
  const websocket_options& options_;
  bool established_ = false;
};

}  // namespace proxy
