#include "http/event_hub.hpp"

#include <spdlog/spdlog.h>

namespace auth {

event_hub::event_hub(auth_store& store, std::chrono::milliseconds poll_interval)
    : store_(store), poll_interval_(poll_interval) {}

event_hub::~event_hub() { stop(); }

void event_hub::start() {
  refresh();
  watcher_ = std::thread([this] {
    std::unique_lock lock(mutex_);
    while (!changed_.wait_for(lock, poll_interval_, [this] { return stopping_; })) {
      lock.unlock();
      refresh();
      lock.lock();
    }
  });
}

void event_hub::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (watcher_.joinable()) watcher_.join();
}

void event_hub::refresh() {
  try {
    publish(store_.newest_event());
  } catch (const std::exception& e) {
    spdlog::warn("reading the newest event failed: {}", e.what());
  }
}

void event_hub::publish(std::int64_t newest) {
  {
    std::lock_guard lock(mutex_);
    if (newest == newest_) return;
    newest_ = newest;
  }
  changed_.notify_all();
}

bool event_hub::wait_past(std::int64_t after, std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  changed_.wait_until(lock, deadline, [&] { return stopping_ || newest_ > after; });
  return newest_ > after;
}

}  // namespace auth
