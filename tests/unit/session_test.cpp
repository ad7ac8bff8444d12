// The session state machine driven by events, no sockets: each test feeds
// client/broker packets and auth answers and checks the actions it asks for.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "auth/auth_client.hpp"
#include "session/client_session.hpp"
#include "support/escape.hpp"

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

  // CONNECT (`c`, else connect_packet()), auth PUBLISH, then `answer`: a
  // valid one sends the session to the broker, whose CONNACK has not come.
  void admit(auth_result answer, std::optional<mqtt::connect> c = {}) {
    client(c ? *c : connect_packet());
    client(mqtt::publish{"service/auth/tok", "", mqtt::qos::at_most_once, false, false, 0, {}});
    auth(std::move(answer));
  }

  // CONNECT, auth PUBLISH, valid answer, broker CONNACK: the session relays.
  void establish(acl permissions = default_acl(), std::optional<mqtt::will_message> will = {}) {
    auto c = connect_packet();
    c.username.reset();
    c.will = std::move(will);
    admit(valid("alice", std::move(permissions)), std::move(c));
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

  TEST_CASE("auth_ok_message is what the JSON library writes for the same object") {
    // Both ways of writing it: copied in as it is, and escaped by the library.
    for (std::string user : {"alice", "", "a name with spaces", "quote\"back\\slash", "j\xC3\xBCrgen",
                             "tab\tnew\nline\x01", "del\x7F", "~!@#$%^&*()_+{}|:<>?"}) {
      CHECK(auth_ok_message(user) == nlohmann::json{{"result", "ok"}, {"user", user}}.dump());
    }
  }

  TEST_CASE("a client id maker is asked only for a client that sends an empty client id") {
    static int made = 0;
    made = 0;
    const client_session::client_id_maker maker = [] { return "made-" + std::to_string(++made); };
    harness h(protocol_version::v5);
    auto deliver = [&](client_session& s, const mqtt::packet& p) {
      auto wire = *mqtt::encode(p, h.v);
      mqtt::framer f(1 << 20);
      f.feed(wire);
      auto out = s.on_client_frame(**f.next());
      return std::vector<session_action>(out.begin(), out.end());
    };
    client_session own_id(h.config, h.counters, maker);
    deliver(own_id, h.connect_packet("mine"));
    CHECK(made == 0);
    CHECK(own_id.client_id() == "mine");
    client_session empty_id(h.config, h.counters, maker);
    auto out = deliver(empty_id, h.connect_packet(""));
    CHECK(made == 1);
    CHECK(empty_id.client_id() == "made-1");
    auto ack = std::get<mqtt::connack>(to_client(out, h.v).at(0));
    CHECK(ack.props.text(mqtt::property_id::assigned_client_identifier) == "made-1");
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
    // At the expiry the proxy asks once more (the session may have been refreshed).
    auto expired = h.session.on_timer(timer_kind::session_expiry);
    CHECK(has<action::validate_session>(expired));
    CHECK_FALSE(has<action::close>(expired));
    auth_result gone;
    gone.outcome = auth_result::verdict::invalid;
    auto answer = h.auth(gone);
    std::vector<session_action> actions(answer.begin(), answer.end());
    CHECK(nlohmann::json::parse(std::get<mqtt::publish>(to_client(actions, h.v).at(0)).payload)["reason"] ==
          "session_expired");
    CHECK(has<action::close>(actions));
  }

  TEST_CASE("a session refreshed at the API server outlives the expiry it was admitted with") {
    harness h(protocol_version::v5);
    h.client(h.connect_packet());
    h.client(mqtt::publish{"service/auth/t", "", mqtt::qos::at_most_once, false, false, 0, {}});
    h.auth(harness::valid("alice", harness::default_acl()));
    h.upstream(mqtt::connack{});
    CHECK(has<action::validate_session>(h.session.on_timer(timer_kind::session_expiry)));
    auto refreshed = harness::valid("alice", harness::default_acl());
    refreshed.expires_in = std::chrono::seconds(3600);
    auto out = h.auth(refreshed);
    CHECK_FALSE(has<action::close>(out));
    CHECK(to_client(out, h.v).empty());  // silent: the client asked nothing
    REQUIRE(all_of<action::arm_timer>(out).size() == 1);
    CHECK(all_of<action::arm_timer>(out)[0].after == std::chrono::seconds(3600));
    CHECK(h.session.current_state() == client_session::state::relaying);
  }

  TEST_CASE("an API server that cannot answer at the expiry does not extend the session") {
    harness h(protocol_version::v3_1_1);
    h.client(h.connect_packet());
    h.client(mqtt::publish{"service/auth/t", "", mqtt::qos::at_most_once, false, false, 0, {}});
    h.auth(harness::valid("alice", harness::default_acl()));
    h.upstream(mqtt::connack{});
    CHECK(has<action::validate_session>(h.session.on_timer(timer_kind::session_expiry)));
    auth_result down;
    down.outcome = auth_result::verdict::unavailable;
    CHECK(has<action::close>(h.auth(down)));
  }
}

// ------------------------------------------------------------ issue 11 / 12

namespace {

std::vector<session_action> acts(client_session::actions a) { return {a.begin(), a.end()}; }

std::string close_reason(const std::vector<session_action>& actions) {
  auto closes = all_of<action::close>(actions);
  return closes.empty() ? std::string() : closes.back().reason;
}

mqtt::publish delivery(std::string topic, mqtt::qos q = mqtt::qos::at_most_once, std::uint16_t id = 0) {
  return mqtt::publish{std::move(topic), "m", q, false, false, id, {}};
}

auth_event event(auth_event::kind kind, std::string user_id = "alice") {
  auth_event e;
  e.type = kind;
  e.user_id = std::move(user_id);
  e.user = "alice";
  return e;
}

// The session's subscriptions, as the client made them: SUBSCRIBE forwarded and acknowledged.
void subscribe(harness& h, std::uint16_t id, std::vector<std::string> filters) {
  mqtt::subscribe s{id, {}, {}};
  for (auto& f : filters) s.subscriptions.push_back({f, {mqtt::qos::at_least_once}});
  REQUIRE(has<action::forward_to_upstream>(h.client(s)));
  h.upstream(mqtt::suback{id, {}, std::vector<reason_code>(filters.size(), reason_code::granted_qos_1)});
}

}  // namespace

