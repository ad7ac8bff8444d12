// Reads MQTT data representations (section 1.5) from a packet body.
//
// The first failure sticks: later reads return empty values and change
// nothing, so a decoder reads a packet top to bottom and checks once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "mqtt/error.hpp"

namespace mqtt {

class byte_reader {
 public:
  explicit byte_reader(std::span<const std::uint8_t> bytes) : bytes_(bytes) {}

  std::uint8_t u8();
  std::uint16_t u16();
  std::uint32_t u32();
  std::uint32_t variable_int();
  std::string utf8_string();  // checked against [MQTT-1.5.4]
  // The same, as a view of the packet's bytes: for a string only compared,
  // never kept (the protocol name), no copy.
  std::string_view utf8_view();
  std::string binary();       // two-byte length, then bytes
  std::string rest();         // everything left (PUBLISH payload)
  // Restricts the reader to the next `length` bytes (a property block);
  // returns the bytes that remain after that block.
  byte_reader take(std::size_t length);

  void fail(error e) {
    if (!error_) error_ = e;
    position_ = bytes_.size();
  }
  bool failed() const { return static_cast<bool>(error_); }
  boost::system::error_code error_code() const { return error_; }
  std::size_t remaining() const { return bytes_.size() - position_; }
  bool empty() const { return remaining() == 0; }

 private:
  bool need(std::size_t count);

  std::span<const std::uint8_t> bytes_;
  std::size_t position_ = 0;
  boost::system::error_code error_;
};

}  // namespace mqtt
