// PUBLISH (section 3.3) and its responses PUBACK, PUBREC, PUBREL, PUBCOMP (3.4 to 3.7).
#include "mqtt/packet/packet_codecs.hpp"
#include "mqtt/topic.hpp"

namespace mqtt::detail {

publish_header read_publish_header(byte_reader& r, std::uint8_t flags, protocol_version v) {
  publish_header h;
  h.dup = flags & 0x08;
  h.qos = static_cast<qos>((flags >> 1) & 0x03);
  h.retain = flags & 0x01;
  h.topic = r.utf8_view();
  if (h.qos != qos::at_most_once) h.packet_id = read_packet_id(r);
  if (is_v5(v)) h.props = read_properties(r, property_scope::publish);
  if (r.failed()) return h;
  if (h.topic.empty()) {
    // 5.0 lets a topic alias stand in for the name [MQTT-3.3.2-1]; 3.1.1 never [MQTT-4.7.3-1].
    if (!h.props.number(property_id::topic_alias)) r.fail(error::missing_topic_name);
  } else if (topic::has_wildcard(h.topic)) {
    // The rest of is_valid_name (UTF-8, length) utf8_view() has checked:
    // not twice per relayed PUBLISH.
    r.fail(error::invalid_topic_name);
  }
  return h;
}

publish decode_publish(byte_reader& r, std::uint8_t flags, protocol_version v) {
  auto h = read_publish_header(r, flags, v);
  publish p;
  p.dup = h.dup;
  p.qos = h.qos;
  p.retain = h.retain;
  p.packet_id = h.packet_id;
  if (r.failed()) return p;
  p.topic = h.topic;
  p.props = std::move(h.props);
  p.payload = r.rest();
  return p;
}

std::uint8_t publish_flags(const publish& p) {
  return static_cast<std::uint8_t>((p.dup ? 0x08 : 0) | static_cast<std::uint8_t>(p.qos) << 1 | (p.retain ? 0x01 : 0));
}

void encode_publish(const publish& p, protocol_version v, byte_writer& w) {
  w.string(p.topic);
  if (p.qos != qos::at_most_once) w.u16(p.packet_id);
  if (is_v5(v)) write_properties(w, p.props);
  w.raw(p.payload);
}

template <packet_type Type>
publish_response<Type> decode_publish_response(byte_reader& r, protocol_version v) {
  publish_response<Type> p;
  p.packet_id = read_packet_id(r);
  // 5.0: a remaining length of 2 means success without properties [MQTT-3.4.2.1];
  // below 4 there is no property length [MQTT-3.4.2.2].
  if (!is_v5(v) || r.empty()) return p;
  p.reason = static_cast<reason_code>(r.u8());
  if (!r.failed() && !reason_allowed(Type, p.reason)) r.fail(error::invalid_reason_code);
  if (!r.empty()) p.props = read_properties(r, property_scope::puback);
  return p;
}

template <packet_type Type>
void encode_publish_response(const publish_response<Type>& p, protocol_version v, byte_writer& w) {
  w.u16(p.packet_id);
  if (!is_v5(v) || (p.reason == reason_code::success && p.props.empty())) return;
  w.u8(static_cast<std::uint8_t>(p.reason));
  if (!p.props.empty()) write_properties(w, p.props);
}

template puback decode_publish_response<packet_type::puback>(byte_reader&, protocol_version);
template pubrec decode_publish_response<packet_type::pubrec>(byte_reader&, protocol_version);
template pubrel decode_publish_response<packet_type::pubrel>(byte_reader&, protocol_version);
template pubcomp decode_publish_response<packet_type::pubcomp>(byte_reader&, protocol_version);
template void encode_publish_response(const puback&, protocol_version, byte_writer&);
template void encode_publish_response(const pubrec&, protocol_version, byte_writer&);
template void encode_publish_response(const pubrel&, protocol_version, byte_writer&);
template void encode_publish_response(const pubcomp&, protocol_version, byte_writer&);

}  // namespace mqtt::detail