TEST_SUITE("session: delivery ACL") {
  TEST_CASE("a broker PUBLISH outside the subscribe ACL is dropped and counted, retained included") {
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
      harness h(v);
      h.establish();
      CHECK(has<action::forward_to_client>(h.upstream(delivery("private/alice/x"))));
      CHECK(has<action::forward_to_client>(h.upstream(delivery("public/sport/news"))));
      auto out = h.upstream(delivery("private/bob/x"));
      CHECK(out.empty());
      auto retained = delivery("group/team/x");
      retained.retain = true;
      CHECK(h.upstream(retained).empty());
      CHECK(h.counters.acl_denied_deliver == 2);
      CHECK(h.session.current_state() == client_session::state::relaying);
    }
  }

  TEST_CASE("a refused QoS 1 delivery is acknowledged to the broker by the proxy") {
    harness h(protocol_version::v5);
    h.establish();
    auto out = h.upstream(delivery("private/bob/x", mqtt::qos::at_least_once, 77));
    CHECK_FALSE(has<action::forward_to_client>(out));
    CHECK(to_client(out, h.v).empty());
    auto up = to_upstream(out, h.v);
    REQUIRE(up.size() == 1);
    CHECK(std::get<mqtt::puback>(up[0]).packet_id == 77);
  }

  TEST_CASE("a refused QoS 2 delivery: PUBREC upstream, and the broker's PUBREL gets PUBCOMP, not the client") {
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
      harness h(v);
      h.establish();
      auto out = h.upstream(delivery("private/bob/x", mqtt::qos::exactly_once, 9));
      CHECK(std::get<mqtt::pubrec>(to_upstream(out, v).at(0)).packet_id == 9);
      CHECK(to_client(out, v).empty());
      out = h.upstream(mqtt::pubrel{9});
      CHECK_FALSE(has<action::forward_to_client>(out));
      CHECK(std::get<mqtt::pubcomp>(to_upstream(out, v).at(0)).packet_id == 9);
      // An allowed delivery's PUBREL with the same id later is the client's again.
      CHECK(has<action::forward_to_client>(h.upstream(delivery("private/alice/x", mqtt::qos::exactly_once, 9))));
      CHECK(has<action::forward_to_client>(h.upstream(mqtt::pubrel{9})));
    }
  }

  TEST_CASE("shared subscriptions and '$' topics: deliverable iff some allowed filter matches the topic") {
    acl a{{}, {"$share/g/team/#", "private/alice/+", "#"}};
    CHECK(a.may_receive("team/x"));
    CHECK(a.may_receive("anything/else"));
    CHECK_FALSE(a.may_receive("$SYS/broker/uptime"));  // [MQTT-4.7.2-1]
    acl narrow{{}, {"$share/g/team/#", "private/alice/+"}};
    CHECK(narrow.may_receive("team/a/b"));
    CHECK(narrow.may_receive("private/alice/x"));
    CHECK_FALSE(narrow.may_receive("private/alice/x/y"));
    CHECK_FALSE(narrow.may_receive("$share/g/team/x"));  // a topic name is never a share
    CHECK(acl{{}, {"$SYS/#"}}.may_receive("$SYS/x"));
  }

  TEST_CASE("the upstream CONNECT offers no topic aliases, and a broker alias is a broker protocol error") {
    harness h(protocol_version::v5);
    auto c = h.connect_packet();
    c.username.reset();
    c.props.add(mqtt::property_id::topic_alias_maximum, 10u);
    h.client(c);
    h.client(mqtt::publish{"service/auth/tok", "", mqtt::qos::at_most_once, false, false, 0, {}});
    auto out = h.auth(harness::valid("alice", harness::default_acl()));
    auto up = std::get<mqtt::connect>(*mqtt::decode(all_of<action::connect_upstream>(out).at(0).connect_packet, h.v));
    CHECK_FALSE(up.props.number(mqtt::property_id::topic_alias_maximum));
    h.upstream(mqtt::connack{});
    out = h.upstream(mqtt::publish{"private/alice/x", "", mqtt::qos::at_most_once, false, false, 0,
                                   {{mqtt::property_id::topic_alias, 1u}}});
    CHECK_FALSE(has<action::forward_to_client>(out));
    CHECK(std::get<mqtt::disconnect>(to_upstream(out, h.v).at(0)).reason == reason_code::protocol_error);
    CHECK(has<action::close>(out));
  }
}

