// The operator's tools, sans-I/O: the one ACL decision function (enforcing
// path and explain over one table), report-only ACL in the session, kick,
// the latency histogram, the admin query parser and the config keys.
#include <doctest/doctest.h>

#include <regex>

#include "admin/metrics.hpp"
#include "admin/operator_api.hpp"
#include "command_line_helpers.hpp"
#include "mqtt/codec.hpp"
#include "mqtt/framer.hpp"
#include "session/acl.hpp"
#include "session/client_session.hpp"

using namespace proxy;
using mqtt::protocol_version;
using mqtt::reason_code;

namespace {

// One row: a question, the answer, and which entry must have given it.
struct acl_case {
  const char* what;
  acl_action action;
  std::string name;
  std::string client_id;
  bool allowed;
  std::string rule;    // expanded filter that decided; empty: none
  std::string origin;  // "user" | "template" | ""
};

// The user's ACL as auth-server hands it out for "alice" in group "ops", plus
// an extra subscribe entry and a deployment's templates.
const acl alice_acl{{"private/alice/#", "group/ops/#", "telemetry/alice/+"},
                    {"private/alice/#", "group/ops/#", "broadcast/+", "$SYS/broker/uptime"}};
const acl templates{{"devices/%c/out"}, {"devices/%c/in/#", "inbox/%u"}};

const std::vector<acl_case> table{
    {"own private topic", acl_action::publish, "private/alice/x", "phone", true, "private/alice/#", "user"},
    {"another user's private topic", acl_action::publish, "private/bob/x", "phone", false, "", ""},
    {"group topic", acl_action::publish, "group/ops/alerts", "phone", true, "group/ops/#", "user"},
    {"other group", acl_action::publish, "group/dev/alerts", "phone", false, "", ""},
    {"extra publish entry, one level", acl_action::publish, "telemetry/alice/gps", "phone", true, "telemetry/alice/+", "user"},
    {"extra publish entry, two levels", acl_action::publish, "telemetry/alice/gps/raw", "phone", false, "", ""},
    {"publish template with the client id", acl_action::publish, "devices/phone/out", "phone", true, "devices/phone/out", "template"},
    {"publish template, other client id", acl_action::publish, "devices/tablet/out", "phone", false, "", ""},
    {"wildcard client id does not expand", acl_action::publish, "devices/+/out", "+", false, "", ""},
    {"subscribe within private", acl_action::subscribe, "private/alice/+/inbox", "phone", true, "private/alice/#", "user"},
    {"subscribe wider than allowed", acl_action::subscribe, "private/#", "phone", false, "", ""},
    {"subscribe to everything", acl_action::subscribe, "#", "phone", false, "", ""},
    {"subscribe broadcast exact", acl_action::subscribe, "broadcast/news", "phone", true, "broadcast/+", "user"},
    {"subscribe broadcast wildcard within", acl_action::subscribe, "broadcast/+", "phone", true, "broadcast/+", "user"},
    {"subscribe broadcast deeper", acl_action::subscribe, "broadcast/news/x", "phone", false, "", ""},
    {"shared subscription judged by its filter", acl_action::subscribe, "$share/g/group/ops/#", "phone", true, "group/ops/#", "user"},
    {"shared subscription outside", acl_action::subscribe, "$share/g/group/dev/#", "phone", false, "", ""},
    {"invalid filter", acl_action::subscribe, "private/alice/#/x", "phone", false, "", ""},
    {"subscribe template %u", acl_action::subscribe, "inbox/alice", "phone", true, "inbox/alice", "template"},
    {"subscribe template %c", acl_action::subscribe, "devices/phone/in/cmd", "phone", true, "devices/phone/in/#", "template"},
    {"subscribe template, empty client id", acl_action::subscribe, "devices//in/cmd", "", false, "", ""},
    {"$SYS only when named", acl_action::subscribe, "$SYS/broker/uptime", "phone", true, "$SYS/broker/uptime", "user"},
    {"receive on a subscribed topic", acl_action::receive, "broadcast/weather", "phone", true, "broadcast/+", "user"},
    {"receive outside", acl_action::receive, "private/bob/x", "phone", false, "", ""},
    {"receive $SYS not matched by #-like entries", acl_action::receive, "$SYS/broker/load", "phone", false, "", ""},
    {"receive from a template", acl_action::receive, "inbox/alice", "phone", true, "inbox/alice", "template"},
};

bool enforcing_answer(const acl& a, acl_action action, const std::string& name) {
  switch (action) {
    case acl_action::publish: return a.may_publish(name);
    case acl_action::subscribe: return a.may_subscribe(name);
    case acl_action::receive: return a.may_receive(name);
  }
  return false;
}

struct harness {
  session_config config;
  metrics counters;
  client_session session;
  protocol_version v;

