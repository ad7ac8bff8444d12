// Version bridging: an MQTT 5.0 client on a broker that speaks only 3.1.1
// (RabbitMQ 3.10's MQTT plugin). Pure functions over packet values: what has
// a 3.1.1 meaning is translated, what the proxy can answer itself is answered
// in its own CONNACK (client_session), properties a 3.1.1 broker cannot carry
// are dropped and counted, and 5.0-only subscription features are refused
// with a SUBACK reason code rather than forwarded with a different meaning.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include "mqtt/packets.hpp"

namespace proxy::bridge {

// What a bridged session drops, per property: counted in
// mqtt_proxy_bridge_dropped_total{property=...}.
enum class dropped : std::uint8_t {
  user_property,
  message_expiry_interval,
  content_type,
  payload_format_indicator,
  response_topic,
  correlation_data,
  will_delay_interval,
  session_expiry_interval,  // the DISCONNECT's: a 3.1.1 session cannot be shortened at the end
  receive_maximum,          // the client's: a 3.1.1 broker has no flow control to hold to it
  reason_string,            // on the client's acks
};
inline constexpr std::size_t dropped_count = 10;
std::string_view to_string(dropped what);

using drop_counts = std::array<std::uint32_t, dropped_count>;

// How the broker behind the bridge is known to behave.
struct broker_traits {
  bool shared_subscriptions = true;  // RabbitMQ 3.10 has no $share: false
  // A 3.1.1 SUBACK 0x80 for a filter the proxy already validated and allowed
  // is the broker's authorization (Mosquitto's ACL, RabbitMQ's topic
  // permissions): said as 0x87 Not authorized; otherwise 0x80.
  bool refusal_is_authorization = false;
};

// ------------------------------------------------------ client 5.0 -> broker 3.1.1

// The upstream CONNECT. 5.0 splits 3.1.1's clean session in two: Clean
// Start and Session Expiry Interval. Expiry 0 (absent) means the session
// ends with the connection: clean session 1. Expiry > 0 means it outlives
// it: clean session 0 (the broker keeps it for as long as it keeps 3.1.1
// sessions; a 5.0 Clean Start with expiry > 0 resumes what the broker kept,
// and the client is told session-present 0 as [MQTT-3.2.2-2] requires).
// Will properties are dropped and counted; the will itself is kept.
mqtt::connect to_broker_connect(const mqtt::connect& client, drop_counts& drops);

// A client packet for the 3.1.1 broker, or nothing when it must not be sent:
// a DISCONNECT with a reason code other than 0x00 asks for the will
// [MQTT-3.14.4-3], which a 3.1.1 broker publishes when the connection ends
// without DISCONNECT. Properties are dropped (counted) and reason codes,
// which 3.1.1 lacks, are left out. CONNECT and AUTH are not translated here.
std::optional<mqtt::packet> to_broker(const mqtt::packet& client, drop_counts& drops);

// Why a subscription cannot go to a 3.1.1 broker, or nothing when it can.
// No Local, Retain As Published and Retain Handling 1/2 have no 3.1.1
// equivalent: forwarding them would change what the client receives, so the
// filter is refused with 0x83 (the SUBSCRIBE is valid but the server does
// not accept it). A Subscription Identifier cannot come back on deliveries:
// 0xA1 for every filter of the SUBSCRIBE; shared subscriptions on a broker
// without them: 0x9E.
std::optional<mqtt::reason_code> refusal(const mqtt::subscribe& s, const mqtt::subscription& sub,
                                         const broker_traits& broker);

// ------------------------------------------------------ broker 3.1.1 -> client 5.0

// The broker's CONNACK for a 5.0 client (direct mode): the return code is
// already a reason code (the codec maps it); session-present is 0 after a
// Clean Start [MQTT-3.2.2-2]; the bridge's own limits are added.
mqtt::connack to_client_connack(const mqtt::connack& broker, bool clean_start, const broker_traits& traits);

// What the proxy says about itself in a bridged CONNACK: no Subscription
// Identifiers (section 3.2.2.3.12), no shared subscriptions when the
// broker has none, no topic aliases (absent Topic Alias Maximum is 0).
void advertise(mqtt::connack& ack, const broker_traits& traits);

// A 3.1.1 SUBACK as 5.0: granted QoS codes are the same; 0x80 as above.
mqtt::suback to_client_suback(const mqtt::suback& broker, const broker_traits& traits);

// A 3.1.1 UNSUBACK carries no reason codes; 5.0 needs one per filter
// [MQTT-3.11.3-1]: 0x00 Success for each (the broker accepted the packet).
mqtt::unsuback to_client_unsuback(const mqtt::unsuback& broker, std::size_t filters);

}  // namespace proxy::bridge
