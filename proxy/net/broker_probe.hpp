// What the broker behind the proxy accepts, learned at start-up (or, when
// the broker was down then, as soon as it answers: main.cpp broker_reprobe):
// one MQTT 5.0 CONNECT (clean start, a probe client id, the proxy's
// upstream credentials), the CONNACK read, a normal DISCONNECT. In
// auth-PUBLISH mode the proxy answers CONNACK itself, so these limits are
// what it advertises to clients and enforces (session/client_session.hpp).
// `[upstream]` keys win over what the probe learns (merge_limits).
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "mqtt/byte_writer.hpp"
#include "net/transport.hpp"
#include "session/client_session.hpp"

namespace proxy {

struct broker_probe_result {
  bool ok = false;  // a successful CONNACK was read
  upstream_limits limits;
  std::string error;  // why not, for the start-up log
  // Whether asking again may yet learn something (worth_asking_again):
  bool connected = false;                    // the CONNECT went out: something listens there
  std::optional<mqtt::reason_code> refusal;  // the reason of a CONNACK that said no
};

// The probe's CONNECT (pure): keep-alive 65535, so a broker with a maximum
// keep-alive (Mosquitto's max_keepalive) answers with its Server Keep Alive;
// session expiry 0, so the probe leaves no session behind.
mqtt::bytes broker_probe_connect(const std::optional<std::string>& username, const std::optional<std::string>& password,
                                 const std::string& client_id);

// The broker's answer to it (pure): limits on success, the reason otherwise.
broker_probe_result broker_probe_answer(const mqtt::connack& ack);

// After a probe that learned nothing (pure): whether the broker may yet
// answer. Yes when it could not be reached or did not answer in time (down,
// starting), or said it is unavailable or busy (0x88, 0x89); no when it
// refused the probe otherwise (credentials: asking again changes nothing),
// or took the CONNECT and closed without a 5.0 CONNACK while known to speak
// only 3.1.1 (RabbitMQ 3.10 behind `protocol = "3.1.1"`).
bool worth_asking_again(const broker_probe_result& result, upstream_protocol protocol);

// Connects, asks and disconnects within `timeout`, on its own io_context
// (call it before the workers start). Never throws for network failures:
// they are in `error`, and the proxy then runs on the configured limits.
broker_probe_result probe_broker(const upstream_settings& where, const std::optional<std::string>& username,
                                 const std::optional<std::string>& password, ssl_context_ptr tls,
                                 std::chrono::milliseconds timeout);

}  // namespace proxy
