// Settings every connection reads and the objects it shares: immutable after
// start-up except the counters, which are atomics.
#pragma once

#include <chrono>
#include <string>

#include "admin/metrics.hpp"
#include "session/client_session.hpp"

namespace proxy {

struct upstream_settings {
  std::string host = "127.0.0.1";
  std::string port = "1883";
  std::chrono::milliseconds connect_timeout{5'000};
};

struct connection_settings {
  session_config session;
  upstream_settings upstream;
  std::chrono::milliseconds connect_timeout{10'000};  // accept to CONNECT
  std::chrono::milliseconds drain_timeout{5'000};     // flushing queued bytes on close
  std::size_t max_packet_size = 1024 * 1024;
  std::size_t max_connections = 100'000;
  // Reading from one side stops while the other side has this much queued,
  // so a slow reader cannot make the proxy buffer without bound.
  std::size_t write_high_water = 1024 * 1024;
  // Expect a PROXY protocol v1/v2 header before MQTT (a load balancer in
  // front); the address it carries is the one logged and sent to the API server.
  bool proxy_protocol = false;
};

}  // namespace proxy
