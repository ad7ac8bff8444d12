#include "http/login_throttle.hpp"

namespace auth {

namespace {
constexpr std::size_t prune_above = 10'000;  // keys; an address scan cannot grow the map without bound
}

std::chrono::seconds login_throttle::retry_after(const std::string& key, clock::time_point now) {
  std::lock_guard lock(mutex_);
  auto found = failures_.find(key);
  if (found == failures_.end()) return std::chrono::seconds(0);
  auto& times = found->second;
  while (!times.empty() && now - times.front() >= window_) times.pop_front();
  if (times.size() < max_failures_) return std::chrono::seconds(0);
  const auto wait = std::chrono::ceil<std::chrono::seconds>(times.front() + window_ - now);
  return wait.count() > 0 ? wait : std::chrono::seconds(1);
}

void login_throttle::record_failure(const std::string& key, clock::time_point now) {
  std::lock_guard lock(mutex_);
  if (failures_.size() > prune_above) prune(now);
  auto& times = failures_[key];
  times.push_back(now);
  while (times.size() > max_failures_) times.pop_front();
}

void login_throttle::clear(const std::string& key) {
  std::lock_guard lock(mutex_);
  failures_.erase(key);
}

void login_throttle::prune(clock::time_point now) {
  std::erase_if(failures_, [&](const auto& entry) { return entry.second.empty() || now - entry.second.back() >= window_; });
}

}  // namespace auth