  explicit harness(protocol_version version, acl_mode mode)
      : config(make_config(mode)), session(config, counters, "generated"), v(version) {}

  static session_config make_config(acl_mode mode) {
    session_config c;
    c.upstream_username = "proxy";
    c.upstream_password = "proxy-secret";
    c.acl_enforcement = mode;
    c.max_acl_reports = 3;
    return c;
  }
  session_actions deliver(const mqtt::packet& p, session_actions (client_session::*event)(const mqtt::frame&)) {
    auto wire = *mqtt::encode(p, v);
    mqtt::framer f(1 << 20);
    f.feed(wire);
    return (session.*event)(**f.next());
  }
  session_actions client(const mqtt::packet& p) { return deliver(p, &client_session::on_client_frame); }
  session_actions upstream(const mqtt::packet& p) { return deliver(p, &client_session::on_upstream_frame); }
  void establish() {
    mqtt::connect c;
    c.version = v;
    c.client_id = "phone";
    c.keep_alive = 20;
    client(c);
    client(mqtt::publish{"service/auth/tok", "", mqtt::qos::at_most_once, false, false, 0, {}});
    auth_result r;
    r.outcome = auth_result::verdict::valid;
    r.user = "alice";
    r.permissions = {{"private/alice/#"}, {"private/alice/#"}};
    r.expires_in = std::chrono::seconds(60);
    session.on_auth_result(r);
    upstream(mqtt::connack{});
    REQUIRE(session.current_state() == client_session::state::relaying);
  }
};

template <class T>
std::vector<T> all_of(const session_actions& actions) {
  std::vector<T> out;
  for (const auto& a : actions)
    if (auto* x = std::get_if<T>(&a)) out.push_back(*x);
  return out;
}

std::vector<mqtt::packet> sent(const session_actions& actions, protocol_version v, bool to_client) {
  std::vector<mqtt::packet> out;
  for (const auto& a : actions) {
    if (to_client) {
      if (auto* s = std::get_if<action::send_to_client>(&a)) out.push_back(*mqtt::decode(s->data, v));
    } else if (auto* s = std::get_if<action::send_to_upstream>(&a)) {
      out.push_back(*mqtt::decode(s->data, v));
    }
  }
  return out;
}

mqtt::subscribe subscribe_to(std::string filter, std::uint16_t id) {
  mqtt::subscribe s;
  s.packet_id = id;
  s.subscriptions.push_back({std::move(filter), mqtt::qos::at_least_once});
  return s;
}

}  // namespace

