#include "net/upstream_pool.hpp"

#include <algorithm>
#include <sstream>

#include "mqtt/codec.hpp"
#include "mqtt/framer.hpp"

namespace proxy {

upstream_pool::upstream_pool(std::vector<upstream_node> nodes, upstream_backoff backoff)
    : nodes_(std::move(nodes)), backoff_(backoff), states_(nodes_.size()) {}

std::chrono::milliseconds upstream_pool::backoff_for(unsigned failures) const {
  auto wait = backoff_.initial;
  for (unsigned i = 1; i < failures && wait < backoff_.max; ++i) wait *= 2;
  return std::min(wait, backoff_.max);
}

std::vector<std::size_t> upstream_pool::plan(time_point now) {
  std::lock_guard lock(mutex_);
  std::vector<std::size_t> order;
  std::vector<std::size_t> healthy;
  for (std::size_t i = 0; i < states_.size(); ++i) {
    auto& s = states_[i];
    if (s.consecutive_failures == 0) {
      healthy.push_back(i);
    } else if (now >= s.retry_at) {
      // Backoff over (or an earlier probe's window lapsed): this connection probes it.
      s.probing = true;
      s.retry_at = now + backoff_.probe_window;
      order.push_back(i);
    }
  }
  if (!healthy.empty()) {
    const std::size_t start = cursor_++ % healthy.size();
    for (std::size_t k = 0; k < healthy.size(); ++k) order.push_back(healthy[(start + k) % healthy.size()]);
  }
  if (order.empty()) {
    for (std::size_t i = 0; i < states_.size(); ++i) order.push_back(i);
    std::stable_sort(order.begin(), order.end(),
                     [this](std::size_t a, std::size_t b) { return states_[a].retry_at < states_[b].retry_at; });
  }
  return order;
}

void upstream_pool::report_success(std::size_t node) {
  std::lock_guard lock(mutex_);
  auto& s = states_[node];
  s.consecutive_failures = 0;
  s.probing = false;
  s.connects++;
}

void upstream_pool::report_failure(std::size_t node, time_point now) {
  std::lock_guard lock(mutex_);
  auto& s = states_[node];
  s.failures++;
  // Connections that were already dialling when the node went down report
  // too: one outage, one step of backoff. A failed probe is a new step.
  if (s.consecutive_failures > 0 && !s.probing && now < s.retry_at) return;
  s.consecutive_failures++;
  s.probing = false;
  s.retry_at = now + backoff_for(s.consecutive_failures);
}

bool upstream_pool::is_up(std::size_t node) const {
  std::lock_guard lock(mutex_);
  return states_[node].consecutive_failures == 0;
}

std::chrono::milliseconds upstream_pool::backoff_left(std::size_t node, time_point now) const {
  std::lock_guard lock(mutex_);
  const auto& s = states_[node];
  if (s.consecutive_failures == 0 || now >= s.retry_at) return std::chrono::milliseconds(0);
  return std::chrono::ceil<std::chrono::milliseconds>(s.retry_at - now);
}

std::string upstream_pool::render_metrics() const {
  std::lock_guard lock(mutex_);
  std::ostringstream out;
  auto family = [&](const char* name, const char* type, const char* help, auto value_of) {
    out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
    for (std::size_t i = 0; i < nodes_.size(); ++i)
      out << name << "{node=\"" << nodes_[i].name() << "\"} " << value_of(states_[i]) << '\n';
  };
  family("mqtt_proxy_upstream_node_up", "gauge",
         "1 while the broker node takes new connections, 0 while it is skipped after failed dials.",
         [](const node_state& s) { return s.consecutive_failures == 0 ? 1 : 0; });
  family("mqtt_proxy_upstream_node_connects_total", "counter", "Successful dials of this broker node.",
         [](const node_state& s) { return s.connects; });
  family("mqtt_proxy_upstream_node_failures_total", "counter", "Failed dials of this broker node.",
         [](const node_state& s) { return s.failures; });
  return out.str();
}

bool answer_rules_out_node(std::span<const std::uint8_t> answer, mqtt::protocol_version version) {
  constexpr std::size_t any_size = 1 << 28;  // the answer's size is not in question here
  const auto header = mqtt::parse_frame_header(answer, any_size);
  if (!header || !*header || (*header)->first_byte != 0x20 || answer.size() < (*header)->total_size()) return false;
  const auto packet = mqtt::decode(answer.first((*header)->total_size()), version);
  if (!packet) return false;
  const auto* connack = std::get_if<mqtt::connack>(&*packet);
  if (!connack) return false;
  switch (connack->reason) {
    case mqtt::reason_code::server_unavailable:  // also 3.1.1's return code 3
    case mqtt::reason_code::server_busy:
    case mqtt::reason_code::use_another_server:
    case mqtt::reason_code::server_moved:
    case mqtt::reason_code::connection_rate_exceeded: return true;
    default: return false;
  }
}

}  // namespace proxy
