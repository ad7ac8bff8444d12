#include "test_helpers.hpp"

using namespace test;
using mqtt::error;

TEST_SUITE("PUBLISH") {
  TEST_CASE("3.1.1 QoS 0 PUBLISH") {
    byte_builder b;
    b({0x30, 0}).str("a/b")("hello");
    b.out[1] = static_cast<std::uint8_t>(b.out.size() - 2);
    auto p = decode_exact<mqtt::publish>(b.out, v3);
    CHECK(p.topic == "a/b");
    CHECK(p.payload == "hello");
    CHECK(p.qos == mqtt::qos::at_most_once);
    CHECK(p.packet_id == 0);
  }

  // The relay's in-place reading must accept and refuse exactly what decode()
  // does, and read the same fields: a frame it let through that decode()
  // refuses would reach the broker unchecked.
  TEST_CASE("decode_publish_header: the fields decode() reads, and the same refusals") {
    auto frame = [](std::uint8_t first, std::initializer_list<bytes> parts) {
      bytes out{first, 0};
      for (const auto& part : parts) out.insert(out.end(), part.begin(), part.end());
      out[1] = static_cast<std::uint8_t>(out.size() - 2);
      return out;
    };
    auto str = [](std::string_view text) {
      bytes out{static_cast<std::uint8_t>(text.size() >> 8), static_cast<std::uint8_t>(text.size() & 0xFF)};
      out.insert(out.end(), text.begin(), text.end());
      return out;
    };
    struct sample {
      bytes wire;
      mqtt::protocol_version version;
    };
    const std::vector<sample> samples{
        {frame(0x30, {str("a/b"), bytes{'h', 'i'}}), v3},                          // QoS 0
        {frame(0x33, {str("private/user0/bench"), bytes{0x00, 0x07}, bytes{'x'}}), v3},  // QoS 1, retain
        {frame(0x3C, {str("t"), bytes{0x12, 0x34}}), v3},                           // DUP, QoS 2, no payload
        {frame(0x32, {str("req"), bytes{0x00, 0x01}, bytes{0x05, 0x01, 0x01, 0x23, 0x00, 0x04}, bytes{'p'}}),
         v5},                                                                      // payload format, topic alias 4
        {frame(0x30, {str(""), bytes{0x03, 0x23, 0x00, 0x04}}), v5},               // alias instead of a name
        {frame(0x30, {str(""), bytes{'x'}}), v3},                                  // no topic name
        {frame(0x30, {str(""), bytes{0x00}}), v5},                                 // neither name nor alias
        {frame(0x30, {str("a/+"), bytes{'x'}}), v3},                               // wildcard in a name
        {frame(0x30, {str("a/#")}), v5},
        {frame(0x36, {str("t"), bytes{0x00, 0x01}}), v3},                          // QoS 3
        {frame(0x38, {str("t")}), v3},                                             // DUP with QoS 0
        {frame(0x32, {str("t"), bytes{0x00, 0x00}}), v3},                          // packet id 0
        {frame(0x30, {bytes{0x00, 0x02, 0xC0, 0x80}}), v3},                        // overlong UTF-8
        {frame(0x30, {bytes{0x00, 0x01, 0x00}}), v3},                              // U+0000 in a name
        {frame(0x30, {str("t"), bytes{0x01, 0x7F}}), v5},                          // unknown property
        {frame(0x30, {str("t"), bytes{0x02, 0x01, 0x01}, bytes{'x'}}), v5},        // property length past its end
        {frame(0x30, {str("t"), bytes{0x04, 0x0B, 0x01, 0x0B, 0x02}}), v5},        // subscription ids (decode accepts)
    };
    int accepted = 0;
    int refused = 0;
    for (const auto& s : samples) {
      // Every sample, and every cut of it (a remaining length that ends early).
      for (std::size_t end = 2; end <= s.wire.size(); ++end) {
        CAPTURE(end);
        const std::span<const std::uint8_t> body(s.wire.data() + 2, end - 2);
        const auto full = mqtt::decode(s.wire[0], body, s.version);
        const auto header = mqtt::decode_publish_header(s.wire[0], body, s.version);
        REQUIRE(full.has_value() == header.has_value());
        if (!full) {
          CHECK(full.error() == header.error());
          ++refused;
          continue;
        }
        ++accepted;
        CHECK((*header == mqtt::header_of(std::get<mqtt::publish>(*full))));
        // The topic is the frame's own bytes, not a copy.
        if (!header->topic.empty()) {
          CHECK(reinterpret_cast<const std::uint8_t*>(header->topic.data()) >= body.data());
          CHECK(reinterpret_cast<const std::uint8_t*>(header->topic.data()) < body.data() + body.size());
        }
      }
    }
    CHECK(accepted >= 8);
    CHECK(refused >= 20);
    // Only a PUBLISH is read this way.
    const bytes puback{0x40, 0x02, 0x00, 0x07};
    CHECK_FALSE(mqtt::decode_publish_header(puback[0], std::span(puback).subspan(2), v3).has_value());
    CHECK(mqtt::is_publish(0x30));
    CHECK(mqtt::is_publish(0x3D));
    CHECK_FALSE(mqtt::is_publish(0x40));
    CHECK_FALSE(mqtt::is_publish(0x20));
  }

  TEST_CASE("3.1.1 QoS 1 retained and QoS 2 duplicate") {
    byte_builder q1;
    q1({0x33, 0}).str("t")({0x00, 0x07})("x");  // QoS 1, retain
    q1.out[1] = static_cast<std::uint8_t>(q1.out.size() - 2);
    auto p1 = decode_exact<mqtt::publish>(q1.out, v3);
    CHECK(p1.qos == mqtt::qos::at_least_once);
    CHECK(p1.retain);
    CHECK(p1.packet_id == 7);

    byte_builder q2;
    q2({0x3C, 0}).str("t")({0x12, 0x34});  // DUP, QoS 2, empty payload
    q2.out[1] = static_cast<std::uint8_t>(q2.out.size() - 2);
    auto p2 = decode_exact<mqtt::publish>(q2.out, v3);
    CHECK(p2.qos == mqtt::qos::exactly_once);
    CHECK(p2.dup);
    CHECK(p2.packet_id == 0x1234);
    CHECK(p2.payload.empty());
  }

  TEST_CASE("5.0 PUBLISH with properties") {
    byte_builder b;
    b({0x32, 0}).str("req")({0x00, 0x01})
        ({0})                                    // property length, patched
        ({0x01, 0x01})                           // payload format: UTF-8
        ({0x02, 0x00, 0x00, 0x00, 0x3C})         // message expiry 60
        ({0x08}).str("resp")                     // response topic
        ({0x09}).str("\x01\x02")                 // correlation data
        ({0x26}).str("k").str("v")               // user property
        ({0x26}).str("k").str("w")               // user property again: allowed
        ({0x0B, 0x81, 0x01})                     // subscription identifier 129
        ({0x03}).str("text/plain")("payload");   // content type, then payload
    b.out[9] = static_cast<std::uint8_t>(b.out.size() - 10 - 7);  // properties end where "payload" begins
    b.out[1] = static_cast<std::uint8_t>(b.out.size() - 2);
    auto p = decode_exact<mqtt::publish>(b.out, v5);
    CHECK(p.payload == "payload");
    CHECK(p.props.number(mqtt::property_id::message_expiry_interval) == 60u);
    CHECK(p.props.text(mqtt::property_id::response_topic) == "resp");
    CHECK(p.props.user_properties().size() == 2);
    CHECK(p.props.numbers(mqtt::property_id::subscription_identifier) == std::vector<std::uint32_t>{129});
  }

  TEST_CASE("5.0 topic alias may replace the topic name [MQTT-3.3.2-1]") {
    byte_builder b;
    b({0x30, 0}).str("")({3, 0x23, 0x00, 0x05})("x");
    b.out[1] = static_cast<std::uint8_t>(b.out.size() - 2);
    auto p = decode_exact<mqtt::publish>(b.out, v5);
    CHECK(p.topic.empty());
    CHECK(p.props.number(mqtt::property_id::topic_alias) == 5u);
  }

  TEST_CASE("empty topic without an alias") {
    byte_builder v3_packet;
    v3_packet({0x30, 0}).str("")("x");
    v3_packet.out[1] = static_cast<std::uint8_t>(v3_packet.out.size() - 2);
    CHECK(decode_error(v3_packet.out, v3) == error::missing_topic_name);
    byte_builder v5_packet;
    v5_packet({0x30, 0}).str("")({0})("x");
    v5_packet.out[1] = static_cast<std::uint8_t>(v5_packet.out.size() - 2);
    CHECK(decode_error(v5_packet.out, v5) == error::missing_topic_name);
  }

  TEST_CASE("topic alias 0 is a protocol error [MQTT-3.3.2-8]") {
    byte_builder b;
    b({0x30, 0}).str("t")({3, 0x23, 0x00, 0x00});
    b.out[1] = static_cast<std::uint8_t>(b.out.size() - 2);
    CHECK(decode_error(b.out, v5) == error::invalid_property_value);
  }

  TEST_CASE("wildcards in a topic name [MQTT-3.3.2-2]") {
    for (auto topic : {"a/+", "#", "a/#/b", "sport+"}) {
      byte_builder b;
      b({0x30, 0}).str(topic);
      b.out[1] = static_cast<std::uint8_t>(b.out.size() - 2);
      CHECK(decode_error(b.out, v3) == error::invalid_topic_name);
    }
  }

  TEST_CASE("QoS 3 [MQTT-3.3.1-4] and DUP on QoS 0 [MQTT-3.3.1-2]") {
    CHECK(decode_error({0x36, 5, 0, 1, 't', 0, 1}, v3) == error::invalid_qos);
    CHECK(decode_error({0x38, 3, 0, 1, 't'}, v3) == error::dup_with_qos_0);
  }

  TEST_CASE("packet identifier 0 [MQTT-2.3.1-1]") {
    CHECK(decode_error({0x32, 5, 0, 1, 't', 0, 0}, v3) == error::packet_id_zero);
  }

  TEST_CASE("invalid UTF-8 and U+0000 in a topic [MQTT-1.5.4-1] [MQTT-1.5.4-2]") {
    CHECK(decode_error({0x30, 4, 0, 2, 0xC0, 0x80}, v3) == error::invalid_utf8);  // overlong NUL
    CHECK(decode_error({0x30, 4, 0, 2, 'a', 0x00}, v3) == error::utf8_contains_null);
    CHECK(decode_error({0x30, 5, 0, 3, 0xED, 0xA0, 0x80}, v3) == error::invalid_utf8);  // surrogate
  }

  TEST_CASE("string length beyond the packet") {
    CHECK(decode_error({0x30, 3, 0, 5, 'a'}, v3) == error::truncated);
  }

  TEST_CASE("properties not allowed in PUBLISH") {
    byte_builder b;
    b({0x30, 0}).str("t")({5, 0x11, 0, 0, 0, 1});  // session expiry
    b.out[1] = static_cast<std::uint8_t>(b.out.size() - 2);
    CHECK(decode_error(b.out, v5) == error::property_not_allowed);
  }
}

