// The validation cache (issue 11 item 5): the API server's answers, keyed by
// the session's digest, kept as long as HTTP allows. Pure: no I/O, the clock
// is passed in, one instance per worker (no locks).
//  - a 200 is kept for its Cache-Control max-age (no header: not kept);
//  - a 401 is kept for a short negative TTL, so a flood of one bad token does
//    not reach the API server;
//  - degraded mode: a 200 whose max-age passed less than stale_if_error ago
//    may still be used while the API server is unreachable (never past the
//    session's own expires_in);
//  - bounded: the least recently used entry goes first;
//  - events evict at once (a revoked session is never admitted from here).
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <unordered_map>

#include <boost/intrusive/list.hpp>

#include "auth/auth_event.hpp"
#include "auth/auth_result.hpp"

namespace proxy {

struct validation_cache_settings {
  std::size_t max_entries = 10'000;          // 0: nothing is cached
  std::chrono::milliseconds negative_ttl{2'000};  // 0: 401s are not cached
  std::chrono::milliseconds stale_if_error{0};    // 0: degraded mode off
};

class validation_cache {
 public:
  using clock = std::chrono::steady_clock;
  using time_point = clock::time_point;

  struct found {
    enum class kind { miss, hit, negative_hit };
    kind what = kind::miss;
    auth_result result;  // hit: expires_in reduced by the entry's age
  };

  explicit validation_cache(validation_cache_settings settings) : settings_(settings) {}

  // A fresh answer, valid or invalid.
  found find(const std::string& digest, time_point now);
  // A valid answer past its max-age but within stale_if_error, marked stale.
  std::optional<auth_result> find_stale(const std::string& digest, time_point now);
  // Keeps an answer: valid ones for max_age, invalid ones for the negative
  // TTL; unavailable answers are never kept.
  void store(const std::string& digest, const auth_result& result, std::chrono::seconds max_age, time_point now);
  // What an event makes wrong is forgotten at once.
  void apply(const auth_event& event);
  void clear();
  std::size_t size() const { return entries_.size(); }
  const validation_cache_settings& settings() const { return settings_; }

 private:
  struct entry {
    auth_result result;
    time_point stored;
    time_point fresh_until;
    time_point usable_until;  // fresh_until + stale_if_error, capped by expires_in
    // The recency order runs through the entries themselves: a std::list of
    // the keys cost a node and a second copy of the digest, ~150 B per
    // cached session (issue 14).
    boost::intrusive::list_member_hook<> lru;
    const std::string* key = nullptr;  // the map's own key (nodes do not move)
  };
  using entry_map = std::unordered_map<std::string, entry>;
  void erase(entry_map::iterator it);
  void touch(entry& e);
  static auth_result aged(const entry& e, time_point now);

  validation_cache_settings settings_;
  entry_map entries_;
  using lru_list = boost::intrusive::list<
      entry, boost::intrusive::member_hook<entry, boost::intrusive::list_member_hook<>, &entry::lru>>;
  lru_list lru_;  // front: most recently used
};

}  // namespace proxy
