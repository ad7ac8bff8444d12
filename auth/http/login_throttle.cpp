#include "http/login_throttle.hpp"

#include <algorithm>
#include <utility>

namespace auth {

namespace {
constexpr std::size_t prune_above = 10'000;  // keys; an address scan cannot grow the map without bound
}  // namespace

login_throttle::login_throttle(limits limits) : limits_(limits) {
  const auto steps = limits.delay_step.count() > 0 ? limits.max_delay / limits.delay_step : 0;
  kept_ = std::max({limits.per_pair, limits.per_address, limits.slow_after + static_cast<std::size_t>(steps) + 1});
}

login_throttle::ticket::ticket(ticket&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)),
      pair_(std::move(other.pair_)),
      address_(std::move(other.address_)),
      user_(std::move(other.user_)) {}

login_throttle::ticket& login_throttle::ticket::operator=(ticket&& other) noexcept {
  if (this != &other) {
    if (owner_) finish(false, clock::now());
    owner_ = std::exchange(other.owner_, nullptr);
    pair_ = std::move(other.pair_);
    address_ = std::move(other.address_);
    user_ = std::move(other.user_);
  }
  return *this;
}

login_throttle::ticket::~ticket() {
  if (owner_) finish(false, clock::now());
}

void login_throttle::ticket::failed(clock::time_point now) { finish(true, now); }

void login_throttle::ticket::succeeded() {
  if (!owner_) return;
  auto* owner = owner_;
  finish(false, clock::now());
  // The pair proved it knows the password: its own failures are forgiven.
  std::lock_guard lock(owner->mutex_);
  if (auto found = owner->entries_.find(pair_); found != owner->entries_.end()) found->second.failures.clear();
}

void login_throttle::ticket::finish(bool failed, clock::time_point now) {
  if (!owner_) return;
  std::lock_guard lock(owner_->mutex_);
  for (const auto* key : {&pair_, &address_, &user_}) {
    auto& e = owner_->entries_[*key];
    if (e.in_flight > 0) --e.in_flight;
    if (failed) {
      e.failures.push_back(now);
      while (e.failures.size() > owner_->kept_) e.failures.pop_front();
    }
  }
  owner_ = nullptr;
}

login_throttle::entry& login_throttle::at(const std::string& key, clock::time_point now) {
  auto& e = entries_[key];
  while (!e.failures.empty() && now - e.failures.front() >= limits_.window) e.failures.pop_front();
  return e;
}

std::chrono::seconds login_throttle::wait_for(const entry& e, clock::time_point now) const {
  if (e.failures.empty()) return std::chrono::seconds(1);  // only attempts in flight: try again shortly
  const auto wait = std::chrono::ceil<std::chrono::seconds>(e.failures.front() + limits_.window - now);
  return std::max(wait, std::chrono::seconds(1));
}

login_throttle::decision login_throttle::reserve(const std::string& user, const std::string& address,
                                                 clock::time_point now) {
  std::string pair_key = "p:" + user;
  pair_key += '\0';
  pair_key += address;
  std::string address_key = "a:" + address;
  std::string user_key = "u:" + user;

  std::lock_guard lock(mutex_);
  if (entries_.size() > prune_above) prune(now);
  auto& pair = at(pair_key, now);
  auto& addr = at(address_key, now);
  auto& usr = at(user_key, now);
  decision d;
  if (pair.failures.size() + pair.in_flight >= limits_.per_pair) {
    d.retry_after = wait_for(pair, now);
    return d;
  }
  if (addr.failures.size() + addr.in_flight >= limits_.per_address) {
    d.retry_after = wait_for(addr, now);
    return d;
  }
  ++pair.in_flight;
  ++addr.in_flight;
  ++usr.in_flight;
  if (usr.failures.size() >= limits_.slow_after) {
    const auto excess = static_cast<long>(usr.failures.size() - limits_.slow_after + 1);
    d.delay = std::min(limits_.max_delay, limits_.delay_step * excess);
  }
  d.admitted = ticket(this, std::move(pair_key), std::move(address_key), std::move(user_key));
  return d;
}

void login_throttle::prune(clock::time_point now) {
  std::erase_if(entries_, [&](const auto& kv) {
    const auto& e = kv.second;
    return e.in_flight == 0 && (e.failures.empty() || now - e.failures.back() >= limits_.window);
  });
}

}  // namespace auth
