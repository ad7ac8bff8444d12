// What the API server says about a session.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "session/acl.hpp"

namespace proxy {

// An answer's ACL, held by pointer and never changed once made: the
// validation cache hands the same rules to every answer for a user instead
// of a copy each (two vectors and their filters, twice per new session,
// issue 14). Empty rules when none were given.
class shared_acl {
 public:
  shared_acl() = default;
  shared_acl(acl rules) : rules_(std::make_shared<const checked_acl>(std::move(rules))) {}  // implicit: answers are built from acls
  shared_acl(std::vector<std::string> publish, std::vector<std::string> subscribe)
      : shared_acl(acl{std::move(publish), std::move(subscribe)}) {}
  const acl& operator*() const { return rules_ ? *rules_ : none(); }
  const acl* operator->() const { return &**this; }
  // The rules as a pointer that sessions may hold (null when empty).
  const std::shared_ptr<const acl>& shared() const { return rules_; }
  // acl::subscribe_entries_valid(), worked out once when the answer was
  // made: every session admitted by it asked again (~450 instructions per
  // new session, issue 14), of rules that never change.
  bool subscribe_entries_valid() const {
    return !rules_ || static_cast<const checked_acl&>(*rules_).subscribe_valid;
  }

 private:
  // The rules and what is known of them, in the one allocation.
  struct checked_acl : acl {
    explicit checked_acl(acl rules) : acl(std::move(rules)), subscribe_valid(subscribe_entries_valid()) {}
    bool subscribe_valid;
  };
  static const acl& none() {
    static const acl empty;
    return empty;
  }
  std::shared_ptr<const acl> rules_;
};

struct auth_result {
  enum class verdict {
    valid,        // 200 with a user and an ACL
    invalid,      // 401/404: unknown, expired or revoked
    unavailable,  // unreachable, timed out, 5xx or a malformed answer: fail closed
  };
  verdict outcome = verdict::unavailable;
  std::string user;
  // The API server's immutable, never reused id of the user ("user_id" in
  // the answer); the user name when the API server sends none. The broker-side
  // client id is built from it, so a new user with an old name starts afresh.
  std::string user_id;
  shared_acl permissions;
  std::chrono::seconds expires_in{0};
  // Degraded mode: the API server could not be reached and this is a cached
  // answer past its max-age (within stale-if-error). The session admits the
  // client and re-validates it later.
  bool stale = false;
  std::string detail;  // why, for logs (never the token)
};

}  // namespace proxy
