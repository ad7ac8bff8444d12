#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "net/websocket_frames.hpp"

using namespace proxy::websocket_frames;

namespace {

using bytes = std::vector<std::uint8_t>;

std::size_t n_reserve(std::size_t payload) { return payload + 14; }

// A client frame as a browser sends it: masked with `key`.
bytes client_frame(std::uint8_t first, const std::string& payload, std::array<std::uint8_t, 4> key = {1, 2, 3, 4},
                   int forced_length_bytes = 0) {
  bytes out;
  out.reserve(n_reserve(payload.size()));
  out.push_back(first);
  const auto n = payload.size();
  if ((n < 126 && forced_length_bytes == 0) || forced_length_bytes == 1) {
    out.push_back(static_cast<std::uint8_t>(0x80 | n));
  } else if ((n <= 0xFFFF && forced_length_bytes == 0) || forced_length_bytes == 2) {
    out.push_back(0x80 | 126);
    out.push_back(static_cast<std::uint8_t>(n >> 8));
    out.push_back(static_cast<std::uint8_t>(n));
  } else {
    out.push_back(0x80 | 127);
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(static_cast<std::uint64_t>(n) >> (8 * i)));
  }
  out.insert(out.end(), key.begin(), key.end());
  for (std::size_t i = 0; i < n; ++i) out.push_back(static_cast<std::uint8_t>(payload[i]) ^ key[i % 4]);
  return out;
}

bytes concat(std::initializer_list<bytes> parts) {
  bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

struct run {
  std::string data;
  bool ping = false, close = false;
  std::uint16_t fail = 0;
};

// Decodes `input` fed in pieces of `step` bytes, as reads would deliver it.
run decode_in_steps(frame_decoder& decoder, bytes input, std::size_t step) {
  run out;
  for (std::size_t at = 0; at < input.size() && !out.close && out.fail == 0; at += step) {
    const auto n = std::min(step, input.size() - at);
    const auto found = decoder.decode({input.data() + at, n});
    out.data.append(reinterpret_cast<const char*>(input.data() + at), found.data);
    out.ping = out.ping || found.ping;
    out.close = found.close;
    out.fail = found.fail;
  }
  return out;
}

run decode_all(bytes input, std::size_t step = 1 << 20) {
  frame_decoder decoder;
  return decode_in_steps(decoder, std::move(input), step);
}

}  // namespace

