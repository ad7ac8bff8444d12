#include "config/config.hpp"

#include <optional>
#include <charconv>
#include <set>
#include <utility>
#include <toml++/toml.h>
#include <boost/asio/ip/address.hpp>

#include "auth/http_auth_client.hpp"
#include "mqtt/topic.hpp"

namespace proxy {
namespace {

// Every number has a range; a value outside it names its key (exit 2),
// never wraps (threads = -1) or aborts (--threads 99999999999999999999).
struct number_range {
  std::int64_t min;
  std::int64_t max;
};
constexpr number_range millis_range{1, 86'400'000};            // up to a day
constexpr number_range threads_range{0, 1024};                // 0: one per core
constexpr number_range slice_range{0, 100'000};               // µs; 0: the kernel's default
constexpr number_range packet_size_range{1, 268'435'455};     // the largest Remaining Length [MQTT-1.5.5]
constexpr number_range connections_range{1, 10'000'000};
constexpr number_range count_range{1, 1'000'000};
constexpr number_range bytes_range{1, 1LL << 30};              // 1 GiB

std::int64_t checked(const std::string& key, std::int64_t value, number_range range) {
  if (value >= range.min && value <= range.max) return value;
  if (range.min == 1)
    throw config_error(key, "must be a positive number no larger than " + std::to_string(range.max) + ", got " +
                                std::to_string(value));
  throw config_error(key, "must be a number from " + std::to_string(range.min) + " to " + std::to_string(range.max) +
                              ", got " + std::to_string(value));
}

// A flag's value: decimal digits only, parsed with std::from_chars.
std::int64_t number_flag(const std::string& flag, const std::string& text, number_range range) {
  std::uint64_t value = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ptr != end || (ec != std::errc() && ec != std::errc::result_out_of_range))
    throw config_error(flag, "must be a number, got '" + text + "'");
  if (ec == std::errc::result_out_of_range || value > static_cast<std::uint64_t>(range.max))
    throw config_error(flag, (range.min == 1 ? "must be a positive number no larger than "
                                             : "must be a number from " + std::to_string(range.min) + " to ") +
                                 std::to_string(range.max) + ", got '" + text + "'");
  return checked(flag, static_cast<std::int64_t>(value), range);
}

std::size_t positive(const std::string& key, std::int64_t value, number_range range = count_range) {
  return static_cast<std::size_t>(checked(key, value, range));
}

std::chrono::milliseconds millis(const std::string& key, std::int64_t value) {
  return std::chrono::milliseconds(checked(key, value, millis_range));
}

// An integer key or flag within [min, max]; the error names the key and the range.
std::int64_t ranged(const std::string& key, std::int64_t value, std::int64_t min, std::int64_t max) {
  return checked(key, value, {min, max});
}
std::int64_t ranged_flag(const std::string& flag, const std::string& value, std::int64_t min, std::int64_t max) {
  return number_flag(flag, value, {min, max});
}

const toml::table& table_at(const toml::table& root, const std::string& key) {
  static const toml::table empty;
  const auto* node = root.get(key);
  if (!node) return empty;
  if (!node->is_table()) throw config_error(key, "must be a table");
  return *node->as_table();
}

void only_keys(const toml::table& table, const std::string& prefix, const std::set<std::string>& allowed) {
  for (auto&& [key, value] : table) {
    if (!allowed.contains(std::string(key.str())))
      throw config_error(prefix + std::string(key.str()), "unknown key");
  }
}

std::string text(const toml::table& t, const std::string& prefix, const std::string& key, std::string fallback) {
  const auto* node = t.get(key);
  if (!node) return fallback;
  if (!node->is_string()) throw config_error(prefix + key, "must be a string");
  return node->value<std::string>().value();
}

std::int64_t integer(const toml::table& t, const std::string& prefix, const std::string& key, std::int64_t fallback) {
  const auto* node = t.get(key);
  if (!node) return fallback;
  if (!node->is_integer()) throw config_error(prefix + key, "must be an integer");
  return node->value<std::int64_t>().value();
}

std::vector<std::string> filters(const toml::table& t, const std::string& prefix, const std::string& key) {
  std::vector<std::string> out;
  const auto* node = t.get(key);
  if (!node) return out;
  if (!node->is_array()) throw config_error(prefix + key, "must be an array of topic filters");
  for (const auto& item : *node->as_array()) {
    auto value = item.value<std::string>();
    if (!value) throw config_error(prefix + key, "must be an array of topic filters");
    // %u and %c stand for one level each: check the filter with them filled in.
    std::string probe = *value;
    for (auto pos = probe.find('%'); pos != std::string::npos; pos = probe.find('%', pos + 1))
      if (pos + 1 < probe.size() && (probe[pos + 1] == 'u' || probe[pos + 1] == 'c')) probe.replace(pos, 2, "x");
    if (!mqtt::topic::is_valid_filter(probe)) throw config_error(prefix + key, "'" + *value + "' is not a valid topic filter");
    out.push_back(*value);
  }
  return out;
}

bool boolean(const toml::table& t, const std::string& prefix, const std::string& key, bool fallback) {
  const auto* node = t.get(key);
  if (!node) return fallback;
  if (!node->is_boolean()) throw config_error(prefix + key, "must be true or false");
  return node->value<bool>().value();
}

// An integer key within [low, high], or nothing when absent.
std::optional<std::int64_t> bounded(const toml::table& t, const std::string& prefix, const std::string& key,
                                    std::int64_t low, std::int64_t high) {
  if (!t.contains(key)) return std::nullopt;
  const auto value = integer(t, prefix, key, 0);
  if (value < low || value > high)
    throw config_error(prefix + key, "must be from " + std::to_string(low) + " to " + std::to_string(high));
  return value;
}

// `[upstream] protocol` / --upstream-protocol: which MQTT version the broker
// is spoken to in (session/version_bridge.hpp).
upstream_protocol upstream_protocol_of(const std::string& key, const std::string& value) {
  if (value == "auto") return upstream_protocol::automatic;
  if (value == "5.0" || value == "5") return upstream_protocol::v5;
  if (value == "3.1.1") return upstream_protocol::v3_1_1;
  throw config_error(key, "one of auto, 5.0, 3.1.1");
}

// `[upstream] kind` / --upstream-kind.
upstream_kind upstream_kind_of(const std::string& key, const std::string& kind) {
  if (kind == "generic") return upstream_kind::generic;
  if (kind == "mosquitto") return upstream_kind::mosquitto;
  if (kind == "rabbitmq") return upstream_kind::rabbitmq;
  throw config_error(key, "one of generic, mosquitto, rabbitmq");
}

// [upstream] keys about the broker itself: its kind, and the limits it
// enforces (the start-up probe fills those not set here; config wins).
void load_upstream_limits(const toml::table& upstream, connection_settings& conn) {
  const std::string prefix = "upstream.";
  conn.session.upstream = upstream_kind_of(prefix + "kind", text(upstream, prefix, "kind", "generic"));
  conn.upstream.probe = boolean(upstream, prefix, "probe", conn.upstream.probe);
  if (upstream.contains("protocol"))
    conn.session.protocol = upstream_protocol_of(prefix + "protocol", text(upstream, prefix, "protocol", "auto"));
  auto& limits = conn.session.limits;
  if (auto v = bounded(upstream, prefix, "max_keep_alive", 1, 65535)) conn.session.upstream_max_keep_alive = static_cast<std::uint16_t>(*v);
  if (auto v = bounded(upstream, prefix, "maximum_qos", 0, 2)) limits.maximum_qos = static_cast<mqtt::qos>(*v);
  if (auto v = bounded(upstream, prefix, "receive_maximum", 1, 65535)) limits.receive_maximum = static_cast<std::uint16_t>(*v);
  if (auto v = bounded(upstream, prefix, "maximum_packet_size", 1, 268'435'460)) limits.maximum_packet_size = static_cast<std::uint32_t>(*v);
  auto flag = [&](const char* key, std::optional<bool>& into) {
    if (upstream.contains(key)) into = boolean(upstream, prefix, key, true);
  };
  flag("retain_available", limits.retain_available);
  flag("wildcard_subscription_available", limits.wildcard_subscription_available);
  flag("subscription_identifiers_available", limits.subscription_identifiers_available);
  flag("shared_subscription_available", limits.shared_subscription_available);
}

std::vector<std::string> strings(const toml::table& t, const std::string& prefix, const std::string& key,
                                 std::vector<std::string> fallback) {
  const auto* node = t.get(key);
  if (!node) return fallback;
  std::vector<std::string> out;
  if (!node->is_array()) throw config_error(prefix + key, "must be an array of strings");
  for (const auto& item : *node->as_array()) {
    auto value = item.value<std::string>();
    if (!value) throw config_error(prefix + key, "must be an array of strings");
    out.push_back(*value);
  }
  return out;
}

// One of upstream.bind_addresses: a literal IP address (no name, no port).
boost::asio::ip::address parse_source_address(const std::string& key, const std::string& value) {
  boost::system::error_code ec;
  auto address = boost::asio::ip::make_address(value, ec);
  if (ec) throw config_error(key, "'" + value + "' is not an IP address");
  return address;
}

// "suppress" (default): a planned restart ends broker sessions with a normal
// DISCONNECT, so no will is published; "fire": as if every client crashed.
bool drain_wills(const std::string& key, const std::string& value) {
  if (value == "suppress") return false;
  if (value == "fire") return true;
  throw config_error(key, "must be \"suppress\" or \"fire\", got '" + value + "'");
}

// "enforce" or "report" (the report-only ACL).
acl_mode acl_mode_value(const std::string& key, const std::string& value) {
  if (auto mode = parse_acl_mode(value)) return *mode;
  throw config_error(key, "must be \"enforce\" or \"report\", got '" + value + "'");
}

// `admin` is "HOST:PORT", or a table [admin] with address and token_file
// (the operator endpoints' Bearer token); `[acl] mode` is enforce or report.
void load_operator_keys(const toml::table& root, proxy_config& config) {
  if (const auto* node = root.get("admin"); node && node->is_table()) {
    const auto& admin = *node->as_table();
    only_keys(admin, "admin.", {"address", "token_file"});
    if (admin.contains("address")) config.admin = parse_host_port("admin.address", text(admin, "admin.", "address", ""));
    config.admin_token_file = text(admin, "admin.", "token_file", config.admin_token_file);
  } else {
    config.admin = parse_host_port("admin", text(root, "", "admin", config.admin.host + ":" + config.admin.port));
  }
  const auto& acl_table = table_at(root, "acl");
  only_keys(acl_table, "acl.", {"mode", "max_reports"});
  auto& session = config.connection.session;
  if (acl_table.contains("mode")) session.acl_enforcement = acl_mode_value("acl.mode", text(acl_table, "acl.", "mode", ""));
  if (acl_table.contains("max_reports"))
    session.max_acl_reports = static_cast<std::size_t>(ranged("acl.max_reports", integer(acl_table, "acl.", "max_reports", 0), 0, 100'000));
}

// [listeners.<kind>]: a table that is present switches its listener on
// unless it says enabled = false.
void load_listeners(const toml::table& root, proxy_config& config) {
  const auto& tables = table_at(root, "listeners");
  only_keys(tables, "listeners.", {"tcp", "tls", "ws", "wss"});
  for (auto& listener : config.listeners) {
    const auto kind = listener.settings.kind;
    const std::string name = to_string(kind);
    if (!tables.contains(name)) continue;
    const auto& t = table_at(tables, name);
    const std::string prefix = listener_key(kind) + ".";
    std::set<std::string> keys{"enabled", "address", "proxy_protocol"};
    keys.insert("acl_mode");
    if (uses_tls(kind)) keys.insert({"cert_file", "key_file", "client_ca_file"});
    if (uses_websocket(kind)) keys.insert({"path", "allowed_origins"});
    only_keys(t, prefix, keys);
    listener.enabled = boolean(t, prefix, "enabled", true);
    if (t.contains("address")) listener.address = parse_host_port(prefix + "address", text(t, prefix, "address", ""));
    listener.settings.proxy_protocol = boolean(t, prefix, "proxy_protocol", listener.settings.proxy_protocol);
    listener.tls.cert_file = text(t, prefix, "cert_file", listener.tls.cert_file);
    listener.tls.key_file = text(t, prefix, "key_file", listener.tls.key_file);
    listener.tls.client_ca_file = text(t, prefix, "client_ca_file", listener.tls.client_ca_file);
    listener.settings.websocket.path = text(t, prefix, "path", listener.settings.websocket.path);
    listener.settings.websocket.allowed_origins =
        strings(t, prefix, "allowed_origins", listener.settings.websocket.allowed_origins);
    if (t.contains("acl_mode")) listener.settings.acl_enforcement = acl_mode_value(prefix + "acl_mode", text(t, prefix, "acl_mode", ""));
  }
}

void validate_listeners(const proxy_config& config) {
  bool any = false;
  for (const auto& listener : config.listeners) {
    if (!listener.enabled) continue;
    any = true;
    const auto kind = listener.settings.kind;
    const std::string prefix = listener_key(kind) + ".";
    if (uses_tls(kind) && listener.tls.cert_file.empty()) throw config_error(prefix + "cert_file", "required for a TLS listener (or --tls-cert)");
    if (uses_tls(kind) && listener.tls.key_file.empty()) throw config_error(prefix + "key_file", "required for a TLS listener (or --tls-key)");
    if (uses_websocket(kind) && !listener.settings.websocket.path.starts_with('/'))
      throw config_error(prefix + "path", "must start with /");
  }
  if (!any) throw config_error("listeners", "every listener is switched off");
}

}  // namespace

host_port parse_host_port(const std::string& key, const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    throw config_error(key, "expected HOST:PORT, got '" + text + "'");
  std::string host = text.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = text.substr(colon + 1);
  unsigned long number = 0;
  const auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), number);
  if (ec != std::errc() || ptr != port.data() + port.size() || number > 65535)
    throw config_error(key, "port must be a number from 0 to 65535, got '" + port + "'");
  return {host, port};
}

// Several broker nodes: "h:p" each; host/port become the first, so
// everything that reads one upstream (logs, TLS name) keeps working.
void set_upstream_nodes(const std::string& key, const std::vector<std::string>& addresses, upstream_settings& upstream) {
  if (addresses.empty()) throw config_error(key, "needs at least one HOST:PORT");
  upstream.nodes.clear();
  for (const auto& address : addresses) {
    const auto hp = parse_host_port(key, address);
    upstream.nodes.push_back({hp.host, hp.port});
  }
  upstream.host = upstream.nodes.front().host;
  upstream.port = upstream.nodes.front().port;
  if (upstream.nodes.size() == 1) upstream.nodes.clear();  // one node: as before
}

// --upstream a:1883,b:1883 (IPv6 in brackets has no comma).
std::vector<std::string> split_addresses(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    const auto comma = text.find(',', start);
    out.push_back(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

// [upstream] addresses, policy, backoff_ms, backoff_max_ms.
void load_upstream_nodes(const toml::table& upstream, upstream_settings& settings) {
  const std::string prefix = "upstream.";
  if (upstream.contains("addresses")) {
    if (upstream.contains("address")) throw config_error("upstream.addresses", "give address or addresses, not both");
    const auto* list = upstream.get("addresses")->as_array();
    if (!list) throw config_error("upstream.addresses", "must be an array of \"HOST:PORT\" strings");
    std::vector<std::string> addresses;
    for (const auto& item : *list) {
      auto value = item.value<std::string>();
      if (!value) throw config_error("upstream.addresses", "must be an array of \"HOST:PORT\" strings");
      addresses.push_back(*value);
    }
    set_upstream_nodes("upstream.addresses", addresses, settings);
  }
  if (text(upstream, prefix, "policy", "failover") != "failover")
    throw config_error("upstream.policy", "must be \"failover\"");
  if (auto v = bounded(upstream, prefix, "backoff_ms", 1, 3'600'000)) settings.backoff.initial = std::chrono::milliseconds(*v);
  if (auto v = bounded(upstream, prefix, "backoff_max_ms", 1, 3'600'000)) settings.backoff.max = std::chrono::milliseconds(*v);
  if (settings.backoff.max < settings.backoff.initial) {
    if (upstream.contains("backoff_max_ms")) throw config_error("upstream.backoff_max_ms", "must not be below upstream.backoff_ms");
    settings.backoff.max = settings.backoff.initial;  // only backoff_ms given: no doubling past it
  }
}

void load_config_file(const std::string& path, proxy_config& config) {
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    throw config_error("--config", std::string("cannot parse ") + path + ": " + std::string(e.description()));
  }
  only_keys(root, "", {"listen", "admin", "log_level", "threads", "thread_slice_us", "proxy_protocol", "listeners", "upstream", "auth",
                       "limits", "timeouts", "acl_templates", "drain", "acl"});
  // Top-level proxy_protocol is every listener's default; a listener's table can override it.
  const bool proxy_protocol = boolean(root, "", "proxy_protocol", false);
  for (auto& listener : config.listeners) listener.settings.proxy_protocol = proxy_protocol;
  auto& plain = config.listener(transport_kind::tcp);
  if (root.contains("listen")) plain.address = parse_host_port("listen", text(root, "", "listen", ""));
  load_listeners(root, config);
  load_operator_keys(root, config);
  config.log_level = text(root, "", "log_level", config.log_level);
  config.threads = static_cast<unsigned>(checked("threads", integer(root, "", "threads", config.threads), threads_range));
  config.thread_slice_us = static_cast<unsigned>(
      checked("thread_slice_us", integer(root, "", "thread_slice_us", config.thread_slice_us), slice_range));

  auto& conn = config.connection;
  const auto& upstream = table_at(root, "upstream");
  only_keys(upstream, "upstream.", {"address", "username", "password", "connect_timeout_ms", "tls", "ca_file", "cert_file",
                                    "key_file", "server_name",
                                    "protocol",
                                    "bind_addresses",
                                    "kind", "probe", "max_keep_alive", "maximum_qos", "retain_available", "receive_maximum",
                                    "maximum_packet_size", "wildcard_subscription_available",
                                    "subscription_identifiers_available", "shared_subscription_available",
                                    "addresses", "policy", "backoff_ms", "backoff_max_ms"});
  load_upstream_limits(upstream, conn);
  conn.upstream.tls = boolean(upstream, "upstream.", "tls", conn.upstream.tls);
  conn.upstream.ca_file = text(upstream, "upstream.", "ca_file", conn.upstream.ca_file);
  conn.upstream.cert_file = text(upstream, "upstream.", "cert_file", conn.upstream.cert_file);
  conn.upstream.key_file = text(upstream, "upstream.", "key_file", conn.upstream.key_file);
  conn.upstream.server_name = text(upstream, "upstream.", "server_name", conn.upstream.server_name);
  for (const auto& source : strings(upstream, "upstream.", "bind_addresses", {}))
    conn.upstream.bind_addresses.push_back(parse_source_address("upstream.bind_addresses", source));
  if (upstream.contains("address")) {
    auto hp = parse_host_port("upstream.address", text(upstream, "upstream.", "address", ""));
    conn.upstream.host = hp.host;
    conn.upstream.port = hp.port;
  }
  load_upstream_nodes(upstream, conn.upstream);
  if (upstream.contains("username")) conn.session.upstream_username = text(upstream, "upstream.", "username", "");
  if (upstream.contains("password")) conn.session.upstream_password = text(upstream, "upstream.", "password", "");
  if (upstream.contains("connect_timeout_ms"))
    conn.upstream.connect_timeout = millis("upstream.connect_timeout_ms", integer(upstream, "upstream.", "connect_timeout_ms", 0));

  const auto& auth = table_at(root, "auth");
  only_keys(auth, "auth.", {"url", "timeout_ms", "topic", "ca_file", "max_idle_connections", "max_connections", "idle_timeout_ms",
                            "cache_max_entries", "negative_cache_ms", "stale_if_error_ms", "breaker_failures",
                            "breaker_cooldown_ms", "events", "service_token_file", "events_wait_s"});
  {
    auto& a = config.auth;
    auto num = [&](const char* key, std::int64_t current, std::int64_t min, std::int64_t max) {
      return auth.contains(key) ? ranged(std::string("auth.") + key, integer(auth, "auth.", key, 0), min, max) : current;
    };
    using ms = std::chrono::milliseconds;
    a.ca_file = text(auth, "auth.", "ca_file", a.ca_file);
    a.max_idle_connections = static_cast<std::size_t>(num("max_idle_connections", static_cast<std::int64_t>(a.max_idle_connections), 0, 1024));
    a.max_connections = static_cast<std::size_t>(num("max_connections", static_cast<std::int64_t>(a.max_connections), 1, 1024));
    a.idle_timeout = ms(num("idle_timeout_ms", a.idle_timeout.count(), 1, 3'600'000));
    a.cache_max_entries = static_cast<std::size_t>(num("cache_max_entries", static_cast<std::int64_t>(a.cache_max_entries), 0, 10'000'000));
    a.negative_cache = ms(num("negative_cache_ms", a.negative_cache.count(), 0, 600'000));
    a.stale_if_error = ms(num("stale_if_error_ms", a.stale_if_error.count(), 0, 86'400'000));
    a.breaker_failures = static_cast<unsigned>(num("breaker_failures", a.breaker_failures, 0, 1'000'000));
    a.breaker_cooldown = ms(num("breaker_cooldown_ms", a.breaker_cooldown.count(), 1, 3'600'000));
    a.events = boolean(auth, "auth.", "events", a.events);
    a.service_token_file = text(auth, "auth.", "service_token_file", a.service_token_file);
    a.events_wait = std::chrono::seconds(num("events_wait_s", a.events_wait.count(), 1, 55));
  }
  config.auth_url = text(auth, "auth.", "url", config.auth_url);
  if (auth.contains("timeout_ms")) config.auth_http_timeout = millis("auth.timeout_ms", integer(auth, "auth.", "timeout_ms", 0));
  conn.session.auth_topic = text(auth, "auth.", "topic", conn.session.auth_topic);

  const auto& limits = table_at(root, "limits");
  only_keys(limits, "limits.", {"max_packet_size", "max_connections", "max_held_packets", "max_held_bytes", "max_subscriptions", "write_high_water"});
  auto limit = [&](const char* key, std::size_t current, number_range range) {
    return limits.contains(key) ? positive(std::string("limits.") + key, integer(limits, "limits.", key, 0), range)
                                : current;
  };
  conn.max_packet_size = limit("max_packet_size", conn.max_packet_size, packet_size_range);
  conn.max_connections = limit("max_connections", conn.max_connections, connections_range);
  conn.session.max_held_packets = limit("max_held_packets", conn.session.max_held_packets, count_range);
  conn.session.max_held_bytes = limit("max_held_bytes", conn.session.max_held_bytes, bytes_range);
  conn.session.max_subscriptions = limit("max_subscriptions", conn.session.max_subscriptions, count_range);
  conn.write_high_water = limit("write_high_water", conn.write_high_water, bytes_range);

  const auto& timeouts = table_at(root, "timeouts");
  only_keys(timeouts, "timeouts.", {"connect_ms", "handshake_ms", "auth_ms", "drain_ms", "revalidate_ms", "connack_hold_ms"});
  if (timeouts.contains("revalidate_ms"))
    conn.session.revalidate_interval = millis("timeouts.revalidate_ms", integer(timeouts, "timeouts.", "revalidate_ms", 0));
  if (timeouts.contains("handshake_ms"))
    conn.handshake_timeout = millis("timeouts.handshake_ms", integer(timeouts, "timeouts.", "handshake_ms", 0));
  if (timeouts.contains("connect_ms")) conn.connect_timeout = millis("timeouts.connect_ms", integer(timeouts, "timeouts.", "connect_ms", 0));
  if (timeouts.contains("auth_ms")) conn.session.auth_timeout = millis("timeouts.auth_ms", integer(timeouts, "timeouts.", "auth_ms", 0));
  if (timeouts.contains("drain_ms")) conn.drain_timeout = millis("timeouts.drain_ms", integer(timeouts, "timeouts.", "drain_ms", 0));
  if (timeouts.contains("connack_hold_ms"))  // 0: never held; at most a second, a CONNACK is no place for a wait
    conn.connack_hold = std::chrono::milliseconds(
        ranged("timeouts.connack_hold_ms", integer(timeouts, "timeouts.", "connack_hold_ms", 0), 0, 1000));

  // [drain]: what SIGTERM does to the clients' wills.
  const auto& drain = table_at(root, "drain");
  only_keys(drain, "drain.", {"wills"});
  if (drain.contains("wills")) config.drain_fire_wills = drain_wills("drain.wills", text(drain, "drain.", "wills", ""));

  const auto& templates = table_at(root, "acl_templates");
  only_keys(templates, "acl_templates.", {"publish", "subscribe"});
  conn.session.templates.publish = filters(templates, "acl_templates.", "publish");
  conn.session.templates.subscribe = filters(templates, "acl_templates.", "subscribe");
}

parsed_command_line parse_command_line(int argc, const char* const* argv) {
  parsed_command_line parsed;
  auto& config = parsed.config;
  std::vector<std::pair<std::string, std::string>> flags;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      parsed.show_help = true;
      return parsed;
    }
    if (flag == "--proxy-protocol" || flag == "--upstream-tls") {  // switches: no value
      flags.emplace_back(flag, "");
      continue;
    }
    if (!flag.starts_with("--")) throw config_error(flag, "unexpected argument");
    std::string value;
    if (auto eq = flag.find('='); eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else {
      if (i + 1 >= argc) throw config_error(flag, "needs a value");
      value = argv[++i];
    }
    flags.emplace_back(flag, value);
  }
  for (const auto& [flag, value] : flags)
    if (flag == "--config") load_config_file(value, config);
  auto& conn = config.connection;
  bool bind_flag_seen = false;  // the first --upstream-bind-address replaces the file's list
  for (const auto& [flag, value] : flags) {
    if (flag == "--config") continue;
    if (flag == "--proxy-protocol") {
      for (auto& listener : config.listeners) listener.settings.proxy_protocol = true;
    } else if (flag == "--listen") {
      auto& plain = config.listener(transport_kind::tcp);
      plain.enabled = value != "off";
      if (plain.enabled) plain.address = parse_host_port(flag, value);
    } else if (flag == "--tls-listen" || flag == "--ws-listen" || flag == "--wss-listen") {
      const auto kind = flag == "--tls-listen" ? transport_kind::tls
                        : flag == "--ws-listen" ? transport_kind::ws
                                                : transport_kind::wss;
      config.listener(kind).enabled = true;
      config.listener(kind).address = parse_host_port(flag, value);
    } else if (flag == "--tls-cert" || flag == "--tls-key" || flag == "--tls-client-ca") {
      for (auto kind : {transport_kind::tls, transport_kind::wss}) {
        auto& files = config.listener(kind).tls;
        (flag == "--tls-cert" ? files.cert_file : flag == "--tls-key" ? files.key_file : files.client_ca_file) = value;
      }
    } else if (flag == "--ws-path" || flag == "--ws-allowed-origin") {
      for (auto kind : {transport_kind::ws, transport_kind::wss}) {
        auto& ws = config.listener(kind).settings.websocket;
        if (flag == "--ws-path") ws.path = value;
        else ws.allowed_origins.push_back(value);
      }
    } else if (flag == "--upstream-tls") conn.upstream.tls = true;
    else if (flag == "--upstream-ca") conn.upstream.ca_file = value;
    else if (flag == "--upstream-cert") conn.upstream.cert_file = value;
    else if (flag == "--upstream-key") conn.upstream.key_file = value;
    else if (flag == "--upstream-server-name") conn.upstream.server_name = value;
    else if (flag == "--upstream-protocol") conn.session.protocol = upstream_protocol_of(flag, value);
    else if (flag == "--upstream-kind") conn.session.upstream = upstream_kind_of(flag, value);
    else if (flag == "--handshake-timeout-ms") conn.handshake_timeout = millis(flag, number_flag(flag, value, millis_range));
    else if (flag == "--drain-wills") config.drain_fire_wills = drain_wills(flag, value);
    else if (flag == "--admin") config.admin = parse_host_port(flag, value);
    else if (flag == "--admin-token-file") config.admin_token_file = value;
    else if (flag == "--acl-mode") conn.session.acl_enforcement = acl_mode_value(flag, value);
    else if (flag == "--upstream") {
      set_upstream_nodes(flag, split_addresses(value), conn.upstream);
    } else if (flag == "--upstream-bind-address") {
      if (!std::exchange(bind_flag_seen, true)) conn.upstream.bind_addresses.clear();
      conn.upstream.bind_addresses.push_back(parse_source_address(flag, value));
    } else if (flag == "--upstream-username") conn.session.upstream_username = value;
    else if (flag == "--upstream-password") conn.session.upstream_password = value;
    else if (flag == "--auth-url") config.auth_url = value;
    else if (flag == "--log-level") config.log_level = value;
    else if (flag == "--threads") config.threads = static_cast<unsigned>(number_flag(flag, value, threads_range));
    else if (flag == "--thread-slice-us") config.thread_slice_us = static_cast<unsigned>(number_flag(flag, value, slice_range));
    else if (flag == "--auth-timeout-ms") config.auth_http_timeout = millis(flag, number_flag(flag, value, millis_range));
    else if (flag == "--max-connections") conn.max_connections = static_cast<std::size_t>(number_flag(flag, value, connections_range));
    else if (flag == "--max-packet-size") conn.max_packet_size = static_cast<std::size_t>(number_flag(flag, value, packet_size_range));
    else if (flag == "--auth-ca-file") {
      config.auth.ca_file = value;
    } else if (flag == "--auth-service-token-file") {
      config.auth.service_token_file = value;
    } else if (flag == "--auth-events") {
      if (value != "true" && value != "false") throw config_error(flag, "must be true or false");
      config.auth.events = value == "true";
    } else if (flag == "--auth-max-idle-connections") {
      config.auth.max_idle_connections = static_cast<std::size_t>(ranged_flag(flag, value, 0, 1024));
    } else if (flag == "--auth-max-connections") {
      config.auth.max_connections = static_cast<std::size_t>(ranged_flag(flag, value, 1, 1024));
    } else if (flag == "--auth-idle-timeout-ms") {
      config.auth.idle_timeout = std::chrono::milliseconds(ranged_flag(flag, value, 1, 3'600'000));
    } else if (flag == "--auth-cache-max-entries") {
      config.auth.cache_max_entries = static_cast<std::size_t>(ranged_flag(flag, value, 0, 10'000'000));
    } else if (flag == "--auth-negative-cache-ms") {
      config.auth.negative_cache = std::chrono::milliseconds(ranged_flag(flag, value, 0, 600'000));
    } else if (flag == "--auth-stale-if-error-ms") {
      config.auth.stale_if_error = std::chrono::milliseconds(ranged_flag(flag, value, 0, 86'400'000));
    } else if (flag == "--auth-breaker-failures") {
      config.auth.breaker_failures = static_cast<unsigned>(ranged_flag(flag, value, 0, 1'000'000));
    } else if (flag == "--auth-breaker-cooldown-ms") {
      config.auth.breaker_cooldown = std::chrono::milliseconds(ranged_flag(flag, value, 1, 3'600'000));
    } else if (flag == "--auth-events-wait-s") {
      config.auth.events_wait = std::chrono::seconds(ranged_flag(flag, value, 1, 55));
    } else {
      throw config_error(flag, "unknown flag (see --help)");
    }
  }
  if (!parse_http_url(config.auth_url))
    throw config_error("auth.url", "expected http(s)://HOST[:PORT][/PATH], got '" + config.auth_url + "'");
  static const std::set<std::string> levels{"trace", "debug", "info", "warn", "error", "critical", "off"};
  if (!levels.contains(config.log_level)) throw config_error("log_level", "one of trace, debug, info, warn, error, critical, off");
  validate_listeners(config);
  // The kernel takes 100 µs to 100 ms (sched_setattr); below that it would refuse at start.
  if (config.thread_slice_us != 0 && config.thread_slice_us < 100)
    throw config_error("thread_slice_us", "must be 0 (the kernel's default) or from 100 to 100000, got " +
                                              std::to_string(config.thread_slice_us));
  conn.session.max_packet_size = conn.max_packet_size;
  return parsed;
}

std::string help_text() {
  return R"(mqtt-proxy: an authenticating, ACL-filtering MQTT 3.1.1/5.0 proxy

Usage: mqtt-proxy [--config FILE] [flags]

Flags (override the config file):
  --config FILE               TOML configuration file (see deploy/mqtt-proxy.toml)
  --listen HOST:PORT|off      plain MQTT listener (default 0.0.0.0:5000)
  --tls-listen HOST:PORT      MQTT over TLS listener (off by default; usual port 8883)
  --ws-listen HOST:PORT       MQTT over WebSocket listener (off by default; usual port 8080)
  --wss-listen HOST:PORT      MQTT over WebSocket over TLS listener (off by default; usual port 8443)
  --tls-cert FILE             PEM certificate chain of the tls and wss listeners
  --tls-key FILE              PEM private key (unencrypted) of the tls and wss listeners
  --tls-client-ca FILE        require client certificates issued by this CA (mTLS)
  --ws-path PATH              WebSocket endpoint (default /mqtt)
  --ws-allowed-origin ORIGIN  allow browser pages from ORIGIN only (repeatable; default any)
  --handshake-timeout-ms MS   TLS / WebSocket handshake deadline (default 10000)
  --upstream HOST:PORT        the broker (default 127.0.0.1:1883); several, comma-separated
                              (a cluster): each new client goes to the next healthy node
  --upstream-username USER    the proxy's own account on the broker
  --upstream-password PASS
  --upstream-bind-address IP  source address for broker connections; repeat for several, used
                              round robin (upstream.bind_addresses: ~64k connections per source and broker address)
  --upstream-tls              connect to the broker over TLS, verifying its certificate
  --upstream-ca FILE          CA for the broker's certificate (default: the system's)
  --upstream-cert FILE        client certificate for the broker (with --upstream-key)
  --upstream-key FILE
  --upstream-server-name NAME name expected in the broker's certificate (default: its host)
  --upstream-protocol P       auto|5.0|3.1.1: MQTT version towards the broker; 3.1.1 bridges 5.0 clients
  --upstream-kind K           generic|mosquitto|rabbitmq: rabbitmq refuses '.' and '*' in topics and filters
                              (default auto: 3.1.1 when the broker refuses the start-up 5.0 CONNECT)
  --auth-url URL              API server base URL (default http://127.0.0.1:8080)
  --admin HOST:PORT           /healthz, /readyz, /metrics (default 127.0.0.1:9100)
  --admin-token-file FILE     Bearer token of the operator endpoints on the admin port
                              (/v1/connections, /v1/connections/kick, /v1/explain); without
                              one they answer 403
  --acl-mode enforce|report   report: the ACL refuses nothing, and logs and counts what it
                              would have refused (default enforce; per listener: acl_mode)
  --log-level LEVEL           trace|debug|info|warn|error|critical|off (default info)
  --threads N                 worker threads, one io_context each (default: one per core)
  --thread-slice-us N         time slice each worker thread asks of the scheduler (EEVDF,
                              Linux >= 6.12; 100 to 100000, default 100; 0: the kernel's own)
  --max-connections N         refuse connections beyond N (default 100000)
  --max-packet-size BYTES     largest client packet (default 1048576)
  --auth-timeout-ms MS        deadline of one call to the API server (default 3000)
  --auth-ca-file FILE         CA for an https:// auth URL (default: the system's)
  --auth-max-idle-connections N   pooled connections per worker (default 4)
  --auth-max-connections N        validations in progress per worker; more wait (default 16)
  --auth-idle-timeout-ms MS   close pooled connections idle this long (default 4000; keep it
                              below the API server's keep-alive, 5 s for auth-server)
  --auth-cache-max-entries N  validation cache size per worker (default 10000; 0: off)
  --auth-negative-cache-ms MS remember a refused session this long (default 2000; 0: off)
  --auth-stale-if-error-ms MS degraded mode: use an answer expired less than MS ago while
                              the API server is unreachable (default 0: off)
  --auth-breaker-failures N   consecutive failures that open the circuit breaker (default 5; 0: off)
  --auth-breaker-cooldown-ms MS  how long it stays open before one probe (default 5000)
  --auth-events true|false    follow the API server's event stream (default true)
  --auth-service-token-file FILE  Bearer token for GET /v1/events
  --auth-events-wait-s S      long-poll length (default 25, at most 55)
  --drain-wills suppress|fire on SIGTERM, end broker sessions with a normal DISCONNECT so no
                              will is published (suppress, default), or let every will fire
  --proxy-protocol            expect a PROXY protocol v1/v2 header from a load balancer on
                              every listener (before TLS); its client address is logged and
                              sent to the API. Per listener: proxy_protocol in the file.
  --help                      this text

Clients authenticate by publishing their session to service/auth/<session>
(or to service/auth with the session as payload) right after CONNECT, or by
sending the session as the CONNECT password. See README.md.

SIGHUP reloads the TLS certificates and keys; open connections keep theirs.
Exit status: 0 on a clean shutdown, 2 on a configuration error.
)";
}

}  // namespace proxy
