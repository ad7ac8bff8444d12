// mqtt-proxy: wiring only. One io_context per worker thread, each with its own
// listeners (SO_REUSEPORT) and its own auth client; worker 0 also serves the
// admin endpoint and handles signals. TLS contexts are shared by all workers.
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <stop_token>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include "admin/admin_server.hpp"
#include "auth/auth_event_feed.hpp"
#include "auth/http_auth_client.hpp"
#include "config/config.hpp"
#include "net/connection_registry.hpp"
#include "net/broker_probe.hpp"
#include "net/upstream_protocol_probe.hpp"
#include "net/listener.hpp"
#include "net/tls_context.hpp"

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

struct worker {
  explicit worker(std::atomic<std::uint64_t>& connection_ids) : registry(connection_ids) {}
  // Before io: connections still in io's handlers leave it as io is destroyed.
  proxy::connection_registry registry;  // this worker's live connections, touched on its thread only
  proxy::acl_pool acls;                 // one copy of each distinct ACL its sessions hold
  support::block_recycler connection_blocks;  // its connections' memory, reused (touched on its thread only)
  // One thread runs it, and every socket and timer on it is used from that
  // thread only (other threads post to it: the scheduler keeps its lock), so
  // the reactor's per-descriptor mutex is dropped: ~13 lock/unlock pairs per
  // session (issue 14). Not the fully unsafe hint: other threads post here,
  // and asio's resolver and signal_set need the scheduler's locking. Anything
  // that would touch a worker's socket or timer from another thread must
  // post to the worker instead (the operator API, the event feed and the
  // drain do).
  asio::io_context io{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  std::unique_ptr<proxy::http_auth_client> auth;
  std::unique_ptr<proxy::connection_environment> environment;
  std::vector<std::unique_ptr<proxy::listener>> listeners;
  std::unique_ptr<asio::steady_timer> drain_timer;
};

// The Bearer token of GET /v1/events, read once at start.
std::string read_service_token(const std::string& path) {
  if (path.empty()) return {};
  std::ifstream in(path);
  std::string token;
  if (!in || !std::getline(in, token)) throw proxy::config_error("auth.service_token_file", "cannot read " + path);
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ' || token.back() == '\t')) token.pop_back();
  if (token.empty()) throw proxy::config_error("auth.service_token_file", path + " is empty");
  return token;
}

// Several nodes: the first one that answers speaks for the cluster (`where`
// says which). Each node that does not is logged at `failures_at`.
proxy::broker_probe_result probe_broker_nodes(const proxy::connection_settings& connection,
                                              const proxy::reloadable_tls_context* upstream_tls,
                                              spdlog::level::level_enum failures_at, std::string& where) {
  proxy::broker_probe_result probe;
  for (const auto& node : proxy::upstream_nodes(connection.upstream)) {
    auto target = connection.upstream;
    target.host = node.host;
    target.port = node.port;
    probe = proxy::probe_broker(target, connection.session.upstream_username, connection.session.upstream_password,
                                upstream_tls ? upstream_tls->current() : nullptr, connection.upstream.connect_timeout);
    where = node.name();
    if (probe.ok) break;
    if (!connection.upstream.nodes.empty()) spdlog::log(failures_at, "broker {} not probed: {}", where, probe.error);
  }
  return probe;
}

// In auth-PUBLISH mode the proxy answers CONNACK before the broker is
// reached, so what it advertises (Server Keep Alive, Maximum QoS, ...) must
// be known beforehand: asked of the broker here; `[upstream]` keys win.
// True when they are still to be learned and the broker may yet tell
// (broker_reprobe asks again).
bool learn_broker_limits(proxy::proxy_config& config, const proxy::reloadable_tls_context* upstream_tls) {
  auto& connection = config.connection;
  if (!connection.upstream.probe) return false;
  std::string where;
  const auto probe = probe_broker_nodes(connection, upstream_tls, spdlog::level::warn, where);
  if (!probe.ok) {
    const bool again = proxy::worth_asking_again(probe, connection.session.protocol);
    spdlog::warn("broker limits not learned ({}); advertising the configured ones{}", probe.error,
                 again ? " until the broker answers" : "");
    return again;
  }
  connection.session.limits = proxy::merge_limits(connection.session.limits, probe.limits);
  spdlog::info("broker limits learned from {}", where);
  return false;
}

// Limits learned after start-up (broker_reprobe): published once to the
// workers, whose new sessions read them (session_config::late_limits). Owned
// by main, declared before the workers: it outlives every session.
struct late_limits {
  std::unique_ptr<const proxy::upstream_limits> storage;  // written by the re-probe's thread only, once
  std::atomic<const proxy::upstream_limits*> published{nullptr};

