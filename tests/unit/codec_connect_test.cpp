#include "test_helpers.hpp"

using namespace test;
using mqtt::error;

TEST_SUITE("CONNECT") {
  TEST_CASE("3.1.1 minimal CONNECT") {
    byte_builder b;
    b({0x10, 15})           // CONNECT, remaining length 15
        .str("MQTT")({4})   // protocol name, level 4
        ({0x02})            // flags: clean session
        ({0x00, 0x3C})      // keep alive 60
        .str("abc");        // client id
    auto p = decode_exact<mqtt::connect>(b.out, v3);
    CHECK(p.version == mqtt::protocol_version::v3_1_1);
    CHECK(p.clean_start);
    CHECK(p.keep_alive == 60);
    CHECK(p.client_id == "abc");
    CHECK_FALSE(p.will);
    CHECK_FALSE(p.username);
    CHECK_FALSE(p.password);
  }

  TEST_CASE("3.1.1 CONNECT with will, user name and password") {
    byte_builder b;
    b({0x10, 42}).str("MQTT")({4})
        ({0xEC})         // user, password, will retain, will QoS 1, will, clean session = 1110 1100
        ({0x00, 0x0A})
        .str("cid")      // 5
        .str("w/t")      // 5
        .str("bye")      // 5
        .str("user")     // 6
        .str("pass");    // 6 -> 2+4+1+1+2 = 10, + 27 = 37... computed below
    b.out[1] = static_cast<std::uint8_t>(b.out.size() - 2);
    auto p = decode_exact<mqtt::connect>(b.out, v3);
    REQUIRE(p.will);
    CHECK(p.will->topic == "w/t");
    CHECK(p.will->payload == "bye");
    CHECK(p.will->qos == mqtt::qos::at_least_once);
    CHECK(p.will->retain);
    CHECK(p.username == "user");
    CHECK(p.password == "pass");
    CHECK(p.keep_alive == 10);
  }

  TEST_CASE("3.1 CONNECT (MQIsdp, level 3) is accepted") {
    byte_builder b;
    b({0x10, 0}).str("MQIsdp")({3})({0x02})({0x00, 0x3C}).str("c1");
    b.out[1] = static_cast<std::uint8_t>(b.out.size() - 2);
    auto p = decode_exact<mqtt::connect>(b.out, v3);
    CHECK(p.version == mqtt::protocol_version::v3_1);
  }

  TEST_CASE("3.1 requires a client id") {
    byte_builder b;
    b({0x10, 0}).str("MQIsdp")({3})({0x02})({0x00, 0x3C}).str("");
    b.out[1] = static_cast<std::uint8_t>(b.out.size() - 2);
    CHECK(decode_error(b.out, v3) == error::invalid_client_id);
  }

  TEST_CASE("5.0 CONNECT with properties and will properties") {
    byte_builder b;
    b({0x10, 0}).str("MQTT")({5})
        ({0xC6})                      // user, password, will QoS 0, will, clean start
        ({0x00, 0x1E})                // keep alive 30
        ({8, 0x11, 0, 0, 0x0E, 0x10,  // session expiry 3600
          0x21, 0x00, 0x0A})          // receive maximum 10
        .str("client")
        ({5, 0x18, 0, 0, 0, 5})       // will delay interval 5
        .str("will/topic").str("gone")
        .str("alice").str("secret");
    b.out[1] = static_cast<std::uint8_t>(b.out.size() - 2);
    auto p = decode_exact<mqtt::connect>(b.out, v5);
    CHECK(p.version == mqtt::protocol_version::v5);
    CHECK(p.props.number(mqtt::property_id::session_expiry_interval) == 3600u);
    CHECK(p.props.number(mqtt::property_id::receive_maximum) == 10u);
    REQUIRE(p.will);
    CHECK(p.will->props.number(mqtt::property_id::will_delay_interval) == 5u);
    CHECK(p.username == "alice");
    CHECK(p.password == "secret");
  }

  TEST_CASE("5.0 allows a password without a user name, 3.1.1 does not [MQTT-3.1.2-22]") {
    byte_builder v5_packet;
    v5_packet({0x10, 0}).str("MQTT")({5})({0x42})({0, 0})({0}).str("c").str("pw");
    v5_packet.out[1] = static_cast<std::uint8_t>(v5_packet.out.size() - 2);
    auto p = decode_exact<mqtt::connect>(v5_packet.out, v5);
    CHECK_FALSE(p.username);
    CHECK(p.password == "pw");

    byte_builder v3_packet;
    v3_packet({0x10, 0}).str("MQTT")({4})({0x42})({0, 0}).str("c").str("pw");
    v3_packet.out[1] = static_cast<std::uint8_t>(v3_packet.out.size() - 2);
    CHECK(decode_error(v3_packet.out, v3) == error::password_without_username);
  }

  auto connect_with = [](std::string_view name, int level, int flags) {
    byte_builder b;
    b({0x10, 0}).str(name)({level})({flags})({0, 0});
    if (level == 5) b({0});
    b.str("c");
    b.out[1] = static_cast<std::uint8_t>(b.out.size() - 2);
    return b.out;
  };

  TEST_CASE("protocol name and level [MQTT-3.1.2-1] [MQTT-3.1.2-2]") {
    CHECK(decode_error(connect_with("MQTX", 4, 2), v3) == error::invalid_protocol_name);
    CHECK(decode_error(connect_with("MQTT", 6, 2), v3) == error::unsupported_protocol_version);
    CHECK(decode_error(connect_with("MQTT", 3, 2), v3) == error::unsupported_protocol_version);
    CHECK(decode_error(connect_with("MQIsdp", 4, 2), v3) == error::unsupported_protocol_version);
  }

  TEST_CASE("the version can be read before the rest, to answer with the right CONNACK") {
    auto frame = connect_with("MQTT", 5, 2);
    CHECK(mqtt::peek_connect_version(std::span(frame).subspan(2)) == mqtt::protocol_version::v5);
    auto bad = connect_with("MQTT", 9, 2);
    CHECK_FALSE(mqtt::peek_connect_version(std::span(bad).subspan(2)));
  }

  TEST_CASE("reserved flag [MQTT-3.1.2-3]") {
    CHECK(decode_error(connect_with("MQTT", 4, 0x03), v3) == error::connect_reserved_flag_set);
    CHECK(decode_error(connect_with("MQTT", 5, 0x01), v5) == error::connect_reserved_flag_set);
  }

  TEST_CASE("will flags without a will [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-15]") {
    CHECK(decode_error(connect_with("MQTT", 4, 0x0A), v3) == error::invalid_will_flags);  // will QoS 1, no will
    CHECK(decode_error(connect_with("MQTT", 4, 0x22), v3) == error::invalid_will_flags);  // will retain, no will
    CHECK(decode_error(connect_with("MQTT", 5, 0x12), v5) == error::invalid_will_flags);  // will QoS 2, no will
  }

  TEST_CASE("will QoS 3 [MQTT-3.1.2-14]") {
    CHECK(decode_error(connect_with("MQTT", 4, 0x1E), v3) == error::invalid_will_flags);
  }

  TEST_CASE("will topic must be a valid topic name") {
    byte_builder b;
    b({0x10, 0}).str("MQTT")({4})({0x06})({0, 0}).str("c").str("a/#").str("x");
    b.out[1] = static_cast<std::uint8_t>(b.out.size() - 2);
    CHECK(decode_error(b.out, v3) == error::invalid_topic_name);
  }

  TEST_CASE("missing payload fields are truncation") {
    byte_builder b;
    b({0x10, 0}).str("MQTT")({4})({0x82})({0, 0}).str("c");  // user name flag but no user name
    b.out[1] = static_cast<std::uint8_t>(b.out.size() - 2);
    CHECK(decode_error(b.out, v3) == error::truncated);
  }

  TEST_CASE("bytes after the last field") {
    auto frame = connect_with("MQTT", 4, 2);
    frame.push_back('x');
    frame[1]++;
    CHECK(decode_error(frame, v3) == error::trailing_bytes);
  }

  TEST_CASE("CONNECT properties must be allowed in CONNECT [MQTT-2.2.2.2]") {
    byte_builder c;
    c({0x10, 0}).str("MQTT")({5})({0x02})({0, 0})({3, 0x23, 0x00, 0x01}).str("c");
    c.out[1] = static_cast<std::uint8_t>(c.out.size() - 2);
    CHECK(decode_error(c.out, v5) == error::property_not_allowed);
  }

  TEST_CASE("CONNECT with a fixed header flag set [MQTT-2.2.2-2]") {
    auto frame = connect_with("MQTT", 4, 2);
    frame[0] = 0x11;
    CHECK(decode_error(frame, v3) == error::invalid_fixed_header_flags);
  }
}