TEST_SUITE("session: auth events") {
  TEST_CASE("session_revoked for this session's token: DISCONNECT upstream first, then denied 0x87") {
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
      harness h(v);
      h.establish();
      auto e = event(auth_event::kind::session_revoked);
      e.session_digest = session_digest("other-token");
      CHECK(acts(h.session.on_auth_event(e)).empty());  // another session of the same user
      e.session_digest = session_digest("tok");
      auto out = acts(h.session.on_auth_event(e));
      REQUIRE(!out.empty());
      auto first = std::get<action::send_to_upstream>(out.front());
      CHECK(std::get<mqtt::disconnect>(*mqtt::decode(first.data, v)).reason == reason_code::success);  // no will
      auto sent = to_client(out, v);
      CHECK(nlohmann::json::parse(std::get<mqtt::publish>(sent.at(0)).payload) ==
            nlohmann::json{{"result", "denied"}, {"reason", "session_revoked"}});
      if (v == protocol_version::v5) CHECK(std::get<mqtt::disconnect>(sent.at(1)).reason == reason_code::not_authorized);
      CHECK(has<action::close>(out));
      CHECK(h.counters.sessions_revoked == 1);
    }
  }

  TEST_CASE("user_deleted and user_sessions_revoked end every connection of that user id, and only those") {
    for (auto kind : {auth_event::kind::user_deleted, auth_event::kind::user_sessions_revoked}) {
      harness h(protocol_version::v5);
      h.establish();
      CHECK(acts(h.session.on_auth_event(event(kind, "bob"))).empty());
      auto out = acts(h.session.on_auth_event(event(kind, "alice")));
      CHECK(close_reason(out) == "denied: session_revoked");
    }
  }

  TEST_CASE("events match the API server's user id, not the name, and the broker client id is built from it") {
    harness h(protocol_version::v5);
    h.client(h.connect_packet("phone"));
    h.client(mqtt::publish{"service/auth/tok", "", mqtt::qos::at_most_once, false, false, 0, {}});
    auto r = harness::valid("alice", harness::default_acl());
    r.user_id = "7";
    auto out = h.auth(r);
    auto up = std::get<mqtt::connect>(*mqtt::decode(all_of<action::connect_upstream>(out).at(0).connect_packet, h.v));
    CHECK(up.client_id == "1:7:phone");
    h.upstream(mqtt::connack{});
    CHECK(h.session.user_id() == "7");
    CHECK(acts(h.session.on_auth_event(event(auth_event::kind::user_deleted, "alice"))).empty());  // an old alice
    CHECK(has<action::close>(acts(h.session.on_auth_event(event(auth_event::kind::user_deleted, "7")))));
  }

  TEST_CASE("an event before authentication finished is ignored: the answer awaited is newer") {
    harness h(protocol_version::v5);
    h.client(h.connect_packet());
    h.client(mqtt::publish{"service/auth/tok", "", mqtt::qos::at_most_once, false, false, 0, {}});
    CHECK(acts(h.session.on_auth_event(event(auth_event::kind::user_deleted))).empty());
    CHECK(acts(h.session.on_auth_event(event(auth_event::kind::resync))).empty());
  }

  TEST_CASE("revocation while the broker connection opens: DISCONNECT queued behind the CONNECT") {
    harness h(protocol_version::v5);
    h.client(h.connect_packet());
    h.client(mqtt::publish{"service/auth/tok", "", mqtt::qos::at_most_once, false, false, 0, {}});
    h.auth(harness::valid("alice", harness::default_acl()));
    auto out = acts(h.session.on_auth_event(event(auth_event::kind::user_sessions_revoked)));
    CHECK(std::get<mqtt::disconnect>(to_upstream(out, h.v).at(0)).reason == reason_code::success);
    CHECK(has<action::close>(out));
  }

  TEST_CASE("acl_changed: one UNSUBSCRIBE for what is no longer allowed, its UNSUBACK kept, deliveries stop") {
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
      harness h(v);
      h.establish();
      subscribe(h, 1, {"private/alice/#", "public/+/news"});
      subscribe(h, 2, {"public/sport/news"});
      auto e = event(auth_event::kind::acl_changed);
      e.permissions = {{"private/alice/#"}, {"private/alice/#"}};
      auto out = acts(h.session.on_auth_event(e));
      CHECK_FALSE(has<action::close>(out));
      CHECK(to_client(out, v).empty());  // nothing to tell the client
      auto up = to_upstream(out, v);
      REQUIRE(up.size() == 1);
      auto unsub = std::get<mqtt::unsubscribe>(up[0]);
      CHECK(unsub.filters == std::vector<std::string>{"public/+/news", "public/sport/news"});
      CHECK(unsub.packet_id == 65535);
      CHECK(h.counters.acl_unsubscribes == 1);
      // Stop delivering at once, before the broker has even answered.
      CHECK(h.upstream(delivery("public/sport/news")).empty());
      mqtt::unsuback ack{65535, {}, {}};
      if (v == protocol_version::v5) ack.reasons = {reason_code::success, reason_code::success};
      CHECK(h.upstream(ack).empty());  // swallowed
      CHECK(has<action::forward_to_client>(h.upstream(delivery("private/alice/x"))));
      // Nothing more to take away: no second UNSUBSCRIBE.
      CHECK(to_upstream(acts(h.session.on_auth_event(e)), v).empty());
    }
  }

  TEST_CASE("the proxy's UNSUBSCRIBE takes an id the client is not using") {
    harness h(protocol_version::v5);
    h.establish();
    subscribe(h, 3, {"public/+/news"});
    // In flight from the client: SUBSCRIBE 65535, QoS 1 PUBLISH 65534, UNSUBSCRIBE 65533.
    CHECK(has<action::forward_to_upstream>(h.client(mqtt::subscribe{65535, {}, {{"private/alice/a", {}}}})));
    CHECK(has<action::forward_to_upstream>(
        h.client(mqtt::publish{"private/alice/x", "", mqtt::qos::at_least_once, false, false, 65534, {}})));
    CHECK(has<action::forward_to_upstream>(h.client(mqtt::unsubscribe{65533, {}, {"private/alice/zzz"}})));
    auto e = event(auth_event::kind::acl_changed);
    e.permissions = {{"private/alice/#"}, {"private/alice/#"}};
    auto out = acts(h.session.on_auth_event(e));
    CHECK(std::get<mqtt::unsubscribe>(to_upstream(out, h.v).at(0)).packet_id == 65532);
    // The client's own UNSUBACK still reaches it; the proxy's does not.
    CHECK(has<action::forward_to_client>(h.upstream(mqtt::unsuback{65533, {}, {reason_code::success}})));
    CHECK_FALSE(has<action::forward_to_client>(h.upstream(mqtt::unsuback{65532, {}, {reason_code::success}})));
    // Once acknowledged, an id is free again.
    h.upstream(mqtt::puback{65534});
    h.upstream(mqtt::suback{65535, {}, {reason_code::success}});
    subscribe(h, 4, {"private/alice/b"});
    e.permissions = {{}, {"private/alice/a"}};
    CHECK(std::get<mqtt::unsubscribe>(to_upstream(acts(h.session.on_auth_event(e)), h.v).at(0)).packet_id == 65535);
  }

  // Past the id set's inline room (packet_id_set spills to a bitmap): the
  // same bookkeeping, and a reused id in flight is still one id.
  TEST_CASE("the proxy's UNSUBSCRIBE avoids every id of a client with many PUBLISHes in flight") {
    harness h(protocol_version::v3_1_1);
    h.establish();
    subscribe(h, 3, {"public/+/news"});
    constexpr std::uint16_t in_flight = 3 * mqtt::packet_id_set::inline_capacity;
    for (std::uint16_t i = 0; i < in_flight; ++i)
      REQUIRE(has<action::forward_to_upstream>(h.client(mqtt::publish{
          "private/alice/x", "", mqtt::qos::at_least_once, false, false, static_cast<std::uint16_t>(65535 - i), {}})));
    auto e = event(auth_event::kind::acl_changed);
    e.permissions = {{"private/alice/#"}, {"private/alice/#"}};
    auto out = acts(h.session.on_auth_event(e));
    CHECK(std::get<mqtt::unsubscribe>(to_upstream(out, h.v).at(0)).packet_id == 65535 - in_flight);
    CHECK_FALSE(has<action::forward_to_client>(
        h.upstream(mqtt::unsuback{static_cast<std::uint16_t>(65535 - in_flight), {}, {reason_code::success}})));
    // Every PUBACK frees its id; the top one, acknowledged last, is the first free again.
    for (std::uint16_t i = in_flight; i-- > 0;)
      REQUIRE(has<action::forward_to_client>(h.upstream(mqtt::puback{static_cast<std::uint16_t>(65535 - i)})));
    subscribe(h, 4, {"private/alice/b"});
    e.permissions = {{}, {"private/alice/a"}};
    CHECK(std::get<mqtt::unsubscribe>(to_upstream(acts(h.session.on_auth_event(e)), h.v).at(0)).packet_id == 65535);
  }

  TEST_CASE("re-authentication with a narrower ACL unsubscribes too; the new token is the one revocations name") {
    harness h(protocol_version::v5);
    h.establish();
    subscribe(h, 1, {"public/+/news"});
    h.client(mqtt::publish{"service/auth/tok2", "", mqtt::qos::at_most_once, false, false, 0, {}});
    auto out = h.auth(harness::valid("alice", {{"private/alice/#"}, {"private/alice/#"}}));
    CHECK(std::get<mqtt::unsubscribe>(to_upstream(out, h.v).at(0)).filters == std::vector<std::string>{"public/+/news"});
    CHECK(nlohmann::json::parse(std::get<mqtt::publish>(to_client(out, h.v).at(0)).payload)["result"] == "ok");
    CHECK_FALSE(has<action::close>(out));
    auto e = event(auth_event::kind::session_revoked);
    e.session_digest = session_digest("tok");
    CHECK(acts(h.session.on_auth_event(e)).empty());
    e.session_digest = session_digest("tok2");
    CHECK(has<action::close>(acts(h.session.on_auth_event(e))));
  }

  TEST_CASE("resync re-validates with the stored token, silently") {
    harness h(protocol_version::v5);
    h.establish();
    subscribe(h, 1, {"public/+/news"});
    auto out = acts(h.session.on_auth_event(event(auth_event::kind::resync)));
    REQUIRE(all_of<action::validate_session>(out).size() == 1);
    CHECK(all_of<action::validate_session>(out)[0].token == "tok");
    CHECK(acts(h.session.on_auth_event(event(auth_event::kind::resync))).empty());  // one at a time

    SUBCASE("valid: the new ACL applies, the client hears nothing") {
      out = h.auth(harness::valid("alice", {{"private/alice/#"}, {"private/alice/#"}}));
      CHECK(to_client(out, h.v).empty());
      CHECK(std::get<mqtt::unsubscribe>(to_upstream(out, h.v).at(0)).filters == std::vector<std::string>{"public/+/news"});
      CHECK_FALSE(has<action::close>(out));
    }
    SUBCASE("invalid: revoked") {
      out = h.auth({auth_result::verdict::invalid});
      CHECK(std::get<mqtt::disconnect>(to_upstream(out, h.v).at(0)).reason == reason_code::success);
      CHECK(close_reason(out) == "denied: session_revoked");
    }
    SUBCASE("unavailable: keep going, try again on the revalidate timer") {
      out = h.auth({auth_result::verdict::unavailable});
      CHECK_FALSE(has<action::close>(out));
      REQUIRE(all_of<action::arm_timer>(out).size() == 1);
      CHECK(all_of<action::arm_timer>(out)[0].kind == timer_kind::revalidate);
      CHECK(all_of<action::arm_timer>(out)[0].after == std::chrono::seconds(5));
      out = acts(h.session.on_timer(timer_kind::revalidate));
      CHECK(all_of<action::validate_session>(out).at(0).token == "tok");
    }
    SUBCASE("the client's own re-authentication supersedes the silent one and is answered") {
      out = h.client(mqtt::publish{"service/auth/tok3", "", mqtt::qos::at_most_once, false, false, 0, {}});
      CHECK(all_of<action::validate_session>(out).at(0).token == "tok3");
      out = h.auth(harness::valid("alice", harness::default_acl()));
      CHECK(nlohmann::json::parse(std::get<mqtt::publish>(to_client(out, h.v).at(0)).payload)["result"] == "ok");
    }
  }

  TEST_CASE("a stale answer (degraded mode) admits and arms the revalidate timer; a fresh one disarms it") {
    harness h(protocol_version::v3_1_1);
    h.client(h.connect_packet());
    h.client(mqtt::publish{"service/auth/tok", "", mqtt::qos::at_most_once, false, false, 0, {}});
    auto r = harness::valid("alice", harness::default_acl());
    r.stale = true;
    auto out = h.auth(r);
    CHECK(has<action::connect_upstream>(out));
    bool armed = false;
    for (auto& t : all_of<action::arm_timer>(out)) armed |= t.kind == timer_kind::revalidate;
    CHECK(armed);
    // Still connecting when the timer fires: try again later.
    out = acts(h.session.on_timer(timer_kind::revalidate));
    CHECK(all_of<action::arm_timer>(out).at(0).kind == timer_kind::revalidate);
    h.upstream(mqtt::connack{});
    out = acts(h.session.on_timer(timer_kind::revalidate));
    CHECK(all_of<action::validate_session>(out).at(0).token == "tok");
    out = h.auth(harness::valid("alice", harness::default_acl()));
    CHECK(all_of<action::disarm_timer>(out).at(0).kind == timer_kind::revalidate);
    CHECK(to_client(out, h.v).empty());
  }

  TEST_CASE("a re-validation answering for another user id ends the session") {
    harness h(protocol_version::v5);
    h.establish();
    h.session.on_auth_event(event(auth_event::kind::resync));
    auto r = harness::valid("alice", harness::default_acl());
    r.user_id = "99";  // alice was deleted and re-created
    CHECK(has<action::close>(h.auth(r)));
  }
}

