// What a client_session asks its driver to do. The session never touches a
// socket or a clock; the driver (net/connection) carries these out in order.
#pragma once

#include <chrono>
#include <string>
#include <variant>

#include "mqtt/byte_writer.hpp"

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
// One deadline for the whole handshake (CONNECT to relaying); on_timer when it passes.
struct start_timer {
  std::chrono::milliseconds after;
};
struct stop_timer {};
// The API server's expires_in: when it passes without a re-authentication,
// call on_session_expired. A new one replaces the old.
struct start_session_timer {
  std::chrono::seconds after;
};
// Flush what is queued in both directions, then close both connections. No
// DISCONNECT goes upstream unless the session queued one, so the broker
// publishes the will exactly when it should.
struct close {
  std::string reason;
};

}  // namespace proxy::action

namespace proxy {
using session_action = std::variant<action::send_to_client, action::send_to_upstream, action::forward_to_upstream,
                                    action::forward_to_client, action::validate_session, action::connect_upstream,
                                    action::start_timer, action::stop_timer, action::start_session_timer,
                                    action::close>;
}