TEST_SUITE("websocket frames") {
  TEST_CASE("binary frames are unmasked in place, whatever the read boundaries") {
    const std::string big(70000, 'x');  // 64-bit length
    const std::string medium(300, 'm');  // 16-bit length
    const auto input = concat({client_frame(0x82, "hello"), client_frame(0x82, medium, {9, 8, 7, 6}),
                               client_frame(0x82, big, {0xff, 0, 0x55, 0xaa}), client_frame(0x82, "")});
    for (std::size_t step : {1, 2, 3, 7, 13, 100, 4096, 1 << 20}) {
      CAPTURE(step);
      const auto r = decode_all(input, step);
      CHECK(r.fail == 0);
      CHECK_FALSE(r.close);
      CHECK(r.data == "hello" + medium + big);
    }
  }

  TEST_CASE("a fragmented message with a ping between fragments") {
    const auto input = concat({client_frame(0x02, "ab"), client_frame(0x89, "are you there"), client_frame(0x00, "cd"),
                               client_frame(0x80, "ef")});
    for (std::size_t step : {1, 5, 1 << 20}) {
      frame_decoder decoder;
      const auto r = decode_in_steps(decoder, input, step);
      CHECK(r.data == "abcdef");
      CHECK(r.ping);
      CHECK(decoder.take_ping() == "are you there");
      CHECK(decoder.take_ping().empty());  // answered: nothing held
      CHECK(r.fail == 0);
    }
  }

  TEST_CASE("pongs are ignored; a close frame ends decoding and carries its code") {
    frame_decoder decoder;
    const auto r = decode_in_steps(decoder, concat({client_frame(0x8A, "late pong"), client_frame(0x82, "data"),
                                                    client_frame(0x88, std::string("\x03\xe9" "bye", 5)),
                                                    client_frame(0x82, "after close")}),
                                   1 << 20);
    CHECK(r.data == "data");
    CHECK(r.close);
    CHECK(decoder.closed());
    CHECK(decoder.peer_close_code() == 1001);
    uint8_t more[] = {0x82, 0x80, 0, 0, 0, 0};
    CHECK(decoder.decode(more).data == 0);  // nothing is decoded after the close
  }

  TEST_CASE("a close frame without a code") {
    frame_decoder decoder;
    const auto r = decode_in_steps(decoder, client_frame(0x88, ""), 1);
    CHECK(r.close);
    CHECK(decoder.peer_close_code() == no_status);
  }

  TEST_CASE("violations fail with 1002, text with 1003") {
    bytes unmasked{0x82, 0x02, 'h', 'i'};
    CHECK(decode_all(unmasked).fail == protocol_error);
    CHECK(decode_all(client_frame(0x81, "MQTT as text")).fail == unsupported_data);  // [MQTT-6.0.0-1]
    CHECK(decode_all(client_frame(0xC2, "rsv1")).fail == protocol_error);
    CHECK(decode_all(client_frame(0xA2, "rsv2")).fail == protocol_error);
    CHECK(decode_all(client_frame(0x83, "op 3")).fail == protocol_error);
    CHECK(decode_all(client_frame(0x8B, "op B")).fail == protocol_error);
    CHECK(decode_all(client_frame(0x09, "fragmented ping")).fail == protocol_error);
    CHECK(decode_all(client_frame(0x89, std::string(126, 'p'))).fail == protocol_error);  // control > 125
    CHECK(decode_all(client_frame(0x80, "continuation of nothing")).fail == protocol_error);
    CHECK(decode_all(concat({client_frame(0x02, "a"), client_frame(0x82, "new message mid-way")})).fail == protocol_error);
    CHECK(decode_all(client_frame(0x82, "short", {1, 2, 3, 4}, 2)).fail == protocol_error);   // non-minimal 16-bit
    CHECK(decode_all(client_frame(0x82, std::string(200, 'y'), {1, 2, 3, 4}, 8)).fail == protocol_error);
    CHECK(decode_all(client_frame(0x88, "\x03")).fail == protocol_error);  // 1-byte close payload
    CHECK(decode_all(client_frame(0x88, std::string("\x03\xed", 2))).fail == protocol_error);  // 1005 on the wire
    CHECK(decode_all(client_frame(0x88, std::string("\x03\xe8", 2))).close);
    // A close reason must be UTF-8 [RFC 6455 8.1]; U+0000 is fine there, unlike in MQTT.
    CHECK(decode_all(client_frame(0x88, std::string("\x03\xe8" "bye \xc3\xa9 \xf0\x9f\x98\x80", 13))).close);
    CHECK(decode_all(client_frame(0x88, std::string("\x03\xe8\0", 3))).close);
    CHECK(decode_all(client_frame(0x88, std::string("\x03\xe8\xff", 3))).fail == invalid_payload);
    CHECK(decode_all(client_frame(0x88, std::string("\x03\xe8\xc0\xaf", 4))).fail == invalid_payload);  // overlong
    CHECK(decode_all(client_frame(0x88, std::string("\x03\xe8\xed\xa0\x80", 5))).fail == invalid_payload);  // surrogate
    CHECK(decode_all(client_frame(0x88, std::string("\x03\xe8\xf4\x90\x80\x80", 6))).fail == invalid_payload);
    CHECK(decode_all(client_frame(0x88, std::string("\x03\xe8\xe2\x82", 4))).fail == invalid_payload);  // cut short
    bytes huge{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};  // 64-bit length with the top bit set
    CHECK(decode_all(huge).fail == protocol_error);
  }

  TEST_CASE("a violation is found from the first two bytes, without the rest") {
    frame_decoder decoder;
    bytes start{0x82, 0x7F};  // unmasked, 64-bit length to come
    CHECK(decoder.decode(start).fail == protocol_error);
    CHECK(decoder.failed());
  }

  TEST_CASE("data before a violation in the same read is still reported in place") {
    auto input = concat({client_frame(0x82, "ok"), client_frame(0x81, "text")});
    frame_decoder decoder;
    const auto found = decoder.decode(input);
    CHECK(found.data == 2);
    CHECK(found.fail == unsupported_data);
  }

  TEST_CASE("server frames: unmasked headers of the shortest length") {
    std::array<std::uint8_t, 10> h{};
    CHECK(encode_header(h, opcode::binary, 5) == 2);
    CHECK(h[0] == 0x82);
    CHECK(h[1] == 5);
    CHECK(encode_header(h, opcode::binary, 125) == 2);
    CHECK(encode_header(h, opcode::binary, 126) == 4);
    CHECK((h[1] == 126 && h[2] == 0 && h[3] == 126));
    CHECK(encode_header(h, opcode::binary, 65535) == 4);
    CHECK(encode_header(h, opcode::binary, 65536) == 10);
    CHECK((h[1] == 127 && h[7] == 1 && h[8] == 0 && h[9] == 0));
    CHECK(close_frame(1000) == std::string("\x88\x02\x03\xe8", 4));
    CHECK(control_frame(opcode::pong, "hi") == std::string("\x8a\x02hi", 4));
    CHECK(control_frame(opcode::pong, std::string(200, 'z')).size() == 127);
  }

  TEST_CASE("Sec-WebSocket-Accept: the example of RFC 6455 1.3") {
    CHECK(accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    CHECK(valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
    CHECK_FALSE(valid_key(""));
    CHECK_FALSE(valid_key("dGhlIHNhbXBsZSBub25jZQ="));
    CHECK_FALSE(valid_key("dGhlIHNhbXBsZSBub25jZ!=="));
  }
}
