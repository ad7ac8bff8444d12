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
  acl permissions;
  std::chrono::seconds expires_in{0};
  std::string detail;  // why, for logs (never the token)
};

}  // namespace proxy
