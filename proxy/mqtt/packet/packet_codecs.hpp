// Per-packet decoders and encoders, one source file per packet family in the
// manner of Mosquitto's handle_*.c. Decoders read the body and leave any error
// in the reader; encoders write the body and leave any error in the writer.
#pragma once

#include "mqtt/byte_reader.hpp"
#include "mqtt/byte_writer.hpp"
#include "mqtt/packets.hpp"

namespace mqtt::detail {

inline bool is_v5(protocol_version v) { return v == protocol_version::v5; }

// Packet identifiers that a packet carries must be non-zero [MQTT-2.3.1-1].
inline std::uint16_t read_packet_id(byte_reader& r) {
  const std::uint16_t id = r.u16();
  if (!r.failed() && id == 0) r.fail(error::packet_id_zero);
  return id;
}

bool reason_allowed(packet_type type, reason_code code);

// Reads protocol name and level; fails on an unknown name or level.
std::optional<protocol_version> peek_version(byte_reader& r);
connect decode_connect(byte_reader& r);
void encode_connect(const connect& p, byte_writer& w);

connack decode_connack(byte_reader& r, protocol_version v);
void encode_connack(const connack& p, protocol_version v, byte_writer& w);

publish decode_publish(byte_reader& r, std::uint8_t flags, protocol_version v);
// A PUBLISH's variable header, checked; the reader is left at the payload.
publish_header read_publish_header(byte_reader& r, std::uint8_t flags, protocol_version v);
void encode_publish(const publish& p, protocol_version v, byte_writer& w);
std::uint8_t publish_flags(const publish& p);

template <packet_type Type>
publish_response<Type> decode_publish_response(byte_reader& r, protocol_version v);
template <packet_type Type>
void encode_publish_response(const publish_response<Type>& p, protocol_version v, byte_writer& w);

subscribe decode_subscribe(byte_reader& r, protocol_version v);
void encode_subscribe(const subscribe& p, protocol_version v, byte_writer& w);
suback decode_suback(byte_reader& r, protocol_version v);
void encode_suback(const suback& p, protocol_version v, byte_writer& w);

unsubscribe decode_unsubscribe(byte_reader& r, protocol_version v);
void encode_unsubscribe(const unsubscribe& p, protocol_version v, byte_writer& w);
unsuback decode_unsuback(byte_reader& r, protocol_version v);
void encode_unsuback(const unsuback& p, protocol_version v, byte_writer& w);

disconnect decode_disconnect(byte_reader& r, protocol_version v);
void encode_disconnect(const disconnect& p, protocol_version v, byte_writer& w);
auth decode_auth(byte_reader& r);
void encode_auth(const auth& p, byte_writer& w);

}  // namespace mqtt::detail
