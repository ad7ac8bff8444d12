// Client-chosen strings (client ids, topics, user names) on their way into a
// log line or a close reason: control characters are escaped so that a
// newline in a client id cannot forge a log line. Pure, header-only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace proxy {

// C0 controls, DEL and the UTF-8 encoded C1 controls (U+0080..U+009F) become
// \n, \r, \t or \xNN / \u00NN; a backslash and a double quote are escaped
// too, so an escaped string cannot close a quoted field early or pretend to
// contain an escape it does not.
inline std::string escape_for_log(std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto byte = static_cast<std::uint8_t>(text[i]);
    if (byte == '\\' || byte == '"') {
      out += '\\';
      out += static_cast<char>(byte);
    } else if (byte == '\n') {
      out += "\\n";
    } else if (byte == '\r') {
      out += "\\r";
    } else if (byte == '\t') {
      out += "\\t";
    } else if (byte < 0x20 || byte == 0x7f) {
      out += "\\x";
      out += hex[byte >> 4];
      out += hex[byte & 0xf];
    } else if (byte == 0xc2 && i + 1 < text.size() && static_cast<std::uint8_t>(text[i + 1]) >= 0x80 &&
               static_cast<std::uint8_t>(text[i + 1]) <= 0x9f) {
      const auto c1 = static_cast<std::uint8_t>(text[++i]);
      out += "\\u00";
      out += hex[c1 >> 4];
      out += hex[c1 & 0xf];
    } else {
      out += static_cast<char>(byte);
    }
  }
  return out;
}

}  // namespace proxy
