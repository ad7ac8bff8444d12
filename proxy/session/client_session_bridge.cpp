// client_session's side of version bridging: a 5.0 client on a broker that
// speaks only 3.1.1. The translations themselves are pure functions in
// version_bridge.cpp; this file applies them to what the session sends each
// way, and counts what they drop.
#include "session/client_session.hpp"
#include "session/version_bridge.hpp"
#include "support/overloaded.hpp"

namespace proxy {

using mqtt::reason_code;

mqtt::protocol_version client_session::upstream_version() const {
  return bridged_ ? mqtt::protocol_version::v3_1_1 : version_;
}

bridge::broker_traits client_session::bridge_traits() const {
  // RabbitMQ 3.10 has no $share; behind Mosquitto or RabbitMQ a 3.1.1 SUBACK
  // 0x80 for a filter the proxy validated and allowed is the broker's ACL.
  return {config_.upstream != upstream_kind::rabbitmq, config_.upstream != upstream_kind::generic};
}

void client_session::count_drops(const bridge::drop_counts& drops) {
  for (std::size_t i = 0; i < drops.size(); ++i)
    if (drops[i]) metrics_.bridge_dropped[i] += drops[i];
}

mqtt::result<mqtt::bytes> client_session::encode_for_upstream(const mqtt::packet& p) {
  if (!bridged_) return mqtt::encode(p, version_);
  bridge::drop_counts drops{};
  auto translated = bridge::to_broker(p, drops);
  count_drops(drops);
  if (!translated) return mqtt::error::packet_not_in_version;
  return mqtt::encode(*translated, mqtt::protocol_version::v3_1_1);
}

// A client packet the session relays: re-encoded for the 3.1.1 broker.
void client_session::bridge_to_upstream(const mqtt::frame& frame) {
  auto decoded = mqtt::decode(frame.first_byte, frame.body, version_);
  if (!decoded) return protocol_error(decoded.error().message(), reason_code::malformed_packet);
  // A failing 5.0 PUBREC ends the QoS 2 flow (section 4.3.3), but a 3.1.1
  // broker reads any PUBREC as success and sends PUBREL: the proxy answers it.
  if (const auto* rec = std::get_if<mqtt::pubrec>(&*decoded); rec && mqtt::is_failure(rec->reason))
    extra().dropped_qos2_ids_.insert(rec->packet_id);
  // The client's end of a delivery's flow: PUBACK, PUBCOMP, or a failing PUBREC.
  const std::optional<std::uint16_t> completed = std::visit(
      support::overloaded{
          [](const mqtt::puback& ack) { return std::optional<std::uint16_t>(ack.packet_id); },
          [](const mqtt::pubcomp& comp) { return std::optional<std::uint16_t>(comp.packet_id); },
          [](const mqtt::pubrec& rec) {
            return mqtt::is_failure(rec.reason) ? std::optional<std::uint16_t>(rec.packet_id) : std::nullopt;
          },
          [](const auto&) { return std::optional<std::uint16_t>(); },
      },
      *decoded);
  if (completed && acknowledges_held_delivery(*completed)) return;
  if (completed) client_completed_delivery(*completed);
  if (const auto* rec = std::get_if<mqtt::pubrec>(&*decoded);
      rec && !mqtt::is_failure(rec->reason) && extra_ && extra_->deliveries_in_flight_.contains(rec->packet_id))
    extra_->awaiting_pubrel_.insert(rec->packet_id);
  const auto* publish = std::get_if<mqtt::publish>(&*decoded);
  if (publish && publish->qos != mqtt::qos::at_most_once && limits().receive_maximum) {
    extra().bridged_in_flight_.insert(publish->packet_id);
    if (extra().bridged_in_flight_.size() > *limits().receive_maximum)
      return protocol_error("more QoS 1/2 PUBLISHes in flight than Receive Maximum [MQTT-3.3.4-7]",
                            reason_code::receive_maximum_exceeded);
  }
  bridge::drop_counts drops{};
  auto translated = bridge::to_broker(*decoded, drops);
  count_drops(drops);
  if (!translated) return;  // DISCONNECT with a will: the connection just ends
  auto wire = mqtt::encode(*translated, mqtt::protocol_version::v3_1_1);
  if (!wire) return protocol_error(wire.error().message(), reason_code::implementation_specific_error);
  emit(action::send_to_upstream{std::move(*wire)});
  if (completed) release_held_deliveries();
}

// A broker packet, before the session acts on it: acks in their 5.0 form.
void client_session::bridge_from_upstream(mqtt::packet& p) {
  if (const auto* rel = std::get_if<mqtt::pubrel>(&p); rel && extra_) extra_->awaiting_pubrel_.erase(rel->packet_id);
  if (const auto* ack = std::get_if<mqtt::puback>(&p)) extra().bridged_in_flight_.erase(ack->packet_id);
  if (const auto* ack = std::get_if<mqtt::pubcomp>(&p)) extra().bridged_in_flight_.erase(ack->packet_id);
  if (auto* ack = std::get_if<mqtt::suback>(&p)) {
    p = bridge::to_client_suback(*ack, bridge_traits());
  } else if (auto* unack = std::get_if<mqtt::unsuback>(&p)) {
    const auto pending = extra().bridged_unsubscribes_.find(unack->packet_id);
    const std::size_t filters = pending == extra().bridged_unsubscribes_.end() ? 0 : pending->second;
    if (pending != extra().bridged_unsubscribes_.end()) extra().bridged_unsubscribes_.erase(pending);
    p = bridge::to_client_unsuback(*unack, filters);
  }
}

// The session relays broker packets unchanged (forward_to_client); a 5.0
// client needs them re-encoded. A delivery larger than the client's Maximum
// Packet Size is dropped and completed with the broker, as a server must
// [MQTT-3.1.2-25]: a 5.0 broker would know the client's limit, a 3.1.1 one does not.
void client_session::bridge_forwards_to_client(const mqtt::packet& p, std::size_t first_action) {
  const auto& client_limit = client_max_packet_size_;
  const auto* delivery = std::get_if<mqtt::publish>(&p);
  bool too_large = false;
  std::vector<session_action> rewritten;
  for (std::size_t i = first_action; i < actions_.size(); ++i) {
    if (!std::holds_alternative<action::forward_to_client>(actions_[i])) {
      rewritten.push_back(std::move(actions_[i]));
      continue;
    }
    auto wire = mqtt::encode(p, mqtt::protocol_version::v5);
    if (!wire) continue;
    if (delivery && client_limit && wire->size() > *client_limit) {
      too_large = true;
      continue;
    }
    if (delivery && must_hold_delivery(*delivery)) {
      wire->shrink_to_fit();  // the encoder reserves room: a small one would hold far more than it counts
      const std::size_t cost =
          wire->capacity() + delivery->topic.size() + sizeof(extra_state::held_delivery);
      extra().held_delivery_bytes_ += cost;
      extra().held_deliveries_.push_back({std::move(*wire), delivery->topic, delivery->qos, delivery->packet_id, cost});
      continue;
    }
    rewritten.push_back(action::send_to_client{std::move(*wire)});
  }
  actions_.resize(first_action);
  for (auto& a : rewritten) actions_.push_back(std::move(a));
  if (!too_large) return;
  metrics_.bridge_oversized_dropped++;
  if (delivery->qos == mqtt::qos::at_least_once) send_upstream(mqtt::puback{delivery->packet_id, reason_code::success, {}});
  if (delivery->qos == mqtt::qos::exactly_once) {
    extra().dropped_qos2_ids_.insert(delivery->packet_id);
    send_upstream(mqtt::pubrec{delivery->packet_id, reason_code::success, {}});
  }
}

// Whether a delivery must wait for the client's Receive Maximum; one that
// goes now and needs an acknowledgement is counted in flight. Everything
// behind a waiting delivery waits too: deliveries keep their order.
bool client_session::must_hold_delivery(const mqtt::publish& p) {
  if (!extra_ || extra_->client_receive_maximum_ == 0) return false;
  auto& e = *extra_;
  if (!e.held_deliveries_.empty()) return true;
  if (!takes_client_window(p.qos, p.packet_id)) return false;  // QoS 0, or a resend of one in flight
  if (e.deliveries_in_flight_.size() >= e.client_receive_maximum_) return true;
  e.deliveries_in_flight_.insert(p.packet_id);
  return false;
}

// Whether a delivery needs a place in the client's Receive Maximum: QoS 1/2
// and not already in flight (a resend keeps the place it has).
bool client_session::takes_client_window(mqtt::qos qos, std::uint16_t packet_id) const {
  return qos != mqtt::qos::at_most_once && !extra_->deliveries_in_flight_.contains(packet_id);
}

// An acknowledgement of a delivery the proxy still holds, which the client
// never got: passed on, it would tell the broker the message was delivered and
// free its id for another while this one waits. Dropped.
bool client_session::acknowledges_held_delivery(std::uint16_t packet_id) const {
  if (!extra_ || extra_->deliveries_in_flight_.contains(packet_id)) return false;
  for (const auto& held : extra_->held_deliveries_)
    if (held.qos != mqtt::qos::at_most_once && held.packet_id == packet_id) return true;
  return false;
}

void client_session::client_completed_delivery(std::uint16_t packet_id) {
  if (extra_) extra_->deliveries_in_flight_.erase(packet_id);
}

// The client completed a delivery: what waited behind it goes, up to its
// Receive Maximum again. The ACL is asked again, as it may have narrowed while
// the delivery waited.
void client_session::release_held_deliveries() {
  if (!extra_) return;
  auto& e = *extra_;
  while (!e.held_deliveries_.empty()) {
    auto& next = e.held_deliveries_.front();
    const bool counted = takes_client_window(next.qos, next.packet_id);
    if (counted && e.deliveries_in_flight_.size() >= e.client_receive_maximum_) return;
    auto held = std::move(next);
    e.held_deliveries_.pop_front();
    e.held_delivery_bytes_ -= held.cost;
    if (!acl_allows(acl_action::receive, held.topic)) {
      metrics_.acl_denied_deliver++;
      complete_with_broker(held.qos, held.packet_id);
      continue;
    }
    if (counted) e.deliveries_in_flight_.insert(held.packet_id);
    emit(action::send_to_client{std::move(held.wire)});
  }
}

}  // namespace proxy