TEST_SUITE("PUBACK PUBREC PUBREL PUBCOMP") {
  TEST_CASE("3.1.1 forms") {
    CHECK(decode_exact<mqtt::puback>({0x40, 2, 0, 1}, v3).packet_id == 1);
    CHECK(decode_exact<mqtt::pubrec>({0x50, 2, 0, 2}, v3).packet_id == 2);
    CHECK(decode_exact<mqtt::pubrel>({0x62, 2, 0, 3}, v3).packet_id == 3);
    CHECK(decode_exact<mqtt::pubcomp>({0x70, 2, 0, 4}, v3).packet_id == 4);
  }

  TEST_CASE("3.1.1 does not allow extra bytes") {
    CHECK(decode_error({0x40, 3, 0, 1, 0}, v3) == error::trailing_bytes);
  }

  TEST_CASE("PUBREL must carry flags 0010 [MQTT-3.6.1-1]") {
    CHECK(decode_error({0x60, 2, 0, 1}, v3) == error::invalid_fixed_header_flags);
    CHECK(decode_error({0x42, 2, 0, 1}, v3) == error::invalid_fixed_header_flags);
  }

  TEST_CASE("5.0 short, reason-only and full forms [MQTT-3.4.2.1]") {
    auto short_form = decode_exact<mqtt::puback>({0x40, 2, 0, 9}, v5);
    CHECK(short_form.reason == mqtt::reason_code::success);
    auto reason_only = decode_exact<mqtt::puback>({0x40, 3, 0, 9, 0x10}, v5);
    CHECK(reason_only.reason == mqtt::reason_code::no_matching_subscribers);
    byte_builder b;
    b({0x50, 0})({0, 9})({0x87})({0})({0x1F}).str("denied");
    b.out[5] = static_cast<std::uint8_t>(b.out.size() - 6);
    b.out[1] = static_cast<std::uint8_t>(b.out.size() - 2);
    auto full = decode_exact<mqtt::pubrec>(b.out, v5);
    CHECK(full.reason == mqtt::reason_code::not_authorized);
    CHECK(full.props.text(mqtt::property_id::reason_string) == "denied");
  }

  TEST_CASE("5.0 success with an empty property block still decodes") {
    auto p = decode_ok({0x40, 4, 0, 9, 0, 0}, v5);
    CHECK(std::get<mqtt::puback>(p).reason == mqtt::reason_code::success);
  }

  TEST_CASE("5.0 reason codes are checked per packet") {
    CHECK(decode_exact<mqtt::pubcomp>({0x70, 3, 0, 1, 0x92}, v5).reason ==
          mqtt::reason_code::packet_identifier_not_found);
    CHECK(decode_error({0x70, 3, 0, 1, 0x87}, v5) == error::invalid_reason_code);
    CHECK(decode_error({0x40, 3, 0, 1, 0x92}, v5) == error::invalid_reason_code);
  }

  TEST_CASE("packet identifier 0") {
    CHECK(decode_error({0x40, 2, 0, 0}, v3) == error::packet_id_zero);
  }
}

