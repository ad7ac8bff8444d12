// Counts failed logins per key ("user:alice", "addr:10.0.0.1") in a sliding
// window; a key with too many recent failures is refused (429) until the
// oldest of them leaves the window. Thread-safe; memory bounded by pruning.
#pragma once

#include <chrono>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>

namespace auth {

class login_throttle {
 public:
  using clock = std::chrono::steady_clock;
  login_throttle(std::size_t max_failures, std::chrono::seconds window) : max_failures_(max_failures), window_(window) {}

  // Seconds until the key may try again; zero when it may now.
  std::chrono::seconds retry_after(const std::string& key, clock::time_point now);
  void record_failure(const std::string& key, clock::time_point now);
  void clear(const std::string& key);

 private:
  void prune(clock::time_point now);

  std::mutex mutex_;
  std::size_t max_failures_;
  std::chrono::seconds window_;
  std::unordered_map<std::string, std::deque<clock::time_point>> failures_;
};

}  // namespace auth
