// auth-server: the reference API server. Subcommands:
//   serve    run the HTTP API
//   adduser  create a user (password hashed with the KDF)
//   deluser  delete a user and their sessions
//   moduser  change a user's password, groups or filters
#include <atomic>
#include <csignal>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <thread>

#include <spdlog/spdlog.h>

#include "crypto/secrets.hpp"
#include "http/api_server.hpp"
#include "mqtt/topic.hpp"

namespace {

constexpr const char* usage = R"(auth-server: issues and validates sessions for mqtt-proxy

Usage:
  auth-server serve   --db FILE [--listen HOST:PORT] [--session-ttl SECONDS] [--threads N] [--log-level LEVEL]
                      [--service-token-file FILE] [--event-retention SECONDS] [--validate-max-age SECONDS]
                      [--keep-alive-timeout SECONDS] [--keep-alive-max N] [--long-polls N]
                      [--login-max-failures N] [--login-max-failures-per-address N] [--login-window SECONDS]
                      [--login-slow-after N] [--login-max-delay SECONDS] [--purge-interval SECONDS]
                      [--cors-origin ORIGIN]... [--console-dir DIR|off]
  auth-server adduser --db FILE --user NAME (--password PW | --password-stdin)
                      [--group G]... [--allow-publish FILTER]... [--allow-subscribe FILTER]...
                      [--kdf-iterations N]
  auth-server moduser --db FILE --user NAME [--password-stdin] [--kdf-iterations N]
                      [--clear-groups] [--group G]... [--clear-filters]
                      [--allow-publish FILTER]... [--allow-subscribe FILTER]...
  auth-server deluser --db FILE --user NAME

Defaults: --listen 127.0.0.1:8080, --session-ttl 3600, --threads 4 per core (at least 32): a kept-alive
connection holds a thread while idle, and each mqtt-proxy worker keeps up to 4. --event-retention 604800,
--validate-max-age 60, --keep-alive-timeout 5, --keep-alive-max 1000, --long-polls threads/4,
--login-max-failures 5 (per user and address), --login-max-failures-per-address 20, --login-window 300,
--login-slow-after 10 (per user from anywhere: then delayed, never locked), --login-max-delay 3,
--purge-interval 600.
--cors-origin: a web page origin (scheme://host[:port]) allowed to call the API from a browser (repeatable;
default none). --console-dir: the web console's files, served at /console/ (default: auth/console in the
source tree this binary was built from, when it exists; off: no console).
moduser: --group replaces all groups with those given, --allow-publish / --allow-subscribe replace that
list of extra filters; --clear-groups / --clear-filters empty them. A new password (--password-stdin)
revokes every session of the user. Each change is an event for the proxies (GET /v1/events).
Every user may publish and subscribe private/<user>/# and group/<g>/# for each of their groups.
User and group names: 1 to 64 characters of UTF-8, none of / + # . * or control characters.
The HTTP API is described in auth/API.md. Exit status: 0 success, 1 failure, 2 usage error.
)";

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// --flag value pairs; repeated flags keep every value.
std::multimap<std::string, std::string> parse_flags(int argc, char** argv, int first,
                                                    const std::vector<std::string>& switches) {
  std::multimap<std::string, std::string> flags;
  for (int i = first; i < argc; ++i) {
    std::string flag = argv[i];
    if (!flag.starts_with("--")) throw usage_error("unexpected argument '" + flag + "'");
    if (std::find(switches.begin(), switches.end(), flag) != switches.end()) {
      flags.emplace(flag, "");
      continue;
    }
    if (i + 1 >= argc) throw usage_error(flag + " needs a value");
    flags.emplace(flag, argv[++i]);
  }
  return flags;
}

std::string one(const std::multimap<std::string, std::string>& flags, const std::string& name, std::string fallback = "") {
  auto found = flags.find(name);
  if (found == flags.end()) {
    if (fallback.empty()) throw usage_error(name + " is required");
    return fallback;
  }
  return found->second;
}

std::vector<std::string> all(const std::multimap<std::string, std::string>& flags, const std::string& name) {
  std::vector<std::string> values;
  for (auto [it, end] = flags.equal_range(name); it != end; ++it) values.push_back(it->second);
  return values;
}

