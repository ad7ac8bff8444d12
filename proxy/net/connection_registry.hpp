// The live connections of one worker, so that a drain or an event from the
// API server reaches every one of them. Touched only on the worker's own
// thread: no locks. Connections add themselves and are removed by RAII.
//
// for_each() iterates a snapshot of weak pointers, so the callback may close
// connections (and Boost 1.81 co_spawn runs the coroutines it starts inline,
// which may end a connection and remove it from the registry) without
// invalidating the iteration.
//
// Each connection gets an id as it joins: process-unique (one counter for all
// workers, owned by main) and increasing, so along each worker's list the ids increase and
// the operator can page by id (GET /v1/connections?after=ID) without skipping
// or repeating a connection that stays open.
#pragma once

#include <malloc.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include <boost/intrusive/list.hpp>

namespace proxy {

class client_connection;

class connection_registry {
 public:
  // The connection's place in the registry: an intrusive list hook inside
  // the connection, so joining allocates nothing (a hash-map node and its
  // bucket cost ~60 B per connection, issue 14). Leaves when destroyed.
  class membership {
   public:
    membership() = default;
    membership(const membership&) = delete;
    membership& operator=(const membership&) = delete;
    ~membership() { reset(); }
    void reset() {
      if (registry_) std::exchange(registry_, nullptr)->leave(*this);
    }
    // 0 until the connection joins a registry.
    std::uint64_t id() const { return id_; }
    // The registry it is in; nullptr before it joins or once the registry is gone.
    connection_registry* registry() const { return registry_; }

   private:
    friend class connection_registry;
    boost::intrusive::list_member_hook<> hook_;
    connection_registry* registry_ = nullptr;
    client_connection* connection_ = nullptr;
    // Its 8 B were paid for by client_connection's own registry pointer,
    // dropped for registry() (issue 14's budget: connection_memory_test).
    std::uint64_t id_ = 0;
  };

  // Ids of its own (a test, a single worker).
  connection_registry() = default;
  // Ids from a counter the workers share (main owns it, before the workers).
  explicit connection_registry(std::atomic<std::uint64_t>& shared_ids) : ids_(&shared_ids) {}
  connection_registry(const connection_registry&) = delete;
  connection_registry& operator=(const connection_registry&) = delete;
  // Connections that outlive the registry leave nothing behind.
  ~connection_registry() {
    while (!members_.empty()) {
      members_.front().registry_ = nullptr;
      members_.pop_front();
    }
  }

  void add(membership& member, client_connection& connection) {
    member.reset();
    member.registry_ = this;
    member.connection_ = &connection;
    // Taken here, on this worker's thread, just before the push_back: the
    // list stays in id order whatever the other workers take meanwhile.
    member.id_ = ids_->fetch_add(1, std::memory_order_relaxed);
    members_.push_back(member);
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

  // Defined in client_connection.cpp (it needs the complete type).
  void for_each(const std::function<void(client_connection&)>& fn) const;

 private:
  void leave(membership& member) { members_.erase(members_.iterator_to(member)); }

  using member_list = boost::intrusive::list<
      membership, boost::intrusive::member_hook<membership, boost::intrusive::list_member_hook<>, &membership::hook_>,
      boost::intrusive::constant_time_size<true>>;
  member_list members_;
  std::size_t released_since_trim_ = 0;
  std::atomic<std::uint64_t> own_ids_{1};
  std::atomic<std::uint64_t>* ids_ = &own_ids_;  // the next id to give
};

}  // namespace proxy
