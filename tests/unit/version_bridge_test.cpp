// Version bridging (5.0 client, 3.1.1 broker): the pure translations over
// byte vectors annotated field by field, the start-up version probe's
// classifier, and the session driven through a whole bridged flow.
#include <doctest/doctest.h>

#include "auth/auth_client.hpp"
#include "command_line_helpers.hpp"
#include "net/upstream_protocol_probe.hpp"
#include "session/client_session.hpp"
#include "session/version_bridge.hpp"
#include "test_helpers.hpp"

using namespace proxy;
using mqtt::property_id;
using mqtt::reason_code;
using test::byte_builder;
using test::v3;
using test::v5;

namespace {

std::uint32_t count(const bridge::drop_counts& drops, bridge::dropped what) {
  return drops[static_cast<std::size_t>(what)];
}

mqtt::bytes to_broker_bytes(const mqtt::bytes& client_frame, bridge::drop_counts& drops) {
  auto translated = bridge::to_broker(test::decode_ok(client_frame, v5), drops);
  REQUIRE(translated.has_value());
  return test::encode_ok(*translated, v3);
}

}  // namespace

TEST_SUITE("version bridge: client 5.0 -> broker 3.1.1") {
  TEST_CASE("CONNECT: session expiry 0 is clean session 1; will properties are dropped, the will kept") {
    byte_builder b;
    b({0x10, 0x29}).str("MQTT")({5, 0x2E, 0x00, 0x3C})  // level 5, clean start, will QoS 1 retain; keep-alive 60
        ({0x05, 0x21, 0x00, 0x0A, 0x19, 0x01})          // properties: receive maximum 10, request response info
        .str("phone")                                    // client id
        ({0x07, 0x18, 0x00, 0x00, 0x00, 0x05, 0x01, 0x01})  // will properties: will delay 5, payload format 1
        .str("w/t")                                      // will topic
        .str("bye");                                     // will payload
    auto client = std::get<mqtt::connect>(test::decode_ok(b.out, v5));
    bridge::drop_counts drops{};
    const auto up = bridge::to_broker_connect(client, drops);
    byte_builder expected;
    expected({0x10, 0x1B}).str("MQTT")({4, 0x2E, 0x00, 0x3C})  // level 4, clean session, will QoS 1 retain
        .str("phone").str("w/t").str("bye");
    CHECK(test::encode_ok(up, v3) == expected.out);
    CHECK(count(drops, bridge::dropped::will_delay_interval) == 1);
    CHECK(count(drops, bridge::dropped::payload_format_indicator) == 1);
    CHECK(count(drops, bridge::dropped::receive_maximum) == 1);
  }

  TEST_CASE("CONNECT: session expiry > 0 is clean session 0, whatever Clean Start says") {
    for (bool clean_start : {true, false}) {
      mqtt::connect c;
      c.version = v5;
      c.clean_start = clean_start;
      c.client_id = "phone";
      c.props.add(property_id::session_expiry_interval, 3600u);
      c.props.add(property_id::user_property, mqtt::string_pair{"a", "b"});
      bridge::drop_counts drops{};
      const auto wire = test::encode_ok(bridge::to_broker_connect(c, drops), v3);
      CHECK(wire[9] == 0x00);  // connect flags: clean session 0
      CHECK(wire[8] == 4);     // protocol level 3.1.1
      CHECK(count(drops, bridge::dropped::user_property) == 1);
    }
  }

  TEST_CASE("PUBLISH: every property is dropped and counted, the message kept") {
    byte_builder b;
    b({0x32, 0x30}).str("a/b")({0x00, 0x07})  // QoS 1, topic, packet id 7
        ({0x26,                                // properties, 38 bytes:
          0x01, 0x01,                          //   payload format: UTF-8
          0x02, 0x00, 0x00, 0x00, 0x3C,        //   message expiry 60
          0x03})
        .str("text/plain")                     //   content type (3 + 10)
        ({0x08}).str("r/t")                    //   response topic (3 + 3)
        ({0x09}).str("id")                     //   correlation data (3 + 2)
        ({0x26}).str("k").str("v")             //   user property (5 + 2)
        ("hi");                                // payload
    bridge::drop_counts drops{};
    byte_builder expected;
    expected({0x32, 0x09}).str("a/b")({0x00, 0x07})("hi");
    CHECK(to_broker_bytes(b.out, drops) == expected.out);
    for (auto what : {bridge::dropped::payload_format_indicator, bridge::dropped::message_expiry_interval,
                      bridge::dropped::content_type, bridge::dropped::response_topic,
                      bridge::dropped::correlation_data, bridge::dropped::user_property})
      CHECK(count(drops, what) == 1);
  }

  TEST_CASE("acks lose their reason codes and properties") {
    bridge::drop_counts drops{};
    byte_builder puback;
    puback({0x40, 0x07, 0x00, 0x05, 0x10, 0x03, 0x1F}).str("");  // PUBACK id 5, 0x10, reason string ""
    CHECK(to_broker_bytes(puback.out, drops) == mqtt::bytes{0x40, 0x02, 0x00, 0x05});
    CHECK(count(drops, bridge::dropped::reason_string) == 1);
    CHECK(to_broker_bytes({0x62, 0x02, 0x00, 0x09}, drops) == mqtt::bytes{0x62, 0x02, 0x00, 0x09});  // PUBREL
    CHECK(to_broker_bytes({0x70, 0x03, 0x00, 0x09, 0x92}, drops) == mqtt::bytes{0x70, 0x02, 0x00, 0x09});  // PUBCOMP
  }

  TEST_CASE("SUBSCRIBE and UNSUBSCRIBE lose their properties; options are QoS only") {
    bridge::drop_counts drops{};
    byte_builder sub;
    sub({0x82, 0x0F, 0x00, 0x03, 0x06, 0x26}).str("k").str("")  // id 3, user property k=""
        .str("a/#")({0x01});                                     // a/# QoS 1
    byte_builder expected;
    expected({0x82, 0x08, 0x00, 0x03}).str("a/#")({0x01});
    CHECK(to_broker_bytes(sub.out, drops) == expected.out);
    CHECK(count(drops, bridge::dropped::user_property) == 1);
    byte_builder unsub;
    unsub({0xA2, 0x08, 0x00, 0x04, 0x00}).str("a/#");
    byte_builder unsub_expected;
    unsub_expected({0xA2, 0x07, 0x00, 0x04}).str("a/#");
    CHECK(to_broker_bytes(unsub.out, drops) == unsub_expected.out);
  }

  TEST_CASE("DISCONNECT: 0x00 is sent, anything else asks for the will, so nothing is sent") {
    bridge::drop_counts drops{};
    CHECK(to_broker_bytes({0xE0, 0x00}, drops) == mqtt::bytes{0xE0, 0x00});
    CHECK_FALSE(bridge::to_broker(test::decode_ok({0xE0, 0x01, 0x04}, v5), drops).has_value());  // with will
    CHECK_FALSE(bridge::to_broker(test::decode_ok({0xE0, 0x01, 0x80}, v5), drops).has_value());  // an error
    // A session expiry changed at DISCONNECT cannot reach a 3.1.1 broker: counted.
    CHECK(to_broker_bytes({0xE0, 0x07, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x00}, drops) == mqtt::bytes{0xE0, 0x00});
    CHECK(count(drops, bridge::dropped::session_expiry_interval) == 1);
  }

  TEST_CASE("subscriptions a 3.1.1 broker cannot honour are refused with the 5.0 reason code") {
    const bridge::broker_traits rabbit{false, true};
    const bridge::broker_traits mosquitto{true, true};
    mqtt::subscribe s{1, {}, {}};
    auto option = [&](mqtt::subscribe_options o, std::string filter = "a/b") {
      return bridge::refusal(s, {std::move(filter), o}, mosquitto);
    };
    CHECK_FALSE(option({mqtt::qos::at_least_once}).has_value());
    CHECK(option({mqtt::qos::at_most_once, true}) == reason_code::implementation_specific_error);         // no local
    CHECK(option({mqtt::qos::at_most_once, false, true}) == reason_code::implementation_specific_error);  // retain as published
    CHECK(option({mqtt::qos::at_most_once, false, false, 1}) == reason_code::implementation_specific_error);
    CHECK(option({mqtt::qos::at_most_once, false, false, 2}) == reason_code::implementation_specific_error);
    CHECK_FALSE(option({}, "$share/g/a").has_value());  // Mosquitto shares for 3.1.1 clients too
    CHECK(bridge::refusal(s, {"$share/g/a", {}}, rabbit) == reason_code::shared_subscriptions_not_supported);
    s.props.add(property_id::subscription_identifier, 7u);
    CHECK(option({}) == reason_code::subscription_identifiers_not_supported);
  }
}

