#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt/codec.hpp"

namespace test {

using mqtt::bytes;

// Builds a byte vector from a mix of numbers and string literals, so packets
// can be written field by field.
struct byte_builder {
  bytes out;
  byte_builder& operator()(std::initializer_list<int> values) {
    for (int v : values) out.push_back(static_cast<std::uint8_t>(v));
    return *this;
  }
  byte_builder& operator()(std::string_view text) {
    out.insert(out.end(), text.begin(), text.end());
    return *this;
  }
  // A two-byte length prefix and the text (MQTT string or binary data).
  byte_builder& str(std::string_view text) {
    out.push_back(static_cast<std::uint8_t>(text.size() >> 8));
    out.push_back(static_cast<std::uint8_t>(text.size()));
    return (*this)(text);
  }
};

inline mqtt::packet decode_ok(const bytes& frame, mqtt::protocol_version v) {
  auto result = mqtt::decode(frame, v);
  if (!result) FAIL("decode failed: " << result.error().message());
  return *result;
}

inline boost::system::error_code decode_error(const bytes& frame, mqtt::protocol_version v) {
  auto result = mqtt::decode(frame, v);
  if (result) return {};
  return result.error();
}

inline bytes encode_ok(const mqtt::packet& p, mqtt::protocol_version v) {
  auto result = mqtt::encode(p, v);
  if (!result) FAIL("encode failed: " << result.error().message());
  return *result;
}

// Decodes, checks the packet is of type T, and that encoding gives the same bytes.
template <class T>
T decode_exact(const bytes& frame, mqtt::protocol_version v) {
  auto p = decode_ok(frame, v);
  REQUIRE(std::holds_alternative<T>(p));
  CHECK(encode_ok(p, v) == frame);
  return std::get<T>(p);
}

constexpr auto v3 = mqtt::protocol_version::v3_1_1;
constexpr auto v5 = mqtt::protocol_version::v5;

}  // namespace test
