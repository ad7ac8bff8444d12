// Writes MQTT data representations (section 1.5). Like byte_reader, the first
// failure (a string over 65535 bytes) sticks and the caller checks once.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "mqtt/error.hpp"

namespace mqtt {

using bytes = std::vector<std::uint8_t>;

class byte_writer {
 public:
  void u8(std::uint8_t value) { out_.push_back(value); }
  void u16(std::uint16_t value) {
    out_.push_back(static_cast<std::uint8_t>(value >> 8));
    out_.push_back(static_cast<std::uint8_t>(value));
  }
  void u32(std::uint32_t value) {
    for (int shift = 24; shift >= 0; shift -= 8) out_.push_back(static_cast<std::uint8_t>(value >> shift));
  }
  void variable_int(std::uint32_t value);
  void string(std::string_view value);  // two-byte length prefix [MQTT-1.5.4]
  // As bytes, not chars: inserting char iterators into a byte vector copies
  // one byte at a time, a range of the vector's own type is one memmove
  // (five strings per CONNECT and auth PUBLISH encoded, issue 14).
  void raw(std::string_view value) {
    const auto* first = reinterpret_cast<const std::uint8_t*>(value.data());
    out_.insert(out_.end(), first, first + value.size());
  }
  void raw(const bytes& value) { out_.insert(out_.end(), value.begin(), value.end()); }

  void fail(error e) {
    if (!error_) error_ = e;
  }
  bool failed() const { return static_cast<bool>(error_); }
  boost::system::error_code error_code() const { return error_; }
  bytes& buffer() { return out_; }

 private:
  bytes out_;
  boost::system::error_code error_;
};

// Largest value a variable byte integer holds (268,435,455) [MQTT-1.5.5].
inline constexpr std::uint32_t max_variable_int = 268'435'455;

std::size_t variable_int_size(std::uint32_t value);

}  // namespace mqtt