  void publish(const proxy::upstream_limits& limits) {
    storage = std::make_unique<const proxy::upstream_limits>(limits);
    published.store(storage.get(), std::memory_order_release);
  }
};

// `[upstream] protocol = "auto"`: a broker that refuses a 5.0 CONNECT and
// accepts 3.1.1 (RabbitMQ 3.10) gets 3.1.1, and 5.0 clients are bridged.
// True when the broker was found to refuse 5.0: then no 5.0 probe can learn
// its limits. ("3.1.1" set by hand still asks: Mosquitto states its limits,
// Server Keep Alive included, to a 5.0 CONNECT whatever version the proxy speaks.)
proxy::upstream_protocol_result probe_upstream_protocol(const proxy::connection_settings& connection,
                                                       const proxy::reloadable_tls_context* upstream_tls) {
  // Several nodes: the first one that can be reached speaks for the cluster.
  proxy::upstream_protocol_result found;
  for (const auto& node : proxy::upstream_nodes(connection.upstream)) {
    auto target = connection.upstream;
    target.host = node.host;
    target.port = node.port;
    found = proxy::detect_upstream_protocol(target, connection.session.upstream_username,
                                            connection.session.upstream_password,
                                            upstream_tls ? upstream_tls->current() : nullptr,
                                            connection.upstream.connect_timeout);
    if (found.protocol != proxy::upstream_protocol::automatic) break;
  }
  return found;
}

void log_upstream_protocol(const proxy::upstream_protocol_result& found) {
  const char* spoken = found.protocol == proxy::upstream_protocol::v3_1_1 ? "3.1.1 (5.0 clients bridged)"
                       : found.protocol == proxy::upstream_protocol::v5   ? "each client's version"
                                                                          : "each client's version (not detected)";
  spdlog::info("upstream protocol: {}; {}", spoken, found.detail);
}

bool resolve_upstream_protocol(proxy::proxy_config& config, const proxy::reloadable_tls_context* upstream_tls) {
  auto& connection = config.connection;
  if (connection.session.protocol != proxy::upstream_protocol::automatic) return false;
  const auto found = probe_upstream_protocol(connection, upstream_tls);
  connection.session.protocol = found.protocol;
  log_upstream_protocol(found);
  return found.protocol == proxy::upstream_protocol::v3_1_1;
}

// A broker that was down at start-up (a host booting, a compose stack
// starting the proxy first) is asked again every few seconds for what
// start-up could not learn, off the workers' threads (a probe blocks for up
// to the connect timeout), one thread for both questions:
// - "auto": which version it speaks. Were each client left on its own
//   version for good, every 5.0 client of a 3.1.1-only broker (RabbitMQ 3.10
//   closes on a 5.0 CONNECT) would be refused for as long as the proxy runs.
// - its limits (Maximum QoS, Retain Available, Server Keep Alive, ...): else
//   5.0 clients would be told "QoS 2, retain available" for as long as the
//   proxy runs, and the broker would disconnect them when they use it.
// New connections follow what it said; open ones keep what they were told.
class broker_reprobe {
 public:
  struct questions {
    bool protocol = false;  // "auto" not resolved
    bool limits = false;    // the limits not learned (learn_broker_limits)
  };

  broker_reprobe(const proxy::connection_settings& connection, const proxy::reloadable_tls_context* tls,
                 questions open, std::atomic<proxy::upstream_protocol>& detected, late_limits& learned)
      : thread_([&connection, tls, open, &detected, &learned](std::stop_token stop) {
          run(stop, connection, tls, open, detected, learned);
        }) {}

