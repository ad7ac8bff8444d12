// CONNECT (section 3.1) and CONNACK (section 3.2).
#include "mqtt/packet/packet_codecs.hpp"
#include "mqtt/topic.hpp"

namespace mqtt::detail {
namespace {

namespace flag {
constexpr std::uint8_t reserved = 0x01;
constexpr std::uint8_t clean_start = 0x02;
constexpr std::uint8_t will = 0x04;
constexpr std::uint8_t will_qos_shift = 3;
constexpr std::uint8_t will_qos_mask = 0x18;
constexpr std::uint8_t will_retain = 0x20;
constexpr std::uint8_t password = 0x40;
constexpr std::uint8_t username = 0x80;
}  // namespace flag

std::string_view protocol_name(protocol_version v) { return v == protocol_version::v3_1 ? "MQIsdp" : "MQTT"; }

bool check_flags(byte_reader& r, std::uint8_t flags, protocol_version version) {
  if (flags & flag::reserved) {
    r.fail(error::connect_reserved_flag_set);
    return false;
  }
  const std::uint8_t will_qos = (flags & flag::will_qos_mask) >> flag::will_qos_shift;
  const bool has_will = flags & flag::will;
  if (will_qos == 3 || (!has_will && (will_qos != 0 || (flags & flag::will_retain)))) {
    r.fail(error::invalid_will_flags);
    return false;
  }
  // 5.0 allows a password without a user name; 3.1.1 does not.
  if (version != protocol_version::v5 && (flags & flag::password) && !(flags & flag::username)) {
    r.fail(error::password_without_username);
    return false;
  }
  return true;
}

std::optional<will_message> read_will(byte_reader& r, std::uint8_t flags, protocol_version version) {
  if (!(flags & flag::will)) return std::nullopt;
  will_message will;
  will.qos = static_cast<qos>((flags & flag::will_qos_mask) >> flag::will_qos_shift);
  will.retain = flags & flag::will_retain;
  if (is_v5(version)) will.props = read_properties(r, property_scope::will);
  will.topic = r.utf8_string();
  if (!r.failed() && !topic::is_valid_name(will.topic)) r.fail(error::invalid_topic_name);
  will.payload = r.binary();
  return will;
}

}  // namespace

std::optional<protocol_version> peek_version(byte_reader& r) {
  const std::string_view name = r.utf8_view();
  const std::uint8_t level = r.u8();
  if (r.failed()) return std::nullopt;
  if (level == 3 && name == "MQIsdp") return protocol_version::v3_1;
  if ((level == 4 || level == 5) && name == "MQTT") return static_cast<protocol_version>(level);
  if (name != "MQTT" && name != "MQIsdp") {
    r.fail(error::invalid_protocol_name);
  } else {
    r.fail(error::unsupported_protocol_version);
  }
  return std::nullopt;
}

connect decode_connect(byte_reader& r) {
  connect p;
  const auto version = peek_version(r);
  if (!version) return p;
  p.version = *version;
  const std::uint8_t flags = r.u8();
  if (!check_flags(r, flags, p.version)) return p;
  p.clean_start = flags & flag::clean_start;
  p.keep_alive = r.u16();
  if (is_v5(p.version)) p.props = read_properties(r, property_scope::connect);
  p.client_id = r.utf8_string();
  // MQTT 3.1 required a client identifier of 1 to 23 characters.
  if (!r.failed() && p.version == protocol_version::v3_1 && p.client_id.empty()) r.fail(error::invalid_client_id);
  p.will = read_will(r, flags, p.version);
  if (flags & flag::username) p.username = r.utf8_string();
  if (flags & flag::password) p.password = r.binary();
  return p;
}

void encode_connect(const connect& p, byte_writer& w) {
  w.string(protocol_name(p.version));
  w.u8(static_cast<std::uint8_t>(p.version));
  std::uint8_t flags = 0;
  if (p.clean_start) flags |= flag::clean_start;
  if (p.will) {
    flags |= flag::will | static_cast<std::uint8_t>(static_cast<std::uint8_t>(p.will->qos) << flag::will_qos_shift);
    if (p.will->retain) flags |= flag::will_retain;
  }
  if (p.username) flags |= flag::username;
  if (p.password) flags |= flag::password;
  w.u8(flags);
  w.u16(p.keep_alive);
  if (is_v5(p.version)) write_properties(w, p.props);
  w.string(p.client_id);
  if (p.will) {
    if (is_v5(p.version)) write_properties(w, p.will->props);
    w.string(p.will->topic);
    w.string(p.will->payload);
  }
  if (p.username) w.string(*p.username);
  if (p.password) w.string(*p.password);
}

namespace {

// 3.1.1 return codes (table 3.1) and their 5.0 reason code equivalents.
constexpr reason_code v3_return_codes[] = {
    reason_code::success,
    reason_code::unsupported_protocol_version,
    reason_code::client_identifier_not_valid,
    reason_code::server_unavailable,
    reason_code::bad_user_name_or_password,
    reason_code::not_authorized,
};

// The nearest 3.1.1 return code for a 5.0 reason, so a server written against
// 5.0 reason codes can refuse a 3.1.1 client meaningfully.
std::uint8_t to_v3_return_code(reason_code reason) {
  for (std::uint8_t i = 0; i < std::size(v3_return_codes); ++i)
    if (v3_return_codes[i] == reason) return i;
  switch (reason) {
    case reason_code::bad_authentication_method: return 4;
    case reason_code::banned: return 5;
    default: return 3;  // server unavailable
  }
}

}  // namespace

connack decode_connack(byte_reader& r, protocol_version v) {
  connack p;
  const std::uint8_t flags = r.u8();
  if (!r.failed() && (flags & 0xFE)) r.fail(error::connack_reserved_flags_set);
  p.session_present = flags & 0x01;
  const std::uint8_t code = r.u8();
  if (r.failed()) return p;
  if (is_v5(v)) {
    p.reason = static_cast<reason_code>(code);
    if (!reason_allowed(packet_type::connack, p.reason)) r.fail(error::invalid_reason_code);
    p.props = read_properties(r, property_scope::connack);
  } else if (code < std::size(v3_return_codes)) {
    p.reason = v3_return_codes[code];
  } else {
    r.fail(error::invalid_reason_code);
  }
  // [MQTT-3.2.2-4] (3.1.1), [MQTT-3.2.2-6] (5.0)
  if (!r.failed() && p.session_present && is_failure(p.reason)) r.fail(error::session_present_on_failure);
  return p;
}

void encode_connack(const connack& p, protocol_version v, byte_writer& w) {
  w.u8(p.session_present ? 1 : 0);
  if (is_v5(v)) {
    w.u8(static_cast<std::uint8_t>(p.reason));
    write_properties(w, p.props);
  } else {
    w.u8(to_v3_return_code(p.reason));
  }
}

}  // namespace mqtt::detail