TEST_SUITE("version bridge: broker 3.1.1 -> client 5.0") {
  TEST_CASE("CONNACK: return codes as reason codes; session-present 0 after Clean Start; no subscription ids") {
    const bridge::broker_traits rabbit{false, true};
    auto refused = std::get<mqtt::connack>(test::decode_ok({0x20, 0x02, 0x00, 0x05}, v3));
    CHECK(test::encode_ok(bridge::to_client_connack(refused, true, rabbit), v5) == mqtt::bytes{0x20, 0x03, 0x00, 0x87, 0x00});
    auto resumed = std::get<mqtt::connack>(test::decode_ok({0x20, 0x02, 0x01, 0x00}, v3));
    CHECK(test::encode_ok(bridge::to_client_connack(resumed, false, rabbit), v5) ==
          mqtt::bytes{0x20, 0x07, 0x01, 0x00, 0x04, 0x29, 0x00, 0x2A, 0x00});  // present; sub ids 0, shared 0
    CHECK(test::encode_ok(bridge::to_client_connack(resumed, true, rabbit), v5)[2] == 0x00);  // [MQTT-3.2.2-2]
    auto unavailable = std::get<mqtt::connack>(test::decode_ok({0x20, 0x02, 0x00, 0x03}, v3));
    CHECK(bridge::to_client_connack(unavailable, true, rabbit).reason == reason_code::server_unavailable);
  }

  TEST_CASE("SUBACK: granted QoS unchanged, 0x80 is 0x87 behind a broker with an ACL, else 0x80") {
    auto ack = std::get<mqtt::suback>(test::decode_ok({0x90, 0x05, 0x00, 0x02, 0x01, 0x80, 0x00}, v3));
    CHECK(test::encode_ok(bridge::to_client_suback(ack, {true, true}), v5) ==
          mqtt::bytes{0x90, 0x06, 0x00, 0x02, 0x00, 0x01, 0x87, 0x00});
    CHECK(test::encode_ok(bridge::to_client_suback(ack, {true, false}), v5) ==
          mqtt::bytes{0x90, 0x06, 0x00, 0x02, 0x00, 0x01, 0x80, 0x00});
  }

  TEST_CASE("UNSUBACK: one success per filter [MQTT-3.11.3-1]") {
    auto ack = std::get<mqtt::unsuback>(test::decode_ok({0xB0, 0x02, 0x00, 0x05}, v3));
    CHECK(test::encode_ok(bridge::to_client_unsuback(ack, 2), v5) == mqtt::bytes{0xB0, 0x05, 0x00, 0x05, 0x00, 0x00, 0x00});
  }
}

