// Our codec against a real Mosquitto 2.0: every packet we encode must be
// accepted by it, and every packet it sends must decode with our codec, in
// MQTT 3.1.1 and 5.0.
#include <doctest/doctest.h>

#include "../support/mosquitto.hpp"
#include "../support/raw_client.hpp"

using namespace std::chrono_literals;
using mqtt::protocol_version;

namespace {

mqtt::connect connect_packet(protocol_version v, std::string client_id) {
  mqtt::connect c;
  c.version = v;
  c.client_id = std::move(client_id);
  c.keep_alive = 30;
  if (v == protocol_version::v5) c.props.add(mqtt::property_id::session_expiry_interval, 0u);
  return c;
}

test::raw_client connected(unsigned short port, protocol_version v, std::string id, mqtt::connect c = {}) {
  test::raw_client client(port, v);
  if (c.client_id.empty()) c = connect_packet(v, std::move(id));
  client.send(c);
  auto ack = client.expect<mqtt::connack>();
  REQUIRE(ack.reason == mqtt::reason_code::success);
  return client;
}

void subscribe(test::raw_client& client, std::string filter, mqtt::qos qos) {
  client.send(mqtt::subscribe{1, {}, {{std::move(filter), {qos}}}});
  auto ack = client.expect<mqtt::suback>();
  CHECK(ack.packet_id == 1);
  REQUIRE(ack.reasons.size() == 1);
  CHECK(ack.reasons[0] == mqtt::granted(qos));
}

}  // namespace

TEST_CASE("codec interoperates with Mosquitto") {
  test::mosquitto_broker broker;
  for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
    CAPTURE(static_cast<int>(v));
    const std::string suffix = v == protocol_version::v5 ? "5" : "3";

    SUBCASE("QoS 2 flows end to end with every handshake packet") {
      auto sub = connected(broker.port(), v, "sub" + suffix);
      subscribe(sub, "interop/" + suffix + "/#", mqtt::qos::exactly_once);
      auto pub = connected(broker.port(), v, "pub" + suffix);
      mqtt::publish msg{"interop/" + suffix + "/x", "payload", mqtt::qos::exactly_once, false, false, 42, {}};
      pub.send(msg);
      CHECK(pub.expect<mqtt::pubrec>().packet_id == 42);
      pub.send(mqtt::pubrel{.packet_id = 42});
      CHECK(pub.expect<mqtt::pubcomp>().packet_id == 42);

      auto in = sub.expect<mqtt::publish>();
      CHECK(in.topic == msg.topic);
      CHECK(in.payload == "payload");
      CHECK(in.qos == mqtt::qos::exactly_once);
      sub.send(mqtt::pubrec{.packet_id = in.packet_id});
      CHECK(sub.expect<mqtt::pubrel>().packet_id == in.packet_id);
      sub.send(mqtt::pubcomp{.packet_id = in.packet_id});

      sub.send(mqtt::unsubscribe{2, {}, {"interop/" + suffix + "/#"}});
      CHECK(sub.expect<mqtt::unsuback>().packet_id == 2);
      sub.send(mqtt::pingreq{});
      sub.expect<mqtt::pingresp>();
      sub.send(mqtt::disconnect{});
      CHECK(sub.closed_by_peer());
    }

    SUBCASE("retained QoS 1 message is delivered on subscribe") {
      auto pub = connected(broker.port(), v, "rpub" + suffix);
      pub.send(mqtt::publish{"retained/" + suffix, "kept", mqtt::qos::at_least_once, true, false, 7, {}});
      CHECK(pub.expect<mqtt::puback>().packet_id == 7);
      auto sub = connected(broker.port(), v, "rsub" + suffix);
      subscribe(sub, "retained/" + suffix, mqtt::qos::at_least_once);
      auto in = sub.expect<mqtt::publish>();
      CHECK(in.retain);
      CHECK(in.payload == "kept");
      sub.send(mqtt::puback{.packet_id = in.packet_id});
    }

    SUBCASE("will is published on abrupt close, not on DISCONNECT") {
      auto watcher = connected(broker.port(), v, "watch" + suffix);
      subscribe(watcher, "wills/" + suffix + "/#", mqtt::qos::at_most_once);

      auto graceful = connect_packet(v, "graceful" + suffix);
      graceful.will = mqtt::will_message{"wills/" + suffix + "/graceful", "x", mqtt::qos::at_most_once, false, {}};
      auto g = connected(broker.port(), v, "", graceful);
      g.send(mqtt::disconnect{});

      auto crashing = connect_packet(v, "crash" + suffix);
      crashing.will = mqtt::will_message{"wills/" + suffix + "/crash", "gone", mqtt::qos::at_least_once, false, {}};
      auto c = connected(broker.port(), v, "", crashing);
      c.abort_connection();

      auto will = watcher.expect<mqtt::publish>();
      CHECK(will.topic == "wills/" + suffix + "/crash");
      CHECK(will.payload == "gone");
      CHECK_FALSE(watcher.receive(300ms));
    }
  }
}

TEST_CASE("MQTT 5 properties survive Mosquitto") {
  test::mosquitto_broker broker;
  const auto v = protocol_version::v5;
  auto sub = connected(broker.port(), v, "props-sub");
  sub.send(mqtt::subscribe{1, {{mqtt::property_id::subscription_identifier, 77u}}, {{"props/#", {mqtt::qos::at_least_once}}}});
  CHECK(sub.expect<mqtt::suback>().reasons.at(0) == mqtt::reason_code::granted_qos_1);

  auto pub = connected(broker.port(), v, "props-pub");
  mqtt::publish msg{"props/a", "{}", mqtt::qos::at_least_once, false, false, 5, {}};
  msg.props.add(mqtt::property_id::payload_format_indicator, 1u);
  msg.props.add(mqtt::property_id::content_type, std::string("application/json"));
  msg.props.add(mqtt::property_id::response_topic, std::string("props/reply"));
  msg.props.add(mqtt::property_id::correlation_data, std::string("\x01\x02", 2));
  msg.props.add(mqtt::property_id::user_property, mqtt::string_pair{"trace", "abc"});
  pub.send(msg);
  CHECK(pub.expect<mqtt::puback>().packet_id == 5);

  auto in = sub.expect<mqtt::publish>();
  CHECK(in.props.text(mqtt::property_id::content_type) == "application/json");
  CHECK(in.props.text(mqtt::property_id::response_topic) == "props/reply");
  CHECK(in.props.text(mqtt::property_id::correlation_data) == std::string_view("\x01\x02", 2));
  CHECK(in.props.numbers(mqtt::property_id::subscription_identifier) == std::vector<std::uint32_t>{77});
  REQUIRE(in.props.user_properties().size() == 1);
  CHECK(in.props.user_properties()[0].value == "abc");
}

TEST_CASE("Mosquitto's refusals decode: bad protocol level and bad credentials") {
  test::mosquitto_broker broker({.account = std::pair<std::string, std::string>{"proxy", "s3cret"}});
  for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
    test::raw_client client(broker.port(), v);
    auto c = connect_packet(v, "nobody");
    c.username = "proxy";
    c.password = "wrong";
    client.send(c);
    auto ack = client.expect<mqtt::connack>();
    CHECK(is_failure(ack.reason));
    CHECK(client.closed_by_peer());

    test::raw_client good(broker.port(), v);
    c.password = "s3cret";
    good.send(c);
    CHECK(good.expect<mqtt::connack>().reason == mqtt::reason_code::success);
  }
}
