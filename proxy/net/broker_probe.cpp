#include "net/broker_probe.hpp"

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

// GCC 12 reports a false -Wmismatched-new-delete for this coroutine's frame
// (asio's frame allocator has a matching sized delete); silenced here only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
asio::awaitable<void> run_probe(asio::io_context::executor_type executor, upstream_settings where, ssl_context_ptr tls,
                                mqtt::bytes connect_packet, broker_probe_result& result, bool& finished) {
  auto stream = make_upstream_transport(executor, where, tls);
  tcp::resolver resolver(executor);
  const auto [resolve_error, endpoints] = co_await resolver.async_resolve(where.host, where.port, as_tuple_awaitable);
  if (resolve_error) {
    result.error = "cannot resolve " + where.host + ": " + resolve_error.message();
    finished = true;
    co_return;
  }
  const auto [connect_error, endpoint] = co_await asio::async_connect(stream->socket(), endpoints, as_tuple_awaitable);
  if (connect_error) {
    result.error = "cannot connect: " + connect_error.message();
    finished = true;
    co_return;
  }
  const auto handshake = co_await stream->handshake();
  if (handshake.error) {
    result.error = "TLS handshake failed: " + handshake.detail;
    finished = true;
    co_return;
  }
  const std::vector<asio::const_buffer> out{asio::buffer(connect_packet)};
  const auto written = co_await stream->write(out);
  if (written.error) {
    result.error = "cannot send CONNECT: " + written.error.message();
    finished = true;
    co_return;
  }
  result.connected = true;
  mqtt::framer framer(1024 * 1024);
  for (;;) {
    auto space = framer.prepare(4096);
    const auto read = co_await stream->read_some(asio::buffer(space.data(), space.size()));
    if (read.error) {
      result.error = "no CONNACK (the broker may not speak MQTT 5.0): " + read.error.message();
      break;
    }
    framer.commit(read.bytes);
    auto next = framer.next();
    if (!next) {
      result.error = "unreadable answer: " + next.error().message();
      break;
    }
    if (!*next) continue;
    auto decoded = mqtt::decode((*next)->first_byte, (*next)->body, mqtt::protocol_version::v5);
    const auto* ack = decoded ? std::get_if<mqtt::connack>(&*decoded) : nullptr;
    if (!ack) {
      result.error = "the broker did not answer with a 5.0 CONNACK";
      break;
    }
    result = broker_probe_answer(*ack);
    result.connected = true;
    if (result.ok) {
      // A clean end: no will, and session expiry 0 leaves nothing behind.
      const auto goodbye = *mqtt::encode(mqtt::disconnect{}, mqtt::protocol_version::v5);
      const std::vector<asio::const_buffer> bye{asio::buffer(goodbye)};
      co_await stream->write(bye);
      co_await stream->shutdown();
    }
    break;
  }
  stream->close();
  finished = true;
}
#pragma GCC diagnostic pop

}  // namespace

mqtt::bytes broker_probe_connect(const std::optional<std::string>& username, const std::optional<std::string>& password,
                                 const std::string& client_id) {
  mqtt::connect c;
  c.version = mqtt::protocol_version::v5;
  c.clean_start = true;
  c.keep_alive = 65535;
  c.client_id = client_id;
  c.username = username;
  c.password = password;
  return *mqtt::encode(c, mqtt::protocol_version::v5);
}

broker_probe_result broker_probe_answer(const mqtt::connack& ack) {
  broker_probe_result result;
  if (mqtt::is_failure(ack.reason)) {
    result.error = "the broker refused the probe: " + std::string(mqtt::to_string(ack.reason));
    result.refusal = ack.reason;
    return result;
  }
  result.ok = true;
  result.limits = limits_from_connack(ack);
  return result;
}

bool worth_asking_again(const broker_probe_result& result, upstream_protocol protocol) {
  using mqtt::reason_code;
  if (result.ok) return false;
  // Unavailable or busy now (a broker still starting, shedding load): perhaps not in a minute.
  const auto refusal = result.refusal;
  if (refusal) return *refusal == reason_code::server_unavailable || *refusal == reason_code::server_busy;
  if (!result.connected) return true;  // down, or silent until the timeout
  // It took the CONNECT and closed (or said something else): a broker that
  // speaks only 3.1.1 always will; a load balancer with no broker behind it
  // may not for long.
  return protocol != upstream_protocol::v3_1_1;
}

broker_probe_result probe_broker(const upstream_settings& where, const std::optional<std::string>& username,
                                 const std::optional<std::string>& password, ssl_context_ptr tls,
                                 std::chrono::milliseconds timeout) {
  asio::io_context io;
  broker_probe_result result;
  bool finished = false;
  const auto client_id = "mqtt-proxy-probe-" + std::to_string(std::random_device{}());
  asio::co_spawn(io, run_probe(io.get_executor(), where, std::move(tls), broker_probe_connect(username, password, client_id),
                               result, finished),
                 asio::detached);
  io.run_for(timeout);
  if (!finished) {
    result = {};
    result.error = "no answer within " + std::to_string(timeout.count()) + " ms";
  }
  return result;
}

}  // namespace proxy
