// Process-wide counters, owned by main and shared by reference with every
// connection. Atomics, so the per-core threads never lock to count.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

namespace proxy {

class upstream_pool;

struct metrics {
  using counter = std::atomic<std::uint64_t>;
  std::atomic<std::int64_t> connections_open{0};
  counter connections_total{0};
  counter connections_refused{0};  // over the connection limit
  counter auth_ok{0};
  counter auth_invalid{0};
  counter auth_unavailable{0};
  counter auth_timeout{0};
  counter auth_latency_ms_sum{0};
  counter auth_latency_count{0};
  counter acl_denied_publish{0};
  counter acl_denied_subscribe{0};
  counter acl_denied_deliver{0};  // broker PUBLISHes outside the subscribe ACL, dropped
  counter acl_unsubscribes{0};    // UNSUBSCRIBEs the proxy sent when an ACL narrowed
  counter sessions_revoked{0};    // live connections ended by a revocation
  counter held_dropped{0};        // packets held before authentication and dropped (it failed)
  counter upstream_connect_failures{0};
  counter packets_client_to_upstream{0};
  counter packets_upstream_to_client{0};
  counter bytes_client_to_upstream{0};
  counter bytes_upstream_to_client{0};
  counter protocol_errors{0};
  // Indexed by transport_kind: tcp, tls, ws, wss.
  std::array<counter, 4> connections_by_transport{};
  std::array<counter, 4> handshake_failures{};
  // The API server client (proxy/auth): validation cache, breaker, event feed.
  counter auth_cache_hit{0};
  counter auth_cache_miss{0};
  counter auth_cache_negative_hit{0};
  counter auth_cache_stale{0};
  std::atomic<std::int64_t> auth_breaker_open{0};  // workers whose breaker is not closed
  counter auth_breaker_opens{0};
  counter auth_events_received{0};
  std::atomic<std::int64_t> auth_events_connected{0};  // 1 while the event feed is connected
  // The broker nodes' lines (net/upstream_pool.hpp); set once before the workers start.
  const upstream_pool* upstream_nodes = nullptr;

  // Prometheus text exposition format.
  std::string render() const;
};

}  // namespace proxy
