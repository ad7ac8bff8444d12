#include "test_helpers.hpp"

using namespace test;
using mqtt::error;

TEST_SUITE("PINGREQ PINGRESP") {
  TEST_CASE("both versions") {
    for (auto v : {v3, v5}) {
      decode_exact<mqtt::pingreq>({0xC0, 0}, v);
      decode_exact<mqtt::pingresp>({0xD0, 0}, v);
    }
  }
  TEST_CASE("no body and no flags") {
    CHECK(decode_error({0xC0, 1, 0}, v3) == error::trailing_bytes);
    CHECK(decode_error({0xC1, 0}, v3) == error::invalid_fixed_header_flags);
  }
}

TEST_SUITE("DISCONNECT") {
  TEST_CASE("3.1.1 DISCONNECT has no body") {
    decode_exact<mqtt::disconnect>({0xE0, 0}, v3);
    CHECK(decode_error({0xE0, 1, 0}, v3) == error::trailing_bytes);
    CHECK(decode_error({0xE2, 0}, v3) == error::invalid_fixed_header_flags);
  }

  TEST_CASE("5.0 DISCONNECT forms [MQTT-3.14.2.1]") {
    CHECK(decode_exact<mqtt::disconnect>({0xE0, 0}, v5).reason == mqtt::reason_code::success);
    CHECK(decode_exact<mqtt::disconnect>({0xE0, 1, 0x04}, v5).reason == mqtt::reason_code::disconnect_with_will);
    byte_builder b;
    b({0xE0, 0})({0x8E})({0})({0x1F}).str("taken over");
    b.out[3] = static_cast<std::uint8_t>(b.out.size() - 4);
    b.out[1] = static_cast<std::uint8_t>(b.out.size() - 2);
    auto p = decode_exact<mqtt::disconnect>(b.out, v5);
    CHECK(p.reason == mqtt::reason_code::session_taken_over);
    CHECK(p.props.text(mqtt::property_id::reason_string) == "taken over");
  }

  TEST_CASE("5.0 DISCONNECT reason codes checked") {
    CHECK(decode_error({0xE0, 1, 0x86}, v5) == error::invalid_reason_code);
    CHECK(decode_error({0xE0, 1, 0x01}, v5) == error::invalid_reason_code);
  }

  TEST_CASE("5.0 DISCONNECT session expiry is allowed, topic alias is not") {
    decode_exact<mqtt::disconnect>({0xE0, 7, 0x00, 5, 0x11, 0, 0, 0, 0}, v5);
    CHECK(decode_error({0xE0, 5, 0x00, 3, 0x23, 0, 1}, v5) == error::property_not_allowed);
  }
}

TEST_SUITE("AUTH") {
  TEST_CASE("5.0 AUTH") {
    decode_exact<mqtt::auth>({0xF0, 0}, v5);
    byte_builder b;
    b({0xF0, 0})({0x18})({0})({0x15}).str("SCRAM-SHA-1")({0x16}).str("data");
    b.out[3] = static_cast<std::uint8_t>(b.out.size() - 4);
    b.out[1] = static_cast<std::uint8_t>(b.out.size() - 2);
    auto p = decode_exact<mqtt::auth>(b.out, v5);
    CHECK(p.reason == mqtt::reason_code::continue_authentication);
    CHECK(p.props.text(mqtt::property_id::authentication_method) == "SCRAM-SHA-1");
    CHECK(decode_error({0xF0, 1, 0x87}, v5) == error::invalid_reason_code);
  }

  TEST_CASE("AUTH does not exist in 3.1.1") {
    CHECK(decode_error({0xF0, 0}, v3) == error::packet_not_in_version);
    CHECK_FALSE(mqtt::encode(mqtt::auth{}, v3).has_value());
  }
}

TEST_SUITE("fixed header") {
  TEST_CASE("packet type 0 is reserved") {
    CHECK(decode_error({0x00, 0}, v3) == error::reserved_packet_type);
    CHECK(decode_error({0x00, 0}, v5) == error::reserved_packet_type);
  }

  TEST_CASE("a frame whose length does not match its buffer") {
    CHECK(decode_error({0xC0, 1}, v3) == error::truncated);
    CHECK(decode_error({0xC0, 0, 0}, v3) == error::trailing_bytes);
    CHECK(decode_error({}, v3) == error::truncated);
  }

  TEST_CASE("every error has a message naming its rule") {
    for (int e = 1; e <= static_cast<int>(error::field_too_long); ++e) {
      const auto message = make_error_code(static_cast<error>(e)).message();
      CHECK_MESSAGE(message != "unknown MQTT codec error", e);
      CHECK(message.size() > 10);
    }
    CHECK(make_error_code(error::packet_id_zero).message().find("MQTT-2.3.1-1") != std::string::npos);
  }
}

TEST_SUITE("encoder") {
  TEST_CASE("strings over 65535 bytes cannot be encoded") {
    mqtt::publish p;
    p.topic = std::string(70000, 'a');
    auto result = mqtt::encode(p, v3);
    REQUIRE_FALSE(result.has_value());
    CHECK(result.error() == error::field_too_long);
  }

  TEST_CASE("large payloads use a multi-byte remaining length") {
    mqtt::publish p;
    p.topic = "t";
    p.payload = std::string(200'000, 'x');
    const auto frame = encode_ok(p, v3);
    CHECK(frame.size() == 1 + 3 + 3 + 200'000);
    CHECK(std::get<mqtt::publish>(decode_ok(frame, v3)) == p);
  }

  TEST_CASE("type_of follows the variant order") {
    CHECK(mqtt::type_of(mqtt::connect{}) == mqtt::packet_type::connect);
    CHECK(mqtt::type_of(mqtt::pubcomp{}) == mqtt::packet_type::pubcomp);
    CHECK(mqtt::type_of(mqtt::auth{}) == mqtt::packet_type::auth);
    CHECK(mqtt::to_string(mqtt::packet_type::unsuback) == "UNSUBACK");
  }
}
