// The session state machine driven by events, no sockets: each test feeds
// client/broker packets and auth answers and checks the actions it asks for.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "session/client_session.hpp"

using namespace proxy;
using mqtt::protocol_version;
using mqtt::reason_code;

namespace {

struct harness {
  session_config config;
  metrics counters;
  client_session session;
  protocol_version v;

  explicit harness(protocol_version version, session_config cfg = make_config())
      : config(std::move(cfg)), session(config, counters, "generated-id"), v(version) {}

  static session_config make_config() {
    session_config c;
    c.upstream_username = "proxy";
    c.upstream_password = "proxy-secret";
    return c;
  }

  // Encodes a packet, frames it as the driver would, and hands it to `event`.
  template <class Event>
  std::vector<session_action> deliver(const mqtt::packet& p, Event event) {
    auto wire = *mqtt::encode(p, v);
    mqtt::framer f(1 << 20);
    f.feed(wire);
    auto out = (session.*event)(**f.next());
    return {out.begin(), out.end()};
  }
  std::vector<session_action> client(const mqtt::packet& p) { return deliver(p, &client_session::on_client_frame); }
  std::vector<session_action> upstream(const mqtt::packet& p) { return deliver(p, &client_session::on_upstream_frame); }
  std::vector<session_action> auth(auth_result r) {
    auto out = session.on_auth_result(r);
    return {out.begin(), out.end()};
  }

  mqtt::connect connect_packet(std::string id = "phone") {
    mqtt::connect c;
    c.version = v;
    c.client_id = std::move(id);
    c.keep_alive = 20;
    c.username = "ignored";
    return c;
  }

  // CONNECT, auth PUBLISH, valid answer, broker CONNACK: the session relays.
  void establish(acl permissions = default_acl(), std::optional<mqtt::will_message> will = {}) {
    auto c = connect_packet();
    c.username.reset();
    c.will = std::move(will);
    client(c);
    client(mqtt::publish{"service/auth/tok", "", mqtt::qos::at_most_once, false, false, 0, {}});
    auth(valid("alice", std::move(permissions)));
    upstream(mqtt::connack{});
    REQUIRE(session.current_state() == client_session::state::relaying);
  }

  static acl default_acl() { return {{"private/alice/#"}, {"private/alice/#", "public/+/news"}}; }
  static auth_result valid(std::string user, acl a) {
    auth_result r;
    r.outcome = auth_result::verdict::valid;
    r.user = std::move(user);
    r.permissions = std::move(a);
    r.expires_in = std::chrono::seconds(60);
    return r;
  }
};

template <class T>
std::vector<T> all_of(const std::vector<session_action>& actions) {
  std::vector<T> out;
  for (const auto& a : actions)
    if (auto* x = std::get_if<T>(&a)) out.push_back(*x);
  return out;
}

template <class T>
bool has(const std::vector<session_action>& actions) {
  return !all_of<T>(actions).empty();
}

// Packets the session sent to the client, decoded.
std::vector<mqtt::packet> to_client(const std::vector<session_action>& actions, protocol_version v) {
  std::vector<mqtt::packet> out;
  for (const auto& a : all_of<action::send_to_client>(actions)) out.push_back(*mqtt::decode(a.data, v));
  return out;
}

std::vector<mqtt::packet> to_upstream(const std::vector<session_action>& actions, protocol_version v) {
  std::vector<mqtt::packet> out;
  for (const auto& a : all_of<action::send_to_upstream>(actions)) out.push_back(*mqtt::decode(a.data, v));
  return out;
}

}  // namespace

