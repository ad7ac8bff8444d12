// The fourteen MQTT control packets (fifteen with 5.0's AUTH) as plain values.
// The same structs serve 3.1.1 and 5.0: fields that 3.1.1 lacks (properties,
// most reason codes) are simply left empty/success when it is the wire version.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "mqtt/properties.hpp"
#include "mqtt/types.hpp"

namespace mqtt {

struct will_message {
  std::string topic;
  std::string payload;
  mqtt::qos qos = qos::at_most_once;
  bool retain = false;
  properties props;  // 5.0 will properties
  bool operator==(const will_message&) const = default;
};

struct connect {
  protocol_version version = protocol_version::v3_1_1;
  bool clean_start = true;  // "clean session" in 3.1.1
  std::uint16_t keep_alive = 0;
  properties props;
  std::string client_id;
  std::optional<will_message> will;
  std::optional<std::string> username;
  std::optional<std::string> password;  // binary data
  bool operator==(const connect&) const = default;
};

struct connack {
  bool session_present = false;
  reason_code reason = reason_code::success;  // 3.1.1 return codes are mapped (see codec)
  properties props;
  bool operator==(const connack&) const = default;
};

struct publish {
  std::string topic;
  std::string payload;
  mqtt::qos qos = qos::at_most_once;
  bool retain = false;
  bool dup = false;
  std::uint16_t packet_id = 0;  // only when qos > 0
  properties props;
  bool operator==(const publish&) const = default;
};

// What a relay routes a PUBLISH on, read in place: the topic is a view into
// the frame's bytes (valid while they are) and the payload is not read, so
// relaying a message allocates nothing (issue 14). Checked as decode() checks
// a PUBLISH: the same frames are rejected.
struct publish_header {
  std::string_view topic;
  mqtt::qos qos = qos::at_most_once;
  bool retain = false;
  bool dup = false;
  std::uint16_t packet_id = 0;  // only when qos > 0
  properties props;             // 5.0; empty (and unallocated) without properties
  bool operator==(const publish_header&) const = default;
};

// A decoded PUBLISH's header, its topic a view into `p`.
inline publish_header header_of(const publish& p) {
  return {p.topic, p.qos, p.retain, p.dup, p.packet_id, p.props};
}

// PUBACK, PUBREC, PUBREL and PUBCOMP share one layout; the template parameter
// keeps them distinct types.
template <packet_type Type>
struct publish_response {
  static constexpr packet_type type = Type;
  std::uint16_t packet_id = 0;
  reason_code reason = reason_code::success;
  properties props;
  bool operator==(const publish_response&) const = default;
};
using puback = publish_response<packet_type::puback>;
using pubrec = publish_response<packet_type::pubrec>;
using pubrel = publish_response<packet_type::pubrel>;
using pubcomp = publish_response<packet_type::pubcomp>;

struct subscribe_options {
  qos max_qos = qos::at_most_once;
  bool no_local = false;             // 5.0
  bool retain_as_published = false;  // 5.0
  std::uint8_t retain_handling = 0;  // 5.0: 0 send, 1 send if new, 2 do not send
  bool operator==(const subscribe_options&) const = default;
};

struct subscription {
  std::string filter;
  subscribe_options options;
  bool operator==(const subscription&) const = default;
};

struct subscribe {
  std::uint16_t packet_id = 0;
  properties props;
  std::vector<subscription> subscriptions;
  bool operator==(const subscribe&) const = default;
};

struct suback {
  std::uint16_t packet_id = 0;
  properties props;
  std::vector<reason_code> reasons;  // one per subscription, in order
  bool operator==(const suback&) const = default;
};

struct unsubscribe {
  std::uint16_t packet_id = 0;
  properties props;
  std::vector<std::string> filters;
  bool operator==(const unsubscribe&) const = default;
};

struct unsuback {
  std::uint16_t packet_id = 0;
  properties props;
  std::vector<reason_code> reasons;  // 5.0 only; empty in 3.1.1
  bool operator==(const unsuback&) const = default;
};

struct pingreq {
  bool operator==(const pingreq&) const = default;
};
struct pingresp {
  bool operator==(const pingresp&) const = default;
};

struct disconnect {
  reason_code reason = reason_code::success;  // 5.0 only
  properties props;
  bool operator==(const disconnect&) const = default;
};

struct auth {
  reason_code reason = reason_code::success;
  properties props;
  bool operator==(const auth&) const = default;
};

using packet = std::variant<connect, connack, publish, puback, pubrec, pubrel, pubcomp, subscribe, suback,
                            unsubscribe, unsuback, pingreq, pingresp, disconnect, auth>;

packet_type type_of(const packet& p);

}  // namespace mqtt
