// MQTT over WebSocket (MQTT 5.0 / 3.1.1 section 6), over TCP or TLS. The
// WebSocket is a byte stream to the session: a packet may be split across
// frames and messages or several packed into one; the framer reassembles
// either way. Beast parses the HTTP upgrade request; the data phase is our
// own small codec (net/websocket_frames.hpp), which holds nothing between
// reads, so an idle WebSocket reader parks on its socket as TCP's does.
#pragma once

#include <algorithm>
#include <cstring>
#include <memory>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/error.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include "net/tls_transport.hpp"
#include "net/transport.hpp"
#include "net/websocket_frames.hpp"
#include "net/websocket_policy.hpp"

namespace proxy {

template <class NextLayer>
class websocket_transport final : public transport {
  static constexpr bool over_tls = !std::is_same_v<NextLayer, tcp_socket>;

 public:
  websocket_transport(tcp_socket socket, const websocket_options& options, ssl_context_ptr context)
      : stream_(make_next_layer(std::move(socket), context)), options_(options) {}

  tcp_socket& socket() override {
    if constexpr (over_tls) {
      return stream_.next_layer();
    } else {
      return stream_;
    }
  }

  boost::asio::awaitable<handshake_result> handshake() override {
    namespace http = boost::beast::http;
    if constexpr (over_tls) {
      auto [ec, n] = co_await stream_.async_handshake(tls_stream::role::server, as_tuple_awaitable());
      (void)n;
      if (ec) co_return handshake_result{ec, "TLS: " + describe_tls_error(ec, stream_.native_handle())};
    }
    boost::beast::flat_buffer buffer;
    http::request_parser<http::empty_body> parser;
    parser.header_limit(8 * 1024);
    auto [read_error, read_bytes] = co_await http::async_read(stream_, buffer, parser, as_tuple_awaitable());
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
    auto verdict = websocket_policy::check(summary, options_);
    if (verdict.status == 101) verdict = check_key_and_version(request, std::move(verdict));
    if (verdict.status != 101) {
      co_await refuse(verdict.status, verdict.reason);
      co_return handshake_result{boost::beast::websocket::error::no_connection_upgrade,
                                 "WebSocket upgrade refused with " + std::to_string(verdict.status) + ": " + verdict.reason};
    }
    http::response<http::empty_body> response{http::status::switching_protocols, 11};
    response.set(http::field::upgrade, "websocket");
    response.set(http::field::connection, "Upgrade");
    response.set(http::field::sec_websocket_accept,
                 websocket_frames::accept_key(request[http::field::sec_websocket_key]));
    response.set(http::field::sec_websocket_protocol, verdict.subprotocol);
    response.set(http::field::server, "mqtt-proxy");
    auto [write_error, written] = co_await http::async_write(stream_, response, as_tuple_awaitable());
    (void)written;
    if (write_error) co_return handshake_result{write_error, "WebSocket: " + write_error.message()};
    // A client should wait for the 101 before its first frame [RFC 6455 4.1]; keep what one sent early.
    const auto early = buffer.data();
    leftover_.assign(static_cast<const char*>(early.data()), early.size());
    established_ = true;
    co_return handshake_result{};
  }

  // Nothing is held between reads but leftover bytes of the upgrade request
  // (rare) and what OpenSSL may hold: otherwise readiness is the socket's.
  bool readable_when_socket_is() const override {
    if (!leftover_.empty()) return false;
    if constexpr (over_tls) return !stream_.has_pending();
    return true;
  }

  boost::asio::awaitable<void> wait_readable() override {
    if (!readable_when_socket_is()) co_return;
    auto [ec] = co_await socket().async_wait(tcp_socket::wait_read, as_tuple_awaitable());
    (void)ec;  // the read that follows reports any error
  }

  std::size_t read_size_hint() override {
    if (!leftover_.empty()) return leftover_.size();
    boost::system::error_code ec;
    return socket().available(ec);  // frames: a little more than the data they carry
  }

