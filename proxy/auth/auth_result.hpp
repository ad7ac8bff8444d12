// What the API server says about a session.
#pragma once

#include <chrono>
#include <string>

#include "session/acl.hpp"

namespace proxy {

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
  acl permissions;
  std::chrono::seconds expires_in{0};
  // Degraded mode: the API server could not be reached and this is a cached
  // answer past its max-age (within stale-if-error). The session admits the
  // client and re-validates it later.
  bool stale = false;
  std::string detail;  // why, for logs (never the token)
};

}  // namespace proxy
