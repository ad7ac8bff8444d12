// Property-style tests: random valid packets of every type survive
// encode -> decode unchanged in both versions, and random corruption of valid
// frames never crashes the decoder (libFuzzer does this at depth, see tests/fuzz).
#include "test_helpers.hpp"

#include <random>

#include "mqtt/topic.hpp"

using namespace test;

namespace {

class packet_generator {
 public:
  packet_generator(std::uint32_t seed, mqtt::protocol_version v) : rng_(seed), v5_(v == test::v5), version_(v) {}

  mqtt::packet make(mqtt::packet_type type) {
    using T = mqtt::packet_type;
    switch (type) {
      case T::connect: return make_connect();
      case T::connack: return mqtt::connack{coin(), mqtt::reason_code::success, props(mqtt::property_id::assigned_client_identifier)};
      case T::publish: return make_publish();
      case T::puback: return mqtt::puback{id(), v5_ ? mqtt::reason_code::not_authorized : mqtt::reason_code::success, props(mqtt::property_id::reason_string)};
      case T::pubrec: return mqtt::pubrec{id(), mqtt::reason_code::success, props(mqtt::property_id::reason_string)};
      case T::pubrel: return mqtt::pubrel{id(), v5_ ? mqtt::reason_code::packet_identifier_not_found : mqtt::reason_code::success, {}};
      case T::pubcomp: return mqtt::pubcomp{id(), mqtt::reason_code::success, {}};
      case T::subscribe: return make_subscribe();
      case T::suback: return mqtt::suback{id(), props(mqtt::property_id::reason_string), {mqtt::reason_code::granted_qos_2, mqtt::reason_code::unspecified_error}};
      case T::unsubscribe: return mqtt::unsubscribe{id(), props(mqtt::property_id::user_property), {filter(), filter()}};
      case T::unsuback: return mqtt::unsuback{id(), props(mqtt::property_id::reason_string), v5_ ? std::vector{mqtt::reason_code::success} : std::vector<mqtt::reason_code>{}};
      case T::pingreq: return mqtt::pingreq{};
      case T::pingresp: return mqtt::pingresp{};
      case T::disconnect: return mqtt::disconnect{v5_ ? mqtt::reason_code::session_taken_over : mqtt::reason_code::success, props(mqtt::property_id::reason_string)};
      case T::auth: return mqtt::auth{mqtt::reason_code::continue_authentication, props(mqtt::property_id::authentication_method)};
    }
    return mqtt::pingreq{};
  }

 private:
  bool coin() { return rng_() % 2 == 0; }
  std::uint16_t id() { return static_cast<std::uint16_t>(rng_() % 65535 + 1); }
  std::string text(std::size_t max) {
    std::string s(rng_() % (max + 1), 'x');
    for (auto& c : s) c = static_cast<char>('a' + rng_() % 26);
    return s;
  }
  std::string binary(std::size_t max) {
    std::string s(rng_() % (max + 1), '\0');
    for (auto& c : s) c = static_cast<char>(rng_() % 256);
    return s;
  }
  std::string topic() { return text(5) + "/" + text(5); }
  std::string filter() {
    static const char* shapes[] = {"a/+/b", "#", "x/#", "+", "$share/g/t/+"};
    return coin() ? topic() : shapes[rng_() % 5];
  }
  mqtt::qos any_qos() { return static_cast<mqtt::qos>(rng_() % 3); }
  mqtt::properties props(mqtt::property_id id) {
    mqtt::properties p;
    if (!v5_ || coin()) return p;
    if (id == mqtt::property_id::user_property) {
      p.add(id, mqtt::string_pair{text(4), text(4)});
      p.add(id, mqtt::string_pair{text(4), text(4)});
    } else {
      p.add(id, text(10));
    }
    return p;
  }

  mqtt::packet make_connect() {
    mqtt::connect c;
    c.version = version_;
    c.clean_start = coin();
    c.keep_alive = static_cast<std::uint16_t>(rng_());
    c.client_id = text(23);
    if (v5_ && coin()) c.props.add(mqtt::property_id::session_expiry_interval, static_cast<std::uint32_t>(rng_()));
    if (coin()) {
      mqtt::will_message w{topic(), binary(50), any_qos(), coin(), {}};
      if (v5_ && coin()) w.props.add(mqtt::property_id::will_delay_interval, 5u);
      c.will = w;
    }
    if (coin()) c.username = text(10);
    if (c.username || (v5_ && coin())) c.password = binary(10);
    return c;
  }

  mqtt::packet make_publish() {
    mqtt::publish p;
    p.topic = topic();
    p.payload = binary(300);
    p.qos = any_qos();
    p.retain = coin();
    p.dup = p.qos != mqtt::qos::at_most_once && coin();
    if (p.qos != mqtt::qos::at_most_once) p.packet_id = id();
    if (v5_ && coin()) p.props.add(mqtt::property_id::message_expiry_interval, static_cast<std::uint32_t>(rng_()));
    if (v5_ && coin()) p.props.add(mqtt::property_id::correlation_data, binary(8));
    return p;
  }

  mqtt::packet make_subscribe() {
    mqtt::subscribe s;
    s.packet_id = id();
    if (v5_ && coin()) s.props.add(mqtt::property_id::subscription_identifier, static_cast<std::uint32_t>(rng_() % 1000 + 1));
    const int count = static_cast<int>(rng_() % 4) + 1;
    for (int i = 0; i < count; ++i) {
      mqtt::subscription sub{filter(), {any_qos()}};
      if (v5_) {
        sub.options.no_local = !mqtt::topic::parse_shared(sub.filter) && coin();
        sub.options.retain_as_published = coin();
        sub.options.retain_handling = static_cast<std::uint8_t>(rng_() % 3);
      }
      s.subscriptions.push_back(sub);
    }
    return s;
  }

  std::mt19937 rng_;
  bool v5_;
  mqtt::protocol_version version_;
};

}  // namespace

TEST_CASE("random packets of every type round-trip in both versions") {
  for (auto v : {v3, v5}) {
    for (int t = 1; t <= 15; ++t) {
      const auto type = static_cast<mqtt::packet_type>(t);
      if (type == mqtt::packet_type::auth && v == v3) continue;
      packet_generator gen(static_cast<std::uint32_t>(t * 7919), v);
      for (int i = 0; i < 200; ++i) {
        const auto original = gen.make(type);
        const auto wire = encode_ok(original, v);
        const auto back = decode_ok(wire, v);
        CHECK_MESSAGE(back == original, "type " << mqtt::to_string(type) << " iteration " << i);
        CHECK(encode_ok(back, v) == wire);
      }
    }
  }
}

TEST_CASE("corrupted frames are rejected or decoded, never crash") {
  std::mt19937 rng(7);
  std::size_t rejected = 0;
  for (auto v : {v3, v5}) {
    packet_generator gen(99, v);
    for (int i = 0; i < 3000; ++i) {
      auto wire = encode_ok(gen.make(static_cast<mqtt::packet_type>(i % 14 + 1)), v);
      const int flips = static_cast<int>(rng() % 3) + 1;
      for (int f = 0; f < flips; ++f) wire[rng() % wire.size()] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
      auto result = mqtt::decode(wire, v);
      if (!result) {
        ++rejected;
        CHECK(result.error().category() == mqtt::codec_category());
      } else {
        // Whatever decodes must encode again.
        CHECK(mqtt::encode(*result, v).has_value());
      }
    }
  }
  CHECK(rejected > 1000);
}