TEST_SUITE("session: authentication") {
  TEST_CASE("the proxy answers CONNACK itself and holds the broker back until auth") {
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
      harness h(v);
      auto out = h.client(h.connect_packet());
      auto sent = to_client(out, v);
      REQUIRE(sent.size() == 1);
      CHECK(std::get<mqtt::connack>(sent[0]).reason == reason_code::success);
      CHECK_FALSE(std::get<mqtt::connack>(sent[0]).session_present);
      CHECK(has<action::arm_timer>(out));
      CHECK_FALSE(has<action::connect_upstream>(out));
      CHECK(h.session.current_state() == client_session::state::awaiting_auth);

      out = h.client(mqtt::publish{"service/auth/s3cr3t", "", mqtt::qos::at_most_once, false, false, 0, {}});
      REQUIRE(all_of<action::validate_session>(out).size() == 1);
      CHECK(all_of<action::validate_session>(out)[0].token == "s3cr3t");
      CHECK_FALSE(has<action::forward_to_upstream>(out));  // the auth PUBLISH never reaches the broker
    }
  }

  TEST_CASE("the session may also be the payload of service/auth") {
    harness h(protocol_version::v3_1_1);
    h.client(h.connect_packet());
    auto out = h.client(mqtt::publish{"service/auth", "tok-in-payload", mqtt::qos::at_least_once, false, false, 9, {}});
    CHECK(all_of<action::validate_session>(out).at(0).token == "tok-in-payload");
    CHECK(std::get<mqtt::puback>(to_client(out, h.v).at(0)).packet_id == 9);  // QoS 1 completed locally
  }

  TEST_CASE("a valid session connects upstream with the proxy's credentials and a user-bound client id") {
    harness h(protocol_version::v5);
    auto c = h.connect_packet("phone");
    c.password.reset();
    c.clean_start = false;
    c.props.add(mqtt::property_id::session_expiry_interval, 300u);
    c.will = mqtt::will_message{"private/alice/status", "offline", mqtt::qos::at_least_once, true, {}};
    h.client(c);
    h.client(mqtt::publish{"service/auth/tok", "", mqtt::qos::at_most_once, false, false, 0, {}});
    auto out = h.auth(harness::valid("alice", harness::default_acl()));
    REQUIRE(all_of<action::connect_upstream>(out).size() == 1);
    auto up = std::get<mqtt::connect>(*mqtt::decode(all_of<action::connect_upstream>(out)[0].connect_packet, h.v));
    CHECK(up.client_id == "5:alice:phone");
    CHECK(up.username == "proxy");
    CHECK(up.password == "proxy-secret");
    CHECK_FALSE(up.clean_start);
    CHECK(up.keep_alive == 20);
    CHECK(up.props.number(mqtt::property_id::session_expiry_interval) == 300u);
    REQUIRE(up.will);
    CHECK(up.will->topic == "private/alice/status");

    out = h.upstream(mqtt::connack{});
    auto sent = to_client(out, h.v);
    REQUIRE(sent.size() == 1);
    auto ok = std::get<mqtt::publish>(sent[0]);
    CHECK(ok.topic == "service/auth/tok");
    CHECK(nlohmann::json::parse(ok.payload) == nlohmann::json{{"result", "ok"}, {"user", "alice"}});
    CHECK(has<action::disarm_timer>(out));
    CHECK(h.counters.auth_ok == 1);
  }

  TEST_CASE("an invalid session is told so and disconnected") {
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
      harness h(v);
      h.client(h.connect_packet());
      h.client(mqtt::publish{"service/auth/bad", "", mqtt::qos::at_most_once, false, false, 0, {}});
      auto out = h.auth({auth_result::verdict::invalid});
      auto sent = to_client(out, v);
      REQUIRE(!sent.empty());
      auto denied = std::get<mqtt::publish>(sent[0]);
      CHECK(denied.topic == "service/auth/bad");
      CHECK(nlohmann::json::parse(denied.payload) == nlohmann::json{{"result", "denied"}, {"reason", "invalid_session"}});
      if (v == protocol_version::v5) {
        REQUIRE(sent.size() == 2);
        CHECK(std::get<mqtt::disconnect>(sent[1]).reason == reason_code::not_authorized);
      } else {
        CHECK(sent.size() == 1);
      }
      CHECK(has<action::close>(out));
      CHECK_FALSE(has<action::connect_upstream>(out));
    }
  }

  TEST_CASE("an unreachable API server fails closed with auth_unavailable") {
    harness h(protocol_version::v5);
    h.client(h.connect_packet());
    h.client(mqtt::publish{"service/auth/t", "", mqtt::qos::at_most_once, false, false, 0, {}});
    auto sent = to_client(h.auth({auth_result::verdict::unavailable}), h.v);
    CHECK(nlohmann::json::parse(std::get<mqtt::publish>(sent.at(0)).payload)["reason"] == "auth_unavailable");
    // 0x88 is not a DISCONNECT reason (table 3.14.2.1); 0x89 "server busy" is, and asks for a retry.
    CHECK(std::get<mqtt::disconnect>(sent.at(1)).reason == reason_code::server_busy);
  }

  TEST_CASE("a will outside the ACL is refused") {
    harness h(protocol_version::v3_1_1);
    auto c = h.connect_packet();
    c.will = mqtt::will_message{"private/bob/status", "x", mqtt::qos::at_most_once, false, {}};
    h.client(c);
    h.client(mqtt::publish{"service/auth/t", "", mqtt::qos::at_most_once, false, false, 0, {}});
    auto out = h.auth(harness::valid("alice", harness::default_acl()));
    CHECK(nlohmann::json::parse(std::get<mqtt::publish>(to_client(out, h.v).at(0)).payload)["reason"] ==
          "will_not_allowed");
    CHECK_FALSE(has<action::connect_upstream>(out));
  }

  TEST_CASE("timeout before auth") {
    harness h(protocol_version::v5);
    h.client(h.connect_packet());
    auto out = h.session.on_timer(timer_kind::handshake);
    std::vector<session_action> actions(out.begin(), out.end());
    CHECK(nlohmann::json::parse(std::get<mqtt::publish>(to_client(actions, h.v).at(0)).payload)["reason"] == "timeout");
  }

  TEST_CASE("an unauthenticated client that drops causes nothing upstream") {
    harness h(protocol_version::v3_1_1);
    auto c = h.connect_packet();
    c.will = mqtt::will_message{"private/alice/status", "x", mqtt::qos::at_most_once, false, {}};
    h.client(c);
    auto out = h.session.on_client_closed();
    CHECK(out.size() == 1);
    CHECK(std::holds_alternative<action::close>(out[0]));
  }

  TEST_CASE("direct mode: the session as CONNECT password, the broker's CONNACK relayed") {
    harness h(protocol_version::v5);
    auto c = h.connect_packet("");
    c.password = "tok";
    auto out = h.client(c);
    CHECK(to_client(out, h.v).empty());  // no CONNACK before validation
    CHECK(all_of<action::validate_session>(out).at(0).token == "tok");
    out = h.auth(harness::valid("alice", harness::default_acl()));
    auto up = std::get<mqtt::connect>(*mqtt::decode(all_of<action::connect_upstream>(out).at(0).connect_packet, h.v));
    CHECK(up.client_id == "5:alice:generated-id");
    mqtt::connack broker_ack{true, reason_code::success, {{mqtt::property_id::topic_alias_maximum, 10u}}};
    auto ack = std::get<mqtt::connack>(to_client(h.upstream(broker_ack), h.v).at(0));
    CHECK(ack.session_present);  // exact, from the broker
    CHECK_FALSE(ack.props.number(mqtt::property_id::topic_alias_maximum));
    CHECK(ack.props.text(mqtt::property_id::assigned_client_identifier) == "generated-id");
  }

  TEST_CASE("direct mode refusals are CONNACK 0x05 (3.1.1) and 0x87 (5.0)") {
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
      harness h(v);
      auto c = h.connect_packet();
      c.password = "bad";
      h.client(c);
      auto out = h.auth({auth_result::verdict::invalid});
      auto wire = all_of<action::send_to_client>(out).at(0).data;
      CHECK(wire[3] == (v == protocol_version::v5 ? 0x87 : 0x05));
      CHECK(has<action::close>(out));
    }
  }

  TEST_CASE("re-authentication keeps the relay for the same user and ends it for another") {
    harness h(protocol_version::v3_1_1);
    h.establish();
    auto out = h.client(mqtt::publish{"service/auth/new", "", mqtt::qos::at_most_once, false, false, 0, {}});
    CHECK(all_of<action::validate_session>(out).at(0).token == "new");
    CHECK_FALSE(has<action::forward_to_upstream>(out));
    out = h.auth(harness::valid("alice", {{"private/alice/#", "extra/#"}, {}}));
    CHECK(nlohmann::json::parse(std::get<mqtt::publish>(to_client(out, h.v).at(0)).payload)["result"] == "ok");
    CHECK(has<action::forward_to_upstream>(h.client(mqtt::publish{"extra/x", "", mqtt::qos::at_most_once, false, false, 0, {}})));

    h.client(mqtt::publish{"service/auth/mallory", "", mqtt::qos::at_most_once, false, false, 0, {}});
    out = h.auth(harness::valid("mallory", {}));
    CHECK(has<action::close>(out));
  }

  TEST_CASE("3.1.1 empty client id needs clean session [MQTT-3.1.3-8]") {
    harness h(protocol_version::v3_1_1);
    auto c = h.connect_packet("");
    c.clean_start = false;
    auto out = h.client(c);
    CHECK(std::get<mqtt::connack>(to_client(out, h.v).at(0)).reason == reason_code::client_identifier_not_valid);
    CHECK(has<action::close>(out));
  }
}