TEST_SUITE("acl: one decision function") {
  TEST_CASE("the enforcing path and explain agree over one table") {
    for (const auto& row : table) {
      CAPTURE(row.what);
      const auto merged = with_templates(alice_acl, templates, "alice", row.client_id);
      CHECK(enforcing_answer(merged, row.action, row.name) == row.allowed);
      CHECK(merged.allows(row.action, row.name) == row.allowed);  // the relay's question, no explanation built
      const auto e = explain(alice_acl, templates, "alice", row.client_id, row.action, row.name);
      CHECK(e.decision.allowed == row.allowed);
      CHECK(e.rule == row.rule);
      CHECK(e.origin == row.origin);
      CHECK(e.decision.rule.has_value() == row.allowed);
      CHECK_FALSE(e.decision.why.empty());
    }
  }

  TEST_CASE("explain names the template an entry came from, and the ones that did not expand") {
    auto e = explain(alice_acl, templates, "alice", "phone", acl_action::subscribe, "devices/phone/in/x");
    CHECK(e.pattern == "devices/%c/in/#");
    e = explain(alice_acl, templates, "alice", "a/b", acl_action::publish, "private/alice/x");
    REQUIRE(e.dropped_templates.size() == 2);
    CHECK(e.dropped_templates[0] == "devices/%c/out: %c contains '/', '+' or '#'");
    e = explain(alice_acl, templates, "alice", "", acl_action::publish, "private/alice/x");
    CHECK(e.dropped_templates[0] == "devices/%c/out: %c is empty");
  }

  TEST_CASE("a denial says why") {
    const auto d = alice_acl.decide(acl_action::subscribe, "a/#/b");
    CHECK_FALSE(d.allowed);
    CHECK(d.why == "not a valid topic filter");
    CHECK(alice_acl.decide(acl_action::publish, "x").why == "no publish entry matches (3 entries)");
  }

  TEST_CASE("modes and actions parse") {
    CHECK(parse_acl_mode("report") == acl_mode::report);
    CHECK(parse_acl_mode("enforce") == acl_mode::enforce);
    CHECK_FALSE(parse_acl_mode("Report").has_value());
    CHECK(parse_acl_action("receive") == acl_action::receive);
    CHECK_FALSE(parse_acl_action("delete").has_value());
  }
}

TEST_SUITE("session: report-only ACL") {
  TEST_CASE("enforce: a subscription outside the ACL is refused and counted as a denial") {
    harness h(protocol_version::v5, acl_mode::enforce);
    h.establish();
    auto out = h.client(subscribe_to("private/bob/#", 7));
    auto acks = sent(out, h.v, true);
    REQUIRE(acks.size() == 1);
    CHECK(std::get<mqtt::suback>(acks[0]).reasons == std::vector{reason_code::not_authorized});
    CHECK(h.counters.acl_denied_subscribe == 1);
    CHECK(h.counters.acl_report_subscribe == 0);
    CHECK(all_of<action::acl_report>(out).empty());
  }

  TEST_CASE("report: the subscription goes to the broker, is reported once and counted every time") {
    harness h(protocol_version::v5, acl_mode::report);
    h.establish();
    auto out = h.client(subscribe_to("private/bob/#", 7));
    CHECK(all_of<action::forward_to_upstream>(out).size() == 1);
    CHECK(sent(out, h.v, true).empty());
    auto reports = all_of<action::acl_report>(out);
    REQUIRE(reports.size() == 1);
    CHECK(reports[0].what == acl_action::subscribe);
    CHECK(reports[0].name == "private/bob/#");
    CHECK(reports[0].user == "alice");
    CHECK(h.counters.acl_denied_subscribe == 0);
    CHECK(h.counters.acl_report_subscribe == 1);
    CHECK(h.session.subscriptions().contains("private/bob/#"));
    // The same filter again: counted, not reported again.
    out = h.client(subscribe_to("private/bob/#", 8));
    CHECK(all_of<action::acl_report>(out).empty());
    CHECK(h.counters.acl_report_subscribe == 2);
    // Deliveries on it reach the client and are reported as "receive" (deliver).
    out = h.upstream(mqtt::publish{"private/bob/x", "hi", mqtt::qos::at_most_once, false, false, 0, {}});
    CHECK(all_of<action::forward_to_client>(out).size() == 1);
    CHECK(all_of<action::acl_report>(out).size() == 1);
    CHECK(h.counters.acl_report_deliver == 1);
    CHECK(h.counters.acl_denied_deliver == 0);
  }

  TEST_CASE("report: a publish outside the ACL is relayed; reports stop at the bound, counting goes on") {
    harness h(protocol_version::v3_1_1, acl_mode::report);
    h.establish();
    std::size_t reports = 0;
    for (int i = 0; i < 5; ++i) {
      auto out = h.client(mqtt::publish{"other/" + std::to_string(i), "x", mqtt::qos::at_most_once, false, false, 0, {}});
      CHECK(all_of<action::forward_to_upstream>(out).size() == 1);
      for (const auto& r : all_of<action::acl_report>(out)) {
        ++reports;
        CHECK(r.last == (reports == 3));
      }
    }
    CHECK(reports == 3);  // max_acl_reports
    CHECK(h.counters.acl_report_publish == 5);
    CHECK(h.counters.acl_denied_publish == 0);
  }

  TEST_CASE("a listener's mode overrides the global one") {
    harness h(protocol_version::v5, acl_mode::report);
    h.session.set_acl_mode(acl_mode::enforce);
    h.establish();
    auto out = h.client(subscribe_to("private/bob/#", 7));
    CHECK(all_of<action::forward_to_upstream>(out).empty());
    CHECK(h.counters.acl_denied_subscribe == 1);
  }

  TEST_CASE("report: a narrowed ACL does not unsubscribe, it reports (enforce does)") {
    for (const auto mode : {acl_mode::enforce, acl_mode::report}) {
      CAPTURE(to_string(mode));
      harness h(protocol_version::v5, mode);
      h.establish();
      h.client(subscribe_to("private/alice/#", 7));
      REQUIRE(h.session.subscriptions().contains("private/alice/#"));
      auth_event e;
      e.type = auth_event::kind::acl_changed;
      e.user_id = "alice";
      e.permissions = acl{{}, {"public/#"}};
      auto out = h.session.on_auth_event(e);
      const bool enforce = mode == acl_mode::enforce;
      CHECK(sent(out, h.v, false).size() == (enforce ? 1u : 0u));
      CHECK(h.counters.acl_unsubscribes == (enforce ? 1u : 0u));
      CHECK(all_of<action::acl_report>(out).size() == (enforce ? 0u : 1u));
    }
  }
}

