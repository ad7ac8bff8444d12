// What a user may do, derived from the user record: the ACL the proxy
// enforces, and which names are acceptable as topic levels.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "store/auth_store.hpp"

namespace auth {

// The ACL of a user: publish and subscribe private/<user>/#, group/<g>/# for
// each group, and the user's own extra filters.
nlohmann::json acl_of(const user_record& user);

// Names that become topic levels: 1 to 64 bytes of UTF-8, without '/', '+',
// '#' (MQTT wildcards and level separator), '.' and '*' (RabbitMQ maps '/' to
// '.' and treats '*' as a wildcard, so these would merge topic trees), or
// control characters.
bool is_valid_name(const std::string& name);
inline constexpr const char* name_rule = "1 to 64 characters of UTF-8, none of / + # . * or control characters";

// A client-chosen string made safe for one log line: control characters,
// backslashes and invalid UTF-8 bytes become \xNN escapes; at most 128 bytes.
std::string log_safe(std::string_view text);

}  // namespace auth
