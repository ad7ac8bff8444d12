// Vocabulary of MQTT 3.1.1 and 5.0: versions, QoS, packet types, reason codes.
#pragma once

#include <cstdint>
#include <string_view>

namespace mqtt {

// The protocol level byte of CONNECT [MQTT-3.1.2-2].
enum class protocol_version : std::uint8_t {
  v3_1 = 3,    // "MQIsdp"; accepted on CONNECT, otherwise handled as 3.1.1
  v3_1_1 = 4,
  v5 = 5,
};

enum class qos : std::uint8_t { at_most_once = 0, at_least_once = 1, exactly_once = 2 };

enum class packet_type : std::uint8_t {
  connect = 1,
  connack = 2,
  publish = 3,
  puback = 4,
  pubrec = 5,
  pubrel = 6,
  pubcomp = 7,
  subscribe = 8,
  suback = 9,
  unsubscribe = 10,
  unsuback = 11,
  pingreq = 12,
  pingresp = 13,
  disconnect = 14,
  auth = 15,  // MQTT 5 only
};

std::string_view to_string(packet_type type);

// MQTT 5 reason codes (section 2.4). The 3.1.1 CONNACK return codes and SUBACK
// codes are mapped onto these by the codec, so the rest of the program speaks
// one language and the encoder writes whatever the wire version needs.
enum class reason_code : std::uint8_t {
  success = 0x00,  // also: normal disconnection, granted QoS 0
  granted_qos_1 = 0x01,
  granted_qos_2 = 0x02,
  disconnect_with_will = 0x04,
  no_matching_subscribers = 0x10,
  no_subscription_existed = 0x11,
  continue_authentication = 0x18,
  reauthenticate = 0x19,
  unspecified_error = 0x80,
  malformed_packet = 0x81,
  protocol_error = 0x82,
  implementation_specific_error = 0x83,
  unsupported_protocol_version = 0x84,
  client_identifier_not_valid = 0x85,
  bad_user_name_or_password = 0x86,
  not_authorized = 0x87,
  server_unavailable = 0x88,
  server_busy = 0x89,
  banned = 0x8A,
  server_shutting_down = 0x8B,
  bad_authentication_method = 0x8C,
  keep_alive_timeout = 0x8D,
  session_taken_over = 0x8E,
  topic_filter_invalid = 0x8F,
  topic_name_invalid = 0x90,
  packet_identifier_in_use = 0x91,
  packet_identifier_not_found = 0x92,
  receive_maximum_exceeded = 0x93,
  topic_alias_invalid = 0x94,
  packet_too_large = 0x95,
  message_rate_too_high = 0x96,
  quota_exceeded = 0x97,
  administrative_action = 0x98,
  payload_format_invalid = 0x99,
  retain_not_supported = 0x9A,
  qos_not_supported = 0x9B,
  use_another_server = 0x9C,
  server_moved = 0x9D,
  shared_subscriptions_not_supported = 0x9E,
  connection_rate_exceeded = 0x9F,
  maximum_connect_time = 0xA0,
  subscription_identifiers_not_supported = 0xA1,
  wildcard_subscriptions_not_supported = 0xA2,
};

std::string_view to_string(reason_code code);

constexpr bool is_failure(reason_code code) { return static_cast<std::uint8_t>(code) >= 0x80; }

constexpr reason_code granted(qos level) { return static_cast<reason_code>(level); }

}  // namespace mqtt
