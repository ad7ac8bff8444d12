// Decoding whole packets from bytes and encoding them back. No I/O: the
// framer (framer.hpp) cuts a byte stream into frames; this turns a frame into
// a packet value and a value into bytes.
#pragma once

#include <cstdint>
#include <span>

#include "mqtt/byte_writer.hpp"
#include "mqtt/error.hpp"
#include "mqtt/packets.hpp"

namespace mqtt {

// Decodes one complete packet: `first_byte` is byte 1 of the fixed header,
// `body` the variable header and payload (exactly remaining-length bytes).
// `version` is the connection's protocol version; CONNECT carries its own.
result<packet> decode(std::uint8_t first_byte, std::span<const std::uint8_t> body, protocol_version version);

// A PUBLISH's header read in place (publish_header): what a relay needs of
// each message, without a copy or an allocation (issue 14). `first_byte`
// must be a PUBLISH's (is_publish); the same frames fail as with decode().
result<publish_header> decode_publish_header(std::uint8_t first_byte, std::span<const std::uint8_t> body,
                                             protocol_version version);
constexpr bool is_publish(std::uint8_t first_byte) { return first_byte >> 4 == 3; }

// Decodes a buffer that holds exactly one packet, fixed header included.
result<packet> decode(std::span<const std::uint8_t> frame, protocol_version version);

// Encodes a packet in the wire format of `version` (CONNECT uses its own
// version field). Fails only for fields that cannot be represented.
result<bytes> encode(const packet& p, protocol_version version);
// The same, into `reuse`'s memory (its contents are dropped): a caller that
// keeps the vectors of packets it has handed over encodes without allocating.
result<bytes> encode(const packet& p, protocol_version version, bytes&& reuse);
// The capacity up to which an encoded packet's vector is worth keeping for
// reuse: what encode() reserves for a packet of the usual size.
std::size_t reusable_capacity();

// Whether a 5.0 packet of this type may carry this reason code (section 2.4).
bool is_valid_reason(packet_type type, reason_code code);

// The protocol version a CONNECT asks for, read without decoding the rest,
// so that a server can answer an unsupported one with the right CONNACK.
std::optional<protocol_version> peek_connect_version(std::span<const std::uint8_t> body);

}  // namespace mqtt
