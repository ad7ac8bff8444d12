#include "test_helpers.hpp"

#include "mqtt/properties.hpp"

using namespace test;
using mqtt::error;
using mqtt::property_id;
using mqtt::property_scope;

namespace {

boost::system::error_code read_error(bytes block, property_scope scope) {
  mqtt::byte_reader r(block);
  mqtt::read_properties(r, scope);
  return r.error_code();
}

}  // namespace

TEST_SUITE("properties") {
  TEST_CASE("every property type reads and writes back") {
    mqtt::properties props{
        {property_id::payload_format_indicator, 1u},
        {property_id::message_expiry_interval, 0xFFFFFFFFu},
        {property_id::content_type, std::string("application/json")},
        {property_id::response_topic, std::string("r/t")},
        {property_id::correlation_data, std::string("\x00\x01", 2)},
        {property_id::subscription_identifier, 268'435'455u},
        {property_id::topic_alias, 3u},
        {property_id::user_property, mqtt::string_pair{"a", "b"}},
    };
    mqtt::byte_writer w;
    mqtt::write_properties(w, props);
    mqtt::byte_reader r(w.buffer());
    auto back = mqtt::read_properties(r, property_scope::publish);
    CHECK_FALSE(r.failed());
    CHECK(r.empty());
    CHECK(back == props);
  }

  TEST_CASE("unknown identifiers [MQTT-2.2.2.2]") {
    CHECK(read_error({2, 0x05, 0}, property_scope::publish) == error::unknown_property);
    CHECK(read_error({2, 0x7F, 0}, property_scope::publish) == error::unknown_property);
  }

  TEST_CASE("duplicates are refused except user properties") {
    CHECK(read_error({4, 0x01, 0, 0x01, 1}, property_scope::publish) == error::duplicate_property);
    CHECK_FALSE(read_error({10, 0x26, 0, 0, 0, 0, 0x26, 0, 0, 0, 0}, property_scope::publish));
  }

  TEST_CASE("boolean and non-zero properties are range-checked") {
    CHECK(read_error({2, 0x01, 2}, property_scope::publish) == error::invalid_property_value);
    CHECK(read_error({3, 0x21, 0, 0}, property_scope::connect) == error::invalid_property_value);  // receive max 0
    CHECK(read_error({5, 0x27, 0, 0, 0, 0}, property_scope::connect) == error::invalid_property_value);
    CHECK(read_error({2, 0x0B, 0}, property_scope::subscribe) == error::invalid_property_value);
    CHECK(read_error({2, 0x24, 2}, property_scope::connack) == error::invalid_property_value);
  }

  TEST_CASE("a property block longer than its packet") {
    CHECK(read_error({9, 0x01, 1}, property_scope::publish) == error::truncated);
    CHECK(read_error({3, 0x02, 0, 0}, property_scope::publish) == error::truncated);
  }

  TEST_CASE("scopes follow the table of section 2.2.2.2") {
    CHECK(read_error({5, 0x18, 0, 0, 0, 1}, property_scope::connect) == error::property_not_allowed);
    CHECK_FALSE(read_error({5, 0x18, 0, 0, 0, 1}, property_scope::will));
    CHECK(read_error({3, 0x13, 0, 1}, property_scope::connect) == error::property_not_allowed);
    CHECK(read_error({2, 0x17, 1}, property_scope::connack) == error::property_not_allowed);
  }

  TEST_CASE("accessors") {
    mqtt::properties props;
    props.add(property_id::subscription_identifier, 1u);
    props.add(property_id::subscription_identifier, 2u);
    props.set(property_id::topic_alias, 9u);
    props.set(property_id::topic_alias, 10u);
    CHECK(props.numbers(property_id::subscription_identifier) == std::vector<std::uint32_t>{1, 2});
    CHECK(props.number(property_id::topic_alias) == 10u);
    props.remove(property_id::subscription_identifier);
    CHECK(props.items().size() == 1);
    CHECK_FALSE(props.text(property_id::content_type));
  }
}