long number(const std::string& flag, const std::string& text, long min, long max) {
  try {
    std::size_t used = 0;
    const long value = std::stol(text, &used);
    if (used == text.size() && value >= min && value <= max) return value;
  } catch (const std::exception&) {
  }
  throw usage_error(flag + " must be a number from " + std::to_string(min) + " to " + std::to_string(max));
}

void check_only(const std::multimap<std::string, std::string>& flags, const std::vector<std::string>& known) {
  for (const auto& [flag, value] : flags)
    if (std::find(known.begin(), known.end(), flag) == known.end()) throw usage_error("unknown flag " + flag);
}

std::vector<std::string> groups_of(const std::multimap<std::string, std::string>& flags) {
  auto groups = all(flags, "--group");
  for (const auto& g : groups)
    if (!auth::is_valid_name(g)) throw usage_error("--group '" + auth::log_safe(g) + "': " + auth::name_rule);
  return groups;
}

std::vector<std::string> filters_of(const std::multimap<std::string, std::string>& flags, const std::string& flag) {
  auto filters = all(flags, flag);
  for (const auto& f : filters)
    if (!mqtt::topic::is_valid_filter(f)) throw usage_error(flag + " '" + auth::log_safe(f) + "' is not a valid topic filter");
  return filters;
}

unsigned kdf_iterations(const std::multimap<std::string, std::string>& flags) {
  return static_cast<unsigned>(flags.count("--kdf-iterations")
                                   ? number("--kdf-iterations", one(flags, "--kdf-iterations"), 1000, 100'000'000)
                                   : static_cast<long>(auth::default_kdf_iterations));
}

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string acl_text(const auth::user_record& user) { return auth::acl_of(user).dump(); }

std::unique_ptr<auth::auth_store> open_store(const std::multimap<std::string, std::string>& flags,
                                             std::size_t connections = 1) {
  return std::make_unique<auth::auth_store>(one(flags, "--db"), connections, acl_text);
}

int add_user(const std::multimap<std::string, std::string>& flags) {
  check_only(flags, {"--db", "--user", "--password", "--password-stdin", "--group", "--allow-publish",
                     "--allow-subscribe", "--kdf-iterations"});
  auth::new_user user;
  user.name = one(flags, "--user");
  if (!auth::is_valid_name(user.name)) throw usage_error(std::string("--user: ") + auth::name_rule);
  std::string password;
  if (flags.count("--password-stdin")) {
    std::getline(std::cin, password);
  } else {
    password = one(flags, "--password");
  }
  if (password.empty()) throw usage_error("the password must not be empty");
  user.groups = groups_of(flags);
  user.publish = filters_of(flags, "--allow-publish");
  user.subscribe = filters_of(flags, "--allow-subscribe");
  user.password_hash = auth::hash_password(password, kdf_iterations(flags));
  auto store = open_store(flags);
  if (!store->add_user(user)) {
    std::cerr << "auth-server: user '" << user.name << "' already exists\n";
    return 1;
  }
  std::cout << "added user " << user.name << "\n";
  return 0;
}

int delete_user(const std::multimap<std::string, std::string>& flags) {
  check_only(flags, {"--db", "--user"});
  const auto name = one(flags, "--user");
  auto store = open_store(flags);
  if (!store->delete_user(name, unix_now())) {
    std::cerr << "auth-server: no user '" << auth::log_safe(name) << "'\n";
    return 1;
  }
  std::cout << "deleted user " << name << "\n";
  return 0;
}