TEST_SUITE("version bridge: configuration") {
  TEST_CASE("[upstream] protocol and --upstream-protocol: auto by default, the flag wins, bad values name the key") {
    CHECK(test::parse({}).config.connection.session.protocol == upstream_protocol::automatic);
    auto file = test::write_file("mqtt-proxy-bridge.toml", "[upstream]\nprotocol = \"3.1.1\"\n");
    CHECK(test::parse({"--config", file}).config.connection.session.protocol == upstream_protocol::v3_1_1);
    CHECK(test::parse({"--config", file, "--upstream-protocol", "5.0"}).config.connection.session.protocol ==
          upstream_protocol::v5);
    CHECK(test::parse({"--upstream-protocol", "auto"}).config.connection.session.protocol == upstream_protocol::automatic);
    CHECK(test::error_of({"--upstream-protocol", "3.1"}).find("--upstream-protocol") != std::string::npos);
    auto bad = test::write_file("mqtt-proxy-bridge-bad.toml", "[upstream]\nprotocol = \"4\"\n");
    CHECK(test::error_of({"--config", bad}).find("upstream.protocol") != std::string::npos);
  }
}

TEST_SUITE("version bridge: start-up version probe") {
  TEST_CASE("what the broker answers to a 5.0 and to a 3.1.1 CONNECT") {
    using A = version_answer;
    CHECK(classify_version_answer(v5, {}, true) == A::unsupported);  // RabbitMQ 3.10: closed, no CONNACK
    CHECK(classify_version_answer(v5, {}, false) == A::unreachable);
    CHECK(classify_version_answer(v5, {0x20, 0x02, 0x00, 0x01}, true) == A::unsupported);  // 3.1.1 form [MQTT-3.1.2-2]
    CHECK(classify_version_answer(v5, {0x20, 0x03, 0x00, 0x84, 0x00}, true) == A::unsupported);
    CHECK(classify_version_answer(v5, {0x20, 0x03, 0x00, 0x00, 0x00}, false) == A::accepted);
    CHECK(classify_version_answer(v5, {0x20, 0x03, 0x00, 0x86, 0x00}, true) == A::refused);
    CHECK(classify_version_answer(v5, {0x20, 0x03, 0x00}, false) == A::unreachable);  // incomplete
    CHECK(classify_version_answer(v3, {0x20, 0x02, 0x00, 0x00}, false) == A::accepted);
    CHECK(classify_version_answer(v3, {0x20, 0x02, 0x00, 0x04}, true) == A::refused);
    CHECK(classify_version_answer(v3, {}, true) == A::unsupported);
  }
}

// ----------------------------------------------------------------- the session

namespace {

// A 5.0 client, a 3.1.1 broker: client packets are encoded in 5.0, the
// broker's in 3.1.1, as on the wire.
struct bridged {
  session_config config;
  metrics counters;
  client_session session;

  explicit bridged(upstream_kind kind = upstream_kind::rabbitmq, upstream_protocol protocol = upstream_protocol::v3_1_1)
      : config(make_config(kind, protocol)), session(config, counters, "generated-id") {}

  static session_config make_config(upstream_kind kind, upstream_protocol protocol) {
    session_config c;
    c.upstream_username = "proxy";
    c.upstream_password = "proxy-secret";
    c.upstream = kind;
    c.protocol = protocol;
    return c;
  }