TEST_SUITE("session: RabbitMQ names") {
  TEST_CASE("with a RabbitMQ upstream, '.' and '*' are refused in topics, filters and wills") {
    session_config cfg = harness::make_config();
    cfg.upstream = upstream_kind::rabbitmq;
    harness h(protocol_version::v5, cfg);
    h.establish({{"private/alice/#"}, {"private/alice/#"}});
    auto out = h.client(mqtt::publish{"private/alice/a.b", "", mqtt::qos::at_least_once, false, false, 3, {}});
    CHECK_FALSE(has<action::forward_to_upstream>(out));
    CHECK(std::get<mqtt::puback>(to_client(out, h.v).at(0)).reason == reason_code::not_authorized);
    out = h.client(mqtt::subscribe{4, {}, {{"private/alice/x.y", {}}, {"private/alice/*", {}}, {"private/alice/ok", {}}}});
    auto sub = std::get<mqtt::subscribe>(to_upstream(out, h.v).at(0));
    CHECK(sub.subscriptions.size() == 1);
    out = h.upstream(mqtt::suback{4, {}, {reason_code::success}});
    CHECK(std::get<mqtt::suback>(to_client(out, h.v).at(0)).reasons ==
          std::vector{reason_code::not_authorized, reason_code::not_authorized, reason_code::success});
    CHECK(has<action::forward_to_upstream>(h.client(mqtt::publish{"private/alice/ab", "", mqtt::qos::at_most_once, false, false, 0, {}})));

    harness w(protocol_version::v3_1_1, cfg);
    auto c = w.connect_packet();
    c.will = mqtt::will_message{"private/alice/st.atus", "x", mqtt::qos::at_most_once, false, {}};
    w.client(c);
    w.client(mqtt::publish{"service/auth/t", "", mqtt::qos::at_most_once, false, false, 0, {}});
    out = w.auth(harness::valid("alice", harness::default_acl()));
    CHECK(close_reason(out) == "denied: will_not_allowed");
  }

  TEST_CASE("other brokers keep dots") {
    harness h(protocol_version::v5);
    h.establish();
    CHECK(has<action::forward_to_upstream>(h.client(mqtt::publish{"private/alice/a.b", "", mqtt::qos::at_most_once, false, false, 0, {}})));
  }
}

