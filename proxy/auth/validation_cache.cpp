#include "auth/validation_cache.hpp"

#include <algorithm>
#include <cstring>

#include "auth/auth_client.hpp"

namespace proxy {

using std::chrono::duration_cast;
using std::chrono::seconds;

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // upper case too: the digests are lower case, and a key means one string
}

bool decode_hex(std::string_view text, validation_cache::key& out) {
  if (text.size() != out.size() * 2) return false;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int high = hex_value(text[2 * i]);
    const int low = hex_value(text[2 * i + 1]);
    if (high < 0 || low < 0) return false;
    out[i] = static_cast<std::uint8_t>(high << 4 | low);
  }
  return true;
}

bool same_acl(const acl& a, const acl& b) { return a.publish == b.publish && a.subscribe == b.subscribe; }

}  // namespace

validation_cache::key validation_cache::key_of(std::string_view digest) {
  key k{};
  if (decode_hex(digest, k)) return k;
  // Not a digest (tests, or a malformed event): its own digest, which cannot
  // be a real session's (that would take a SHA-256 collision).
  [[maybe_unused]] const bool decoded = decode_hex(session_digest(digest), k);
  return k;
}

std::size_t validation_cache::key_hash::operator()(const key& k) const noexcept {
  std::size_t h = 0;
  std::memcpy(&h, k.data(), sizeof h);
  return h;
}

// The identity already held for this user when it says the same, else a new
// one that later answers for the user share.
validation_cache::identity_ptr validation_cache::share(const auth_result& result) {
  if (auto it = identities_.find(result.user_id); it != identities_.end()) {
    const auto& held = *it->second;
    if (held.user == result.user && same_acl(*held.permissions, *result.permissions)) return it->second;
    identities_.erase(it);  // the entries holding it keep it
  }
  auto made = std::make_shared<const identity>(identity{result.user, result.user_id, result.permissions});
  identities_.emplace(std::string_view(made->user_id), made);
  return made;
}

void validation_cache::release(identity_ptr& who) {
  if (!who) return;
  // Held by this entry and the table only: the table lets go too.
  if (who.use_count() == 2) {
    if (auto it = identities_.find(who->user_id); it != identities_.end() && it->second == who) identities_.erase(it);
  }
  who.reset();
}

void validation_cache::erase(entry_map::iterator it) {
  lru_.erase(lru_.iterator_to(it->second));
  release(it->second.who);
  entries_.erase(it);
}

void validation_cache::touch(entry& e) { lru_.splice(lru_.begin(), lru_, lru_.iterator_to(e)); }

// The session expires when the API server said, counted from when it said
// so: a cached answer must not stretch the session.
auth_result validation_cache::aged(const entry& e, time_point now) {
  auth_result r;
  r.outcome = e.outcome;
  if (e.who) {
    r.user = e.who->user;
    r.user_id = e.who->user_id;
    r.permissions = e.who->permissions;
  }
  r.expires_in = e.expires_in;
  if (r.expires_in.count() > 0) {
    const auto left = r.expires_in - duration_cast<seconds>(now - e.stored);
    r.expires_in = std::max(left, seconds(1));
  }
  return r;
}

validation_cache::found validation_cache::find(const std::string& digest, time_point now) {
  return find(key_of(digest), now);
}

validation_cache::found validation_cache::find(const key& k, time_point now) {
  const auto it = entries_.find(k);
  if (it == entries_.end()) return {};
  auto& e = it->second;
  if (now >= e.usable_until) {
    erase(it);
    return {};
  }
  if (now >= e.fresh_until) return {};  // only good for degraded mode now
  touch(e);
  const auto what = e.outcome == auth_result::verdict::valid ? found::kind::hit : found::kind::negative_hit;
  return {what, aged(e, now)};
}

std::optional<auth_result> validation_cache::find_stale(const std::string& digest, time_point now) {
  const auto it = entries_.find(key_of(digest));
  if (it == entries_.end()) return std::nullopt;
  auto& e = it->second;
  if (e.outcome != auth_result::verdict::valid) return std::nullopt;
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

  const auto k = key_of(digest);
  if (auto it = entries_.find(k); it != entries_.end()) erase(it);
  while (entries_.size() >= settings_.max_entries && !lru_.empty()) erase(entries_.find(*lru_.back().own_key));
  const auto [it, inserted] = entries_.try_emplace(k);
  auto& e = it->second;
  if (result.outcome == auth_result::verdict::valid) e.who = share(result);
  e.outcome = result.outcome;
  e.expires_in = result.expires_in;
  e.stored = now;
  e.fresh_until = now + keep;
  e.usable_until = usable_until;
  e.own_key = &it->first;
  lru_.push_front(e);
}

void validation_cache::apply(const auth_event& event) {
  using kind = auth_event::kind;
  switch (event.type) {
    case kind::resync: clear(); return;
    case kind::session_revoked:
      if (auto it = entries_.find(key_of(event.session_digest)); it != entries_.end()) erase(it);
      return;
    case kind::user_deleted:
    case kind::user_sessions_revoked:
    case kind::acl_changed:
      // Rare and bounded by max_entries: a scan is cheaper than an index kept on every store.
      for (auto it = entries_.begin(); it != entries_.end();) {
        auto next = std::next(it);
        if (it->second.who && it->second.who->user_id == event.user_id) erase(it);
        it = next;
      }
      return;
  }
}

void validation_cache::clear() {
  lru_.clear();
  entries_.clear();
  identities_.clear();
}

}  // namespace proxy