  std::vector<session_action> feed(const mqtt::bytes& wire, bool from_client) {
    mqtt::framer f(1 << 20);
    f.feed(wire);
    auto frame = **f.next();
    auto out = from_client ? session.on_client_frame(frame) : session.on_upstream_frame(frame);
    return {out.begin(), out.end()};
  }
  std::vector<session_action> client(const mqtt::packet& p, mqtt::protocol_version v = v5) {
    return feed(test::encode_ok(p, v), true);
  }
  std::vector<session_action> upstream(const mqtt::packet& p) { return feed(test::encode_ok(p, v3), false); }
  std::vector<session_action> auth() {
    auth_result r;
    r.outcome = auth_result::verdict::valid;
    r.user = "alice";
    r.permissions = {{"private/alice/#"}, {"private/alice/#", "$share/g/private/alice/#"}};
    auto out = session.on_auth_result(r);
    return {out.begin(), out.end()};
  }

  static mqtt::connect connect_packet() {
    mqtt::connect c;
    c.version = v5;
    c.client_id = "phone";
    c.keep_alive = 20;
    c.props.add(property_id::maximum_packet_size, 200u);
    return c;
  }
  // The same with one more numeric property, e.g. the client's Receive Maximum.
  static mqtt::connect connect_packet_with(property_id id, std::uint32_t value) {
    auto c = connect_packet();
    c.props.add(id, value);
    return c;
  }

  mqtt::connect establish(mqtt::connect c = connect_packet()) {
    client(c);
    client(mqtt::publish{"service/auth/tok", "", mqtt::qos::at_most_once, false, false, 0, {}});
    auto out = auth();
    auto up = std::get<action::connect_upstream>(out.back());
    auto sent = std::get<mqtt::connect>(test::decode_ok(up.connect_packet, v3));
    upstream(mqtt::connack{});
    REQUIRE(session.current_state() == client_session::state::relaying);
    return sent;
  }
};

template <class T>
std::vector<T> all_of(const std::vector<session_action>& actions) {
  std::vector<T> out;
  for (const auto& a : actions)
    if (auto* x = std::get_if<T>(&a)) out.push_back(*x);
  return out;
}

std::vector<mqtt::packet> sent_to(const std::vector<session_action>& actions, bool client) {
  std::vector<mqtt::packet> out;
  if (client) {
    for (const auto& a : all_of<action::send_to_client>(actions)) out.push_back(test::decode_ok(a.data, v5));
  } else {
    for (const auto& a : all_of<action::send_to_upstream>(actions)) out.push_back(test::decode_ok(a.data, v3));
  }
  return out;
}

}  // namespace