 private:
  static void run(std::stop_token stop, const proxy::connection_settings& connection,
                  const proxy::reloadable_tls_context* tls, questions open,
                  std::atomic<proxy::upstream_protocol>& detected, late_limits& learned) {
    std::mutex mutex;
    std::condition_variable_any wake;
    // 2 s, doubling to a minute: a broker that answers but refuses the probe
    // (its credentials) is not asked every 2 s for ever.
    auto pause = std::chrono::seconds(2);
    for (; open.protocol || open.limits; pause = std::min(pause * 2, std::chrono::seconds(60))) {
      {
        std::unique_lock lock(mutex);
        if (wake.wait_for(lock, stop, pause, [] { return false; }) || stop.stop_requested()) return;
      }
      if (open.protocol) open = ask_protocol(connection, tls, open, detected);
      // The limits once the version is known: a broker that cannot say that cannot say these.
      if (open.limits && !open.protocol) open.limits = ask_limits(connection, tls, detected, learned);
    }
  }

  static questions ask_protocol(const proxy::connection_settings& connection, const proxy::reloadable_tls_context* tls,
                                questions open, std::atomic<proxy::upstream_protocol>& detected) {
    const auto found = probe_upstream_protocol(connection, tls);
    if (found.protocol == proxy::upstream_protocol::automatic) return open;
    detected.store(found.protocol, std::memory_order_relaxed);
    log_upstream_protocol(found);
    open.protocol = false;
    // A broker that refuses 5.0: no 5.0 probe can learn its limits, the
    // configured ones stay (as when this is found at start-up).
    if (found.protocol == proxy::upstream_protocol::v3_1_1) open.limits = false;
    return open;
  }

  // True while the limits are still to be learned.
  static bool ask_limits(const proxy::connection_settings& connection, const proxy::reloadable_tls_context* tls,
                         const std::atomic<proxy::upstream_protocol>& detected, late_limits& learned) {
    std::string where;
    const auto probe = probe_broker_nodes(connection, tls, spdlog::level::debug, where);
    if (probe.ok) {
      learned.publish(proxy::merge_limits(connection.session.limits, probe.limits));
      spdlog::info("broker limits learned from {}, late: new connections get them, open ones keep theirs", where);
      return false;
    }
    auto protocol = connection.session.protocol;
    if (protocol == proxy::upstream_protocol::automatic) protocol = detected.load(std::memory_order_relaxed);
    if (proxy::worth_asking_again(probe, protocol)) {
      spdlog::debug("broker limits not learned yet: {}", probe.error);
      return true;
    }
    spdlog::warn("broker limits not learned ({}); advertising the configured ones", probe.error);
    return false;
  }

