// MQTT 5 properties (section 2.2.2). Kept in wire order so that decoding and
// encoding round-trip byte for byte; accessors look values up by identifier.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "mqtt/byte_reader.hpp"
#include "mqtt/byte_writer.hpp"

namespace mqtt {

enum class property_id : std::uint8_t {
  payload_format_indicator = 0x01,
  message_expiry_interval = 0x02,
  content_type = 0x03,
  response_topic = 0x08,
  correlation_data = 0x09,
  subscription_identifier = 0x0B,
  session_expiry_interval = 0x11,
  assigned_client_identifier = 0x12,
  server_keep_alive = 0x13,
  authentication_method = 0x15,
  authentication_data = 0x16,
  request_problem_information = 0x17,
  will_delay_interval = 0x18,
  request_response_information = 0x19,
  response_information = 0x1A,
  server_reference = 0x1C,
  reason_string = 0x1F,
  receive_maximum = 0x21,
  topic_alias_maximum = 0x22,
  topic_alias = 0x23,
  maximum_qos = 0x24,
  retain_available = 0x25,
  user_property = 0x26,
  maximum_packet_size = 0x27,
  wildcard_subscription_available = 0x28,
  subscription_identifier_available = 0x29,
  shared_subscription_available = 0x2A,
};

// Where a property block sits; each property is allowed in some of these.
enum class property_scope : std::uint16_t {
  connect = 1 << 0,
  connack = 1 << 1,
  publish = 1 << 2,
  will = 1 << 3,
  puback = 1 << 4,  // also PUBREC, PUBREL, PUBCOMP
  subscribe = 1 << 5,
  suback = 1 << 6,
  unsubscribe = 1 << 7,
  unsuback = 1 << 8,
  disconnect = 1 << 9,
  auth = 1 << 10,
};

struct string_pair {
  std::string name;
  std::string value;
  bool operator==(const string_pair&) const = default;
};

// Integers of every width are held as uint32; binary data and UTF-8 strings
// as std::string. The identifier says which wire form applies.
using property_value = std::variant<std::uint32_t, std::string, string_pair>;

struct property {
  property_id id;
  property_value value;
  bool operator==(const property&) const = default;
};

class properties {
 public:
  properties() = default;
  properties(std::initializer_list<property> list) : items_(list) {}

  // Inline for the common case, a packet without properties (every 3.1.1
  // one): a relayed PUBLISH asks three times per message (issue 14).
  std::optional<std::uint32_t> number(property_id id) const {
    if (items_.empty()) return std::nullopt;
    return find_number(id);
  }
  std::optional<std::string_view> text(property_id id) const;
  std::vector<string_pair> user_properties() const;
  std::vector<std::uint32_t> numbers(property_id id) const {  // subscription identifiers
    if (items_.empty()) return {};
    return find_numbers(id);
  }

  void add(property_id id, property_value value) { items_.push_back({id, std::move(value)}); }
  void set(property_id id, property_value value);  // replace or add
  void remove(property_id id);

  bool empty() const { return items_.empty(); }
  const std::vector<property>& items() const { return items_; }
  bool operator==(const properties&) const = default;

 private:
  std::optional<std::uint32_t> find_number(property_id id) const;
  std::vector<std::uint32_t> find_numbers(property_id id) const;

  std::vector<property> items_;
};

// Reads a property length and that many bytes of properties, rejecting unknown
// identifiers, identifiers not allowed in `scope`, repeats and bad values.
properties read_properties(byte_reader& reader, property_scope scope);
void write_properties(byte_writer& writer, const properties& props);
std::size_t properties_size(const properties& props);  // without the length prefix

}  // namespace mqtt
