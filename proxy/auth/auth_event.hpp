// One event of the API server's ordered stream (GET /v1/events, auth/API.md):
// what changed about a session or a user. Every live connection it concerns
// applies it at once: the ACL holds for the whole life of a connection.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "session/acl.hpp"

namespace proxy {

struct auth_event {
  enum class kind {
    session_revoked,        // a logout: the connection(s) authenticated with this session end
    user_deleted,           // every connection of the user ends
    user_sessions_revoked,  // password changed: every connection of the user ends
    acl_changed,            // the user's groups or filters changed: `permissions` is the new ACL
    resync,                 // events were missed (the proxy was cut off too long): re-validate everything
  };
  kind type = kind::resync;
  std::uint64_t seq = 0;
  std::string user_id;         // empty for resync
  std::string user;            // the name, for logs
  std::string session_digest;  // session_revoked: lowercase hex SHA-256 of the session token
  acl permissions;             // acl_changed: the user's whole new ACL (before the proxy's templates)
};

const char* to_string(auth_event::kind kind);

}  // namespace proxy