TEST_SUITE("session: held DISCONNECT") {
  TEST_CASE("a DISCONNECT behind held packets is replayed after them, then a clean close") {
    for (bool direct : {false, true}) {
      harness h(protocol_version::v3_1_1);
      auto c = h.connect_packet();
      c.will = mqtt::will_message{"private/alice/status", "gone", mqtt::qos::at_most_once, false, {}};
      if (direct) c.password = "tok";
      h.client(c);
      if (!direct) h.client(mqtt::publish{"service/auth/tok", "", mqtt::qos::at_most_once, false, false, 0, {}});
      CHECK(h.client(mqtt::publish{"private/alice/x", "early", mqtt::qos::at_most_once, false, false, 0, {}}).empty());
      CHECK(h.client(mqtt::disconnect{}).empty());
      CHECK(acts(h.session.on_client_closed()).empty());  // the client closed its side: not the end yet
      CHECK(h.client(mqtt::pingreq{}).empty());          // nothing counts after DISCONNECT
      h.auth(harness::valid("alice", harness::default_acl()));
      auto out = h.upstream(mqtt::connack{});
      auto up = to_upstream(out, h.v);
      REQUIRE(up.size() == 2);
      CHECK(std::get<mqtt::publish>(up[0]).payload == "early");
      CHECK(std::holds_alternative<mqtt::disconnect>(up[1]));
      CHECK(close_reason(out) == "client disconnected");
      CHECK(h.counters.held_dropped == 0);
    }
  }

  TEST_CASE("if authentication fails, the held packets are dropped and counted") {
    harness h(protocol_version::v5);
    h.client(h.connect_packet());
    h.client(mqtt::publish{"service/auth/bad", "", mqtt::qos::at_most_once, false, false, 0, {}});
    h.client(mqtt::publish{"private/alice/x", "early", mqtt::qos::at_most_once, false, false, 0, {}});
    h.client(mqtt::disconnect{});
    auto out = h.auth({auth_result::verdict::invalid});
    CHECK(has<action::close>(out));
    CHECK(to_upstream(out, h.v).empty());
    CHECK(h.counters.held_dropped == 2);
  }

  TEST_CASE("a DISCONNECT with nothing held ends the connection at once, as before") {
    harness h(protocol_version::v5);
    h.client(h.connect_packet());
    h.client(mqtt::publish{"service/auth/tok", "", mqtt::qos::at_most_once, false, false, 0, {}});
    CHECK(close_reason(h.client(mqtt::disconnect{})) == "client disconnected before the relay began");
  }
}

