#include "test_helpers.hpp"

using namespace test;
using mqtt::error;

TEST_SUITE("SUBSCRIBE") {
  TEST_CASE("3.1.1 SUBSCRIBE with two filters (spec example 3.8.3)") {
    byte_builder b;
    b({0x82, 0})({0x00, 0x0A}).str("a/b")({0x01}).str("c/d")({0x02});
    b.out[1] = static_cast<std::uint8_t>(b.out.size() - 2);
    auto p = decode_exact<mqtt::subscribe>(b.out, v3);
    CHECK(p.packet_id == 10);
    REQUIRE(p.subscriptions.size() == 2);
    CHECK(p.subscriptions[0].filter == "a/b");
    CHECK(p.subscriptions[0].options.max_qos == mqtt::qos::at_least_once);
    CHECK(p.subscriptions[1].options.max_qos == mqtt::qos::exactly_once);
  }

  TEST_CASE("5.0 subscription options and identifier") {
    byte_builder b;
    b({0x82, 0})({0x00, 0x01})({2, 0x0B, 0x05}).str("x/+")({0x2E});  // RH 2, RAP, NL, QoS 2
    b.out[1] = static_cast<std::uint8_t>(b.out.size() - 2);
    auto p = decode_exact<mqtt::subscribe>(b.out, v5);
    CHECK(p.props.number(mqtt::property_id::subscription_identifier) == 5u);
    const auto& o = p.subscriptions.at(0).options;
    CHECK(o.max_qos == mqtt::qos::exactly_once);
    CHECK(o.no_local);
    CHECK(o.retain_as_published);
    CHECK(o.retain_handling == 2);
  }

  TEST_CASE("reserved option bits [MQTT-3.8.3-4] [MQTT-3.8.3-5]") {
    CHECK(decode_error({0x82, 6, 0, 1, 0, 1, 't', 0x04}, v3) == error::invalid_subscription_options);
    CHECK(decode_error({0x82, 7, 0, 1, 0, 0, 1, 't', 0x40}, v5) == error::invalid_subscription_options);
    CHECK(decode_error({0x82, 7, 0, 1, 0, 0, 1, 't', 0x03}, v5) == error::invalid_subscription_options);  // QoS 3
    CHECK(decode_error({0x82, 7, 0, 1, 0, 0, 1, 't', 0x30}, v5) == error::invalid_subscription_options);  // RH 3
  }

  TEST_CASE("no filters [MQTT-3.8.3-3]") {
    CHECK(decode_error({0x82, 2, 0, 1}, v3) == error::no_topic_filters);
    CHECK(decode_error({0x82, 3, 0, 1, 0}, v5) == error::no_topic_filters);
  }

  TEST_CASE("flags must be 0010 [MQTT-3.8.1-1]") {
    CHECK(decode_error({0x80, 6, 0, 1, 0, 1, 't', 0}, v3) == error::invalid_fixed_header_flags);
  }

  TEST_CASE("invalid filters [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.8.2-1]") {
    for (auto filter : {"a/#/b", "a+", "", "$share//x", "$share/g", "$share/g+/x", "#a"}) {
      byte_builder b;
      b({0x82, 0})({0, 1}).str(filter)({0});
      b.out[1] = static_cast<std::uint8_t>(b.out.size() - 2);
      CHECK_MESSAGE(decode_error(b.out, v3) == error::invalid_topic_filter, filter);
    }
  }

  TEST_CASE("no local on a shared subscription [MQTT-3.8.3-4]") {
    byte_builder b;
    b({0x82, 0})({0, 1})({0}).str("$share/g/t")({0x04});
    b.out[1] = static_cast<std::uint8_t>(b.out.size() - 2);
    CHECK(decode_error(b.out, v5) == error::no_local_on_shared_subscription);
  }

  TEST_CASE("subscription identifier only once in SUBSCRIBE") {
    byte_builder b;
    b({0x82, 0})({0, 1})({4, 0x0B, 1, 0x0B, 2}).str("t")({0});
    b.out[1] = static_cast<std::uint8_t>(b.out.size() - 2);
    CHECK(decode_error(b.out, v5) == error::duplicate_property);
  }
}

TEST_SUITE("SUBACK") {
  TEST_CASE("3.1.1 SUBACK with a failure") {
    auto p = decode_exact<mqtt::suback>({0x90, 5, 0, 10, 0x00, 0x02, 0x80}, v3);
    CHECK(p.reasons == std::vector{mqtt::reason_code::success, mqtt::reason_code::granted_qos_2,
                                   mqtt::reason_code::unspecified_error});
    CHECK(decode_error({0x90, 3, 0, 10, 0x87}, v3) == error::invalid_reason_code);
  }

  TEST_CASE("5.0 SUBACK with not authorized") {
    auto p = decode_exact<mqtt::suback>({0x90, 5, 0, 10, 0, 0x01, 0x87}, v5);
    CHECK(p.reasons == std::vector{mqtt::reason_code::granted_qos_1, mqtt::reason_code::not_authorized});
  }

  TEST_CASE("5.0 failure codes become 0x80 for 3.1.1") {
    mqtt::suback p{3, {}, {mqtt::reason_code::granted_qos_2, mqtt::reason_code::not_authorized}};
    CHECK(encode_ok(p, v3) == bytes{0x90, 4, 0, 3, 0x02, 0x80});
    CHECK(encode_ok(p, v5) == bytes{0x90, 5, 0, 3, 0, 0x02, 0x87});
  }
}

TEST_SUITE("UNSUBSCRIBE") {
  TEST_CASE("3.1.1 and 5.0 UNSUBSCRIBE") {
    byte_builder b3;
    b3({0xA2, 0})({0, 2}).str("a/b").str("c/#");
    b3.out[1] = static_cast<std::uint8_t>(b3.out.size() - 2);
    auto p3 = decode_exact<mqtt::unsubscribe>(b3.out, v3);
    CHECK(p3.filters == std::vector<std::string>{"a/b", "c/#"});

    byte_builder b5;
    b5({0xA2, 0})({0, 2})({0}).str("a/b");
    b5.out[1] = static_cast<std::uint8_t>(b5.out.size() - 2);
    CHECK(decode_exact<mqtt::unsubscribe>(b5.out, v5).filters.size() == 1);
  }

  TEST_CASE("no filters [MQTT-3.10.3-2], flags [MQTT-3.10.1-1]") {
    CHECK(decode_error({0xA2, 2, 0, 1}, v3) == error::no_topic_filters);
    CHECK(decode_error({0xA0, 5, 0, 1, 0, 1, 't'}, v3) == error::invalid_fixed_header_flags);
  }

  TEST_CASE("UNSUBACK") {
    CHECK(decode_exact<mqtt::unsuback>({0xB0, 2, 0, 5}, v3).packet_id == 5);
    CHECK(decode_error({0xB0, 3, 0, 5, 0}, v3) == error::trailing_bytes);
    auto p = decode_exact<mqtt::unsuback>({0xB0, 5, 0, 5, 0, 0x00, 0x11}, v5);
    CHECK(p.reasons == std::vector{mqtt::reason_code::success, mqtt::reason_code::no_subscription_existed});
    CHECK(decode_error({0xB0, 4, 0, 5, 0, 0x02}, v5) == error::invalid_reason_code);
  }
}
