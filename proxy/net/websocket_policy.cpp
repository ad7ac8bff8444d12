#include "net/websocket_policy.hpp"

#include <algorithm>
#include <cctype>

namespace proxy::websocket_policy {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

std::optional<std::string> choose_subprotocol(std::string_view offered) {
  while (!offered.empty()) {
    const auto comma = offered.find(',');
    const auto token = trim(offered.substr(0, comma));
    // Subprotocol names are case-sensitive (RFC 6455 4.1); MQTT names "mqtt".
    if (token == "mqtt" || token == "mqttv3.1") return std::string(token);
    if (comma == std::string_view::npos) break;
    offered.remove_prefix(comma + 1);
  }
  return std::nullopt;
}

bool origin_allowed(std::string_view origin, const websocket_options& options) {
  if (options.allowed_origins.empty()) return true;
  // Scheme and host compare without case (RFC 6454 4).
  return std::any_of(options.allowed_origins.begin(), options.allowed_origins.end(),
                     [&](const std::string& allowed) { return equal_ignoring_case(trim(origin), allowed); });
}

bool path_matches(std::string_view target, std::string_view path) {
  const auto query = target.find('?');
  return target.substr(0, query) == path;
}

verdict check(const upgrade_request& request, const websocket_options& options) {
  if (!request.is_websocket_upgrade) return {426, "this endpoint speaks MQTT over WebSocket only", {}};
  if (request.method != "GET") return {405, "a WebSocket upgrade must be a GET", {}};
  if (!path_matches(request.target, options.path)) return {404, "no MQTT endpoint at this path; use " + options.path, {}};
  if (request.origin && !origin_allowed(*request.origin, options))
    return {403, "origin " + std::string(*request.origin) + " is not allowed", {}};
  auto subprotocol = choose_subprotocol(request.subprotocols);
  if (!subprotocol) return {400, "the client must offer the WebSocket subprotocol mqtt (MQTT-6.0.0-3)", {}};
  return {101, {}, *subprotocol};
}

}  // namespace proxy::websocket_policy
