#include "mqtt/codec.hpp"

#include <algorithm>
#include <array>
#include <initializer_list>

#include "mqtt/packet/packet_codecs.hpp"

namespace mqtt {

namespace detail {

bool reason_allowed(packet_type type, reason_code code) {
  using R = reason_code;
  auto in = [code](std::initializer_list<R> allowed) {
    return std::find(allowed.begin(), allowed.end(), code) != allowed.end();
  };
  switch (type) {
    case packet_type::connack:  // [MQTT-3.2.2.2]
      return in({R::success, R::unspecified_error, R::malformed_packet, R::protocol_error,
                 R::implementation_specific_error, R::unsupported_protocol_version, R::client_identifier_not_valid,
                 R::bad_user_name_or_password, R::not_authorized, R::server_unavailable, R::server_busy, R::banned,
                 R::bad_authentication_method, R::topic_name_invalid, R::packet_too_large, R::quota_exceeded,
                 R::payload_format_invalid, R::retain_not_supported, R::qos_not_supported, R::use_another_server,
                 R::server_moved, R::connection_rate_exceeded});
    case packet_type::puback:  // [MQTT-3.4.2.1], [MQTT-3.5.2.1]
    case packet_type::pubrec:
      return in({R::success, R::no_matching_subscribers, R::unspecified_error, R::implementation_specific_error,
                 R::not_authorized, R::topic_name_invalid, R::packet_identifier_in_use, R::quota_exceeded,
                 R::payload_format_invalid});
    case packet_type::pubrel:  // [MQTT-3.6.2.1], [MQTT-3.7.2.1]
    case packet_type::pubcomp: return in({R::success, R::packet_identifier_not_found});
    case packet_type::suback:  // [MQTT-3.9.3]
      return in({R::success, R::granted_qos_1, R::granted_qos_2, R::unspecified_error,
                 R::implementation_specific_error, R::not_authorized, R::topic_filter_invalid,
                 R::packet_identifier_in_use, R::quota_exceeded, R::shared_subscriptions_not_supported,
                 R::subscription_identifiers_not_supported, R::wildcard_subscriptions_not_supported});
    case packet_type::unsuback:  // [MQTT-3.11.3]
      return in({R::success, R::no_subscription_existed, R::unspecified_error, R::implementation_specific_error,
                 R::not_authorized, R::topic_filter_invalid, R::packet_identifier_in_use});
    case packet_type::disconnect:  // [MQTT-3.14.2.1]
      return code == R::success || code == R::disconnect_with_will ||
             (is_failure(code) && code != R::unsupported_protocol_version &&
              code != R::client_identifier_not_valid && code != R::bad_user_name_or_password &&
              code != R::server_unavailable && code != R::banned && code != R::bad_authentication_method &&
              code != R::packet_identifier_in_use && code != R::packet_identifier_not_found &&
              static_cast<std::uint8_t>(code) <= 0xA2);
    case packet_type::auth:  // [MQTT-3.15.2.1]
      return in({R::success, R::continue_authentication, R::reauthenticate});
    default: return false;
  }
}

}  // namespace detail

namespace {

using namespace detail;

// Flags every packet type but PUBLISH must carry [MQTT-2.2.2-1] [MQTT-2.2.2-2].
constexpr std::uint8_t required_flags(packet_type type) {
  switch (type) {
    case packet_type::pubrel:
    case packet_type::subscribe:
    case packet_type::unsubscribe: return 0x02;
    default: return 0x00;
  }
}

bool valid_header(packet_type type, std::uint8_t flags, byte_reader& r) {
  if (type != packet_type::publish) {
    if (flags != required_flags(type)) r.fail(error::invalid_fixed_header_flags);
    return !r.failed();
  }
  const std::uint8_t qos_bits = (flags >> 1) & 0x03;
  if (qos_bits == 3) r.fail(error::invalid_qos);                   // [MQTT-3.3.1-4]
  else if (qos_bits == 0 && (flags & 0x08)) r.fail(error::dup_with_qos_0);  // [MQTT-3.3.1-2]
  return !r.failed();
}

packet decode_body(packet_type type, std::uint8_t flags, byte_reader& r, protocol_version v) {
  switch (type) {
    case packet_type::connect: return decode_connect(r);
    case packet_type::connack: return decode_connack(r, v);
    case packet_type::publish: return decode_publish(r, flags, v);
    case packet_type::puback: return decode_publish_response<packet_type::puback>(r, v);
    case packet_type::pubrec: return decode_publish_response<packet_type::pubrec>(r, v);
    case packet_type::pubrel: return decode_publish_response<packet_type::pubrel>(r, v);
    case packet_type::pubcomp: return decode_publish_response<packet_type::pubcomp>(r, v);
    case packet_type::subscribe: return decode_subscribe(r, v);
    case packet_type::suback: return decode_suback(r, v);
    case packet_type::unsubscribe: return decode_unsubscribe(r, v);
    case packet_type::unsuback: return decode_unsuback(r, v);
    case packet_type::pingreq: return pingreq{};
    case packet_type::pingresp: return pingresp{};
    case packet_type::disconnect: return decode_disconnect(r, v);
    case packet_type::auth:
      if (!is_v5(v)) r.fail(error::packet_not_in_version);
      return decode_auth(r);
  }
  r.fail(error::reserved_packet_type);
  return pingreq{};
}

struct body_encoder {
  protocol_version v;
  byte_writer& w;
  void operator()(const connect& p) const { encode_connect(p, w); }
  void operator()(const connack& p) const { encode_connack(p, v, w); }
  void operator()(const publish& p) const { encode_publish(p, v, w); }
  template <packet_type T>
  void operator()(const publish_response<T>& p) const { encode_publish_response(p, v, w); }
  void operator()(const subscribe& p) const { encode_subscribe(p, v, w); }
  void operator()(const suback& p) const { encode_suback(p, v, w); }
  void operator()(const unsubscribe& p) const { encode_unsubscribe(p, v, w); }
  void operator()(const unsuback& p) const { encode_unsuback(p, v, w); }
  void operator()(const pingreq&) const {}
  void operator()(const pingresp&) const {}
  void operator()(const disconnect& p) const { encode_disconnect(p, v, w); }
  void operator()(const auth& p) const {
    if (!is_v5(v)) w.fail(error::packet_not_in_version);
    encode_auth(p, w);
  }
};

}  // namespace

bool is_valid_reason(packet_type type, reason_code code) { return detail::reason_allowed(type, code); }

packet_type type_of(const packet& p) {
  // The variant's alternatives are declared in packet type order, CONNECT first.
  return static_cast<packet_type>(p.index() + 1);
}

result<packet> decode(std::uint8_t first_byte, std::span<const std::uint8_t> body, protocol_version version) {
  byte_reader r(body);
  const std::uint8_t type_bits = first_byte >> 4;
  if (type_bits == 0) return error::reserved_packet_type;
  const auto type = static_cast<packet_type>(type_bits);
  if (!valid_header(type, first_byte & 0x0F, r)) return r.error_code();
  packet p = decode_body(type, first_byte & 0x0F, r, version);
  if (!r.failed() && !r.empty()) r.fail(error::trailing_bytes);
  if (r.failed()) return r.error_code();
  return p;
}

result<publish_header> decode_publish_header(std::uint8_t first_byte, std::span<const std::uint8_t> body,
                                             protocol_version version) {
  byte_reader r(body);
  if (!is_publish(first_byte)) return error::reserved_packet_type;  // a caller's mistake, refused as a type
  if (!valid_header(packet_type::publish, first_byte & 0x0F, r)) return r.error_code();
  auto header = read_publish_header(r, first_byte & 0x0F, version);
  if (r.failed()) return r.error_code();
  return header;  // the payload is opaque: nothing after the header to check
}

result<packet> decode(std::span<const std::uint8_t> frame, protocol_version version) {
  if (frame.empty()) return error::truncated;
  byte_reader header(frame.subspan(1));
  const std::uint32_t length = header.variable_int();
  if (header.failed()) return header.error_code();
  const std::size_t header_size = 1 + variable_int_size(length);
  if (frame.size() < header_size + length) return error::truncated;
  if (frame.size() > header_size + length) return error::trailing_bytes;
  return decode(frame[0], frame.subspan(header_size), version);
}

namespace {

// The fixed header [MQTT-2.2] written into the room left before the body,
// and the room it did not need dropped (a move of the body by 0-3 bytes).
constexpr std::size_t header_room = 5;  // the longest fixed header
constexpr std::size_t usual_body = 251;

bytes place_fixed_header(bytes packet, std::uint8_t first_byte, std::uint32_t body_size) {
  std::array<std::uint8_t, 5> header{first_byte};
  std::size_t size = 1;
  do {  // variable byte integer [MQTT-1.5.5]; body_size <= max_variable_int
    std::uint8_t byte = body_size & 0x7F;
    body_size >>= 7;
    if (body_size > 0) byte |= 0x80;
    header[size++] = byte;
  } while (body_size > 0);
  const std::size_t unused = header_room - size;
  std::copy(header.begin(), header.begin() + static_cast<std::ptrdiff_t>(size),
            packet.begin() + static_cast<std::ptrdiff_t>(unused));
  packet.erase(packet.begin(), packet.begin() + static_cast<std::ptrdiff_t>(unused));
  // A body that outgrew the first reservation was grown by doubling: the copy
  // a queue keeps should hold no more than it counts (the old exact copy did not).
  if (packet.capacity() > header_room + usual_body) packet.shrink_to_fit();
  return packet;
}

}  // namespace

// The body is written after room for the longest fixed header (5 bytes),
// and the header goes in front of it: one allocation for a packet up to
// `usual_body` bytes. A body grown from empty and then copied behind its header
// took 5-8 allocations per CONNECT (issue 14).
result<bytes> encode(const packet& p, protocol_version version) { return encode(p, version, bytes{}); }

std::size_t reusable_capacity() { return header_room + usual_body; }

result<bytes> encode(const packet& p, protocol_version version, bytes&& reuse) {
  byte_writer out;
  out.buffer().swap(reuse);
  out.buffer().reserve(header_room + usual_body);
  // assign, not resize: resize's out-of-line zero-fill was ~100 instructions
  // for these 5 bytes, three packets per new session (issue 14).
  out.buffer().assign(header_room, 0);
  const auto* as_connect = std::get_if<connect>(&p);
  std::visit(body_encoder{as_connect ? as_connect->version : version, out}, p);
  if (out.failed()) return out.error_code();
  const std::size_t body_size = out.buffer().size() - header_room;
  if (body_size > max_variable_int) return error::packet_too_large;

  const auto type = type_of(p);
  const auto* as_publish = std::get_if<publish>(&p);
  const std::uint8_t flags = as_publish ? publish_flags(*as_publish) : required_flags(type);
  const auto first_byte = static_cast<std::uint8_t>(static_cast<std::uint8_t>(type) << 4 | flags);
  return place_fixed_header(std::move(out.buffer()), first_byte, static_cast<std::uint32_t>(body_size));
}

std::optional<protocol_version> peek_connect_version(std::span<const std::uint8_t> body) {
  byte_reader r(body);
  return detail::peek_version(r);
}

}  // namespace mqtt
