// Strings a client chose (client id, user name, reasons that quote them) in
// the connection's key=value log line: escaped as everywhere else
// (support/escape.hpp), and a bare field also has its spaces escaped, so a
// client id cannot add a field of its own.
#pragma once

#include <string>
#include <string_view>

#include "support/escape.hpp"

namespace proxy {

inline std::string log_field(std::string_view text, bool in_quotes = false) {
  const auto escaped = escape_for_log(text);
  if (in_quotes) return escaped;
  std::string out;
  out.reserve(escaped.size());
  for (const char c : escaped) out += c == ' ' ? std::string_view("\\x20") : std::string_view(&c, 1);
  return out;
}

}  // namespace proxy
