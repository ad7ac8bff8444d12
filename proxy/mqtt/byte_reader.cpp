#include "mqtt/byte_reader.hpp"

#include "mqtt/utf8.hpp"

namespace mqtt {

bool byte_reader::need(std::size_t count) {
  if (failed()) return false;
  if (remaining() < count) {
    fail(error::truncated);
    return false;
  }
  return true;
}

std::uint8_t byte_reader::u8() {
  if (!need(1)) return 0;
  return bytes_[position_++];
}

std::uint16_t byte_reader::u16() {
  if (!need(2)) return 0;
  const auto value = static_cast<std::uint16_t>(bytes_[position_] << 8 | bytes_[position_ + 1]);
  position_ += 2;
  return value;
}

std::uint32_t byte_reader::u32() {
  if (!need(4)) return 0;
  std::uint32_t value = 0;
  for (int i = 0; i < 4; ++i) value = value << 8 | bytes_[position_++];
  return value;
}

std::uint32_t byte_reader::variable_int() {
  std::uint32_t value = 0;
  for (int i = 0; i < 4; ++i) {
    if (!need(1)) return 0;
    const std::uint8_t byte = bytes_[position_++];
    value |= static_cast<std::uint32_t>(byte & 0x7F) << (7 * i);
    if ((byte & 0x80) == 0) {
      // A last byte of 0 after the first means a longer form than needed.
      if (i > 0 && byte == 0) fail(error::remaining_length_not_minimal);
      return failed() ? 0 : value;
    }
  }
  fail(error::variable_byte_integer_malformed);
  return 0;
}

std::string byte_reader::binary() {
  const std::uint16_t length = u16();
  if (!need(length)) return {};
  std::string value(reinterpret_cast<const char*>(bytes_.data() + position_), length);
  position_ += length;
  return value;
}

std::string byte_reader::utf8_string() { return std::string(utf8_view()); }

std::string_view byte_reader::utf8_view() {
  const std::uint16_t length = u16();
  if (!need(length)) return {};
  const std::string_view value(reinterpret_cast<const char*>(bytes_.data() + position_), length);
  position_ += length;
  if (auto ec = check_utf8(value)) {
    fail(static_cast<error>(ec.value()));
    return {};
  }
  return value;
}

std::string byte_reader::rest() {
  if (failed()) return {};
  std::string value(reinterpret_cast<const char*>(bytes_.data() + position_), remaining());
  position_ = bytes_.size();
  return value;
}

byte_reader byte_reader::take(std::size_t length) {
  if (!need(length)) {
    byte_reader failed_reader({});
    failed_reader.fail(error::truncated);
    return failed_reader;
  }
  byte_reader block(bytes_.subspan(position_, length));
  position_ += length;
  return block;
}

}  // namespace mqtt
