// Which WebSocket upgrade requests the proxy accepts, as a pure function of
// the request's fields, so it is tested without sockets. MQTT over WebSocket
// (MQTT 5.0 section 6, 3.1.1 section 6): the client offers the "mqtt"
// subprotocol (older clients "mqttv3.1") and the server echoes the one it
// picked.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "net/proxy_context.hpp"

namespace proxy::websocket_policy {

struct upgrade_request {
  std::string_view method;
  std::string_view target;     // path and query
  bool is_websocket_upgrade = false;
  std::optional<std::string_view> origin;
  std::string_view subprotocols;  // Sec-WebSocket-Protocol, comma-separated, may be repeated joined
};

struct verdict {
  unsigned status = 101;  // 101: accept; otherwise the HTTP status to answer with
  std::string reason;     // for the response body and the log
  std::string subprotocol;
};

// The first subprotocol of the client's list that MQTT defines.
std::optional<std::string> choose_subprotocol(std::string_view offered);
bool origin_allowed(std::string_view origin, const websocket_options& options);
bool path_matches(std::string_view target, std::string_view path);
verdict check(const upgrade_request& request, const websocket_options& options);

}  // namespace proxy::websocket_policy
