#include "auth/validation_cache.hpp"

#include <algorithm>

namespace proxy {

using std::chrono::duration_cast;
using std::chrono::seconds;

void validation_cache::erase(entry_map::iterator it) {
  lru_.erase(lru_.iterator_to(it->second));
  entries_.erase(it);
}

void validation_cache::touch(entry& e) { lru_.splice(lru_.begin(), lru_, lru_.iterator_to(e)); }

// The session expires when the API server said, counted from when it said
// so: a cached answer must not stretch the session.
auth_result validation_cache::aged(const entry& e, time_point now) {
  auth_result r = e.result;
  if (r.expires_in.count() > 0) {
    const auto left = r.expires_in - duration_cast<seconds>(now - e.stored);
    r.expires_in = std::max(left, seconds(1));
  }
  return r;
}

validation_cache::found validation_cache::find(const std::string& digest, time_point now) {
  const auto it = entries_.find(digest);
  if (it == entries_.end()) return {};
  auto& e = it->second;
  if (now >= e.usable_until) {
    erase(it);
    return {};
  }
  if (now >= e.fresh_until) return {};  // only good for degraded mode now
  touch(e);
  const auto what = e.result.outcome == auth_result::verdict::valid ? found::kind::hit : found::kind::negative_hit;
  return {what, aged(e, now)};
}

std::optional<auth_result> validation_cache::find_stale(const std::string& digest, time_point now) {
  const auto it = entries_.find(digest);
  if (it == entries_.end()) return std::nullopt;
  auto& e = it->second;
  if (e.result.outcome != auth_result::verdict::valid) return std::nullopt;
  if (now >= e.usable_until) {
    erase(it);
    return std::nullopt;
  }
  touch(e);
  auto r = aged(e, now);
  r.stale = now >= e.fresh_until;
  return r;
}

void validation_cache::store(const std::string& digest, const auth_result& result, seconds max_age, time_point now) {
  if (settings_.max_entries == 0) return;
  clock::duration keep{};
  clock::duration stale_window{};
  if (result.outcome == auth_result::verdict::valid) {
    if (max_age.count() <= 0) return;
    keep = max_age;
    stale_window = settings_.stale_if_error;
  } else if (result.outcome == auth_result::verdict::invalid) {
    if (settings_.negative_ttl.count() <= 0) return;
    keep = settings_.negative_ttl;
  } else {
    return;
  }
  auto usable_until = now + keep + stale_window;
  // Past the session's own expiry the answer is wrong, degraded mode or not.
  if (result.expires_in.count() > 0) usable_until = std::min(usable_until, now + clock::duration(result.expires_in));
  if (usable_until <= now) return;

  if (auto it = entries_.find(digest); it != entries_.end()) erase(it);
  while (entries_.size() >= settings_.max_entries && !lru_.empty()) erase(entries_.find(*lru_.back().key));
  const auto [it, inserted] = entries_.try_emplace(digest);
  auto& e = it->second;
  e.result = result;
  e.result.stale = false;
  e.stored = now;
  e.fresh_until = now + keep;
  e.usable_until = usable_until;
  e.key = &it->first;
  lru_.push_front(e);
}

void validation_cache::apply(const auth_event& event) {
  using kind = auth_event::kind;
  switch (event.type) {
    case kind::resync: clear(); return;
    case kind::session_revoked:
      if (auto it = entries_.find(event.session_digest); it != entries_.end()) erase(it);
      return;
    case kind::user_deleted:
    case kind::user_sessions_revoked:
    case kind::acl_changed:
      // Rare and bounded by max_entries: a scan is cheaper than an index kept on every store.
      for (auto it = entries_.begin(); it != entries_.end();) {
        auto next = std::next(it);
        if (it->second.result.user_id == event.user_id) erase(it);
        it = next;
      }
      return;
  }
}

void validation_cache::clear() {
  lru_.clear();
  entries_.clear();
}

}  // namespace proxy
