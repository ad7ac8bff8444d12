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
//
// Memory (issue 14): each device has its own token, so an entry is kept per
// client. An entry holds the digest as 32 bytes (not 64 hex characters in a
// heap string), its times, and a pointer to the user's identity (name, id,
// ACL), which every cached token of that user shares, and the answers given
// from it share its ACL (a pointer, no copy): ~136 B per token
// instead of ~640 B with a whole auth_result (strings and ACL) per token.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
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
  found find(const std::array<std::uint8_t, 32>& key, time_point now);  // key_of(digest)
  // A valid answer past its max-age but within stale_if_error, marked stale.
  std::optional<auth_result> find_stale(const std::string& digest, time_point now);
  // Keeps an answer: valid ones for max_age, invalid ones for the negative
  // TTL; unavailable answers are never kept. The answer's detail is not kept.
  void store(const std::string& digest, const auth_result& result, std::chrono::seconds max_age, time_point now);
  // What an event makes wrong is forgotten at once.
  void apply(const auth_event& event);
  void clear();
  std::size_t size() const { return entries_.size(); }
  // Distinct identities (user, user id, ACL) the entries share.
  std::size_t identities() const { return identities_.size(); }
  const validation_cache_settings& settings() const { return settings_; }

  // The map's key: a digest given as 64 lowercase hex characters (what
  // session_digest() makes and events carry) as its 32 bytes; any other
  // string as the SHA-256 of it, so distinct strings stay distinct keys.
  using key = std::array<std::uint8_t, 32>;
  static key key_of(std::string_view digest);

 private:
  // What a valid answer says about its user, shared by that user's tokens.
  struct identity {
    std::string user;
    std::string user_id;
    shared_acl permissions;  // the answer's own rules, not a copy
  };
  using identity_ptr = std::shared_ptr<const identity>;

  struct entry {
    identity_ptr who;  // null for a refusal
    time_point stored;
    time_point fresh_until;
    time_point usable_until;  // fresh_until + stale_if_error, capped by expires_in
    std::chrono::seconds expires_in{0};
    auth_result::verdict outcome = auth_result::verdict::unavailable;
    // The recency order runs through the entries themselves: a std::list of
    // the keys cost a node and a second copy of the digest, ~150 B per
    // cached session (issue 14).
    boost::intrusive::list_member_hook<> lru;
    const key* own_key = nullptr;  // the map's own key (nodes do not move)
  };
  struct key_hash {
    std::size_t operator()(const key& k) const noexcept;  // the digest's first bytes: already uniform
  };
  using entry_map = std::unordered_map<key, entry, key_hash>;
  void erase(entry_map::iterator it);
  void touch(entry& e);
  static auth_result aged(const entry& e, time_point now);
  identity_ptr share(const auth_result& result);
  void release(identity_ptr& who);

  validation_cache_settings settings_;
  entry_map entries_;
  using lru_list = boost::intrusive::list<
      entry, boost::intrusive::member_hook<entry, boost::intrusive::list_member_hook<>, &entry::lru>>;
  lru_list lru_;  // front: most recently used
  // The newest identity of each user id, by a view of its own user_id (the
  // table holds it, so the view stays valid). It leaves the table with the
  // last entry holding it; one displaced by a newer answer for the same user
  // lives on in the entries that hold it.
  std::unordered_map<std::string_view, identity_ptr> identities_;
};

}  // namespace proxy