TEST_SUITE("CONNACK") {
  TEST_CASE("3.1.1 CONNACK accepted, session present") {
    auto p = decode_exact<mqtt::connack>({0x20, 0x02, 0x01, 0x00}, v3);
    CHECK(p.session_present);
    CHECK(p.reason == mqtt::reason_code::success);
  }

  TEST_CASE("3.1.1 return codes map onto 5.0 reason codes and back") {
    CHECK(decode_exact<mqtt::connack>({0x20, 2, 0, 1}, v3).reason == mqtt::reason_code::unsupported_protocol_version);
    CHECK(decode_exact<mqtt::connack>({0x20, 2, 0, 2}, v3).reason == mqtt::reason_code::client_identifier_not_valid);
    CHECK(decode_exact<mqtt::connack>({0x20, 2, 0, 3}, v3).reason == mqtt::reason_code::server_unavailable);
    CHECK(decode_exact<mqtt::connack>({0x20, 2, 0, 4}, v3).reason == mqtt::reason_code::bad_user_name_or_password);
    CHECK(decode_exact<mqtt::connack>({0x20, 2, 0, 5}, v3).reason == mqtt::reason_code::not_authorized);
    CHECK(decode_error({0x20, 2, 0, 6}, v3) == error::invalid_reason_code);
  }

  TEST_CASE("a 5.0-only refusal is sent to a 3.1.1 client as its nearest return code") {
    mqtt::connack refusal{false, mqtt::reason_code::server_busy, {}};
    CHECK(encode_ok(refusal, v3) == bytes{0x20, 2, 0, 3});
    refusal.reason = mqtt::reason_code::banned;
    CHECK(encode_ok(refusal, v3) == bytes{0x20, 2, 0, 5});
  }

  TEST_CASE("5.0 CONNACK with properties") {
    byte_builder b;
    b({0x20, 0})({0x00, 0x00})
        ({0})  // property length, patched
        ({0x12}).str("auto-1")            // assigned client identifier
        ({0x13, 0x00, 0x3C})              // server keep alive 60
        ({0x24, 0x01})                    // maximum QoS 1
        ({0x2A, 0x00});                   // shared subscriptions unavailable
    b.out[4] = static_cast<std::uint8_t>(b.out.size() - 5);
    b.out[1] = static_cast<std::uint8_t>(b.out.size() - 2);
    auto p = decode_exact<mqtt::connack>(b.out, v5);
    CHECK(p.props.text(mqtt::property_id::assigned_client_identifier) == "auto-1");
    CHECK(p.props.number(mqtt::property_id::server_keep_alive) == 60u);
    CHECK(p.props.number(mqtt::property_id::maximum_qos) == 1u);
  }

  TEST_CASE("5.0 CONNACK refusal codes") {
    auto p = decode_exact<mqtt::connack>({0x20, 3, 0, 0x87, 0}, v5);
    CHECK(p.reason == mqtt::reason_code::not_authorized);
    CHECK(decode_error({0x20, 3, 0, 0x04, 0}, v5) == error::invalid_reason_code);
  }

  TEST_CASE("reserved acknowledge flags [MQTT-3.2.2-1]") {
    CHECK(decode_error({0x20, 2, 0x02, 0}, v3) == error::connack_reserved_flags_set);
  }

  TEST_CASE("session present with a failure [MQTT-3.2.2-4] [MQTT-3.2.2-6]") {
    CHECK(decode_error({0x20, 2, 0x01, 5}, v3) == error::session_present_on_failure);
    CHECK(decode_error({0x20, 3, 0x01, 0x87, 0}, v5) == error::session_present_on_failure);
  }
}