TEST_SUITE("session: held packets") {
  TEST_CASE("SUBSCRIBE and PUBLISH before auth are replayed in order after it") {
    harness h(protocol_version::v5);
    h.client(h.connect_packet());
    auto out = h.client(mqtt::subscribe{1, {}, {{"private/alice/in", {mqtt::qos::exactly_once}}}});
    CHECK(out.empty());
    h.client(mqtt::publish{"private/alice/out", "early", mqtt::qos::at_least_once, false, false, 2, {}});
    h.client(mqtt::pingreq{});  // answered locally, not held
    h.client(mqtt::publish{"service/auth/t", "", mqtt::qos::at_most_once, false, false, 0, {}});
    h.auth(harness::valid("alice", harness::default_acl()));
    out = h.upstream(mqtt::connack{});
    auto up = to_upstream(out, h.v);
    REQUIRE(up.size() == 2);
    auto sub = std::get<mqtt::subscribe>(up[0]);
    CHECK(sub.subscriptions.at(0).options.max_qos == mqtt::qos::exactly_once);
    CHECK(std::get<mqtt::publish>(up[1]).payload == "early");
  }

  TEST_CASE("holding is bounded") {
    session_config cfg = harness::make_config();
    cfg.max_held_packets = 2;
    harness h(protocol_version::v5, cfg);
    h.client(h.connect_packet());
    h.client(mqtt::subscribe{1, {}, {{"a", {}}}});
    h.client(mqtt::subscribe{2, {}, {{"b", {}}}});
    auto out = h.client(mqtt::subscribe{3, {}, {{"c", {}}}});
    CHECK(std::get<mqtt::disconnect>(to_client(out, h.v).at(0)).reason == reason_code::quota_exceeded);
    CHECK(has<action::close>(out));
  }
}