TEST_SUITE("session: kick") {
  TEST_CASE("5.0: DISCONNECT 0x98 to the client, a normal DISCONNECT to the broker (no will)") {
    harness h(protocol_version::v5, acl_mode::enforce);
    h.establish();
    auto out = h.session.on_kick();
    auto up = sent(out, h.v, false);
    REQUIRE(up.size() == 1);
    CHECK(std::get<mqtt::disconnect>(up[0]).reason == reason_code::success);
    auto down = sent(out, h.v, true);
    REQUIRE(down.size() == 2);
    CHECK(std::get<mqtt::publish>(down[0]).payload == R"({"reason":"kicked","result":"denied"})");
    CHECK(std::get<mqtt::disconnect>(down[1]).reason == reason_code::administrative_action);
    CHECK(all_of<action::close>(out).size() == 1);
    CHECK(h.session.current_state() == client_session::state::closed);
    CHECK(h.session.on_kick().empty());
  }

  TEST_CASE("3.1.1: the auth topic says why, then the connection closes") {
    harness h(protocol_version::v3_1_1, acl_mode::enforce);
    h.establish();
    auto out = h.session.on_kick();
    auto down = sent(out, h.v, true);
    REQUIRE(down.size() == 1);
    CHECK(std::holds_alternative<mqtt::publish>(down[0]));
    CHECK(all_of<action::close>(out).size() == 1);
  }
}

TEST_SUITE("metrics: auth latency histogram") {
  TEST_CASE("cumulative buckets, sum and count") {
    metrics m;
    m.auth_latency.observe(std::chrono::microseconds(300));   // <= 0.0005
    m.auth_latency.observe(std::chrono::milliseconds(3));     // <= 0.005
    m.auth_latency.observe(std::chrono::milliseconds(3));
    m.auth_latency.observe(std::chrono::seconds(10));         // +Inf
    const auto text = m.render();
    CHECK(text.find("# TYPE mqtt_proxy_auth_latency_seconds histogram\n") != std::string::npos);
    CHECK(text.find("mqtt_proxy_auth_latency_seconds_bucket{le=\"0.0005\"} 1\n") != std::string::npos);
    CHECK(text.find("mqtt_proxy_auth_latency_seconds_bucket{le=\"0.0025\"} 1\n") != std::string::npos);
    CHECK(text.find("mqtt_proxy_auth_latency_seconds_bucket{le=\"0.005\"} 3\n") != std::string::npos);
    CHECK(text.find("mqtt_proxy_auth_latency_seconds_bucket{le=\"2.5\"} 3\n") != std::string::npos);
    CHECK(text.find("mqtt_proxy_auth_latency_seconds_bucket{le=\"+Inf\"} 4\n") != std::string::npos);
    CHECK(text.find("mqtt_proxy_auth_latency_seconds_count 4\n") != std::string::npos);
    CHECK(text.find("mqtt_proxy_auth_latency_seconds_sum 10.006300000\n") != std::string::npos);
    CHECK(text.find("mqtt_proxy_acl_report_total{direction=\"subscribe\"} 0\n") != std::string::npos);
  }
}

