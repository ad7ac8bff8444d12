#include "auth/circuit_breaker.hpp"

namespace proxy {

bool circuit_breaker::allow(time_point now) {
  switch (state_) {
    case state::closed: return true;
    case state::open:
      if (now - opened_at_ < settings_.cool_down) return false;
      state_ = state::half_open;
      probe_out_ = true;
      return true;
    case state::half_open:
      if (probe_out_) return false;
      probe_out_ = true;
      return true;
  }
  return false;
}

void circuit_breaker::on_success() {
  state_ = state::closed;
  failures_ = 0;
  probe_out_ = false;
}

void circuit_breaker::on_failure(time_point now) {
  if (settings_.failure_threshold == 0) return;
  if (state_ == state::half_open) return open(now);
  if (state_ == state::open) return;  // a call let through before it opened
  if (++failures_ >= settings_.failure_threshold) open(now);
}

void circuit_breaker::on_abandoned() {
  if (state_ == state::half_open) probe_out_ = false;
}

void circuit_breaker::open(time_point now) {
  state_ = state::open;
  opened_at_ = now;
  probe_out_ = false;
  failures_ = 0;
  ++opens_;
}

const char* to_string(circuit_breaker::state s) {
  switch (s) {
    case circuit_breaker::state::closed: return "closed";
    case circuit_breaker::state::open: return "open";
    case circuit_breaker::state::half_open: return "half-open";
  }
  return "?";
}

}  // namespace proxy
