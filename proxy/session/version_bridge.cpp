#include "session/version_bridge.hpp"

#include "mqtt/topic.hpp"
#include "support/overloaded.hpp"

namespace proxy::bridge {
namespace {

using mqtt::property_id;
using mqtt::reason_code;

std::optional<dropped> dropped_kind(property_id id) {
  switch (id) {
    case property_id::user_property: return dropped::user_property;
    case property_id::message_expiry_interval: return dropped::message_expiry_interval;
    case property_id::content_type: return dropped::content_type;
    case property_id::payload_format_indicator: return dropped::payload_format_indicator;
    case property_id::response_topic: return dropped::response_topic;
    case property_id::correlation_data: return dropped::correlation_data;
    case property_id::will_delay_interval: return dropped::will_delay_interval;
    case property_id::session_expiry_interval: return dropped::session_expiry_interval;
    case property_id::receive_maximum: return dropped::receive_maximum;
    case property_id::reason_string: return dropped::reason_string;
    default: return std::nullopt;
  }
}

// Every property of a block goes; those that meant something to the
// receiver are counted (one per packet and kind, however many user properties).
void drop_all(const mqtt::properties& props, drop_counts& drops) {
  drop_counts seen{};
  for (const auto& p : props.items())
    if (auto kind = dropped_kind(p.id)) seen[static_cast<std::size_t>(*kind)] = 1;
  for (std::size_t i = 0; i < dropped_count; ++i) drops[i] += seen[i];
}

template <mqtt::packet_type T>
mqtt::publish_response<T> plain_ack(const mqtt::publish_response<T>& ack, drop_counts& drops) {
  drop_all(ack.props, drops);
  return {ack.packet_id, reason_code::success, {}};
}

}  // namespace

std::string_view to_string(dropped what) {
  switch (what) {
    case dropped::user_property: return "user_property";
    case dropped::message_expiry_interval: return "message_expiry_interval";
    case dropped::content_type: return "content_type";
    case dropped::payload_format_indicator: return "payload_format_indicator";
    case dropped::response_topic: return "response_topic";
    case dropped::correlation_data: return "correlation_data";
    case dropped::will_delay_interval: return "will_delay_interval";
    case dropped::session_expiry_interval: return "session_expiry_interval";
    case dropped::receive_maximum: return "receive_maximum";
    case dropped::reason_string: return "reason_string";
  }
  return "unknown";
}

mqtt::connect to_broker_connect(const mqtt::connect& client, drop_counts& drops) {
  mqtt::connect up = client;
  up.version = mqtt::protocol_version::v3_1_1;
  const auto expiry = client.props.number(property_id::session_expiry_interval).value_or(0);
  up.clean_start = expiry == 0;
  // A client Receive Maximum below the default is a limit the 3.1.1 broker
  // never hears of: counted so that an operator can see it is not held.
  if (client.props.number(property_id::receive_maximum).value_or(65535) < 65535)
    drops[static_cast<std::size_t>(dropped::receive_maximum)]++;
  if (auto users = client.props.user_properties(); !users.empty())
    drops[static_cast<std::size_t>(dropped::user_property)]++;
  up.props = {};
  if (up.will) {
    drop_all(up.will->props, drops);
    up.will->props = {};
  }
  // 3.1.1 allows a password only with a user name [MQTT-3.1.2-22].
  if (up.password && !up.username) up.username = "";
  return up;
}

std::optional<mqtt::packet> to_broker(const mqtt::packet& client, drop_counts& drops) {
  return std::visit(
      support::overloaded{
          [&](const mqtt::publish& p) -> std::optional<mqtt::packet> {
            mqtt::publish out = p;
            drop_all(p.props, drops);
            out.props = {};
            return out;
          },
          [&](const mqtt::puback& a) -> std::optional<mqtt::packet> { return plain_ack(a, drops); },
          [&](const mqtt::pubrec& a) -> std::optional<mqtt::packet> { return plain_ack(a, drops); },
          [&](const mqtt::pubrel& a) -> std::optional<mqtt::packet> { return plain_ack(a, drops); },
          [&](const mqtt::pubcomp& a) -> std::optional<mqtt::packet> { return plain_ack(a, drops); },
          [&](const mqtt::subscribe& s) -> std::optional<mqtt::packet> {
            mqtt::subscribe out{s.packet_id, {}, {}};
            drop_all(s.props, drops);
            for (const auto& sub : s.subscriptions) out.subscriptions.push_back({sub.filter, {sub.options.max_qos}});
            return out;
          },
          [&](const mqtt::unsubscribe& u) -> std::optional<mqtt::packet> {
            drop_all(u.props, drops);
            return mqtt::unsubscribe{u.packet_id, {}, u.filters};
          },
          [&](const mqtt::disconnect& d) -> std::optional<mqtt::packet> {
            drop_all(d.props, drops);
            if (d.reason != reason_code::success) return std::nullopt;  // the will goes out [MQTT-3.14.4-3]
            return mqtt::disconnect{};
          },
          [&](const auto& other) -> std::optional<mqtt::packet> { return other; },  // PINGREQ
      },
      client);
}

std::optional<mqtt::reason_code> refusal(const mqtt::subscribe& s, const mqtt::subscription& sub,
                                         const broker_traits& broker) {
  if (!s.props.numbers(property_id::subscription_identifier).empty())
    return reason_code::subscription_identifiers_not_supported;
  if (sub.options.no_local || sub.options.retain_as_published || sub.options.retain_handling != 0)
    return reason_code::implementation_specific_error;
  if (!broker.shared_subscriptions && mqtt::topic::parse_shared(sub.filter))
    return reason_code::shared_subscriptions_not_supported;
  return std::nullopt;
}

mqtt::connack to_client_connack(const mqtt::connack& broker, bool clean_start, const broker_traits& traits) {
  mqtt::connack out{broker.session_present && !clean_start, broker.reason, {}};
  if (!mqtt::is_failure(out.reason)) advertise(out, traits);
  return out;
}

void advertise(mqtt::connack& ack, const broker_traits& traits) {
  ack.props.set(property_id::subscription_identifier_available, 0u);
  if (!traits.shared_subscriptions) ack.props.set(property_id::shared_subscription_available, 0u);
  ack.props.remove(property_id::topic_alias_maximum);
}

mqtt::suback to_client_suback(const mqtt::suback& broker, const broker_traits& traits) {
  mqtt::suback out{broker.packet_id, {}, broker.reasons};
  for (auto& code : out.reasons)
    if (mqtt::is_failure(code)) code = traits.refusal_is_authorization ? reason_code::not_authorized : reason_code::unspecified_error;
  return out;
}

mqtt::unsuback to_client_unsuback(const mqtt::unsuback& broker, std::size_t filters) {
  return {broker.packet_id, {}, std::vector<reason_code>(filters, reason_code::success)};
}

}  // namespace proxy::bridge