  std::jthread thread_;
};

// A shorter EEVDF time slice for the calling (worker) thread: on a machine
// whose cores the proxy shares with its broker and clients, a woken worker
// then waits less in the run queue behind them (docs/benchmarks.md, round 6:
// quiet, paced p50 86 µs with 100 µs against 115 µs with the kernel's 1.4 ms;
// HAProxy 93-97). The kernel's default when 0; a kernel before 6.12 ignores
// it, one that refuses (a seccomp filter) is logged once.
void ask_for_time_slice(unsigned slice_us) {
  if (slice_us == 0) return;
  struct sched_attr_v1 {  // struct sched_attr, as in <linux/sched/types.h>
    std::uint32_t size = sizeof(sched_attr_v1);
    std::uint32_t sched_policy = SCHED_OTHER;
    std::uint64_t sched_flags = 0;
    std::int32_t sched_nice = 0;
    std::uint32_t sched_priority = 0;
    std::uint64_t sched_runtime = 0;  // for SCHED_OTHER: the slice
    std::uint64_t sched_deadline = 0;
    std::uint64_t sched_period = 0;
    std::uint32_t sched_util_min = 0;
    std::uint32_t sched_util_max = 0;
  } attr;
  // Only the slice changes: the policy, nice value and flags stay as they are,
  // and a thread that is not under the fair class (chrt, systemd's
  // CPUSchedulingPolicy) is left alone.
  if (::syscall(SYS_sched_getattr, 0, &attr, sizeof attr, 0) != 0) return;
  if (attr.sched_policy != SCHED_OTHER && attr.sched_policy != SCHED_BATCH) return;
  attr.size = sizeof attr;
  attr.sched_runtime = std::uint64_t{slice_us} * 1000;
  if (::syscall(SYS_sched_setattr, 0, &attr, 0) == 0) return;
  static std::once_flag said;
  const int error = errno;
  std::call_once(said, [error, slice_us] {
    spdlog::warn("thread_slice_us {}: the kernel refused it ({}); its default slice stays", slice_us,
                 std::strerror(error));
  });
}

// SIGTERM on one worker's thread: stop accepting, ask every live connection
// to say goodbye (5.0: DISCONNECT 0x8B; the broker gets a normal DISCONNECT
// unless wills fire), then wait for the last one to be gone. At the deadline
// the rest are cut, each logging its line. `done` runs once, on this thread.
void drain_worker(worker& w, bool fire_wills, std::chrono::steady_clock::time_point deadline,
                  std::function<void()> done) {
  for (auto& l : w.listeners) l->stop();
  w.registry.for_each([fire_wills](proxy::client_connection& c) { c.shut_down(fire_wills); });
  w.drain_timer = std::make_unique<asio::steady_timer>(w.io);
  auto check = std::make_shared<std::function<void()>>();
  *check = [&w, deadline, done = std::move(done), check]() mutable {
    if (w.registry.size() > 0 && std::chrono::steady_clock::now() >= deadline) {
      spdlog::warn("drain deadline: cutting {} connections", w.registry.size());
      w.registry.for_each([](proxy::client_connection& c) { c.cut("drain deadline"); });
    }
    if (w.registry.size() == 0 || std::chrono::steady_clock::now() >= deadline) {
      auto finished = std::move(done);
      *check = nullptr;  // breaks the cycle
      finished();
      return;
    }
    w.drain_timer->expires_after(std::chrono::milliseconds(20));
    w.drain_timer->async_wait([check](boost::system::error_code ec) {
      if (!ec && *check) (*check)();
    });
  };
  (*check)();
}

// Certificates of the TLS listeners and of the broker connection, read once
// here and again on SIGHUP.
struct tls_contexts {
  std::array<std::unique_ptr<proxy::reloadable_tls_context>, 4> listeners;  // by transport_kind
  std::unique_ptr<proxy::reloadable_tls_context> upstream;

  explicit tls_contexts(const proxy::proxy_config& config) {
    for (const auto& l : config.listeners) {
      if (!l.enabled || !proxy::uses_tls(l.settings.kind)) continue;
      const std::string prefix = proxy::listener_key(l.settings.kind) + ".";
      listeners[static_cast<std::size_t>(l.settings.kind)] = std::make_unique<proxy::reloadable_tls_context>(
          [files = l.tls, prefix] { return proxy::make_server_tls_context(files, prefix); });
    }
    if (config.connection.upstream.tls)
      upstream = std::make_unique<proxy::reloadable_tls_context>(
          [settings = config.connection.upstream] { return proxy::make_upstream_tls_context(settings); });
  }