TEST_SUITE("session: ACL") {
  TEST_CASE("an allowed SUBSCRIBE is forwarded byte for byte, QoS 2 included") {
    harness h(protocol_version::v3_1_1);
    h.establish();
    auto out = h.client(mqtt::subscribe{5, {}, {{"private/alice/#", {mqtt::qos::exactly_once}}}});
    CHECK(has<action::forward_to_upstream>(out));
  }

  TEST_CASE("a partially denied SUBSCRIBE is trimmed and its SUBACK widened back") {
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
      harness h(v);
      h.establish();
      auto out = h.client(mqtt::subscribe{7, {}, {{"#", {mqtt::qos::at_least_once}},
                                                  {"private/alice/x", {mqtt::qos::exactly_once}},
                                                  {"private/bob/x", {mqtt::qos::at_most_once}},
                                                  {"public/sport/news", {mqtt::qos::at_least_once}}}});
      auto up = std::get<mqtt::subscribe>(to_upstream(out, v).at(0));
      REQUIRE(up.subscriptions.size() == 2);
      CHECK(up.subscriptions[0].filter == "private/alice/x");
      CHECK(up.subscriptions[0].options.max_qos == mqtt::qos::exactly_once);
      CHECK(up.subscriptions[1].filter == "public/sport/news");
      out = h.upstream(mqtt::suback{7, {}, {reason_code::granted_qos_2, reason_code::granted_qos_1}});
      auto ack = std::get<mqtt::suback>(to_client(out, v).at(0));
      const auto denied = v == protocol_version::v5 ? reason_code::not_authorized : reason_code::unspecified_error;
      CHECK(ack.reasons == std::vector{denied, reason_code::granted_qos_2, denied, reason_code::granted_qos_1});
      CHECK(h.counters.acl_denied_subscribe == 2);
    }
  }

  TEST_CASE("wildcard escalations are denied and answered by the proxy alone") {
    harness h(protocol_version::v5);
    h.establish();
    for (const char* filter : {"#", "+/alice/#", "private/+/x", "private/#", "$share/g/#", "$share/g/private/+/x",
                               "+/+/news", "$SYS/#", "public/#"}) {
      auto out = h.client(mqtt::subscribe{3, {}, {{filter, {mqtt::qos::at_most_once}}}});
      CHECK_MESSAGE(to_upstream(out, h.v).empty(), filter);
      CHECK_FALSE(has<action::forward_to_upstream>(out));
      CHECK(std::get<mqtt::suback>(to_client(out, h.v).at(0)).reasons.at(0) == reason_code::not_authorized);
    }
    // A shared subscription within the ACL is allowed.
    CHECK(has<action::forward_to_upstream>(h.client(mqtt::subscribe{4, {}, {{"$share/g/private/alice/#", {}}}})));
  }

  TEST_CASE("a denied PUBLISH is dropped and acknowledged as the spec allows") {
    harness v5(protocol_version::v5);
    v5.establish();
    auto out = v5.client(mqtt::publish{"private/bob/x", "no", mqtt::qos::at_least_once, false, false, 11, {}});
    CHECK_FALSE(has<action::forward_to_upstream>(out));
    auto ack = std::get<mqtt::puback>(to_client(out, v5.v).at(0));
    CHECK(ack.reason == reason_code::not_authorized);
    out = v5.client(mqtt::publish{"private/bob/x", "no", mqtt::qos::exactly_once, false, false, 12, {}});
    CHECK(std::get<mqtt::pubrec>(to_client(out, v5.v).at(0)).reason == reason_code::not_authorized);
    CHECK(v5.counters.acl_denied_publish == 2);

    harness v3(protocol_version::v3_1_1);
    v3.establish();
    out = v3.client(mqtt::publish{"private/bob/x", "no", mqtt::qos::exactly_once, false, false, 12, {}});
    CHECK(std::get<mqtt::pubrec>(to_client(out, v3.v).at(0)).packet_id == 12);
    out = v3.client(mqtt::pubrel{12});  // the proxy owes the PUBCOMP; the broker never saw id 12
    CHECK(std::get<mqtt::pubcomp>(to_client(out, v3.v).at(0)).packet_id == 12);
    CHECK_FALSE(has<action::forward_to_upstream>(out));
  }

  TEST_CASE("an allowed PUBLISH and the rest of the QoS 2 flow are relayed unchanged") {
    harness h(protocol_version::v3_1_1);
    h.establish();
    CHECK(has<action::forward_to_upstream>(h.client(mqtt::publish{"private/alice/x", "y", mqtt::qos::exactly_once, false, false, 4, {}})));
    CHECK(has<action::forward_to_client>(h.upstream(mqtt::pubrec{4})));
    CHECK(has<action::forward_to_upstream>(h.client(mqtt::pubrel{4})));
    CHECK(has<action::forward_to_client>(h.upstream(mqtt::pubcomp{4})));
    CHECK(has<action::forward_to_client>(h.upstream(mqtt::publish{"private/alice/x", "z", mqtt::qos::at_least_once, false, false, 1, {}})));
    CHECK(has<action::forward_to_upstream>(h.client(mqtt::puback{1})));
  }

  TEST_CASE("topic aliases are refused: the proxy must see every topic") {
    harness h(protocol_version::v5);
    h.establish();
    auto out = h.client(mqtt::publish{"private/alice/x", "", mqtt::qos::at_most_once, false, false, 0,
                                      {{mqtt::property_id::topic_alias, 1u}}});
    CHECK(std::get<mqtt::disconnect>(to_client(out, h.v).at(0)).reason == reason_code::topic_alias_invalid);
    CHECK(has<action::close>(out));
  }

  TEST_CASE("subscription limit") {
    session_config cfg = harness::make_config();
    cfg.max_subscriptions = 1;
    harness h(protocol_version::v5, cfg);
    h.establish();
    CHECK(has<action::forward_to_upstream>(h.client(mqtt::subscribe{1, {}, {{"private/alice/a", {}}}})));
    auto out = h.client(mqtt::subscribe{2, {}, {{"private/alice/b", {}}}});
    CHECK(std::get<mqtt::suback>(to_client(out, h.v).at(0)).reasons.at(0) == reason_code::quota_exceeded);
    h.client(mqtt::unsubscribe{3, {}, {"private/alice/a"}});
    CHECK(has<action::forward_to_upstream>(h.client(mqtt::subscribe{4, {}, {{"private/alice/b", {}}}})));
  }
}