// Each list given replaces the stored one; a change to the password revokes
// the user's sessions. The events go out in the same transaction.
int modify_user(const std::multimap<std::string, std::string>& flags) {
  check_only(flags, {"--db", "--user", "--password-stdin", "--kdf-iterations", "--group", "--clear-groups",
                     "--allow-publish", "--allow-subscribe", "--clear-filters"});
  const auto name = one(flags, "--user");
  auth::user_changes changes;
  if (flags.count("--group") || flags.count("--clear-groups")) changes.groups = groups_of(flags);
  if (flags.count("--allow-publish") || flags.count("--clear-filters"))
    changes.publish = filters_of(flags, "--allow-publish");
  if (flags.count("--allow-subscribe") || flags.count("--clear-filters"))
    changes.subscribe = filters_of(flags, "--allow-subscribe");
  if (flags.count("--password-stdin")) {
    std::string password;
    std::getline(std::cin, password);
    if (password.empty()) throw usage_error("the password must not be empty");
    changes.password_hash = auth::hash_password(password, kdf_iterations(flags));
  }
  if (!changes.password_hash && !changes.groups && !changes.publish && !changes.subscribe)
    throw usage_error("moduser: nothing to change");
  auto store = open_store(flags);
  auto user = store->modify_user(name, changes, unix_now());
  if (!user) {
    std::cerr << "auth-server: no user '" << auth::log_safe(name) << "'\n";
    return 1;
  }
  std::cout << "modified user " << user->name << " (id " << user->id << ")\n";
  return 0;
}

std::string read_service_token(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read --service-token-file " + path);
  std::string token;
  std::getline(in, token);
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  if (token.size() < 16) throw std::runtime_error("the service token in " + path + " must be at least 16 characters");
  return token;
}

std::vector<std::string> cors_origins_of(const std::multimap<std::string, std::string>& flags) {
  auto origins = all(flags, "--cors-origin");
  for (const auto& origin : origins)
    if (!auth::cors_policy::is_valid_origin(origin))
      throw usage_error("--cors-origin '" + auth::log_safe(origin) +
                        "' must be an origin: http:// or https://, a host and an optional port, no path (never *)");
  return origins;
}

// The console folder: the flag's, else the source tree's when this binary was
// built next to one. An explicit folder that does not exist is a usage error.
std::string console_dir_of(const std::multimap<std::string, std::string>& flags) {
  std::error_code ec;
  if (!flags.count("--console-dir")) {
#ifdef MQTT_CONSOLE_DIR
    if (std::filesystem::is_regular_file(std::filesystem::path(MQTT_CONSOLE_DIR) / "index.html", ec)) return MQTT_CONSOLE_DIR;
#endif
    return "";
  }
  const auto dir = one(flags, "--console-dir");
  if (dir == "off") return "";
  if (!std::filesystem::is_directory(dir, ec)) throw usage_error("--console-dir '" + dir + "' is not a folder");
  return dir;
}

