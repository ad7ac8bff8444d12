#include "admin/metrics.hpp"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "session/version_bridge.hpp"
#include "net/upstream_pool.hpp"

namespace proxy {
namespace {

void line(std::ostringstream& out, const char* name, const char* type, const char* help, std::int64_t value,
          const char* labels = "") {
  out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n'
      << name << labels << ' ' << value << '\n';
}

void sample(std::ostringstream& out, const char* name, const char* labels, std::uint64_t value) {
  out << name << labels << ' ' << value << '\n';
}

}  // namespace

void metrics::render_bridge(std::ostringstream& out) const {
  line(out, "mqtt_proxy_bridged_connections_total", "counter",
       "MQTT 5.0 clients bridged to a broker that speaks only 3.1.1.", static_cast<std::int64_t>(bridged_connections.load()));
  line(out, "mqtt_proxy_bridge_refused_subscriptions_total", "counter",
       "Subscriptions refused because a 3.1.1 broker cannot honour their 5.0 options.",
       static_cast<std::int64_t>(bridge_refused_subscriptions.load()));
  line(out, "mqtt_proxy_bridge_oversized_dropped_total", "counter",
       "Deliveries to bridged clients dropped for exceeding the client's Maximum Packet Size.",
       static_cast<std::int64_t>(bridge_oversized_dropped.load()));
  line(out, "mqtt_proxy_bridge_unasked_dropped_total", "counter",
       "Deliveries to bridged clients (Clean Start with a Session Expiry) for subscriptions of a resumed broker "
       "session they did not make on this connection, dropped.",
       static_cast<std::int64_t>(bridge_unasked_dropped.load()));
  out << "# HELP mqtt_proxy_bridge_dropped_total MQTT 5.0 properties a 3.1.1 broker cannot carry, dropped.\n"
         "# TYPE mqtt_proxy_bridge_dropped_total counter\n";
  for (std::size_t i = 0; i < bridge::dropped_count; ++i) {
    const std::string labels = "{property=\"" + std::string(bridge::to_string(static_cast<bridge::dropped>(i))) + "\"}";
    sample(out, "mqtt_proxy_bridge_dropped_total", labels.c_str(), bridge_dropped[i]);
  }
}

std::string metrics::render() const {
  std::ostringstream out;
  line(out, "mqtt_proxy_connections_open", "gauge", "Client connections open now.", connections_open.load());
  line(out, "mqtt_proxy_connections_alive", "gauge",
       "Client connections holding descriptors: the open ones and those still closing.", connections_alive.load());
  line(out, "mqtt_proxy_connections_total", "counter", "Client connections accepted.",
       static_cast<std::int64_t>(connections_total.load()));
  line(out, "mqtt_proxy_connections_refused_total", "counter", "Connections refused over the connection limit.",
       static_cast<std::int64_t>(connections_refused.load()));
  out << "# HELP mqtt_proxy_authentications_total Session validations by result.\n"
         "# TYPE mqtt_proxy_authentications_total counter\n";
  sample(out, "mqtt_proxy_authentications_total", "{result=\"ok\"}", auth_ok);
  sample(out, "mqtt_proxy_authentications_total", "{result=\"invalid\"}", auth_invalid);
  sample(out, "mqtt_proxy_authentications_total", "{result=\"unavailable\"}", auth_unavailable);
  sample(out, "mqtt_proxy_authentications_total", "{result=\"timeout\"}", auth_timeout);
  {
    std::string histogram;
    auth_latency.render(histogram, "mqtt_proxy_auth_latency_seconds",
                        "Time the API server took to validate a session (cache hits included).");
    out << histogram;
  }
  out << "# HELP mqtt_proxy_acl_denials_total Packets refused by the ACL.\n"
         "# TYPE mqtt_proxy_acl_denials_total counter\n";
  sample(out, "mqtt_proxy_acl_denials_total", "{packet=\"publish\"}", acl_denied_publish);
  sample(out, "mqtt_proxy_acl_denials_total", "{packet=\"subscribe\"}", acl_denied_subscribe);
  sample(out, "mqtt_proxy_acl_denials_total", "{packet=\"publish\",direction=\"deliver\"}", acl_denied_deliver);
  line(out, "mqtt_proxy_acl_unsubscribes_total", "counter",
       "UNSUBSCRIBEs the proxy sent upstream when a live connection's ACL narrowed.",
       static_cast<std::int64_t>(acl_unsubscribes.load()));
  line(out, "mqtt_proxy_sessions_revoked_total", "counter", "Live connections ended because their session was revoked.",
       static_cast<std::int64_t>(sessions_revoked.load()));
  line(out, "mqtt_proxy_auth_queue_timeouts_total", "counter",
       "Validations that timed out waiting for a free connection to the API server (auth.max_connections).",
       static_cast<std::int64_t>(auth_queue_timeouts.load()));
  out << "# HELP mqtt_proxy_auth_overtaken_total Valid answers of the API server that an event overtook on their "
         "way: refused (session revoked, user deleted) or asked again (the user's sessions or ACL changed, resync).\n"
         "# TYPE mqtt_proxy_auth_overtaken_total counter\n";
  sample(out, "mqtt_proxy_auth_overtaken_total", "{outcome=\"refused\"}", auth_overtaken_refused);
  sample(out, "mqtt_proxy_auth_overtaken_total", "{outcome=\"asked_again\"}", auth_overtaken_asked_again);
  line(out, "mqtt_proxy_held_packets_dropped_total", "counter",
       "Packets held before authentication and dropped because it failed.",
       static_cast<std::int64_t>(held_dropped.load()));
  line(out, "mqtt_proxy_upstream_connect_failures_total", "counter", "Failed connections to the broker.",
       static_cast<std::int64_t>(upstream_connect_failures.load()));
  out << "# HELP mqtt_proxy_packets_total Packets relayed by direction.\n# TYPE mqtt_proxy_packets_total counter\n";
  sample(out, "mqtt_proxy_packets_total", "{direction=\"client_to_upstream\"}", packets_client_to_upstream);
  sample(out, "mqtt_proxy_packets_total", "{direction=\"upstream_to_client\"}", packets_upstream_to_client);
  out << "# HELP mqtt_proxy_bytes_total Bytes relayed by direction.\n# TYPE mqtt_proxy_bytes_total counter\n";
  sample(out, "mqtt_proxy_bytes_total", "{direction=\"client_to_upstream\"}", bytes_client_to_upstream);
  sample(out, "mqtt_proxy_bytes_total", "{direction=\"upstream_to_client\"}", bytes_upstream_to_client);
  line(out, "mqtt_proxy_protocol_errors_total", "counter", "Connections closed for malformed or illegal packets.",
       static_cast<std::int64_t>(protocol_errors.load()));
  static const char* const transports[] = {"{transport=\"tcp\"}", "{transport=\"tls\"}", "{transport=\"ws\"}",
                                           "{transport=\"wss\"}"};
  out << "# HELP mqtt_proxy_transport_connections_total Client connections accepted by listener kind.\n"
         "# TYPE mqtt_proxy_transport_connections_total counter\n";
  for (std::size_t i = 0; i < 4; ++i)
    sample(out, "mqtt_proxy_transport_connections_total", transports[i], connections_by_transport[i]);
  out << "# HELP mqtt_proxy_handshake_failures_total Failed or timed-out TLS / WebSocket / PROXY handshakes.\n"
         "# TYPE mqtt_proxy_handshake_failures_total counter\n";
  for (std::size_t i = 0; i < 4; ++i) sample(out, "mqtt_proxy_handshake_failures_total", transports[i], handshake_failures[i]);
  out << "# HELP mqtt_proxy_auth_cache_total Session validations answered from the cache, or not.\n"
         "# TYPE mqtt_proxy_auth_cache_total counter\n";
  sample(out, "mqtt_proxy_auth_cache_total", "{result=\"hit\"}", auth_cache_hit);
  sample(out, "mqtt_proxy_auth_cache_total", "{result=\"miss\"}", auth_cache_miss);
  sample(out, "mqtt_proxy_auth_cache_total", "{result=\"negative_hit\"}", auth_cache_negative_hit);
  sample(out, "mqtt_proxy_auth_cache_total", "{result=\"stale\"}", auth_cache_stale);
  line(out, "mqtt_proxy_auth_breaker_open", "gauge",
       "Worker threads whose circuit breaker towards the API server is open or half-open.", auth_breaker_open.load());
  line(out, "mqtt_proxy_auth_breaker_opens_total", "counter", "Times a circuit breaker towards the API server opened.",
       static_cast<std::int64_t>(auth_breaker_opens.load()));
  line(out, "mqtt_proxy_auth_events_total", "counter", "Events received from the API server's event stream.",
       static_cast<std::int64_t>(auth_events_received.load()));
  line(out, "mqtt_proxy_auth_events_connected", "gauge", "1 while the API server's event stream is connected.",
       auth_events_connected.load());
  out << "# HELP mqtt_proxy_acl_report_total What a report-only ACL would have refused, let through.\n"
         "# TYPE mqtt_proxy_acl_report_total counter\n";
  sample(out, "mqtt_proxy_acl_report_total", "{direction=\"publish\"}", acl_report_publish);
  sample(out, "mqtt_proxy_acl_report_total", "{direction=\"subscribe\"}", acl_report_subscribe);
  sample(out, "mqtt_proxy_acl_report_total", "{direction=\"deliver\"}", acl_report_deliver);
  render_bridge(out);
  if (upstream_nodes) out << upstream_nodes->render_metrics();
  return out.str();
}

void latency_histogram::observe(std::chrono::nanoseconds elapsed) {
  const auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(0, elapsed.count()));
  const double seconds = static_cast<double>(ns) / 1e9;
  std::size_t i = 0;
  while (i < bounds.size() && seconds > bounds[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(ns, std::memory_order_relaxed);
}

std::uint64_t latency_histogram::count() const {
  std::uint64_t total = 0;
  for (const auto& bucket : buckets_) total += bucket.load(std::memory_order_relaxed);
  return total;
}

void latency_histogram::render(std::string& out, const char* name, const char* help) const {
  const std::string base(name);
  out += "# HELP " + base + ' ' + help + "\n# TYPE " + base + " histogram\n";
  std::uint64_t cumulative = 0;
  char le[32];
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    if (i < bounds.size()) std::snprintf(le, sizeof le, "%g", bounds[i]);
    out += base + "_bucket{le=\"" + (i < bounds.size() ? le : "+Inf") + "\"} " + std::to_string(cumulative) + '\n';
  }
  char sum[48];
  std::snprintf(sum, sizeof sum, "%.9f", static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9);
  out += base + "_sum " + sum + '\n';
  out += base + "_count " + std::to_string(cumulative) + '\n';
}

}  // namespace proxy
