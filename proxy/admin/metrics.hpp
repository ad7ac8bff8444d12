// Process-wide counters, owned by main and shared by reference with every
// connection. Atomics, so the per-core threads never lock to count.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <string>

namespace proxy {

// A Prometheus histogram of durations. Each observation adds to one bucket
// (not cumulative: one increment), the sum and nothing else, with relaxed
// atomics: no locks on the per-core threads. render() makes the buckets
// cumulative and takes the count from them, so _count and the +Inf bucket
// always agree even while observations race with a scrape.
class latency_histogram {
 public:
  // Upper bounds in seconds; the last bucket is +Inf.
  static constexpr std::array<double, 12> bounds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                 0.05,   0.1,   0.25,   0.5,   1.0,  2.5};
  void observe(std::chrono::nanoseconds elapsed);
  std::uint64_t count() const;  // observations so far
  // The HELP/TYPE lines and the samples of a histogram called `name`.
  void render(std::string& out, const char* name, const char* help) const;

 private:
  std::array<std::atomic<std::uint64_t>, bounds.size() + 1> buckets_{};
  std::atomic<std::uint64_t> sum_ns_{0};
};
class upstream_pool;
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
  // Connection objects whose sockets are still open: the open ones, and the
  // closing ones that wait (up to the linger) for their peers' FIN. This,
  // not connections_open, is what the open-file limit must hold.
  std::atomic<std::int64_t> connections_alive{0};
  counter connections_total{0};
  counter connections_refused{0};  // over the connection limit
  counter auth_ok{0};
  counter auth_invalid{0};
  counter auth_unavailable{0};
  counter auth_timeout{0};
  counter auth_queue_timeouts{0};  // validations that timed out waiting for a connection to the API server
  // Valid answers an event overtook (http_auth_client::overtaken_by_events).
  counter auth_overtaken_refused{0};      // the event revoked the session or deleted the user
  counter auth_overtaken_asked_again{0};  // the event changed the user's sessions or ACL: asked again
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
  // Report-only ACL: what the ACL would have refused, let through.
  counter acl_report_publish{0};
  counter acl_report_subscribe{0};
  counter acl_report_deliver{0};
  // How long session validations took (mqtt_proxy_auth_latency_seconds).
  latency_histogram auth_latency;
  // Version bridging (5.0 clients on a 3.1.1 broker): session/version_bridge.hpp.
  counter bridged_connections{0};
  counter bridge_refused_subscriptions{0};  // 5.0-only subscription features refused in SUBACK
  counter bridge_oversized_dropped{0};      // deliveries over the client's Maximum Packet Size
  counter bridge_unasked_dropped{0};        // deliveries for a resumed broker session the client did not ask for
  std::array<counter, 10> bridge_dropped{};  // by bridge::dropped: properties a 3.1.1 broker cannot carry
  // The broker nodes' lines (net/upstream_pool.hpp); set once before the workers start.
  const upstream_pool* upstream_nodes = nullptr;

  // Prometheus text exposition format.
  std::string render() const;
  void render_bridge(std::ostringstream& out) const;
};

}  // namespace proxy
