// Strings a client chose (client id, user name, reasons that quote them) go
// into log lines escaped: a newline would forge a log line, a space or a
// quote a field of the connection's line. Named log_field (not
// escape_for_log) so it cannot clash with a general helper in support/.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace proxy {

// Control characters, DEL, backslash and double quote as \n, \r, \t, \\, \",
// \xNN; with `in_quotes` false (a bare key=value field) a space is \x20 too.
// Bytes >= 0x80 are kept: UTF-8 names stay readable.
inline std::string log_field(std::string_view text, bool in_quotes = false) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    switch (c) {
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '\\': out += "\\\\"; continue;
      case '"': out += "\\\""; continue;
      default: break;
    }
    if (byte < 0x20 || byte == 0x7f || (c == ' ' && !in_quotes)) {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", byte);
      out += hex;
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace proxy