  // Reads until some message data has arrived; answers pings and the close
  // handshake on the way. The peer's close ends the stream (eof).
  boost::asio::awaitable<io_result> read_some(boost::asio::mutable_buffer buffer) override {
    for (;;) {
      if (decoder_.closed() || decoder_.failed()) co_return io_result{boost::asio::error::eof, 0};
      std::size_t got = 0;
      if (!leftover_.empty()) {
        got = std::min(buffer.size(), leftover_.size());
        std::memcpy(buffer.data(), leftover_.data(), got);
        leftover_.erase(0, got);
        if (leftover_.empty()) std::string().swap(leftover_);
      } else {
        auto [ec, n] = co_await stream_.async_read_some(buffer, as_tuple_awaitable());
        if (ec) co_return io_result{ec, 0};
        got = n;
      }
      const auto found = decoder_.decode({static_cast<std::uint8_t*>(buffer.data()), got});
      note_control(found);
      if (!control_out_.empty() && !writing_) {
        writing_ = true;
        const auto flushed = co_await flush_control();
        release();
        if (flushed) co_return io_result{flushed, 0};
      }
      if (found.fail != 0) co_return io_result{failure_error(found.fail), 0};
      if (found.data > 0) co_return io_result{{}, found.data};
      if (found.close) co_return io_result{boost::asio::error::eof, 0};
    }
  }

  // One binary frame (one message) per call.
  boost::asio::awaitable<io_result> write(const std::vector<boost::asio::const_buffer>& buffers) override {
    co_await acquire();
    if (close_sent_) {
      release();
      co_return io_result{boost::beast::websocket::error::closed, 0};
    }
    std::array<std::uint8_t, 10> header{};
    const std::size_t payload = boost::asio::buffer_size(buffers);
    const auto header_size = websocket_frames::encode_header(header, websocket_frames::opcode::binary, payload);
    std::vector<boost::asio::const_buffer> frame;
    frame.reserve(buffers.size() + 1);
    frame.emplace_back(header.data(), header_size);
    frame.insert(frame.end(), buffers.begin(), buffers.end());
    auto [ec, n] = co_await boost::asio::async_write(stream_, frame, as_tuple_awaitable());
    (void)n;
    if (!ec) {
      const auto flushed = co_await flush_control();  // a pong or close the reader queued meanwhile
      ec = flushed;
    }
    release();
    co_return io_result{ec, ec ? 0 : payload};
  }

  // Sends our close frame after anything being written; the connection
  // closes TCP (and TLS) once the peer's close frame has arrived, which a
  // read outstanding meanwhile sees as eof.
  boost::asio::awaitable<void> shutdown() override {
    if (!established_) {
      boost::system::error_code ignored;
      socket().shutdown(tcp_socket::shutdown_send, ignored);
      co_return;
    }
    if (close_sent_) co_return;
    queue_close(websocket_frames::normal_closure);
    if (writing_) co_return;  // the writer sends it when its frame is out
    writing_ = true;
    const auto flushed = co_await flush_control();
    (void)flushed;
    release();
  }

  std::string peer_certificate_subject() override {
    if constexpr (over_tls) return certificate_subject(stream_.native_handle());
    return {};
  }

 private:
  static auto as_tuple_awaitable() { return boost::asio::as_tuple(boost::asio::use_awaitable); }

  static NextLayer make_next_layer(tcp_socket socket, const ssl_context_ptr& context) {
    if constexpr (over_tls) {
      return NextLayer(std::move(socket), context);
    } else {
      return socket;
    }
  }

  // What Beast's accept checked besides the policy: a Host, a well-formed
  // key, version 13 (426 names the one we speak) [RFC 6455 4.2.1, 4.4].
  template <class Request>
  static websocket_policy::verdict check_key_and_version(const Request& request, websocket_policy::verdict verdict) {
    namespace http = boost::beast::http;
    if (request[http::field::host].empty()) return {400, "no Host header", {}};
    if (!websocket_frames::valid_key(request[http::field::sec_websocket_key]))
      return {400, "missing or malformed Sec-WebSocket-Key", {}};
    if (request[http::field::sec_websocket_version] != "13") return {426, "unsupported Sec-WebSocket-Version", {}};
    return verdict;
  }

