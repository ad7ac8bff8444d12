// The API server's answers and events, as the validation cache and auth
// client tests build them.
#pragma once

#include <chrono>
#include <string>
#include <utility>

#include "auth/auth_event.hpp"
#include "auth/auth_result.hpp"

namespace test {

// A valid session's answer; `detail` is set as the HTTP client sets it, so a
// test can see whether a cache gives it back.
inline proxy::auth_result valid_for(std::string user, std::string user_id, proxy::acl permissions,
                                    std::chrono::seconds expires_in = std::chrono::hours(1)) {
  proxy::auth_result r;
  r.outcome = proxy::auth_result::verdict::valid;
  r.user = std::move(user);
  r.user_id = std::move(user_id);
  r.permissions = std::move(permissions);
  r.expires_in = expires_in;
  r.detail = "from the API server";
  return r;
}

inline proxy::auth_result valid_for(std::string user, std::string user_id,
                                    std::chrono::seconds expires_in = std::chrono::hours(1)) {
  return valid_for(std::move(user), std::move(user_id), proxy::acl{}, expires_in);
}

inline proxy::auth_result refused() {
  proxy::auth_result r;
  r.outcome = proxy::auth_result::verdict::invalid;
  return r;
}

inline proxy::auth_event event_of(proxy::auth_event::kind kind, std::string user_id = "", std::string digest = "") {
  proxy::auth_event e;
  e.type = kind;
  e.user_id = std::move(user_id);
  e.session_digest = std::move(digest);
  return e;
}

}  // namespace test