TEST_SUITE("operator api: query strings") {
  TEST_CASE("decoded parameters") {
    auto q = parse_query("user=al%69ce&topic=a%2Fb%2B&action=subscribe");
    REQUIRE(q.has_value());
    CHECK(q->at("user") == "alice");
    CHECK(q->at("topic") == "a/b+");
    CHECK(parse_query("")->empty());
    CHECK(parse_query("x=a+b")->at("x") == "a b");
  }
  TEST_CASE("malformed ones are refused, not guessed") {
    CHECK_FALSE(parse_query("user=%").has_value());
    CHECK_FALSE(parse_query("user=%4").has_value());
    CHECK_FALSE(parse_query("user=%zz").has_value());
    CHECK_FALSE(parse_query("user=a&user=b").has_value());
    CHECK_FALSE(parse_query("=x").has_value());
    std::string many;
    for (int i = 0; i < 17; ++i) many += "k" + std::to_string(i) + "=v&";
    CHECK_FALSE(parse_query(many).has_value());
  }
  TEST_CASE("which targets are the operator's") {
    CHECK(operator_api::handles("/v1/connections?user=x"));
    CHECK_FALSE(operator_api::handles("/metrics"));
    CHECK_FALSE(operator_api::handles("/healthz"));
  }
}

TEST_SUITE("config: operator keys") {
  TEST_CASE("[admin] table, [acl] mode and a listener's acl_mode") {
    auto file = test::write_file("mqtt-proxy-operator.toml", R"(
[admin]
address = "127.0.0.1:9200"
token_file = "/etc/mqtt-proxy/admin-token"
[acl]
mode = "report"
max_reports = 10
[listeners.ws]
address = "127.0.0.1:9080"
acl_mode = "enforce"
)");
    auto c = test::parse({"--config", file}).config;
    CHECK(c.admin.port == "9200");
    CHECK(c.admin_token_file == "/etc/mqtt-proxy/admin-token");
    CHECK(c.connection.session.acl_enforcement == acl_mode::report);
    CHECK(c.connection.session.max_acl_reports == 10);
    CHECK(c.listener(transport_kind::ws).settings.acl_enforcement == acl_mode::enforce);
    CHECK_FALSE(c.listener(transport_kind::tcp).settings.acl_enforcement.has_value());
  }
  TEST_CASE("admin as a string still works; flags; bad modes name their key") {
    auto c = test::parse({"--admin", "127.0.0.1:9300", "--admin-token-file", "t", "--acl-mode", "report"}).config;
    CHECK(c.admin.port == "9300");
    CHECK(c.admin_token_file == "t");
    CHECK(c.connection.session.acl_enforcement == acl_mode::report);
    CHECK(test::parse({}).config.connection.session.acl_enforcement == acl_mode::enforce);
    CHECK(test::error_of({"--acl-mode", "log"}).find("--acl-mode") != std::string::npos);
    auto bad = test::write_file("mqtt-proxy-bad-acl.toml", "[acl]\nmode = \"audit\"\n");
    CHECK(test::error_of({"--config", bad}).find("acl.mode") != std::string::npos);
    auto bad_listener = test::write_file("mqtt-proxy-bad-listener-acl.toml", "[listeners.tcp]\nacl_mode = 1\n");
    CHECK(test::error_of({"--config", bad_listener}).find("listeners.tcp.acl_mode") != std::string::npos);
  }
}
