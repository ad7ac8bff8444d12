// glibc keeps freed memory in its arenas: after one client's flood filled a
// queue, the process stays that big. A connection whose queues grew past
// `threshold` asks glibc to give free pages back when it closes, at most
// once per second per process (malloc_trim walks every arena).
#pragma once

#include <malloc.h>

#include <atomic>
#include <chrono>
#include <cstddef>

namespace proxy {

inline void release_memory_after(std::size_t peak_queued, std::size_t threshold = 256 * 1024) {
  if (peak_queued < threshold) return;
  static std::atomic<std::int64_t> last_trim_ms{0};
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::steady_clock::now().time_since_epoch()).count();
  auto last = last_trim_ms.load();
  if (now - last < 1000 || !last_trim_ms.compare_exchange_strong(last, now)) return;
  malloc_trim(0);
}

}  // namespace proxy