int serve(const std::multimap<std::string, std::string>& flags) {
  check_only(flags, {"--db", "--listen", "--session-ttl", "--threads", "--log-level", "--service-token-file",
                     "--event-retention", "--validate-max-age", "--keep-alive-timeout", "--keep-alive-max",
                     "--long-polls", "--login-max-failures", "--login-max-failures-per-address", "--login-window",
                     "--login-slow-after", "--login-max-delay", "--purge-interval",
                     "--cors-origin", "--console-dir"});
  const auto listen = one(flags, "--listen", "127.0.0.1:8080");
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) throw usage_error("--listen expects HOST:PORT");
  const auto host = listen.substr(0, colon);
  const int port = static_cast<int>(number("--listen", listen.substr(colon + 1), 0, 65535));
  auth::api_settings settings;
  settings.session_ttl = number("--session-ttl", one(flags, "--session-ttl", "3600"), 1, 180 * 24 * 3600);
  settings.threads = static_cast<std::size_t>(number(
      "--threads", one(flags, "--threads", std::to_string(std::max(32u, 4 * std::thread::hardware_concurrency()))), 1, 1024));
  settings.validate_max_age = number("--validate-max-age", one(flags, "--validate-max-age", "60"), 0, 24 * 3600);
  settings.max_long_polls = static_cast<std::size_t>(number("--long-polls", one(flags, "--long-polls", "0"), 0, 1024));
  settings.connection.keep_alive_timeout =
      std::chrono::seconds(number("--keep-alive-timeout", one(flags, "--keep-alive-timeout", "5"), 1, 3600));
  settings.connection.keep_alive_max =
      static_cast<std::size_t>(number("--keep-alive-max", one(flags, "--keep-alive-max", "1000"), 1, 1'000'000));
  auto& limits = settings.throttle;
  limits.per_pair = static_cast<std::size_t>(number("--login-max-failures", one(flags, "--login-max-failures", "5"), 1, 1000));
  limits.per_address = static_cast<std::size_t>(
      number("--login-max-failures-per-address", one(flags, "--login-max-failures-per-address", "20"), 1, 100'000));
  limits.window = std::chrono::seconds(number("--login-window", one(flags, "--login-window", "300"), 1, 24 * 3600));
  limits.slow_after = static_cast<std::size_t>(number("--login-slow-after", one(flags, "--login-slow-after", "10"), 1, 1000));
  limits.max_delay = std::chrono::seconds(number("--login-max-delay", one(flags, "--login-max-delay", "3"), 0, 30));
  const auto retention = number("--event-retention", one(flags, "--event-retention", "604800"), 1, 10L * 365 * 24 * 3600);
  const auto purge_interval = std::chrono::seconds(number("--purge-interval", one(flags, "--purge-interval", "600"), 1, 24 * 3600));
  settings.cors_origins = cors_origins_of(flags);
  settings.console_dir = console_dir_of(flags);
  if (flags.count("--service-token-file")) settings.service_token = read_service_token(one(flags, "--service-token-file"));
  spdlog::set_level(spdlog::level::from_str(one(flags, "--log-level", "info")));
  if (settings.service_token.empty())
    spdlog::warn("no --service-token-file: GET /v1/events is open to anyone who can reach this port, "
                 "and the operator endpoints are off");

  // SIGINT/SIGTERM are taken by a thread of their own, which stops the server.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // A connection per pool thread, one for the event watcher, one for the janitor.
  auto store = open_store(flags, settings.threads + 2);
  auth::api_server api(*store, settings);
  std::mutex mutex;
  std::condition_variable stopping;
  bool stopped = false;
  std::atomic<bool> served{false};  // listen_after_bind() has returned (or will never run)
  std::thread signal_thread([&] {
    int signal = 0;
    sigwait(&signals, &signal);
    spdlog::info("signal {}: stopping", signal);
    // stop() does nothing until the server runs: a signal between bind and
    // listen would otherwise leave the server running. Repeat until it ends.
    while (!served) {
      api.stop();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    std::lock_guard lock(mutex);
    stopped = true;
    stopping.notify_all();
  });
  std::thread janitor([&] {
    std::unique_lock lock(mutex);
    do {
      lock.unlock();
      const auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
      try {
        if (auto purged = store->purge_expired(now)) spdlog::info("purged {} ended sessions", purged);
        if (auto purged = store->purge_events(now - retention)) spdlog::info("purged {} old events", purged);
      } catch (const std::exception& e) {
        spdlog::warn("purging failed: {}", e.what());
      }
      lock.lock();
    } while (!stopping.wait_for(lock, purge_interval, [&] { return stopped; }));
  });
  if (!api.bind(host, port)) {
    std::cerr << "auth-server: cannot listen on " << listen << "\n";
    served = true;
    kill(getpid(), SIGTERM);
    signal_thread.join();
    janitor.join();
    return 1;
  }
  spdlog::info("auth-server listening on {} ({} threads, backlog {}, keep-alive {} s / {} requests, session ttl {} s)",
               listen, settings.threads, api.backlog(), settings.connection.keep_alive_timeout.count(),
               settings.connection.keep_alive_max, settings.session_ttl);
  if (!settings.console_dir.empty()) spdlog::info("web console at /console/ from {}", settings.console_dir);
  for (const auto& origin : settings.cors_origins) spdlog::info("CORS: pages from {} may call the API", origin);
  api.listen_after_bind();
  served = true;
  // `stopped` is the signal thread's: read it under the mutex (ThreadSanitizer).
  if (std::lock_guard lock(mutex); !stopped) kill(getpid(), SIGTERM);
  signal_thread.join();
  janitor.join();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::cout << usage;
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  try {
    const auto flags = parse_flags(argc, argv, 2, {"--password-stdin", "--clear-groups", "--clear-filters"});
    if (command == "serve") return serve(flags);
    if (command == "adduser") return add_user(flags);
    if (command == "deluser") return delete_user(flags);
    if (command == "moduser") return modify_user(flags);
    throw usage_error("unknown command '" + command + "'");
  } catch (const usage_error& e) {
    std::cerr << "auth-server: " << e.what() << "\n\n" << usage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "auth-server: " << e.what() << "\n";
    return 1;
  }
}
