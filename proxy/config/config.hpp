// Configuration: a TOML file, then command-line flags over it, validated into
// one struct. A bad value is reported with the key that holds it.
#pragma once

#include <array>
#include <chrono>
#include <stdexcept>
#include <string>

#include "net/proxy_context.hpp"

namespace proxy {

struct host_port {
  std::string host;
  std::string port;
};

// One client listener; those not enabled are not opened.
struct listener_config {
  bool enabled = false;
  host_port address;
  listener_settings settings;
  tls_files tls;  // tls and wss
};

// Talking to the API server: [auth] keys beyond url and timeout_ms.
struct auth_client_config {
  std::string ca_file;                              // https: CA bundle (empty: the system's)
  std::size_t max_idle_connections = 4;             // pooled keep-alive connections per worker
  std::size_t max_connections = 16;                 // calls in progress per worker; more wait their turn
  std::chrono::milliseconds idle_timeout{4'000};    // below the API server's keep-alive (cpp-httplib: 5 s)
  std::size_t cache_max_entries = 10'000;           // per worker; 0: no cache
  std::chrono::milliseconds negative_cache{2'000};  // how long a 401 is remembered; 0: not at all
  std::chrono::milliseconds stale_if_error{0};      // degraded mode window; 0: off
  unsigned breaker_failures = 5;                    // consecutive failures that open the breaker; 0: never
  std::chrono::milliseconds breaker_cooldown{5'000};
  bool events = true;                               // follow GET /v1/events
  std::string service_token_file;                   // Bearer token for /v1/events
  std::chrono::seconds events_wait{25};             // long-poll length
};

struct proxy_config {
  // Indexed by transport_kind. Plain TCP on 5000 is on unless switched off.
  std::array<listener_config, 4> listeners{{
      {true, {"0.0.0.0", "5000"}, {transport_kind::tcp}, {}},
      {false, {"0.0.0.0", "8883"}, {transport_kind::tls}, {}},
      {false, {"0.0.0.0", "8080"}, {transport_kind::ws}, {}},
      {false, {"0.0.0.0", "8443"}, {transport_kind::wss}, {}},
  }};
  listener_config& listener(transport_kind kind) { return listeners[static_cast<std::size_t>(kind)]; }
  const listener_config& listener(transport_kind kind) const { return listeners[static_cast<std::size_t>(kind)]; }
  host_port admin{"127.0.0.1", "9100"};
  std::string admin_token_file;  // [admin] token_file: the operator endpoints' Bearer token; empty: they are off
  std::string auth_url = "http://127.0.0.1:8080";
  std::chrono::milliseconds auth_http_timeout{3'000};
  auth_client_config auth;
  std::string log_level = "info";
  unsigned threads = 0;  // 0: one per core
  // EEVDF time slice asked for each worker thread (sched_setattr's sched_runtime,
  // Linux >= 6.12), in µs; 0 leaves the kernel's default (1.4 ms here). 100 µs
  // took the paced p50 from 115 to 86 µs, below HAProxy's 93 (issue 14, round 6).
  unsigned thread_slice_us = 100;
  bool drain_fire_wills = false;  // [drain] wills = "fire": SIGTERM lets the broker publish every will
  connection_settings connection;
};

// "listeners.tls": where a listener's keys live in the file, and how errors name them.
inline std::string listener_key(transport_kind kind) { return std::string("listeners.") + to_string(kind); }

class config_error : public std::runtime_error {
 public:
  config_error(const std::string& key, const std::string& problem)
      : std::runtime_error("configuration key '" + key + "': " + problem) {}
};

struct parsed_command_line {
  proxy_config config;
  bool show_help = false;
};

// Throws config_error naming the offending key or flag.
parsed_command_line parse_command_line(int argc, const char* const* argv);
void load_config_file(const std::string& path, proxy_config& config);
host_port parse_host_port(const std::string& key, const std::string& text);
std::string help_text();

}  // namespace proxy
