// The session's digest (lowercase hex SHA-256 of its token, what a
// revocation event names), kept as its 32 bytes: 33 B in the session
// instead of a std::string and its 65-byte heap block, ~80 B of every
// authenticated connection (issue 14). Assigned from session_digest() and
// compared with an event's hex text, as the std::string it replaces was;
// text that is not 64 lowercase hex digits (never from session_digest) is
// kept as it is.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace proxy {

class packed_digest {
 public:
  packed_digest() = default;
  packed_digest& operator=(std::string_view hex) {
    other_.reset();
    packed_ = decode(hex, bytes_);
    if (!packed_ && !hex.empty()) other_ = std::make_unique<std::string>(hex);
    return *this;
  }
  bool empty() const { return !packed_ && !other_; }
  friend bool operator==(const packed_digest& digest, std::string_view hex) {
    if (digest.other_) return *digest.other_ == hex;
    if (!digest.packed_) return hex.empty();
    std::array<std::uint8_t, 32> bytes{};
    return decode(hex, bytes) && bytes == digest.bytes_;
  }

 private:
  static int nibble(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  }
  static bool decode(std::string_view hex, std::array<std::uint8_t, 32>& out) {
    if (hex.size() != out.size() * 2) return false;
    for (std::size_t i = 0; i < out.size(); ++i) {
      const int high = nibble(hex[2 * i]);
      const int low = nibble(hex[2 * i + 1]);
      if (high < 0 || low < 0) return false;
      out[i] = static_cast<std::uint8_t>(high << 4 | low);
    }
    return true;
  }

  std::array<std::uint8_t, 32> bytes_{};
  bool packed_ = false;
  std::unique_ptr<std::string> other_;  // anything else, as it was given
};

}  // namespace proxy
