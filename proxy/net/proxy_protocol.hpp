// The HAProxy PROXY protocol, versions 1 (text) and 2 (binary), as sent by a
// load balancer in front of the proxy so that the real client address reaches
// logs, limits and the auth call. Pure parsing over bytes, no I/O.
// Reference: https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace proxy::proxy_protocol {

struct header {
  std::string source;      // "203.0.113.7:51234" ("[2001:db8::1]:443" for IPv6); empty for LOCAL/UNKNOWN
  std::size_t size = 0;    // bytes the header took; MQTT starts after them
};

enum class status { need_more, complete, invalid };

struct parse_result {
  status state = status::need_more;
  header value;
  std::string error;  // why it is invalid
};

// Largest header accepted: a v1 line is at most 107 bytes; v2 with TLVs is
// capped here so a peer cannot make the proxy buffer much before MQTT.
inline constexpr std::size_t max_header_size = 536;

parse_result parse(std::span<const std::uint8_t> bytes);

}  // namespace proxy::proxy_protocol
