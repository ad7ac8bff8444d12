#include "auth/auth_event.hpp"

namespace proxy {

const char* to_string(auth_event::kind kind) {
  switch (kind) {
    case auth_event::kind::session_revoked: return "session_revoked";
    case auth_event::kind::user_deleted: return "user_deleted";
    case auth_event::kind::user_sessions_revoked: return "user_sessions_revoked";
    case auth_event::kind::acl_changed: return "acl_changed";
    case auth_event::kind::resync: return "resync";
  }
  return "?";
}

}  // namespace proxy
