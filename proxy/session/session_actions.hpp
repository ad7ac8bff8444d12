// What a client_session asks its driver to do. The session never touches a
// socket or a clock; the driver (net/connection) carries these out in order.
// Actions are values: each owns the bytes it carries, so a list of them stays
// valid whatever the session does next.
#pragma once

#include <chrono>
#include <string>
#include <variant>
#include <vector>

#include "mqtt/byte_writer.hpp"
#include "session/acl.hpp"

namespace proxy {

// The session's deadlines. The driver keeps one deadline per kind (one timer
// for all of them is enough) and calls on_timer(kind) when one passes.
enum class timer_kind {
  handshake,       // CONNECT to relaying: connect, auth and upstream timeouts
  session_expiry,  // the API server's expires_in
  revalidate,      // re-validate a session that was admitted on a stale answer (degraded mode)
  upstream_ping,   // the broker's keep-alive is shorter than the client's: the proxy pings it
};
inline constexpr std::size_t timer_kind_count = 4;

}  // namespace proxy

namespace proxy::action {

struct send_to_client {
  mqtt::bytes data;
};
struct send_to_upstream {
  mqtt::bytes data;
};
// The frame being handled, unchanged: relaying without re-encoding.
struct forward_to_upstream {};
struct forward_to_client {};
// Ask the API server about a session token; answer with on_auth_result.
struct validate_session {
  std::string token;
};
// Open the broker connection and send this CONNECT first.
struct connect_upstream {
  mqtt::bytes connect_packet;
};
// Set (or move) the deadline of one kind; on_timer(kind) when it passes.
struct arm_timer {
  timer_kind kind;
  std::chrono::milliseconds after;
};
struct disarm_timer {
  timer_kind kind;
};
// Flush what is queued in both directions, then close both connections. No
// DISCONNECT goes upstream unless the session queued one, so the broker
// publishes the will exactly when it should.
struct close {
  std::string reason;
  // The client sent DISCONNECT: it reads nothing more and closes its side
  // [MQTT-3.14.4-1], so the driver need not wait for its FIN.
  bool client_left = false;
};
// Report-only ACL: the ACL would have refused this; the driver logs it. The
// session sends each (action, name) once per connection, up to a bound.
struct acl_report {
  acl_action what;
  std::string name;  // topic or filter, as the client or broker sent it
  std::string user;
  std::string why;
  bool last = false;  // the bound is reached: later ones are only counted
};

}  // namespace proxy::action

namespace proxy {
using session_action = std::variant<action::send_to_client, action::send_to_upstream, action::forward_to_upstream,
                                    action::forward_to_client, action::validate_session, action::connect_upstream,
                                    action::arm_timer, action::disarm_timer, action::close, action::acl_report>;
using session_actions = std::vector<session_action>;
}  // namespace proxy
