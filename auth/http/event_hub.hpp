// Wakes long-polls of GET /v1/events when the events table grows. Rows come
// from this process's handlers (which call refresh() after committing) and
// from CLI commands in other processes, which a watcher thread notices by
// reading the newest seq every `poll_interval` (one indexed lookup).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "store/auth_store.hpp"

namespace auth {

class event_hub {
 public:
  event_hub(auth_store& store, std::chrono::milliseconds poll_interval);
  ~event_hub();
  event_hub(const event_hub&) = delete;
  event_hub& operator=(const event_hub&) = delete;

  void start();
  void stop();     // wakes every waiter; later waits return at once
  void refresh();  // reads the newest seq; wakes waiters when it moved
  // Blocks until the newest seq is past `after`, `deadline` passes, or stop().
  // True when it moved past `after`.
  bool wait_past(std::int64_t after, std::chrono::steady_clock::time_point deadline);

 private:
  void publish(std::int64_t newest);

  auth_store& store_;
  std::chrono::milliseconds poll_interval_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::int64_t newest_ = 0;
  bool stopping_ = false;
  std::thread watcher_;
};

}  // namespace auth
