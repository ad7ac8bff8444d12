#include "mqtt/byte_writer.hpp"

namespace mqtt {

void byte_writer::variable_int(std::uint32_t value) {
  if (value > max_variable_int) {
    fail(error::field_too_long);
    return;
  }
  do {
    std::uint8_t byte = value & 0x7F;
    value >>= 7;
    if (value > 0) byte |= 0x80;
    out_.push_back(byte);
  } while (value > 0);
}

void byte_writer::string(std::string_view value) {
  if (value.size() > 0xFFFF) {
    fail(error::field_too_long);
    return;
  }
  u16(static_cast<std::uint16_t>(value.size()));
  raw(value);
}

std::size_t variable_int_size(std::uint32_t value) {
  std::size_t size = 1;
  while (value >= 128) value >>= 7, ++size;
  return size;
}

}  // namespace mqtt