  void reload() {
    auto one = [](proxy::reloadable_tls_context* context, const char* name) {
      if (!context) return;
      const auto error = context->reload();
      if (error.empty()) spdlog::info("reloaded TLS certificates of {}", name);
      else spdlog::error("keeping the old TLS certificates of {}: {}", name, error);
    };
    for (std::size_t i = 0; i < listeners.size(); ++i)
      one(listeners[i].get(), proxy::to_string(static_cast<proxy::transport_kind>(i)));
    one(upstream.get(), "the upstream connection");
  }
};

tcp::endpoint resolve(asio::io_context& io, const proxy::host_port& where, const char* key) {
  tcp::resolver resolver(io);
  boost::system::error_code ec;
  auto results = resolver.resolve(where.host, where.port, tcp::resolver::passive, ec);
  if (ec || results.empty()) throw proxy::config_error(key, "cannot resolve " + where.host + ": " + ec.message());
  return results.begin()->endpoint();
}

// The operator endpoints of the admin port, on worker 0's thread; they reach
// each worker's connections on that worker's thread.
std::unique_ptr<proxy::operator_api> make_operator_api(const proxy::proxy_config& config,
                                                       const std::vector<std::unique_ptr<worker>>& workers,
                                                       const proxy::http_endpoint& auth_endpoint,
                                                       std::shared_ptr<asio::ssl::context> auth_tls,
                                                       const std::string& service_token) {
  proxy::operator_settings settings;
  if (!config.admin_token_file.empty()) {
    std::ifstream in(config.admin_token_file);
    if (!in || !std::getline(in, settings.token))
      throw proxy::config_error("admin.token_file", "cannot read " + config.admin_token_file);
    while (!settings.token.empty() && (settings.token.back() == '\r' || settings.token.back() == ' ' ||
                                       settings.token.back() == '\t'))
      settings.token.pop_back();
    if (settings.token.size() < 16)
      throw proxy::config_error("admin.token_file", config.admin_token_file + " must hold a token of 16 characters or more");
  }
  settings.auth = auth_endpoint;
  settings.auth_tls = std::move(auth_tls);
  settings.service_token = service_token;
  settings.auth_timeout = config.auth_http_timeout;
  settings.templates = config.connection.session.templates;
  settings.mode = config.connection.session.acl_enforcement;
  for (const auto& l : config.listeners)
    if (l.enabled)
      settings.listener_modes[proxy::to_string(l.settings.kind)] = l.settings.acl_enforcement.value_or(settings.mode);
  std::vector<proxy::operator_worker> reach;
  for (const auto& w : workers) reach.push_back({&w->io, &w->registry});
  auto api = std::make_unique<proxy::operator_api>(workers[0]->io, std::move(settings), std::move(reach));
  api->log_state();
  if (config.connection.session.acl_enforcement == proxy::acl_mode::report)
    spdlog::warn("[acl] mode = report: the ACL refuses nothing; what it would refuse is logged and counted");
  for (const auto& l : config.listeners)
    if (l.enabled && l.settings.acl_enforcement)
      spdlog::info("listener {}: acl_mode = {}", proxy::to_string(l.settings.kind), proxy::to_string(*l.settings.acl_enforcement));
  return api;
}

// Every client connection needs two descriptors (client and broker); the
// usual soft limit of 1024 would cap the proxy near 500 clients.
void raise_file_limit(std::size_t max_connections, std::size_t reserve) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  const rlim_t wanted =
      std::min<rlim_t>(limit.rlim_max, static_cast<rlim_t>(proxy::descriptors_needed(max_connections, reserve)));
  if (limit.rlim_cur < wanted) {
    limit.rlim_cur = wanted;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  getrlimit(RLIMIT_NOFILE, &limit);
  if (proxy::descriptor_capacity(limit.rlim_cur, reserve) < max_connections)
    spdlog::warn("open file limit {} allows about {} connections, fewer than max_connections {}", limit.rlim_cur,
                 proxy::descriptor_capacity(limit.rlim_cur, reserve), max_connections);
}

// What the process holds besides its clients' two descriptors each. Per
// worker: its event loop (epoll, timer, wake-up), each listener and its spare
// descriptor, the API server's connections in progress and pooled. Once:
// standard streams, the admin port and its clients, the event stream, logs.
std::size_t process_descriptors(const proxy::proxy_config& config, unsigned workers) {
  const auto listeners = static_cast<std::size_t>(
      std::count_if(config.listeners.begin(), config.listeners.end(), [](const auto& l) { return l.enabled; }));
  const std::size_t per_worker = 3 + 2 * listeners + config.auth.max_connections + config.auth.max_idle_connections;
  return std::max<std::size_t>(64, 32 + workers * per_worker);
}

}  // namespace

