// auth-server: the reference API server. Subcommands:
//   serve    run the HTTP API
//   adduser  create a user (password hashed with the KDF)
//   deluser  delete a user and their sessions
#include <csignal>
#include <condition_variable>
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
  auth-server adduser --db FILE --user NAME (--password PW | --password-stdin)
                      [--group G]... [--allow-publish FILTER]... [--allow-subscribe FILTER]...
                      [--kdf-iterations N]
  auth-server deluser --db FILE --user NAME

Defaults: --listen 127.0.0.1:8080, --session-ttl 3600, --threads 4 per core (at least 32): a kept-alive
connection holds a thread while idle, and each mqtt-proxy worker keeps up to 4.
Every user may publish and subscribe private/<user>/# and group/<g>/# for each of their groups.
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

int add_user(const std::multimap<std::string, std::string>& flags) {
  check_only(flags, {"--db", "--user", "--password", "--password-stdin", "--group", "--allow-publish",
                     "--allow-subscribe", "--kdf-iterations"});
  auth::new_user user;
  user.name = one(flags, "--user");
  if (!auth::is_valid_name(user.name)) throw usage_error("--user: 1 to 64 characters, no '/', '+', '#' or controls");
  std::string password;
  if (flags.count("--password-stdin")) {
    std::getline(std::cin, password);
  } else {
    password = one(flags, "--password");
  }
  if (password.empty()) throw usage_error("the password must not be empty");
  user.groups = all(flags, "--group");
  for (const auto& g : user.groups)
    if (!auth::is_valid_name(g)) throw usage_error("--group '" + g + "': 1 to 64 characters, no '/', '+', '#'");
  user.publish = all(flags, "--allow-publish");
  user.subscribe = all(flags, "--allow-subscribe");
  for (const auto& f : user.publish) if (!mqtt::topic::is_valid_filter(f)) throw usage_error("--allow-publish '" + f + "' is not a valid topic filter");
  for (const auto& f : user.subscribe) if (!mqtt::topic::is_valid_filter(f)) throw usage_error("--allow-subscribe '" + f + "' is not a valid topic filter");
  const auto iterations = flags.count("--kdf-iterations")
                              ? number("--kdf-iterations", one(flags, "--kdf-iterations"), 1000, 100'000'000)
                              : static_cast<long>(auth::default_kdf_iterations);
  user.password_hash = auth::hash_password(password, static_cast<unsigned>(iterations));
  auth::auth_store store(one(flags, "--db"), 1);
  if (!store.add_user(user)) {
    std::cerr << "auth-server: user '" << user.name << "' already exists\n";
    return 1;
  }
  std::cout << "added user " << user.name << "\n";
  return 0;
}

int delete_user(const std::multimap<std::string, std::string>& flags) {
  check_only(flags, {"--db", "--user"});
  auth::auth_store store(one(flags, "--db"), 1);
  if (!store.delete_user(one(flags, "--user"))) {
    std::cerr << "auth-server: no user '" << one(flags, "--user") << "'\n";
    return 1;
  }
  std::cout << "deleted user " << one(flags, "--user") << "\n";
  return 0;
}

int serve(const std::multimap<std::string, std::string>& flags) {
  check_only(flags, {"--db", "--listen", "--session-ttl", "--threads", "--log-level"});
  const auto listen = one(flags, "--listen", "127.0.0.1:8080");
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) throw usage_error("--listen expects HOST:PORT");
  const auto host = listen.substr(0, colon);
  const int port = static_cast<int>(number("--listen", listen.substr(colon + 1), 0, 65535));
  auth::api_settings settings;
  settings.session_ttl = number("--session-ttl", one(flags, "--session-ttl", "3600"), 1, 180 * 24 * 3600);
  settings.threads = static_cast<std::size_t>(number(
      "--threads", one(flags, "--threads", std::to_string(std::max(32u, 4 * std::thread::hardware_concurrency()))), 1, 1024));
  spdlog::set_level(spdlog::level::from_str(one(flags, "--log-level", "info")));

  // SIGINT/SIGTERM are taken by a thread of their own, which stops the server.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auth::auth_store store(one(flags, "--db"), settings.threads + 1);
  auth::api_server api(store, settings);
  std::mutex mutex;
  std::condition_variable stopping;
  bool stopped = false;
  std::thread signal_thread([&] {
    int signal = 0;
    sigwait(&signals, &signal);
    spdlog::info("signal {}: stopping", signal);
    api.stop();
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
        if (auto purged = store.purge_expired(now)) spdlog::info("purged {} ended sessions", purged);
      } catch (const std::exception& e) {
        spdlog::warn("purging sessions failed: {}", e.what());
      }
      lock.lock();
    } while (!stopping.wait_for(lock, std::chrono::minutes(10), [&] { return stopped; }));
  });
  if (!api.bind(host, port)) {
    std::cerr << "auth-server: cannot listen on " << listen << "\n";
    kill(getpid(), SIGTERM);
    signal_thread.join();
    janitor.join();
    return 1;
  }
  spdlog::info("auth-server listening on {} ({} threads, session ttl {} s)", listen, settings.threads, settings.session_ttl);
  api.listen_after_bind();
  if (!stopped) kill(getpid(), SIGTERM);
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
    const auto flags = parse_flags(argc, argv, 2, {"--password-stdin"});
    if (command == "serve") return serve(flags);
    if (command == "adduser") return add_user(flags);
    if (command == "deluser") return delete_user(flags);
    throw usage_error("unknown command '" + command + "'");
  } catch (const usage_error& e) {
    std::cerr << "auth-server: " << e.what() << "\n\n" << usage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "auth-server: " << e.what() << "\n";
    return 1;
  }
}