TEST_SUITE("session: broker limits") {
  TEST_CASE("limits_from_connack reads every limit; merge_limits lets config win") {
    mqtt::connack ack{false, reason_code::success,
                      {{mqtt::property_id::maximum_qos, 1u},
                       {mqtt::property_id::retain_available, 0u},
                       {mqtt::property_id::receive_maximum, 20u},
                       {mqtt::property_id::maximum_packet_size, 1000u},
                       {mqtt::property_id::server_keep_alive, 10u},
                       {mqtt::property_id::wildcard_subscription_available, 1u},
                       {mqtt::property_id::subscription_identifier_available, 0u},
                       {mqtt::property_id::shared_subscription_available, 0u}}};
    auto learned = limits_from_connack(ack);
    CHECK(learned.maximum_qos == mqtt::qos::at_least_once);
    CHECK(learned.retain_available == false);
    CHECK(learned.receive_maximum == 20);
    CHECK(learned.maximum_packet_size == 1000u);
    CHECK(learned.server_keep_alive == 10);
    CHECK(learned.wildcard_subscription_available == true);
    CHECK(learned.subscription_identifiers_available == false);
    CHECK(learned.shared_subscription_available == false);
    CHECK(limits_from_connack(mqtt::connack{}) == upstream_limits{});
    upstream_limits configured;
    configured.maximum_qos = mqtt::qos::exactly_once;
    auto merged = merge_limits(configured, learned);
    CHECK(merged.maximum_qos == mqtt::qos::exactly_once);
    CHECK(merged.receive_maximum == 20);
  }

  TEST_CASE("the proxy's CONNACK to a 5.0 client advertises the broker's limits") {
    session_config cfg = harness::make_config();
    cfg.limits.maximum_qos = mqtt::qos::at_least_once;
    cfg.limits.retain_available = false;
    cfg.limits.receive_maximum = 30;
    cfg.limits.maximum_packet_size = 4096;
    cfg.limits.shared_subscription_available = false;
    cfg.upstream_max_keep_alive = 10;
    harness h(protocol_version::v5, cfg);
    auto ack = std::get<mqtt::connack>(to_client(h.client(h.connect_packet()), h.v).at(0));  // keep-alive 20
    CHECK(ack.props.number(mqtt::property_id::maximum_qos) == 1u);
    CHECK(ack.props.number(mqtt::property_id::retain_available) == 0u);
    CHECK(ack.props.number(mqtt::property_id::receive_maximum) == 30u);
    CHECK(ack.props.number(mqtt::property_id::maximum_packet_size) == 4096u);
    CHECK(ack.props.number(mqtt::property_id::shared_subscription_available) == 0u);
    CHECK_FALSE(ack.props.number(mqtt::property_id::wildcard_subscription_available));
    CHECK(ack.props.number(mqtt::property_id::server_keep_alive) == 10u);
    // Held to its own keep-alive (clients such as paho 1.6 ignore Server Keep Alive); the proxy pings the broker.
    CHECK(h.session.keep_alive_limit() == std::chrono::milliseconds(30'000));

    session_config loose = harness::make_config();
    loose.upstream_max_keep_alive = 60;
    harness l(protocol_version::v5, loose);
    ack = std::get<mqtt::connack>(to_client(l.client(l.connect_packet()), l.v).at(0));
    CHECK_FALSE(ack.props.number(mqtt::property_id::server_keep_alive));  // the client's 20 is shorter
    CHECK(ack.props.number(mqtt::property_id::maximum_packet_size) == 1024u * 1024u);
  }

  TEST_CASE("a 3.1.1 client with a long keep-alive: upstream keep-alive clamped, the proxy pings the broker") {
    session_config cfg = harness::make_config();
    cfg.upstream_max_keep_alive = 10;
    harness h(protocol_version::v3_1_1, cfg);
    auto c = h.connect_packet();
    c.keep_alive = 60;
    h.client(c);
    h.client(mqtt::publish{"service/auth/tok", "", mqtt::qos::at_most_once, false, false, 0, {}});
    auto out = h.auth(harness::valid("alice", harness::default_acl()));
    auto up = std::get<mqtt::connect>(*mqtt::decode(all_of<action::connect_upstream>(out).at(0).connect_packet, h.v));
    CHECK(up.keep_alive == 10);
    out = h.upstream(mqtt::connack{});
    bool armed = false;
    for (auto& t : all_of<action::arm_timer>(out))
      armed |= t.kind == timer_kind::upstream_ping && t.after == std::chrono::seconds(5);
    CHECK(armed);
    out = acts(h.session.on_timer(timer_kind::upstream_ping));
    CHECK(std::holds_alternative<mqtt::pingreq>(to_upstream(out, h.v).at(0)));
    CHECK(all_of<action::arm_timer>(out).at(0).kind == timer_kind::upstream_ping);
    CHECK(h.upstream(mqtt::pingresp{}).empty());  // the proxy's own
    CHECK(has<action::forward_to_upstream>(h.client(mqtt::pingreq{})));
    CHECK(has<action::forward_to_client>(h.upstream(mqtt::pingresp{})));  // the client's
    // A broker that stops answering is given up on.
    for (int i = 0; i < 3; ++i) h.session.on_timer(timer_kind::upstream_ping);
    CHECK(has<action::close>(acts(h.session.on_timer(timer_kind::upstream_ping))));
  }

  TEST_CASE("keep-alive 0 is clamped too (Mosquitto refuses it from 3.1.1 clients under max_keepalive)") {
    session_config cfg = harness::make_config();
    cfg.upstream_max_keep_alive = 10;
    harness h(protocol_version::v3_1_1, cfg);
    auto c = h.connect_packet();
    c.keep_alive = 0;
    c.password = "tok";
    h.client(c);
    auto out = h.auth(harness::valid("alice", harness::default_acl()));
    CHECK(std::get<mqtt::connect>(*mqtt::decode(all_of<action::connect_upstream>(out).at(0).connect_packet, h.v)).keep_alive == 10);
  }

  TEST_CASE("a 5.0 broker CONNACK with a shorter Server Keep Alive than asked: the proxy pings") {
    harness h(protocol_version::v5);
    auto c = h.connect_packet();
    c.keep_alive = 60;
    c.username.reset();
    h.client(c);
    h.client(mqtt::publish{"service/auth/tok", "", mqtt::qos::at_most_once, false, false, 0, {}});
    h.auth(harness::valid("alice", harness::default_acl()));
    auto out = h.upstream(mqtt::connack{false, reason_code::success, {{mqtt::property_id::server_keep_alive, 10u}}});
    bool armed = false;
    for (auto& t : all_of<action::arm_timer>(out)) armed |= t.kind == timer_kind::upstream_ping;
    CHECK(armed);
    CHECK(h.session.current_state() == client_session::state::relaying);
  }

  TEST_CASE("direct mode: the broker's Server Keep Alive reaches the client, and the proxy pings the broker too") {
    harness h(protocol_version::v5);
    auto c = h.connect_packet();
    c.keep_alive = 60;
    c.password = "tok";
    h.client(c);
    h.auth(harness::valid("alice", harness::default_acl()));
    auto out = h.upstream(mqtt::connack{false, reason_code::success, {{mqtt::property_id::server_keep_alive, 10u}}});
    CHECK(std::get<mqtt::connack>(to_client(out, h.v).at(0)).props.number(mqtt::property_id::server_keep_alive) == 10u);
    bool armed = false;
    for (auto& t : all_of<action::arm_timer>(out)) armed |= t.kind == timer_kind::upstream_ping;
    CHECK(armed);
    CHECK(h.session.keep_alive_limit() == std::chrono::milliseconds(90'000));
  }

  TEST_CASE("PUBLISH above the broker's maximum QoS or with an unavailable retain: 0x9B / 0x9A, 3.1.1 closed") {
    session_config cfg = harness::make_config();
    cfg.limits.maximum_qos = mqtt::qos::at_least_once;
    cfg.limits.retain_available = false;
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
      harness h(v, cfg);
      h.establish();
      CHECK(has<action::forward_to_upstream>(h.client(mqtt::publish{"private/alice/x", "", mqtt::qos::at_least_once, false, false, 1, {}})));
      auto out = h.client(mqtt::publish{"private/alice/x", "", mqtt::qos::exactly_once, false, false, 2, {}});
      CHECK_FALSE(has<action::forward_to_upstream>(out));
      CHECK(has<action::close>(out));
      if (v == protocol_version::v5) CHECK(std::get<mqtt::disconnect>(to_client(out, v).at(0)).reason == reason_code::qos_not_supported);
      harness r(v, cfg);
      r.establish();
      out = r.client(mqtt::publish{"private/alice/x", "", mqtt::qos::at_most_once, true, false, 0, {}});
      CHECK(has<action::close>(out));
      if (v == protocol_version::v5) CHECK(std::get<mqtt::disconnect>(to_client(out, v).at(0)).reason == reason_code::retain_not_supported);
    }
  }

  TEST_CASE("limits learned late go to sessions that begin after they are published; older ones keep theirs") {
    std::atomic<const upstream_limits*> late{nullptr};
    session_config cfg = harness::make_config();
    cfg.late_limits = &late;
    harness before(protocol_version::v5, cfg), relaying_before(protocol_version::v5, cfg);
    upstream_limits learned;
    learned.maximum_qos = mqtt::qos::at_least_once;
    learned.retain_available = false;
    late.store(&learned);
    harness after(protocol_version::v5, cfg), relaying_after(protocol_version::v5, cfg);
    auto told_before = std::get<mqtt::connack>(to_client(before.client(before.connect_packet()), before.v).at(0));
    CHECK_FALSE(told_before.props.number(mqtt::property_id::maximum_qos));
    CHECK_FALSE(told_before.props.number(mqtt::property_id::retain_available));
    auto told_after = std::get<mqtt::connack>(to_client(after.client(after.connect_packet()), after.v).at(0));
    CHECK(told_after.props.number(mqtt::property_id::maximum_qos) == 1u);
    CHECK(told_after.props.number(mqtt::property_id::retain_available) == 0u);
    // Each is held to what it was told: QoS 2 passes for the older one only.
    relaying_before.establish();
    relaying_after.establish();
    const mqtt::publish qos2{"private/alice/x", "", mqtt::qos::exactly_once, false, false, 2, {}};
    CHECK(has<action::forward_to_upstream>(relaying_before.client(qos2)));
    auto out = relaying_after.client(qos2);
    CHECK_FALSE(has<action::forward_to_upstream>(out));
    CHECK(std::get<mqtt::disconnect>(to_client(out, relaying_after.v).at(0)).reason == reason_code::qos_not_supported);
  }

  TEST_CASE("wildcard and shared subscriptions the broker does not support are refused per filter") {
    session_config cfg = harness::make_config();
    cfg.limits.wildcard_subscription_available = false;
    cfg.limits.shared_subscription_available = false;
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
      harness h(v, cfg);
      h.establish();
      auto out = h.client(mqtt::subscribe{6, {}, {{"private/alice/+", {}}, {"$share/g/private/alice/x", {}}, {"private/alice/x", {}}}});
      auto up = std::get<mqtt::subscribe>(to_upstream(out, v).at(0));
      REQUIRE(up.subscriptions.size() == 1);
      CHECK(up.subscriptions[0].filter == "private/alice/x");
      auto ack = std::get<mqtt::suback>(to_client(h.upstream(mqtt::suback{6, {}, {reason_code::success}}), v).at(0));
      if (v == protocol_version::v5) {
        CHECK(ack.reasons == std::vector{reason_code::wildcard_subscriptions_not_supported,
                                         reason_code::shared_subscriptions_not_supported, reason_code::success});
      } else {
        CHECK(ack.reasons == std::vector{reason_code::unspecified_error, reason_code::unspecified_error, reason_code::success});
      }
    }
  }

  TEST_CASE("a will above the broker's maximum QoS is refused at CONNECT [MQTT-3.2.2-12]") {
    session_config cfg = harness::make_config();
    cfg.limits.maximum_qos = mqtt::qos::at_most_once;
    harness h(protocol_version::v5, cfg);
    auto c = h.connect_packet();
    c.will = mqtt::will_message{"private/alice/status", "x", mqtt::qos::at_least_once, false, {}};
    auto out = h.client(c);
    CHECK(std::get<mqtt::connack>(to_client(out, h.v).at(0)).reason == reason_code::qos_not_supported);
    CHECK(has<action::close>(out));
  }
}

TEST_SUITE("session: protocol hygiene") {
  TEST_CASE("a client PUBLISH with a Subscription Identifier is a protocol error [MQTT-3.3.4-6]; the reason is escaped") {
    harness h(protocol_version::v5);
    h.establish();
    auto out = h.client(mqtt::publish{"private/alice/a\nforged", "", mqtt::qos::at_most_once, false, false, 0,
                                      {{mqtt::property_id::subscription_identifier, 5u}}});
    CHECK_FALSE(has<action::forward_to_upstream>(out));
    CHECK(std::get<mqtt::disconnect>(to_client(out, h.v).at(0)).reason == reason_code::protocol_error);
    const auto reason = close_reason(out);
    CHECK(reason.find('\n') == std::string::npos);
    CHECK(reason.find("a\\nforged") != std::string::npos);
  }

  TEST_CASE("escape_for_log") {
    CHECK(escape_for_log("plain/topic") == "plain/topic");
    CHECK(escape_for_log("a\nb\rc\td") == "a\\nb\\rc\\td");
    CHECK(escape_for_log(std::string("x\0y\x1b\x7f", 5)) == "x\\x00y\\x1b\\x7f");
    CHECK(escape_for_log("q\"uo\\te") == "q\\\"uo\\\\te");
    CHECK(escape_for_log("\xc2\x85next") == "\\u0085next");  // U+0085 NEL, a C1 line break
    CHECK(escape_for_log("caf\xc3\xa9") == "caf\xc3\xa9");    // ordinary UTF-8 untouched
  }

  TEST_CASE("shutdown: 5.0 clients get 0x8B, the broker a normal DISCONNECT unless wills are to fire") {
    harness h(protocol_version::v5);
    h.establish();
    auto out = acts(h.session.on_shutdown(false));
    CHECK(std::get<mqtt::disconnect>(to_upstream(out, h.v).at(0)).reason == reason_code::success);
    CHECK(std::get<mqtt::disconnect>(to_client(out, h.v).at(0)).reason == reason_code::server_shutting_down);
    CHECK(has<action::close>(out));
    harness f(protocol_version::v5);
    f.establish();
    out = acts(f.session.on_shutdown(true));
    CHECK(std::get<mqtt::disconnect>(to_upstream(out, f.v).at(0)).reason == reason_code::disconnect_with_will);
  }

  TEST_CASE("metrics render the new counters") {
    metrics m;
    m.acl_denied_deliver = 3;
    m.held_dropped = 2;
    const auto text = m.render();
    CHECK(text.find("mqtt_proxy_acl_denials_total{packet=\"publish\",direction=\"deliver\"} 3") != std::string::npos);
    CHECK(text.find("mqtt_proxy_held_packets_dropped_total 2") != std::string::npos);
  }
}

#include "config/config.hpp"
#include "net/broker_probe.hpp"

#include <unistd.h>

#include <cstdio>
#include <fstream>

TEST_SUITE("session: broker probe and config") {
  TEST_CASE("the probe CONNECT is 5.0, clean, with the proxy's credentials and the longest keep-alive") {
    auto wire = broker_probe_connect(std::string("proxy"), std::string("secret"), "mqtt-proxy-probe-1");
    auto c = std::get<mqtt::connect>(*mqtt::decode(wire, protocol_version::v5));
    CHECK(c.version == protocol_version::v5);
    CHECK(c.clean_start);
    CHECK(c.keep_alive == 65535);
    CHECK(c.username == "proxy");
    CHECK(c.password == "secret");
    CHECK_FALSE(c.will);
    CHECK_FALSE(c.props.number(mqtt::property_id::session_expiry_interval));  // 0: nothing left behind
  }

  TEST_CASE("the probe's CONNACK becomes limits; a refusal is an error") {
    auto ok = broker_probe_answer(mqtt::connack{false, reason_code::success,
                                                {{mqtt::property_id::server_keep_alive, 10u},
                                                 {mqtt::property_id::maximum_qos, 1u}}});
    CHECK(ok.ok);
    CHECK(ok.limits.server_keep_alive == 10);
    CHECK(ok.limits.maximum_qos == mqtt::qos::at_least_once);
    CHECK_FALSE(ok.limits.retain_available);
    auto refused = broker_probe_answer(mqtt::connack{false, reason_code::bad_user_name_or_password, {}});
    CHECK_FALSE(refused.ok);
    CHECK(refused.error.find("refused") != std::string::npos);
  }

  TEST_CASE("a probe that learned nothing is asked again while the broker may yet answer") {
    broker_probe_result down;  // refused the connection, or silent until the timeout
    CHECK(worth_asking_again(down, upstream_protocol::v5));
    CHECK(worth_asking_again(down, upstream_protocol::v3_1_1));
    auto learned = broker_probe_answer(mqtt::connack{false, reason_code::success, {}});
    CHECK_FALSE(worth_asking_again(learned, upstream_protocol::automatic));
    for (auto busy : {reason_code::server_unavailable, reason_code::server_busy})
      CHECK(worth_asking_again(broker_probe_answer(mqtt::connack{false, busy, {}}), upstream_protocol::automatic));
    // Credentials refused: asking again every minute changes nothing.
    CHECK_FALSE(worth_asking_again(broker_probe_answer(mqtt::connack{false, reason_code::not_authorized, {}}),
                                   upstream_protocol::automatic));
    // Took the CONNECT and closed without a 5.0 CONNACK: a 3.1.1-only broker never will answer it.
    broker_probe_result closed;
    closed.connected = true;
    CHECK_FALSE(worth_asking_again(closed, upstream_protocol::v3_1_1));
    CHECK(worth_asking_again(closed, upstream_protocol::automatic));
  }

  TEST_CASE("a broker that cannot be reached is an error, not an exception") {
    upstream_settings where;
    where.host = "127.0.0.1";
    where.port = "1";  // nothing listens on port 1
    auto result = probe_broker(where, std::nullopt, std::nullopt, nullptr, std::chrono::milliseconds(2000));
    CHECK_FALSE(result.ok);
    CHECK_FALSE(result.error.empty());
  }

  TEST_CASE("[upstream] kind, limits and timeouts.revalidate_ms are read and checked") {
    const std::string path = "/tmp/session_test_config_" + std::to_string(::getpid()) + ".toml";
    auto load = [&](const std::string& text) {
      std::ofstream(path) << text;
      proxy_config config;
      load_config_file(path, config);
      return config;
    };
    auto config = load(
        "[upstream]\nkind = \"rabbitmq\"\nmax_keep_alive = 10\nmaximum_qos = 1\nretain_available = false\n"
        "receive_maximum = 30\nmaximum_packet_size = 4096\nshared_subscription_available = false\nprobe = false\n"
        "[timeouts]\nrevalidate_ms = 2500\n");
    const auto& s = config.connection.session;
    CHECK(s.upstream == upstream_kind::rabbitmq);
    CHECK(s.upstream_max_keep_alive == 10);
    CHECK(s.limits.maximum_qos == mqtt::qos::at_least_once);
    CHECK(s.limits.retain_available == false);
    CHECK(s.limits.receive_maximum == 30);
    CHECK(s.limits.maximum_packet_size == 4096u);
    CHECK(s.limits.shared_subscription_available == false);
    CHECK_FALSE(s.limits.wildcard_subscription_available);
    CHECK_FALSE(config.connection.upstream.probe);
    CHECK(s.revalidate_interval == std::chrono::milliseconds(2500));
    CHECK(load("").connection.session.upstream == upstream_kind::generic);
    CHECK_THROWS_WITH_AS(load("[upstream]\nkind = \"kafka\"\n"), doctest::Contains("upstream.kind"), config_error);
    CHECK_THROWS_WITH_AS(load("[upstream]\nmaximum_qos = 3\n"), doctest::Contains("upstream.maximum_qos"), config_error);
    CHECK_THROWS_WITH_AS(load("[upstream]\nmax_keep_alive = 0\n"), doctest::Contains("upstream.max_keep_alive"), config_error);
    std::remove(path.c_str());
  }
}

TEST_SUITE("session: ACLs shared through the worker's pool") {
  TEST_CASE("sessions of one user hold one copy; an ACL change moves only the session it reaches") {
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
      acl_pool pool;
      harness phone(v);
      harness tablet(v);
      phone.session.share_acls_through(&pool);
      tablet.session.share_acls_through(&pool);
      phone.establish();
      tablet.establish();
      CHECK(&phone.session.permissions() == &tablet.session.permissions());
      CHECK(pool.size() == 1);

      auto e = event(auth_event::kind::acl_changed);
      e.permissions = {{"private/alice/#"}, {"private/alice/#"}};
      acts(phone.session.on_auth_event(e));
      CHECK(&phone.session.permissions() != &tablet.session.permissions());
      CHECK(pool.size() == 2);
      // The tablet still has (and delivers by) the old ACL until its own event arrives.
      CHECK(has<action::forward_to_client>(tablet.upstream(delivery("public/sport/news"))));
      CHECK_FALSE(has<action::forward_to_client>(phone.upstream(delivery("public/sport/news"))));
      acts(tablet.session.on_auth_event(e));
      CHECK(&phone.session.permissions() == &tablet.session.permissions());
      CHECK(pool.size() == 1);  // the old ACL left with its last holder
    }
  }

  // Issue 14: the ACL of an answer is not copied on its way into the session.
  TEST_CASE("an answer's ACL is taken as it is: shared with the answer, or the pool's equal one") {
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
      const auto answer = harness::valid("alice", harness::default_acl());
      harness alone(v);  // no pool: the answer's own rules (the validation cache's, in the proxy)
      alone.admit(answer);
      CHECK(&alone.session.permissions() == answer.permissions.shared().get());

      acl_pool pool;
      harness phone(v);
      harness tablet(v);
      phone.session.share_acls_through(&pool);
      tablet.session.share_acls_through(&pool);
      phone.establish();
      tablet.admit(answer);  // equal rules, another answer: the pool's copy, not the answer's
      CHECK(&tablet.session.permissions() == &phone.session.permissions());
      CHECK(&tablet.session.permissions() != answer.permissions.shared().get());
      CHECK(pool.size() == 1);
    }
  }

  TEST_CASE("an answer's ACL with templates is the answer's rules and the expanded templates") {
    session_config config = harness::make_config();
    config.templates = {{"devices/%c/out"}, {}};
    harness h(protocol_version::v5, config);
    const auto answer = harness::valid("alice", harness::default_acl());
    h.admit(answer);
    CHECK(h.session.permissions().publish == std::vector<std::string>{"private/alice/#", "devices/phone/out"});
    CHECK(h.session.permissions().subscribe == answer.permissions->subscribe);
    CHECK(answer.permissions->publish.size() == 1);  // the answer's own rules are left as they were
  }

  TEST_CASE("before admission a session allows nothing") {
    acl_pool pool;
    harness h(protocol_version::v5);
    h.session.share_acls_through(&pool);
    CHECK(h.session.permissions().publish.empty());
    CHECK(h.session.permissions().subscribe.empty());
    CHECK(pool.size() == 0);
  }
}
