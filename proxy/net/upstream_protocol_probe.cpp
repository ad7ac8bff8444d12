#include "net/upstream_protocol_probe.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <random>

#include "mqtt/codec.hpp"
#include "mqtt/framer.hpp"

namespace proxy {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

struct exchange {
  bool connected = false;
  bool closed = false;  // the broker ended the connection
  mqtt::bytes received;
  bool finished = false;
};

bool whole_frame(const mqtt::bytes& received) {
  auto header = mqtt::parse_frame_header(received, 1024 * 1024);
  return header && *header && received.size() >= (*header)->total_size();
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
// One CONNECT, the bytes of the answer (up to one whole packet or the end of
// the stream), then a normal DISCONNECT if it was accepted.
asio::awaitable<void> ask(asio::io_context::executor_type executor, upstream_settings where, ssl_context_ptr tls,
                          mqtt::bytes connect_packet, mqtt::protocol_version version, exchange& out) {
  auto stream = make_upstream_transport(executor, where, tls);
  tcp::resolver resolver(executor);
  const auto [resolve_error, endpoints] = co_await resolver.async_resolve(where.host, where.port, as_tuple_awaitable);
  if (!resolve_error) {
    const auto [connect_error, endpoint] = co_await asio::async_connect(stream->socket(), endpoints, as_tuple_awaitable);
    out.connected = !connect_error;
  }
  if (out.connected) {
    const auto handshake = co_await stream->handshake();
    out.connected = !handshake.error;
  }
  if (out.connected) {
    const std::vector<asio::const_buffer> request{asio::buffer(connect_packet)};
    const auto written = co_await stream->write(request);
    out.closed = static_cast<bool>(written.error);
    std::array<std::uint8_t, 512> chunk;
    while (!out.closed && !whole_frame(out.received)) {
      const auto read = co_await stream->read_some(asio::buffer(chunk));
      if (read.error) out.closed = true;
      out.received.insert(out.received.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(read.bytes));
    }
    if (!out.closed) {
      const auto goodbye = *mqtt::encode(mqtt::disconnect{}, version);
      const std::vector<asio::const_buffer> bye{asio::buffer(goodbye)};
      co_await stream->write(bye);
      co_await stream->shutdown();
    }
  }
  stream->close();
  out.finished = true;
}
#pragma GCC diagnostic pop

version_answer ask_version(const upstream_settings& where, const std::optional<std::string>& username,
                           const std::optional<std::string>& password, const ssl_context_ptr& tls,
                           std::chrono::milliseconds timeout, mqtt::protocol_version version) {
  mqtt::connect c;
  c.version = version;
  c.clean_start = true;  // leaves no session behind (5.0: session expiry absent, 0)
  c.keep_alive = 60;
  c.client_id = "mqtt-proxy-version-probe-" + std::to_string(std::random_device{}());
  c.username = username;
  c.password = password;
  if (c.password && !c.username) c.username = "";  // 3.1.1 [MQTT-3.1.2-22]
  asio::io_context io;
  exchange out;
  asio::co_spawn(io, ask(io.get_executor(), where, tls, *mqtt::encode(c, version), version, out), asio::detached);
  io.run_for(timeout);
  if (!out.connected) return version_answer::unreachable;
  if (!out.finished && !whole_frame(out.received)) return version_answer::unreachable;  // silent: unknown
  return classify_version_answer(version, out.received, out.closed);
}

}  // namespace

version_answer classify_version_answer(mqtt::protocol_version asked, const mqtt::bytes& received, bool closed) {
  if (!whole_frame(received)) return closed ? version_answer::unsupported : version_answer::unreachable;
  const auto header = *mqtt::parse_frame_header(received, 1024 * 1024);
  const std::span<const std::uint8_t> frame(received.data(), header->total_size());
  auto answer = mqtt::decode(frame, asked);
  const auto* ack = answer ? std::get_if<mqtt::connack>(&*answer) : nullptr;
  if (!ack) {
    // A 5.0 CONNECT answered in the 3.1.1 form: the broker speaks 3.1.1 only.
    auto v3 = mqtt::decode(frame, mqtt::protocol_version::v3_1_1);
    const bool v3_connack = asked == mqtt::protocol_version::v5 && v3 && std::holds_alternative<mqtt::connack>(*v3);
    return v3_connack ? version_answer::unsupported : version_answer::refused;
  }
  if (ack->reason == mqtt::reason_code::unsupported_protocol_version) return version_answer::unsupported;
  return mqtt::is_failure(ack->reason) ? version_answer::refused : version_answer::accepted;
}

upstream_protocol_result detect_upstream_protocol(const upstream_settings& where,
                                                  const std::optional<std::string>& username,
                                                  const std::optional<std::string>& password, ssl_context_ptr tls,
                                                  std::chrono::milliseconds timeout) {
  const auto v5 = ask_version(where, username, password, tls, timeout, mqtt::protocol_version::v5);
  if (v5 == version_answer::accepted) return {upstream_protocol::v5, "the broker accepts MQTT 5.0"};
  if (v5 == version_answer::unreachable) return {upstream_protocol::automatic, "the broker could not be asked"};
  if (v5 == version_answer::refused)
    return {upstream_protocol::automatic, "the broker refused the 5.0 probe for another reason than the version"};
  const auto v3 = ask_version(where, username, password, tls, timeout, mqtt::protocol_version::v3_1_1);
  if (v3 == version_answer::accepted)
    return {upstream_protocol::v3_1_1, "the broker refuses MQTT 5.0 and accepts 3.1.1"};
  return {upstream_protocol::automatic, "the broker refuses MQTT 5.0 and did not accept the 3.1.1 probe either"};
}

}  // namespace proxy
