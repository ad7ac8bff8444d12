// UNSUBSCRIBE (section 3.10) and UNSUBACK (section 3.11).
#include "mqtt/packet/packet_codecs.hpp"
#include "mqtt/topic.hpp"

namespace mqtt::detail {

unsubscribe decode_unsubscribe(byte_reader& r, protocol_version v) {
  unsubscribe p;
  p.packet_id = read_packet_id(r);
  if (is_v5(v)) p.props = read_properties(r, property_scope::unsubscribe);
  if (!r.failed() && r.empty()) r.fail(error::no_topic_filters);  // [MQTT-3.10.3-2]
  while (!r.empty()) {
    std::string filter = r.utf8_string();
    if (!r.failed() && !topic::is_valid_filter(filter)) r.fail(error::invalid_topic_filter);
    p.filters.push_back(std::move(filter));
  }
  return p;
}

void encode_unsubscribe(const unsubscribe& p, protocol_version v, byte_writer& w) {
  w.u16(p.packet_id);
  if (is_v5(v)) write_properties(w, p.props);
  for (const auto& filter : p.filters) w.string(filter);
}

unsuback decode_unsuback(byte_reader& r, protocol_version v) {
  unsuback p;
  p.packet_id = read_packet_id(r);
  if (!is_v5(v)) return p;  // 3.1.1 UNSUBACK is the packet identifier alone
  p.props = read_properties(r, property_scope::unsuback);
  while (!r.empty()) {
    const auto code = static_cast<reason_code>(r.u8());
    if (!reason_allowed(packet_type::unsuback, code)) r.fail(error::invalid_reason_code);
    p.reasons.push_back(code);
  }
  return p;
}

void encode_unsuback(const unsuback& p, protocol_version v, byte_writer& w) {
  w.u16(p.packet_id);
  if (!is_v5(v)) return;
  write_properties(w, p.props);
  for (auto code : p.reasons) w.u8(static_cast<std::uint8_t>(code));
}

}  // namespace mqtt::detail
