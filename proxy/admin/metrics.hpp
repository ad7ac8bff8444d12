// Process-wide counters, owned by main and shared by reference with every
// connection. Atomics, so the per-core threads never lock to count.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

namespace proxy {

// A counter every worker bumps for every relayed packet: one cache line per
// shard, a worker keeps to its own shard, so the workers do not pass one
// line back and forth twice per packet. Relaxed: the sum is read only to
// render /metrics, where a count a packet behind is fine.
class sharded_counter {
 public:
  static constexpr std::size_t shards = 16;
  void operator++(int) { add(1); }
  sharded_counter& operator+=(std::uint64_t n) {
    add(n);
    return *this;
  }
  std::uint64_t load() const {
    std::uint64_t sum = 0;
    for (const auto& s : shard_) sum += s.value.load(std::memory_order_relaxed);
    return sum;
  }
  operator std::uint64_t() const { return load(); }

 private:
  struct alignas(64) shard {
    std::atomic<std::uint64_t> value{0};
  };
  static std::size_t my_shard() {
    static std::atomic<std::size_t> next{0};
    thread_local const std::size_t index = next.fetch_add(1, std::memory_order_relaxed) % shards;
    return index;
  }
  void add(std::uint64_t n) { shard_[my_shard()].value.fetch_add(n, std::memory_order_relaxed); }
  std::array<shard, shards> shard_{};
};

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
  sharded_counter packets_client_to_upstream;  // per relayed packet: sharded (see above)
  sharded_counter packets_upstream_to_client;
  sharded_counter bytes_client_to_upstream;
  sharded_counter bytes_upstream_to_client;
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

  // Prometheus text exposition format.
  std::string render() const;
};

}  // namespace proxy
