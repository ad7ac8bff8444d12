// Several brokers behind one proxy (a RabbitMQ cluster): which node a new
// client connection dials, and which nodes are skipped for now.
//
// Policy "failover": round robin over the healthy nodes, so new connections
// spread evenly over what is up. A node whose dial fails (refused, timed out,
// TLS handshake failed) is skipped for a backoff that doubles with each
// consecutive failure, up to a cap. When its backoff has passed, the next
// connection that plans a dial takes the node first: that dial is the probe
// (no background prober, no extra traffic; the client that probes still has
// the other nodes to fall back on within its connect timeout). While that one
// probe is in flight no other connection is sent to the node.
//
// One pool for the whole process, shared by every worker thread behind one
// mutex: a node found dead by one worker is skipped by all of them at once,
// and the round robin is even across workers. The lock is taken twice per
// broker dial (plan, report), far off the packet path.
//
// The selection logic is pure: every call takes `now`, so the unit tests
// drive it with a made-up clock (tests/unit/upstream_pool_test.cpp).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "mqtt/types.hpp"

namespace proxy {

struct upstream_node {
  std::string host;
  std::string port;
  std::string name() const { return host + ":" + port; }
};

struct upstream_backoff {
  std::chrono::milliseconds initial{1'000};
  std::chrono::milliseconds max{30'000};
  // How long a node probed after its backoff is reserved for that one probe.
  std::chrono::milliseconds probe_window{5'000};
};

class upstream_pool {
 public:
  using clock = std::chrono::steady_clock;
  using time_point = clock::time_point;

  upstream_pool(std::vector<upstream_node> nodes, upstream_backoff backoff);

  // The nodes to dial for one new connection, in order: a node whose
  // backoff has passed first (the probe), then the healthy ones starting at
  // the round-robin cursor. When every node is backing off, all of them,
  // soonest retry first: a dial that may fail beats refusing the client.
  std::vector<std::size_t> plan(time_point now);

  void report_success(std::size_t node);
  void report_failure(std::size_t node, time_point now);

  std::size_t size() const { return nodes_.size(); }
  const upstream_node& node(std::size_t index) const { return nodes_[index]; }
  bool is_up(std::size_t node) const;
  // How long `node` is skipped from now: zero when up.
  std::chrono::milliseconds backoff_left(std::size_t node, time_point now) const;

  // mqtt_proxy_upstream_node_up{node}, ..._connects_total, ..._failures_total.
  std::string render_metrics() const;

 private:
  struct node_state {
    unsigned consecutive_failures = 0;
    time_point retry_at{};    // skipped until then (while consecutive_failures > 0)
    bool probing = false;     // one connection is dialling it after its backoff
    std::uint64_t connects = 0;
    std::uint64_t failures = 0;
  };

  std::chrono::milliseconds backoff_for(unsigned failures) const;

  std::vector<upstream_node> nodes_;
  upstream_backoff backoff_;
  mutable std::mutex mutex_;
  std::vector<node_state> states_;
  std::size_t cursor_ = 0;
};

// Whether a node's first answer to the CONNECT says the node itself cannot
// serve now: a CONNACK with 3.1.1's "server unavailable", or 5.0's server
// unavailable, server busy, use another server, server moved or connection
// rate exceeded. Another node may serve, so the client is not refused for it.
// Anything else (success, a refusal about the client itself such as bad
// credentials, which every node would repeat, bytes that are not a whole
// CONNACK) is the node's answer and goes to the session.
bool answer_rules_out_node(std::span<const std::uint8_t> answer, mqtt::protocol_version version);

}  // namespace proxy
