#include "mqtt/error.hpp"

#include <string>

namespace mqtt {
namespace {

// The first normative statement cited is 3.1.1's, the second 5.0's where they differ.
const char* describe(error e) {
  switch (e) {
    case error::reserved_packet_type: return "packet type 0 is reserved [MQTT-2.2.1]";
    case error::invalid_fixed_header_flags: return "fixed header flags do not match the packet type [MQTT-2.2.2-1] [MQTT-2.2.2-2]";
    case error::remaining_length_too_long: return "remaining length uses more than 4 bytes [MQTT-2.2.3] [MQTT-1.5.5]";
    case error::remaining_length_not_minimal: return "variable byte integer not in its shortest form [MQTT-1.5.5-1]";
    case error::packet_too_large: return "packet exceeds the maximum packet size [MQTT-3.1.2-24]";
    case error::truncated: return "packet ends in the middle of a field [MQTT-1.5]";
    case error::trailing_bytes: return "bytes left over after the last field of the packet";
    case error::invalid_utf8: return "string is not well-formed UTF-8 or encodes a surrogate [MQTT-1.5.3-1] [MQTT-1.5.4-1]";
    case error::utf8_contains_null: return "string contains U+0000 [MQTT-1.5.3-2] [MQTT-1.5.4-2]";
    case error::variable_byte_integer_malformed: return "variable byte integer uses more than 4 bytes [MQTT-1.5.5]";
    case error::packet_id_zero: return "packet identifier must be non-zero [MQTT-2.3.1-1] [MQTT-2.2.1-3]";
    case error::invalid_protocol_name: return "protocol name is not \"MQTT\" (or \"MQIsdp\" for 3.1) [MQTT-3.1.2-1]";
    case error::unsupported_protocol_version: return "unsupported protocol level [MQTT-3.1.2-2]";
    case error::connect_reserved_flag_set: return "CONNECT reserved flag is set [MQTT-3.1.2-3]";
    case error::invalid_will_flags: return "will QoS/retain set without will flag, or will QoS 3 [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-14] [MQTT-3.1.2-15]";
    case error::password_without_username: return "password flag set without user name flag [MQTT-3.1.2-22]";
    case error::invalid_client_id: return "client identifier not valid for this protocol level [MQTT-3.1.3-5]";
    case error::invalid_qos: return "QoS 3 is not allowed [MQTT-3.3.1-4]";
    case error::dup_with_qos_0: return "DUP flag set on a QoS 0 PUBLISH [MQTT-3.3.1-2]";
    case error::invalid_topic_name: return "topic name is empty or contains a wildcard [MQTT-4.7.3-1] [MQTT-3.3.2-2]";
    case error::missing_topic_name: return "zero-length topic name without a topic alias [MQTT-3.3.2-1] [MQTT-3.3.4-8]";
    case error::no_topic_filters: return "SUBSCRIBE/UNSUBSCRIBE carries no topic filter [MQTT-3.8.3-3] [MQTT-3.10.3-2]";
    case error::invalid_subscription_options: return "reserved subscription option bits set, QoS 3 or retain handling 3 [MQTT-3.8.3-4] [MQTT-3.8.3-5]";
    case error::invalid_topic_filter: return "topic filter is empty or misuses a wildcard [MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.8.2-1]";
    case error::no_local_on_shared_subscription: return "no local set on a shared subscription [MQTT-3.8.3-4]";
    case error::invalid_reason_code: return "reason code not allowed in this packet [MQTT-2.4]";
    case error::connack_reserved_flags_set: return "CONNACK reserved flags are set [MQTT-3.2.2-1]";
    case error::session_present_on_failure: return "session present set with a failing CONNACK [MQTT-3.2.2-4] [MQTT-3.2.2-6]";
    case error::unknown_property: return "unknown property identifier [MQTT-2.2.2.2]";
    case error::property_not_allowed: return "property not allowed in this packet [MQTT-2.2.2.2]";
    case error::duplicate_property: return "property may appear only once [MQTT-2.2.2.2]";
    case error::invalid_property_value: return "property value out of range [MQTT-3.1.2.11] [MQTT-3.2.2.3]";
    case error::packet_not_in_version: return "packet type does not exist in this protocol version (AUTH is 5.0 only)";
    case error::field_too_long: return "field too long to encode (strings are limited to 65535 bytes)";
  }
  return "unknown MQTT codec error";
}

class codec_category_impl final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "mqtt.codec"; }
  std::string message(int ev) const override { return describe(static_cast<error>(ev)); }
};

}  // namespace

const boost::system::error_category& codec_category() noexcept {
  static const codec_category_impl instance;
  return instance;
}

}  // namespace mqtt
