// `[upstream] protocol = "auto"`: which MQTT version the broker speaks,
// asked once at start-up. A 5.0 CONNECT first; a broker that closes the
// connection without a CONNACK (RabbitMQ 3.10's MQTT plugin does), answers
// with a 3.1.1-form CONNACK (return code 1, [MQTT-3.1.2-2]) or with 5.0's
// 0x84 is then asked with a 3.1.1 CONNECT: if it accepts that, 5.0 clients
// are bridged (session/version_bridge.hpp).
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "mqtt/byte_writer.hpp"
#include "mqtt/types.hpp"
#include "net/transport.hpp"
#include "session/client_session.hpp"

namespace proxy {

// What one CONNECT of a given version got.
enum class version_answer {
  accepted,     // CONNACK success
  refused,      // CONNACK with a failure other than the version (credentials, ...)
  unsupported,  // closed without CONNACK, or the version was refused
  unreachable,  // no connection, or no answer in time: nothing learned
};

// Classifies the first bytes a broker sent back to a CONNECT of `asked`
// (pure; `closed` when the connection ended after them).
version_answer classify_version_answer(mqtt::protocol_version asked, const mqtt::bytes& received, bool closed);

// "auto" resolved: v5 or v3_1_1 when the broker said, automatic when it
// could not be asked (the proxy then speaks each client's version).
struct upstream_protocol_result {
  upstream_protocol protocol = upstream_protocol::automatic;
  std::string detail;  // for the start-up log
};

upstream_protocol_result detect_upstream_protocol(const upstream_settings& where,
                                                  const std::optional<std::string>& username,
                                                  const std::optional<std::string>& password, ssl_context_ptr tls,
                                                  std::chrono::milliseconds timeout);

}  // namespace proxy