  static boost::system::error_code failure_error(std::uint16_t code) {
    if (code == websocket_frames::unsupported_data) return boost::beast::websocket::error::bad_data_frame;
    return boost::system::errc::make_error_code(boost::system::errc::protocol_error);
  }

  void note_control(const websocket_frames::decoded& found) {
    // Only the latest ping needs a pong [RFC 6455 5.5.3]: a pong still waiting
    // (flush_control takes it out before writing) is replaced by the newest.
    if (found.ping && !close_sent_)
      control_out_ = websocket_frames::control_frame(websocket_frames::opcode::pong, decoder_.take_ping());
    else if (found.ping)
      (void)decoder_.take_ping();  // we are closing: no pong
    if (found.fail != 0 && !close_sent_) queue_close(found.fail);
    if (found.close && !close_sent_) {
      const auto code = decoder_.peer_close_code();
      queue_close(code == websocket_frames::no_status ? websocket_frames::normal_closure : code);
    }
  }

  void queue_close(std::uint16_t code) {
    control_out_ = websocket_frames::close_frame(code);  // replaces a pong not yet sent
    close_sent_ = true;
  }

  // Writes the queued control frame; called holding the write side. Once
  // both close frames have passed (or after a violation), our direction of
  // TCP ends: the server closes first [RFC 6455 7.1.1].
  boost::asio::awaitable<boost::system::error_code> flush_control() {
    while (!control_out_.empty()) {
      std::string frame;
      frame.swap(control_out_);
      auto [ec, n] = co_await boost::asio::async_write(stream_, boost::asio::buffer(frame), as_tuple_awaitable());
      (void)n;
      if (ec) co_return ec;
    }
    if (close_sent_ && (decoder_.closed() || decoder_.failed())) end_send();
    co_return boost::system::error_code{};
  }

  void end_send() {
    if (send_ended_) return;
    send_ended_ = true;
    if constexpr (over_tls) {
      stream_.shutdown_send();
    } else {
      boost::system::error_code ignored;
      stream_.shutdown(tcp_socket::shutdown_send, ignored);
    }
  }

  // The reader writes a pong or close when the writer is idle, so the writer
  // may find the write side taken and wait for it (never the other way).
  boost::asio::awaitable<void> acquire() {
    while (writing_) {
      waiter_ = std::make_unique<boost::asio::steady_timer>(socket().get_executor(),
                                                            boost::asio::steady_timer::time_point::max());
      auto [ec] = co_await waiter_->async_wait(as_tuple_awaitable());
      (void)ec;
    }
    waiter_.reset();
    writing_ = true;
  }

  void release() {
    writing_ = false;
    if (waiter_) waiter_->cancel();
  }

  boost::asio::awaitable<void> refuse(unsigned status, const std::string& reason) {
    namespace http = boost::beast::http;
    http::response<http::string_body> response{static_cast<http::status>(status), 11};
    response.set(http::field::server, "mqtt-proxy");
    response.set(http::field::connection, "close");
    response.set(http::field::content_type, "text/plain");
    if (status == 426) {
      response.set(http::field::upgrade, "websocket");
      response.set(http::field::sec_websocket_version, "13");
    }
    response.body() = reason + "\n";
    response.prepare_payload();
    auto [ec, n] = co_await http::async_write(stream_, response, as_tuple_awaitable());
    (void)ec;
    (void)n;
  }

  NextLayer stream_;  // the TCP socket, or TLS over it
  const websocket_options& options_;
  websocket_frames::frame_decoder decoder_;
  std::string leftover_;     // bytes the client sent right after its upgrade request
  std::string control_out_;  // a pong or our close frame, waiting for the write side
  std::unique_ptr<boost::asio::steady_timer> waiter_;  // the writer, while the reader writes a control frame
  bool writing_ = false;
  bool close_sent_ = false;
  bool send_ended_ = false;
  bool established_ = false;
};

}  // namespace proxy
