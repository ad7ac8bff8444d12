// SUBSCRIBE (section 3.8) and SUBACK (section 3.9).
#include "mqtt/packet/packet_codecs.hpp"
#include "mqtt/topic.hpp"

namespace mqtt::detail {
namespace {

subscribe_options read_options(byte_reader& r, protocol_version v) {
  const std::uint8_t byte = r.u8();
  subscribe_options options;
  options.max_qos = static_cast<qos>(byte & 0x03);
  if (is_v5(v)) {
    options.no_local = byte & 0x04;
    options.retain_as_published = byte & 0x08;
    options.retain_handling = (byte >> 4) & 0x03;
  }
  const std::uint8_t reserved = is_v5(v) ? 0xC0 : 0xFC;  // [MQTT-3.8.3-4] (3.1.1), [MQTT-3.8.3-5] (5.0)
  if (!r.failed() && ((byte & reserved) || (byte & 0x03) == 3 || options.retain_handling == 3))
    r.fail(error::invalid_subscription_options);
  return options;
}

std::uint8_t options_byte(const subscribe_options& o, protocol_version v) {
  std::uint8_t byte = static_cast<std::uint8_t>(o.max_qos);
  if (is_v5(v)) {
    if (o.no_local) byte |= 0x04;
    if (o.retain_as_published) byte |= 0x08;
    byte |= static_cast<std::uint8_t>(o.retain_handling << 4);
  }
  return byte;
}

}  // namespace

subscribe decode_subscribe(byte_reader& r, protocol_version v) {
  subscribe p;
  p.packet_id = read_packet_id(r);
  if (is_v5(v)) p.props = read_properties(r, property_scope::subscribe);
  if (!r.failed() && r.empty()) r.fail(error::no_topic_filters);  // [MQTT-3.8.3-3]
  while (!r.empty()) {
    subscription s;
    s.filter = r.utf8_string();
    s.options = read_options(r, v);
    if (r.failed()) break;
    if (!topic::is_valid_filter(s.filter)) {
      r.fail(error::invalid_topic_filter);
    } else if (s.options.no_local && topic::parse_shared(s.filter)) {
      r.fail(error::no_local_on_shared_subscription);
    }
    p.subscriptions.push_back(std::move(s));
  }
  return p;
}

void encode_subscribe(const subscribe& p, protocol_version v, byte_writer& w) {
  w.u16(p.packet_id);
  if (is_v5(v)) write_properties(w, p.props);
  for (const auto& s : p.subscriptions) {
    w.string(s.filter);
    w.u8(options_byte(s.options, v));
  }
}

suback decode_suback(byte_reader& r, protocol_version v) {
  suback p;
  p.packet_id = read_packet_id(r);
  if (is_v5(v)) p.props = read_properties(r, property_scope::suback);
  while (!r.empty()) {
    const auto code = static_cast<reason_code>(r.u8());
    const bool allowed = is_v5(v) ? reason_allowed(packet_type::suback, code)
                                  : (static_cast<std::uint8_t>(code) <= 2 || code == reason_code::unspecified_error);
    if (!allowed) r.fail(error::invalid_reason_code);
    p.reasons.push_back(code);
  }
  return p;
}

void encode_suback(const suback& p, protocol_version v, byte_writer& w) {
  w.u16(p.packet_id);
  if (is_v5(v)) write_properties(w, p.props);
  for (auto code : p.reasons) {
    // 3.1.1 knows one failure code, 0x80 [MQTT-3.9.3].
    if (!is_v5(v) && is_failure(code)) code = reason_code::unspecified_error;
    w.u8(static_cast<std::uint8_t>(code));
  }
}

}  // namespace mqtt::detail