TEST_SUITE("version bridge: the session") {
  TEST_CASE("the proxy's CONNACK says what the bridge cannot do; the broker gets a 3.1.1 CONNECT") {
    bridged h;
    auto out = h.client(bridged::connect_packet());
    auto ack = std::get<mqtt::connack>(sent_to(out, true).at(0));
    CHECK(ack.props.number(property_id::subscription_identifier_available) == 0u);
    CHECK(ack.props.number(property_id::shared_subscription_available) == 0u);  // RabbitMQ has no $share
    CHECK_FALSE(ack.props.number(property_id::topic_alias_maximum).has_value());  // 0: no aliases
    CHECK(ack.props.number(property_id::maximum_packet_size).has_value());
    h.client(mqtt::publish{"service/auth/tok", "", mqtt::qos::at_most_once, false, false, 0, {}});
    out = h.auth();
    auto up = test::decode_ok(std::get<action::connect_upstream>(out.back()).connect_packet, v3);
    CHECK(std::get<mqtt::connect>(up).version == mqtt::protocol_version::v3_1_1);
    CHECK(std::get<mqtt::connect>(up).clean_start);
    CHECK(std::get<mqtt::connect>(up).client_id == "5:alice:phone");
    CHECK(h.counters.bridged_connections == 1);
  }

  TEST_CASE("PUBLISH both ways, QoS 1 acks both ways, properties dropped and counted") {
    bridged h;
    h.establish();
    mqtt::publish p{"private/alice/x", "hi", mqtt::qos::at_least_once, false, false, 4, {}};
    p.props.add(property_id::user_property, mqtt::string_pair{"k", "v"});
    p.props.add(property_id::message_expiry_interval, 30u);
    auto out = h.client(p);
    auto up = std::get<mqtt::publish>(sent_to(out, false).at(0));
    CHECK(up.props.empty());
    CHECK(up.payload == "hi");
    CHECK(up.packet_id == 4);
    CHECK(h.counters.bridge_dropped[static_cast<std::size_t>(bridge::dropped::user_property)] == 1);
    CHECK(h.counters.bridge_dropped[static_cast<std::size_t>(bridge::dropped::message_expiry_interval)] == 1);
    out = h.upstream(mqtt::puback{4, reason_code::success, {}});
    CHECK(std::get<mqtt::puback>(sent_to(out, true).at(0)).packet_id == 4);

    out = h.upstream(mqtt::publish{"private/alice/y", "back", mqtt::qos::at_least_once, false, false, 9, {}});
    auto delivered = std::get<mqtt::publish>(sent_to(out, true).at(0));
    CHECK(delivered.payload == "back");
    out = h.client(mqtt::puback{9, reason_code::success, {}});
    CHECK(std::get<mqtt::puback>(sent_to(out, false).at(0)).packet_id == 9);
  }

  TEST_CASE("SUBSCRIBE: unbridgeable options refused in place, the rest forwarded; SUBACK widened back") {
    bridged h;
    h.establish();
    mqtt::subscribe s{5, {}, {{"private/alice/a", {mqtt::qos::at_least_once}},
                              {"private/alice/b", {mqtt::qos::at_least_once, true}},  // no local
                              {"$share/g/private/alice/c", {mqtt::qos::at_most_once}}}};
    auto out = h.client(s);
    auto up = std::get<mqtt::subscribe>(sent_to(out, false).at(0));
    REQUIRE(up.subscriptions.size() == 1);
    CHECK(up.subscriptions[0].filter == "private/alice/a");
    out = h.upstream(mqtt::suback{5, {}, {reason_code::granted_qos_1}});
    auto ack = std::get<mqtt::suback>(sent_to(out, true).at(0));
    CHECK(ack.reasons == std::vector<reason_code>{reason_code::granted_qos_1, reason_code::implementation_specific_error,
                                                  reason_code::shared_subscriptions_not_supported});
    CHECK(h.counters.bridge_refused_subscriptions == 2);
  }

  TEST_CASE("SUBSCRIBE with a subscription identifier: every filter 0xA1, nothing reaches the broker") {
    bridged h;
    h.establish();
    mqtt::subscribe s{6, {}, {{"private/alice/a", {mqtt::qos::at_least_once}}}};
    s.props.add(property_id::subscription_identifier, 3u);
    auto out = h.client(s);
    CHECK(sent_to(out, false).empty());
    CHECK(std::get<mqtt::suback>(sent_to(out, true).at(0)).reasons ==
          std::vector<reason_code>{reason_code::subscription_identifiers_not_supported});
  }

  TEST_CASE("a broker SUBACK 0x80 reaches the client as 0x87; UNSUBACK gets a reason per filter") {
    bridged h(upstream_kind::mosquitto);
    h.establish();
    auto out = h.client(mqtt::subscribe{7, {}, {{"private/alice/a", {}}, {"private/alice/b", {}}}});
    CHECK(all_of<action::send_to_upstream>(out).size() == 1);
    out = h.upstream(mqtt::suback{7, {}, {reason_code::success, reason_code::unspecified_error}});
    CHECK(std::get<mqtt::suback>(sent_to(out, true).at(0)).reasons ==
          std::vector<reason_code>{reason_code::success, reason_code::not_authorized});
    h.client(mqtt::unsubscribe{8, {}, {"private/alice/a", "private/alice/b"}});
    out = h.upstream(mqtt::unsuback{8, {}, {}});
    CHECK(std::get<mqtt::unsuback>(sent_to(out, true).at(0)).reasons ==
          std::vector<reason_code>{reason_code::success, reason_code::success});
  }

  TEST_CASE("hostile: a topic alias is a protocol error 0x94, a subscription identifier in PUBLISH 0x82") {
    for (auto [id, code] : {std::pair{property_id::topic_alias, reason_code::topic_alias_invalid},
                            std::pair{property_id::subscription_identifier, reason_code::protocol_error}}) {
      bridged h;
      h.establish();
      mqtt::publish p{"private/alice/x", "", mqtt::qos::at_most_once, false, false, 0, {}};
      p.props.add(id, 1u);
      auto out = h.client(p);
      CHECK(sent_to(out, false).empty());
      CHECK(std::get<mqtt::disconnect>(sent_to(out, true).at(0)).reason == code);
      CHECK(std::holds_alternative<action::close>(out.back()));
    }
  }

  TEST_CASE("DISCONNECT 0x04 (with will) ends the broker connection without a DISCONNECT; 0x00 sends one") {
    bridged h;
    h.establish();
    auto out = h.client(mqtt::disconnect{reason_code::disconnect_with_will, {}});
    CHECK(all_of<action::send_to_upstream>(out).empty());
    CHECK_FALSE(std::holds_alternative<action::forward_to_upstream>(out.front()));
    CHECK(std::holds_alternative<action::close>(out.back()));
    bridged clean;
    clean.establish();
    out = clean.client(mqtt::disconnect{});
    CHECK(all_of<action::send_to_upstream>(out).at(0).data == mqtt::bytes{0xE0, 0x00});
  }

  TEST_CASE("shutdown with wills fired sends the 3.1.1 broker no DISCONNECT") {
    bridged h;
    h.establish();
    auto out = h.session.on_shutdown(true);
    CHECK(all_of<action::send_to_upstream>({out.begin(), out.end()}).empty());
    bridged quiet;
    quiet.establish();
    out = quiet.session.on_shutdown(false);
    CHECK(all_of<action::send_to_upstream>({out.begin(), out.end()}).at(0).data == mqtt::bytes{0xE0, 0x00});
  }

  TEST_CASE("a delivery over the client's Maximum Packet Size is dropped and acknowledged to the broker") {
    bridged h;
    h.establish();  // the client's maximum packet size: 200
    auto out = h.upstream(mqtt::publish{"private/alice/big", std::string(300, 'x'), mqtt::qos::at_least_once, false, false, 3, {}});
    CHECK(all_of<action::send_to_client>(out).empty());
    CHECK(all_of<action::forward_to_client>(out).empty());
    CHECK(std::get<mqtt::puback>(sent_to(out, false).at(0)).packet_id == 3);
    CHECK(h.counters.bridge_oversized_dropped == 1);
  }

  TEST_CASE("Clean Start with a Session Expiry: what a resumed broker session delivers for old subscriptions is dropped") {
    // The 3.1.1 broker gets clean session 0 and may resume an old session of
    // this client id; the client was told session-present 0, so it gets only
    // what it subscribes to on this connection.
    bridged h;
    auto c = bridged::connect_packet_with(property_id::session_expiry_interval, 3600u);
    c.clean_start = true;
    CHECK_FALSE(h.establish(c).clean_start);
    auto out = h.upstream(mqtt::publish{"private/alice/old", "queued", mqtt::qos::at_least_once, false, false, 5, {}});
    CHECK(all_of<action::forward_to_client>(out).empty());
    CHECK(all_of<action::send_to_client>(out).empty());
    CHECK(std::get<mqtt::puback>(sent_to(out, false).at(0)).packet_id == 5);  // completed with the broker
    CHECK(h.counters.bridge_unasked_dropped == 1);
    mqtt::subscription sub{"private/alice/new/#", {}};
    sub.options.max_qos = mqtt::qos::at_least_once;
    h.client(mqtt::subscribe{1, {}, {sub}});
    h.upstream(mqtt::suback{1, {}, {reason_code::granted_qos_1}});
    out = h.upstream(mqtt::publish{"private/alice/new/x", "live", mqtt::qos::at_least_once, false, false, 6, {}});
    CHECK(std::get<mqtt::publish>(sent_to(out, true).at(0)).payload == "live");
    CHECK(h.counters.bridge_unasked_dropped == 1);
  }

  TEST_CASE("a resumed session the client asked for (Clean Start 0) delivers its old subscriptions") {
    bridged h;
    auto c = bridged::connect_packet_with(property_id::session_expiry_interval, 3600u);
    c.clean_start = false;
    h.establish(c);
    auto out = h.upstream(mqtt::publish{"private/alice/old", "queued", mqtt::qos::at_least_once, false, false, 5, {}});
    CHECK(std::get<mqtt::publish>(sent_to(out, true).at(0)).payload == "queued");
    CHECK(h.counters.bridge_unasked_dropped == 0);
  }

  TEST_CASE("a failing PUBREC ends the client's QoS 2 flow: the proxy answers the broker's PUBREL") {
    bridged h;
    h.establish();
    h.upstream(mqtt::publish{"private/alice/q2", "x", mqtt::qos::exactly_once, false, false, 11, {}});
    auto out = h.client(mqtt::pubrec{11, reason_code::unspecified_error, {}});
    CHECK(std::get<mqtt::pubrec>(sent_to(out, false).at(0)).packet_id == 11);
    out = h.upstream(mqtt::pubrel{11, reason_code::success, {}});
    CHECK(sent_to(out, true).empty());
    CHECK(std::get<mqtt::pubcomp>(sent_to(out, false).at(0)).packet_id == 11);
  }

  TEST_CASE("the Receive Maximum the proxy advertised is held, as a 3.1.1 broker would not") {
    bridged h;
    h.config.limits.receive_maximum = 2;
    h.establish();
    auto publish = [&](std::uint16_t id) {
      return h.client(mqtt::publish{"private/alice/x", "", mqtt::qos::at_least_once, false, false, id, {}});
    };
    publish(1);
    publish(2);
    h.upstream(mqtt::puback{1, reason_code::success, {}});
    auto out = publish(3);  // two in flight again: allowed
    CHECK(all_of<action::send_to_upstream>(out).size() == 1);
    out = publish(4);  // a third: 0x93
    CHECK(all_of<action::send_to_upstream>(out).empty());
    CHECK(std::get<mqtt::disconnect>(sent_to(out, true).at(0)).reason == reason_code::receive_maximum_exceeded);
  }

  TEST_CASE("the client's own Receive Maximum holds the 3.1.1 broker's deliveries back [MQTT-3.3.4-9]") {
    bridged h;
    h.establish(bridged::connect_packet_with(property_id::receive_maximum, 2u));
    auto deliver = [&](std::uint16_t id, mqtt::qos qos = mqtt::qos::at_least_once, std::string topic = "private/alice/x") {
      return sent_to(h.upstream(mqtt::publish{topic, "m" + std::to_string(id), qos, false, false, id, {}}), true);
    };
    CHECK(deliver(1).size() == 1);
    CHECK(deliver(2).size() == 1);
    CHECK(deliver(3).empty());  // two in flight: the third waits
    CHECK(deliver(0, mqtt::qos::at_most_once).empty());  // and what comes behind it, in order
    CHECK(h.session.held_delivery_bytes() > 0);
    // A resend of one in flight is not a new one.
    CHECK(sent_to(h.upstream(mqtt::publish{"private/alice/x", "m2", mqtt::qos::at_least_once, false, true, 2, {}}), true)
              .empty());  // it waits behind 3 all the same: order
    auto out = h.client(mqtt::puback{1, reason_code::success, {}});
    CHECK(std::get<mqtt::puback>(sent_to(out, false).at(0)).packet_id == 1);
    auto released = sent_to(out, true);
    REQUIRE(released.size() == 3);  // 3 takes 1's place; the QoS 0 one and the resend of 2 need none
    CHECK(std::get<mqtt::publish>(released[0]).packet_id == 3);
    CHECK(std::get<mqtt::publish>(released[1]).payload == "m0");
    CHECK(std::get<mqtt::publish>(released[2]).packet_id == 2);
    CHECK(h.session.held_delivery_bytes() == 0);
    CHECK(deliver(4).empty());  // 2 and 3 in flight
    // QoS 2: in flight until PUBCOMP, or a failing PUBREC that ends the flow.
    CHECK(sent_to(h.client(mqtt::puback{2, reason_code::success, {}}), true).size() == 1);  // 4 goes
    CHECK(deliver(5, mqtt::qos::exactly_once).empty());
    CHECK(sent_to(h.client(mqtt::puback{3, reason_code::success, {}}), true).size() == 1);  // 5 goes
    CHECK(deliver(6).empty());
    CHECK(sent_to(h.client(mqtt::pubrec{5, reason_code::success, {}}), true).empty());  // still in flight
    h.upstream(mqtt::pubrel{5, reason_code::success, {}});
    CHECK(sent_to(h.client(mqtt::pubcomp{5, reason_code::success, {}}), true).size() == 1);  // 6 goes
    CHECK(deliver(7, mqtt::qos::exactly_once).empty());
    CHECK(sent_to(h.client(mqtt::puback{4, reason_code::success, {}}), true).size() == 1);  // 7 goes
    CHECK(deliver(8).empty());
    CHECK(sent_to(h.client(mqtt::pubrec{7, reason_code::unspecified_error, {}}), true).size() == 1);  // 7 failed: 8 goes
  }

  TEST_CASE("a QoS 2 delivery waiting for the broker's PUBREL keeps the broker side read (no deadlock)") {
    bridged h;
    h.establish(bridged::connect_packet_with(property_id::receive_maximum, 1u));
    h.upstream(mqtt::publish{"private/alice/q2", "x", mqtt::qos::exactly_once, false, false, 1, {}});
    h.upstream(mqtt::publish{"private/alice/q2", "z", mqtt::qos::at_least_once, false, false, 2, {}});  // waits
    for (std::uint16_t id = 3; id < 41; ++id)
      h.upstream(mqtt::publish{"private/alice/q2", std::string(100, 'y'), mqtt::qos::at_most_once, false, false, 0, {}});
    const auto held = h.session.held_delivery_bytes();
    CHECK(held > 38 * 100);  // counted as what it holds
    h.client(mqtt::pubrec{1, reason_code::success, {}});
    CHECK(h.session.held_delivery_bytes() == 0);  // the broker's PUBREL must be read: its side goes on
    auto rel = h.upstream(mqtt::pubrel{1, reason_code::success, {}});
    CHECK(std::get<mqtt::pubrel>(sent_to(rel, true).at(0)).packet_id == 1);
    CHECK(h.session.held_delivery_bytes() == held);  // back to pausing on what is held
    auto out = h.client(mqtt::pubcomp{1, reason_code::success, {}});
    CHECK(sent_to(out, true).size() == 39);  // the window is free: 2 takes it, every QoS 0 one behind it goes
    CHECK(h.session.held_delivery_bytes() == 0);
  }

  TEST_CASE("an acknowledgement of a delivery still held (never sent) is not passed to the broker") {
    bridged h;
    h.establish(bridged::connect_packet_with(property_id::receive_maximum, 1u));
    h.upstream(mqtt::publish{"private/alice/a", "1", mqtt::qos::at_least_once, false, false, 1, {}});
    h.upstream(mqtt::publish{"private/alice/a", "2", mqtt::qos::at_least_once, false, false, 2, {}});  // held
    auto out = h.client(mqtt::puback{2, reason_code::success, {}});  // for a message it never got
    CHECK(sent_to(out, false).empty());
    CHECK(sent_to(out, true).empty());
    out = h.client(mqtt::puback{1, reason_code::success, {}});
    CHECK(std::get<mqtt::puback>(sent_to(out, false).at(0)).packet_id == 1);
    CHECK(std::get<mqtt::publish>(sent_to(out, true).at(0)).packet_id == 2);  // still delivered, then acknowledged
    out = h.client(mqtt::puback{2, reason_code::success, {}});
    CHECK(std::get<mqtt::puback>(sent_to(out, false).at(0)).packet_id == 2);
  }

  TEST_CASE("small held deliveries are counted at what they hold, not their wire size") {
    bridged h;
    h.establish(bridged::connect_packet_with(property_id::receive_maximum, 1u));
    h.upstream(mqtt::publish{"private/alice/a", "1", mqtt::qos::at_least_once, false, false, 1, {}});
    h.upstream(mqtt::publish{"private/alice/a", "2", mqtt::qos::at_least_once, false, false, 2, {}});
    CHECK(h.session.held_delivery_bytes() >= 100);  // a 20-byte PUBLISH holds a buffer, a topic and its slot
  }

  TEST_CASE("a held delivery is checked against the ACL again when it goes") {
    bridged h;
    h.establish(bridged::connect_packet_with(property_id::receive_maximum, 1u));
    h.upstream(mqtt::publish{"private/alice/a", "1", mqtt::qos::at_least_once, false, false, 1, {}});
    CHECK(sent_to(h.upstream(mqtt::publish{"private/alice/b", "2", mqtt::qos::at_least_once, false, false, 2, {}}), true)
              .empty());
    auth_event narrowed;
    narrowed.type = auth_event::kind::acl_changed;
    narrowed.user_id = narrowed.user = "alice";
    narrowed.permissions = {{"private/alice/#"}, {"private/alice/a"}};
    h.session.on_auth_event(narrowed);
    auto out = h.client(mqtt::puback{1, reason_code::success, {}});
    CHECK(sent_to(out, true).empty());  // b is no longer the client's to receive
    auto up = sent_to(out, false);
    REQUIRE(up.size() == 2);  // the client's PUBACK of 1, and the proxy's of 2: the broker's window does not fill
    CHECK(std::get<mqtt::puback>(up[1]).packet_id == 2);
    CHECK(h.counters.acl_denied_deliver == 1);
    CHECK(h.session.held_delivery_bytes() == 0);
  }

  TEST_CASE("without a Receive Maximum below 65535, or not bridged, nothing is held") {
    bridged h;
    h.establish();
    for (std::uint16_t id = 1; id <= 100; ++id)
      CHECK(sent_to(h.upstream(mqtt::publish{"private/alice/x", "", mqtt::qos::at_least_once, false, false, id, {}}), true)
                .size() == 1);
    CHECK(h.session.held_delivery_bytes() == 0);
  }

  TEST_CASE("direct mode: the broker's 3.1.1 refusal reaches the client as a 5.0 reason code") {
    bridged h;
    auto c = bridged::connect_packet();
    c.password = "tok";
    h.client(c);
    h.auth();
    auto out = h.upstream(mqtt::connack{false, reason_code::not_authorized, {}});
    CHECK(std::get<mqtt::connack>(sent_to(out, true).at(0)).reason == reason_code::not_authorized);
  }

  TEST_CASE("direct mode: a resumed session after Clean Start is reported as not present") {
    bridged h;
    auto c = bridged::connect_packet();
    c.password = "tok";
    c.props.add(property_id::session_expiry_interval, 600u);
    h.client(c);
    auto out = h.auth();
    auto up = std::get<mqtt::connect>(test::decode_ok(std::get<action::connect_upstream>(out.back()).connect_packet, v3));
    CHECK_FALSE(up.clean_start);  // expiry > 0: the broker keeps the session
    out = h.upstream(mqtt::connack{true, reason_code::success, {}});
    auto ack = std::get<mqtt::connack>(sent_to(out, true).at(0));
    CHECK_FALSE(ack.session_present);  // [MQTT-3.2.2-2]
    CHECK(ack.props.number(property_id::subscription_identifier_available) == 0u);
  }

  TEST_CASE("3.1.1 clients and the 5.0 setting are not bridged") {
    bridged h(upstream_kind::rabbitmq, upstream_protocol::v5);
    auto out = h.client(bridged::connect_packet());
    CHECK_FALSE(std::get<mqtt::connack>(sent_to(out, true).at(0)).props.number(property_id::subscription_identifier_available));
    // A 3.1.1 client on the 3.1.1 upstream: relayed byte for byte, as before.
    bridged old;
    mqtt::connect c;
    c.client_id = "old";
    old.client(c, v3);
    old.client(mqtt::publish{"service/auth/tok", "", mqtt::qos::at_most_once, false, false, 0, {}}, v3);
    out = old.auth();
    CHECK(std::get<mqtt::connect>(test::decode_ok(std::get<action::connect_upstream>(out.back()).connect_packet, v3))
              .client_id == "5:alice:old");
    old.upstream(mqtt::connack{});
    out = old.client(mqtt::publish{"private/alice/x", "hi", mqtt::qos::at_least_once, false, false, 2, {}}, v3);
    CHECK(all_of<action::forward_to_upstream>(out).size() == 1);
    out = old.upstream(mqtt::puback{2, reason_code::success, {}});
    CHECK(all_of<action::forward_to_client>(out).size() == 1);
    CHECK(old.counters.bridged_connections == 0);
  }
}
