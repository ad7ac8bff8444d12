// The live connections of one worker, so that a drain or an event from the
// API server reaches every one of them. Touched only on the worker's own
// thread: no locks. Connections add themselves and are removed by RAII.
//
// for_each() iterates a snapshot of weak pointers, so the callback may close
// connections (and Boost 1.81 co_spawn runs the coroutines it starts inline,
// which may end a connection and remove it from the registry) without
// invalidating the iteration.
#pragma once

#include <malloc.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

namespace proxy {

class client_connection;

class connection_registry {
 public:
  // Removes the connection from the registry when destroyed.
  class membership {
   public:
    membership() = default;
    membership(connection_registry* registry, std::uint64_t id) : registry_(registry), id_(id) {}
    membership(membership&& other) noexcept
        : registry_(std::exchange(other.registry_, nullptr)), id_(other.id_) {}
    membership& operator=(membership&& other) noexcept {
      if (this != &other) {
        reset();
        registry_ = std::exchange(other.registry_, nullptr);
        id_ = other.id_;
      }
      return *this;
    }
    membership(const membership&) = delete;
    membership& operator=(const membership&) = delete;
    ~membership() { reset(); }
    void reset() {
      if (registry_) std::exchange(registry_, nullptr)->members_.erase(id_);
    }

   private:
    connection_registry* registry_ = nullptr;
    std::uint64_t id_ = 0;
  };

  [[nodiscard]] membership add(std::weak_ptr<client_connection> connection) {
    const auto id = next_id_++;
    members_.emplace(id, std::move(connection));
    return membership(this, id);
  }

  std::size_t size() const { return members_.size(); }

  // A connection that queued a lot (a flood, a slow reader) has freed it when
  // it ends; glibc keeps memory freed on a worker thread in that thread's
  // arena, fragmented, rather than giving it back. After each MiB so freed the
  // worker trims its heaps, so what a hostile client made the proxy hold does
  // not stay with the process. Polite connections never queue that much.
  void released(std::size_t bytes) {
    constexpr std::size_t trim_after = 1024 * 1024;
    released_since_trim_ += bytes;
    if (released_since_trim_ < trim_after) return;
    released_since_trim_ = 0;
    malloc_trim(0);
  }

  void for_each(const std::function<void(client_connection&)>& fn) const {
    std::vector<std::weak_ptr<client_connection>> snapshot;
    snapshot.reserve(members_.size());
    for (const auto& [id, weak] : members_) snapshot.push_back(weak);
    for (const auto& weak : snapshot)
      if (auto connection = weak.lock()) fn(*connection);
  }

 private:
  std::unordered_map<std::uint64_t, std::weak_ptr<client_connection>> members_;
  std::uint64_t next_id_ = 1;
  std::size_t released_since_trim_ = 0;
};

}  // namespace proxy
