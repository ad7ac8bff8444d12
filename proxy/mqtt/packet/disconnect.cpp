// DISCONNECT (section 3.14) and AUTH (section 3.15): a reason code and
// properties, both omitted when the reason is success and there are none.
#include "mqtt/packet/packet_codecs.hpp"

namespace mqtt::detail {
namespace {

template <class Packet>
Packet decode_reason_and_properties(byte_reader& r, packet_type type, property_scope scope) {
  Packet p;
  if (r.empty()) return p;  // [MQTT-3.14.2.1] [MQTT-3.15.2.1]
  p.reason = static_cast<reason_code>(r.u8());
  if (!reason_allowed(type, p.reason)) r.fail(error::invalid_reason_code);
  if (!r.empty()) p.props = read_properties(r, scope);
  return p;
}

template <class Packet>
void encode_reason_and_properties(const Packet& p, byte_writer& w) {
  if (p.reason == reason_code::success && p.props.empty()) return;
  w.u8(static_cast<std::uint8_t>(p.reason));
  if (!p.props.empty()) write_properties(w, p.props);
}

}  // namespace

disconnect decode_disconnect(byte_reader& r, protocol_version v) {
  if (!is_v5(v)) return {};  // 3.1.1: no variable header; leftovers are reported as trailing bytes
  return decode_reason_and_properties<disconnect>(r, packet_type::disconnect, property_scope::disconnect);
}

void encode_disconnect(const disconnect& p, protocol_version v, byte_writer& w) {
  if (is_v5(v)) encode_reason_and_properties(p, w);
}

auth decode_auth(byte_reader& r) {
  return decode_reason_and_properties<auth>(r, packet_type::auth, property_scope::auth);
}

void encode_auth(const auth& p, byte_writer& w) { encode_reason_and_properties(p, w); }

}  // namespace mqtt::detail