TEST_SUITE("session: endings") {
  TEST_CASE("client DISCONNECT is forwarded, so the broker drops the will") {
    harness h(protocol_version::v3_1_1);
    h.establish();
    auto out = h.client(mqtt::disconnect{});
    REQUIRE(out.size() == 2);
    CHECK(std::holds_alternative<action::forward_to_upstream>(out[0]));
    CHECK(std::holds_alternative<action::close>(out[1]));
  }

  TEST_CASE("abrupt client close and keep-alive expiry send nothing upstream, so the will goes out") {
    harness h(protocol_version::v5);
    h.establish();
    CHECK(h.session.keep_alive_limit() == std::chrono::milliseconds(30'000));
    auto out = h.session.on_keep_alive_expired();
    std::vector<session_action> actions(out.begin(), out.end());
    CHECK(to_upstream(actions, h.v).empty());
    CHECK_FALSE(has<action::forward_to_upstream>(actions));
    CHECK(std::get<mqtt::disconnect>(to_client(actions, h.v).at(0)).reason == reason_code::keep_alive_timeout);
  }

  TEST_CASE("a protocol error closes without DISCONNECT upstream") {
    harness h(protocol_version::v5);
    h.establish();
    auto out = h.client(mqtt::connect{});
    CHECK_FALSE(has<action::forward_to_upstream>(out));
    CHECK(std::get<mqtt::disconnect>(to_client(out, h.v).at(0)).reason == reason_code::protocol_error);
  }

  TEST_CASE("the broker's DISCONNECT reaches the client") {
    harness h(protocol_version::v5);
    h.establish();
    auto out = h.upstream(mqtt::disconnect{reason_code::session_taken_over, {}});
    CHECK(has<action::forward_to_client>(out));
    CHECK(has<action::close>(out));
  }

  TEST_CASE("first packet must be CONNECT, unsupported versions get CONNACK 0x01") {
    harness h(protocol_version::v3_1_1);
    CHECK(has<action::close>(h.client(mqtt::pingreq{})));
    harness h2(protocol_version::v3_1_1);
    mqtt::framer f(100);
    f.feed(mqtt::bytes{0x10, 0x0D, 0, 4, 'M', 'Q', 'T', 'T', 9, 2, 0, 0, 0, 1, 'c'});
    auto out = h2.session.on_client_frame(**f.next());
    std::vector<session_action> actions(out.begin(), out.end());
    CHECK(all_of<action::send_to_client>(actions).at(0).data == mqtt::bytes{0x20, 2, 0, 1});
  }
}

TEST_SUITE("session: identities") {
  TEST_CASE("the broker client id is injective in (user, client id)") {
    CHECK(upstream_client_id("alice:x", "y") != upstream_client_id("alice", "x:y"));
    CHECK(upstream_client_id("alice", "phone") == "5:alice:phone");
    CHECK(upstream_client_id("bob", "phone") != upstream_client_id("alice", "phone"));
  }

  TEST_CASE("ACL templates expand %u and %c, and refuse substitutes with wildcards or slashes") {
    acl templates{{"private/%u/#", "devices/%c/out"}, {"private/%u/#"}};
    auto a = with_templates({}, templates, "alice", "phone1");
    CHECK(a.may_publish("private/alice/x"));
    CHECK(a.may_publish("devices/phone1/out"));
    CHECK_FALSE(a.may_publish("devices/phone2/out"));
    CHECK(a.may_subscribe("private/alice/+"));
    auto evil = with_templates({}, templates, "alice", "+");
    CHECK_FALSE(evil.may_publish("devices/other/out"));
    CHECK(evil.publish.size() == 1);
    CHECK(with_templates({}, templates, "a/b", "c").publish.size() == 1);
  }
}

TEST_SUITE("session: expiry") {
  TEST_CASE("the API server's expires_in arms a timer; a re-authentication re-arms it; expiry ends the relay") {
    harness h(protocol_version::v5);
    h.client(h.connect_packet());
    h.client(mqtt::publish{"service/auth/t", "", mqtt::qos::at_most_once, false, false, 0, {}});
    auto out = h.auth(harness::valid("alice", harness::default_acl()));
    REQUIRE(all_of<action::arm_timer>(out).size() == 1);
    CHECK(all_of<action::arm_timer>(out)[0].kind == timer_kind::session_expiry);
    CHECK(all_of<action::arm_timer>(out)[0].after == std::chrono::seconds(60));
    h.upstream(mqtt::connack{});
    h.client(mqtt::publish{"service/auth/t2", "", mqtt::qos::at_most_once, false, false, 0, {}});
    CHECK(has<action::arm_timer>(h.auth(harness::valid("alice", harness::default_acl()))));
    auto expired = h.session.on_timer(timer_kind::session_expiry);
    std::vector<session_action> actions(expired.begin(), expired.end());
    CHECK(nlohmann::json::parse(std::get<mqtt::publish>(to_client(actions, h.v).at(0)).payload)["reason"] ==
          "session_expired");
    CHECK(has<action::close>(actions));
  }
}
