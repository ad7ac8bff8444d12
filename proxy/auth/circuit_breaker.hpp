// The circuit breaker in front of the API server (issue 11 item 5): after
// `failure_threshold` consecutive failures it opens and callers answer
// "unavailable" at once for `cool_down`; then one probe goes through
// (half-open): success closes it, failure opens it again. Pure and
// clock-injected; one per worker.
#pragma once

#include <chrono>
#include <cstdint>

namespace proxy {

struct circuit_breaker_settings {
  unsigned failure_threshold = 5;  // 0: never opens
  std::chrono::milliseconds cool_down{5'000};
};

class circuit_breaker {
 public:
  using clock = std::chrono::steady_clock;
  using time_point = clock::time_point;
  enum class state { closed, open, half_open };

  explicit circuit_breaker(circuit_breaker_settings settings) : settings_(settings) {}

  // May a call go out now? In half-open, only the one probe may.
  bool allow(time_point now);
  void on_success();
  void on_failure(time_point now);
  // A call that was let through ended without an answer either way (nobody
  // waited for it any more): the next caller may probe.
  void on_abandoned();

  state current() const { return state_; }
  std::uint64_t opens() const { return opens_; }

 private:
  void open(time_point now);

  circuit_breaker_settings settings_;
  state state_ = state::closed;
  unsigned failures_ = 0;
  time_point opened_at_{};
  bool probe_out_ = false;
  std::uint64_t opens_ = 0;
};

const char* to_string(circuit_breaker::state s);

}  // namespace proxy