// encode() writes the body after room for the longest fixed header and puts
// the header in front of it (issue 14): every length class of the Remaining
// Length [MQTT-1.5.5] and both sides of the first reservation (256 bytes).
TEST_CASE("encode: the fixed header in front of bodies of every length class") {
  const std::size_t body_sizes[] = {7, 127, 128, 251, 252, 256, 300, 16383, 16384, 2'097'151, 2'097'152};
  for (const std::size_t body_size : body_sizes) {
    CAPTURE(body_size);
    mqtt::publish p;
    p.topic = "a/b";  // 2 + 3 bytes of body, then at least 2 of payload
    p.payload = std::string(body_size - 5, 'x');
    p.payload.front() = 'F';
    p.payload.back() = 'L';
    auto encoded = mqtt::encode(p, v3);
    REQUIRE(encoded.has_value());
    const bytes wire = std::move(*encoded);  // moved, not copied: the capacity is encode's
    const std::size_t header_size = 1 + mqtt::variable_int_size(static_cast<std::uint32_t>(body_size));
    REQUIRE(wire.size() == header_size + body_size);
    CHECK(wire[0] == 0x30);
    std::uint32_t length = 0;
    for (std::size_t i = 1; i < header_size; ++i) length |= static_cast<std::uint32_t>(wire[i] & 0x7F) << (7 * (i - 1));
    CHECK(length == body_size);
    CHECK(wire[header_size] == 0);
    CHECK(wire[header_size + 1] == 3);
    CHECK(wire[header_size + 2] == 'a');
    CHECK(wire[header_size + 5] == 'F');
    CHECK(wire.back() == 'L');
    CHECK(decode_ok(wire, v3) == mqtt::packet{p});
    // A queue keeps this vector and counts its size: a large one holds no slack.
    CHECK(wire.capacity() <= std::max<std::size_t>(wire.size(), 256));
  }
}