int main(int argc, char** argv) {
  proxy::parsed_command_line parsed;
  try {
    parsed = proxy::parse_command_line(argc, argv);
  } catch (const proxy::config_error& e) {
    std::cerr << "mqtt-proxy: " << e.what() << '\n';
    return 2;
  }
  if (parsed.show_help) {
    std::cout << proxy::help_text();
    return 0;
  }
  const auto& config = parsed.config;
  // OpenSSL writes TLS records to the socket itself, without MSG_NOSIGNAL: a
  // peer that has gone must be an EPIPE for that connection, not the end of
  // the process.
  std::signal(SIGPIPE, SIG_IGN);
  spdlog::set_level(spdlog::level::from_str(config.log_level));
  const unsigned thread_count = config.threads ? config.threads : std::max(1u, std::thread::hardware_concurrency());
  parsed.config.connection.descriptor_reserve = process_descriptors(config, thread_count);
  raise_file_limit(config.connection.max_connections, config.connection.descriptor_reserve);

  const auto auth_endpoint = *proxy::parse_http_url(config.auth_url);
  proxy::metrics counters;
  std::atomic<bool> draining{false};
  // "auto" not resolved at start: found later (broker_reprobe), read by every worker.
  std::atomic<proxy::upstream_protocol> detected_protocol{proxy::upstream_protocol::automatic};
  late_limits limits_learned_late;  // the broker's limits, when the re-probe learns them; outlives the workers
  std::unique_ptr<proxy::upstream_pool> upstream_nodes;  // several brokers: shared by every worker, outlives them
  std::atomic<std::uint64_t> connection_ids{1};  // the workers' registries give them (operator paging)
  std::vector<std::unique_ptr<worker>> workers;
  std::unique_ptr<proxy::admin_server> admin;
  std::unique_ptr<proxy::operator_api> operators;  // the admin port's /v1/ endpoints
  std::unique_ptr<tls_contexts> tls;
  std::unique_ptr<broker_reprobe> reprobe;  // stopped before what it reads and writes goes
  std::unique_ptr<proxy::auth_event_feed> feed;  // after workers: stopped and destroyed before them

  try {
    tls = std::make_unique<tls_contexts>(config);
    const bool refuses_v5 = resolve_upstream_protocol(parsed.config, tls->upstream.get());
    broker_reprobe::questions open;
    open.limits = !refuses_v5 && learn_broker_limits(parsed.config, tls->upstream.get());
    open.protocol = parsed.config.connection.session.protocol == proxy::upstream_protocol::automatic;
    auto& session = parsed.config.connection.session;
    if (open.protocol) session.detected_protocol = &detected_protocol;
    if (open.limits) session.late_limits = &limits_learned_late.published;
    if (open.protocol || open.limits)
      reprobe = std::make_unique<broker_reprobe>(parsed.config.connection, tls->upstream.get(), open,
                                                 detected_protocol, limits_learned_late);
    proxy::http_auth_settings auth_settings;
    auth_settings.endpoint = auth_endpoint;
    auth_settings.timeout = config.auth_http_timeout;
    auth_settings.max_idle_connections = config.auth.max_idle_connections;
    auth_settings.max_connections = config.auth.max_connections;
    auth_settings.idle_timeout = config.auth.idle_timeout;
    if (auth_endpoint.tls) {
      try {
        auth_settings.tls = proxy::make_api_tls_context(config.auth.ca_file);
      } catch (const boost::system::system_error& e) {
        throw proxy::config_error("auth.ca_file", e.what());
      }
    }
    auth_settings.cache = {config.auth.cache_max_entries, config.auth.negative_cache, config.auth.stale_if_error};
    auth_settings.breaker = {config.auth.breaker_failures, config.auth.breaker_cooldown};
    const auto service_token = read_service_token(config.auth.service_token_file);
    if (!config.connection.upstream.nodes.empty()) {
      auto backoff = config.connection.upstream.backoff;
      backoff.probe_window = config.connection.upstream.connect_timeout;
      upstream_nodes = std::make_unique<proxy::upstream_pool>(config.connection.upstream.nodes, backoff);
      counters.upstream_nodes = upstream_nodes.get();
    }
    for (unsigned i = 0; i < thread_count; ++i) {
      auto w = std::make_unique<worker>(connection_ids);
      w->auth = std::make_unique<proxy::http_auth_client>(w->io, auth_settings, &counters);
      w->environment = std::make_unique<proxy::connection_environment>(
          proxy::connection_environment{config.connection, counters, *w->auth, tls->upstream.get(), &w->registry,
                                        upstream_nodes.get(), &w->acls,
                                        &w->connection_blocks});
      for (const auto& l : config.listeners) {
        if (!l.enabled) continue;
        const auto kind = static_cast<std::size_t>(l.settings.kind);
        const std::string key = kind == 0 ? "listen" : proxy::listener_key(l.settings.kind);
        w->listeners.push_back(std::make_unique<proxy::listener>(w->io, resolve(w->io, l.address, key.c_str()),
                                                                 l.settings, *w->environment,
                                                                 tls->listeners[kind].get()));
        w->listeners.back()->start();
      }
      workers.push_back(std::move(w));
    }
    admin = std::make_unique<proxy::admin_server>(
        workers[0]->io, resolve(workers[0]->io, config.admin, "admin"), counters,
        proxy::readiness_targets{config.connection.upstream.host, config.connection.upstream.port, auth_endpoint.host,
                                 auth_endpoint.port, config.connection.upstream.nodes},
        draining);
    operators = make_operator_api(config, workers, auth_endpoint, auth_settings.tls, service_token);
    admin->set_operator_api(operators.get());
    admin->start();
    if (config.auth.events) {
      proxy::auth_event_feed_settings feed_settings;
      feed_settings.endpoint = auth_endpoint;
      feed_settings.tls = auth_settings.tls;
      feed_settings.service_token = service_token;
      feed_settings.wait = config.auth.events_wait;
      // Each event goes to every worker: its cache first, then its connections.
      feed = std::make_unique<proxy::auth_event_feed>(
          workers[0]->io, feed_settings, &counters, [&workers](const proxy::auth_event& event) {
            for (auto& w : workers)
              asio::post(w->io, [&w = *w, event] {
                w.auth->apply(event);
                w.registry.for_each([&event](proxy::client_connection& c) { c.on_auth_event(event); });
              });
          });
      feed->start();
    }
  } catch (const proxy::config_error& e) {
    std::cerr << "mqtt-proxy: " << e.what() << '\n';
    return 2;
  } catch (const boost::system::system_error& e) {
    std::cerr << "mqtt-proxy: cannot listen: " << e.what() << '\n';
    return 1;
  }

  // SIGTERM/SIGINT: stop accepting, report not-ready, give open connections
  // the drain period, then stop.
  asio::signal_set signals(workers[0]->io, SIGINT, SIGTERM);
  std::atomic<std::size_t> workers_draining{0};
  signals.async_wait([&](boost::system::error_code ec, int signal) {
    if (ec) return;
    spdlog::info("signal {}: draining for at most {} ms ({} wills)", signal, config.connection.drain_timeout.count(),
                 config.drain_fire_wills ? "firing" : "suppressing");
    draining = true;  // /readyz answers 503 from now on
    if (feed) feed->stop();
    workers_draining = workers.size();
    const auto deadline = std::chrono::steady_clock::now() + config.connection.drain_timeout;
    for (auto& w : workers)
      asio::post(w->io, [&, &w = *w, deadline] {
        drain_worker(w, config.drain_fire_wills, deadline, [&] {
          // The last worker to finish stops them all.
          if (--workers_draining == 0)
            for (auto& other : workers) other->io.stop();
        });
      });
  });

  asio::signal_set reload_signal(workers[0]->io, SIGHUP);
  std::function<void()> await_reload = [&] {
    reload_signal.async_wait([&](boost::system::error_code ec, int) {
      if (ec) return;
      tls->reload();
      await_reload();
    });
  };
  await_reload();

  std::string listening;
  for (const auto& l : workers[0]->listeners)
    listening += std::string(listening.empty() ? "" : ", ") + proxy::to_string(l->kind()) + " " +
                 config.listener(l->kind()).address.host + ":" + std::to_string(l->local_endpoint().port());
  spdlog::info("mqtt-proxy {} threads, listening on {}; upstream {}{}:{}, auth {}, admin {}:{}", thread_count,
               listening, config.connection.upstream.tls ? "tls://" : "", config.connection.upstream.host,
               config.connection.upstream.port, config.auth_url, config.admin.host, config.admin.port);
  if (upstream_nodes)
    spdlog::info("upstream: {} broker nodes, failover (backoff {} ms doubling to {} ms)", upstream_nodes->size(),
                 config.connection.upstream.backoff.initial.count(), config.connection.upstream.backoff.max.count());

  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < workers.size(); ++i)
    threads.emplace_back([&w = *workers[i], slice = config.thread_slice_us] {
      ask_for_time_slice(slice);
      w.io.run();
    });
  ask_for_time_slice(config.thread_slice_us);
  workers[0]->io.run();
  for (auto& w : workers) w->io.stop();
  for (auto& t : threads) t.join();
  spdlog::info("mqtt-proxy stopped");
  return 0;
}
