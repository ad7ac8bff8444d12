// libFuzzer target over the framer and the decoder. The first input byte
// picks the protocol version; the rest is a client byte stream cut into frames.
// Whatever decodes must encode, and decode again to the same packet: a codec
// that disagrees with itself would let a proxy forward something other than
// what it checked. A PUBLISH's in-place header (what the relay reads) must
// accept and refuse exactly what decode() does, and read the same fields.
#include <cstdlib>

#include "mqtt/codec.hpp"
#include "mqtt/framer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const auto version = (data[0] & 1) ? mqtt::protocol_version::v5 : mqtt::protocol_version::v3_1_1;
  mqtt::framer framer(64 * 1024);
  framer.feed({data + 1, size - 1});
  for (;;) {
    auto next = framer.next();
    if (!next || !*next) return 0;
    const auto& frame = **next;
    auto packet = mqtt::decode(frame.first_byte, frame.body, version);
    if (mqtt::is_publish(frame.first_byte)) {
      const auto header = mqtt::decode_publish_header(frame.first_byte, frame.body, version);
      if (header.has_value() != packet.has_value()) std::abort();
      if (!header && header.error() != packet.error()) std::abort();
      if (header && !(mqtt::header_of(std::get<mqtt::publish>(*packet)) == *header)) std::abort();
    }
    if (!packet) continue;
    auto wire = mqtt::encode(*packet, version);
    if (!wire) std::abort();
    auto again = mqtt::decode(*wire, version);
    if (!again || !(*again == *packet)) std::abort();
  }
}
