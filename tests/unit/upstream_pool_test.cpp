// Several broker nodes: the failover plan and backoff of net/upstream_pool
// with a made-up clock, and the configuration that lists the nodes.
#include <doctest/doctest.h>

#include <map>

#include "command_line_helpers.hpp"
#include "config/config.hpp"
#include "net/upstream_pool.hpp"

using namespace proxy;
using namespace std::chrono_literals;

namespace {

upstream_pool three_nodes(upstream_backoff backoff = {1'000ms, 8'000ms, 500ms}) {
  return upstream_pool({{"a", "1"}, {"b", "2"}, {"c", "3"}}, backoff);
}

const upstream_pool::time_point t0{};

}  // namespace

TEST_SUITE("upstream_pool") {
  TEST_CASE("new connections go round robin over the nodes, each first once per round") {
    auto pool = three_nodes();
    std::map<std::size_t, int> first;
    for (int i = 0; i < 30; ++i) {
      const auto order = pool.plan(t0);
      REQUIRE(order.size() == 3);  // the others to fall back on, in order
      first[order.front()]++;
    }
    CHECK(first[0] == 10);
    CHECK(first[1] == 10);
    CHECK(first[2] == 10);
  }

  TEST_CASE("a failed node is skipped while its backoff runs; the rest share the load evenly") {
    auto pool = three_nodes();
    pool.report_failure(1, t0);
    CHECK_FALSE(pool.is_up(1));
    CHECK(pool.backoff_left(1, t0) == 1'000ms);
    std::map<std::size_t, int> first;
    for (int i = 0; i < 20; ++i) {
      const auto order = pool.plan(t0 + 500ms);
      REQUIRE(order.size() == 2);
      CHECK(std::find(order.begin(), order.end(), 1) == order.end());
      first[order.front()]++;
    }
    CHECK(first[0] == 10);
    CHECK(first[2] == 10);
  }

  TEST_CASE("after the backoff one connection probes the node first; the others keep skipping it") {
    auto pool = three_nodes();
    pool.report_failure(1, t0);
    const auto probe = pool.plan(t0 + 1'000ms);
    REQUIRE(probe.size() == 3);
    CHECK(probe.front() == 1);
    // While that probe is in flight (its window: 500 ms) nobody else is sent there.
    const auto other = pool.plan(t0 + 1'100ms);
    CHECK(std::find(other.begin(), other.end(), 1) == other.end());
    SUBCASE("the probe connects: the node is back in the round robin") {
      pool.report_success(1);
      CHECK(pool.is_up(1));
      CHECK(pool.plan(t0 + 1'200ms).size() == 3);
    }
    SUBCASE("the probe fails: the backoff doubles") {
      pool.report_failure(1, t0 + 1'050ms);
      CHECK(pool.backoff_left(1, t0 + 1'050ms) == 2'000ms);
      pool.plan(t0 + 3'050ms);  // the next probe
      pool.report_failure(1, t0 + 3'060ms);
      CHECK(pool.backoff_left(1, t0 + 3'060ms) == 4'000ms);
    }
    SUBCASE("the probe never reports (its connection died): the node is offered again after the window") {
      const auto later = pool.plan(t0 + 1'500ms);
      CHECK(later.front() == 1);
    }
  }

  TEST_CASE("the backoff doubles up to its cap") {
    auto pool = three_nodes();
    auto now = t0;
    std::vector<std::chrono::milliseconds> waits;
    for (int i = 0; i < 6; ++i) {
      pool.report_failure(0, now);
      waits.push_back(pool.backoff_left(0, now));
      now += waits.back();
      pool.plan(now);  // the probe that will fail next
    }
    CHECK(waits == std::vector<std::chrono::milliseconds>{1'000ms, 2'000ms, 4'000ms, 8'000ms, 8'000ms, 8'000ms});
  }

  TEST_CASE("connections already dialling a node that died count as one step of backoff, not many") {
    auto pool = three_nodes();
    pool.report_failure(2, t0);
    pool.report_failure(2, t0 + 1ms);
    pool.report_failure(2, t0 + 2ms);
    CHECK(pool.backoff_left(2, t0 + 2ms) == 998ms);
    CHECK(pool.render_metrics().find("mqtt_proxy_upstream_node_failures_total{node=\"c:3\"} 3") != std::string::npos);
  }

  TEST_CASE("every node backing off: all are still tried, soonest retry first") {
    auto pool = three_nodes();
    pool.report_failure(0, t0 + 300ms);
    pool.report_failure(1, t0);
    pool.report_failure(2, t0 + 100ms);
    const auto order = pool.plan(t0 + 400ms);
    CHECK(order == std::vector<std::size_t>{1, 2, 0});
  }

  TEST_CASE("a success resets a node, and the metrics say so per node") {
    auto pool = three_nodes();
    pool.report_failure(0, t0);
    auto text = pool.render_metrics();
    CHECK(text.find("mqtt_proxy_upstream_node_up{node=\"a:1\"} 0") != std::string::npos);
    CHECK(text.find("mqtt_proxy_upstream_node_up{node=\"b:2\"} 1") != std::string::npos);
    pool.report_success(0);
    text = pool.render_metrics();
    CHECK(text.find("mqtt_proxy_upstream_node_up{node=\"a:1\"} 1") != std::string::npos);
    CHECK(text.find("mqtt_proxy_upstream_node_connects_total{node=\"a:1\"} 1") != std::string::npos);
    CHECK(text.find("mqtt_proxy_upstream_node_failures_total{node=\"a:1\"} 1") != std::string::npos);
  }
}

TEST_SUITE("config") {
  TEST_CASE("--upstream takes a comma-separated list of nodes; one address stays one node") {
    auto one = test::parse({"--upstream", "b1:1883"}).config.connection.upstream;
    CHECK(one.nodes.empty());
    CHECK(upstream_nodes(one).size() == 1);
    CHECK(upstream_nodes(one).front().name() == "b1:1883");
    auto many = test::parse({"--upstream", "b1:1883,[::1]:1884,b3:1885"}).config.connection.upstream;
    REQUIRE(many.nodes.size() == 3);
    CHECK(many.host == "b1");  // the first: logs and anything reading one upstream
    CHECK(many.nodes[1].host == "::1");
    CHECK(many.nodes[2].name() == "b3:1885");
    CHECK(test::error_of({"--upstream", "b1:1883,"}).find("--upstream") != std::string::npos);
    CHECK(test::error_of({"--upstream", "b1:1883,b2:99999"}).find("port") != std::string::npos);
  }

  TEST_CASE("[upstream] addresses, policy and backoff") {
    auto file = test::write_file("mqtt-proxy-cluster.toml", R"([upstream]
addresses = ["r1:1883", "r2:1883"]
policy = "failover"
backoff_ms = 250
backoff_max_ms = 4000
)");
    auto c = test::parse({"--config", file}).config.connection.upstream;
    REQUIRE(c.nodes.size() == 2);
    CHECK(c.nodes[1].host == "r2");
    CHECK(c.backoff.initial == 250ms);
    CHECK(c.backoff.max == 4'000ms);
    auto both = test::write_file("mqtt-proxy-both.toml", "[upstream]\naddress = \"a:1\"\naddresses = [\"b:1\"]\n");
    CHECK(test::error_of({"--config", both}).find("upstream.addresses") != std::string::npos);
    auto empty = test::write_file("mqtt-proxy-empty.toml", "[upstream]\naddresses = []\n");
    CHECK(test::error_of({"--config", empty}).find("upstream.addresses") != std::string::npos);
    auto wrong = test::write_file("mqtt-proxy-wrong.toml", "[upstream]\naddresses = [1883]\n");
    CHECK(test::error_of({"--config", wrong}).find("upstream.addresses") != std::string::npos);
    auto policy = test::write_file("mqtt-proxy-policy.toml", "[upstream]\npolicy = \"random\"\n");
    CHECK(test::error_of({"--config", policy}).find("upstream.policy") != std::string::npos);
    auto backoff = test::write_file("mqtt-proxy-backoff.toml", "[upstream]\nbackoff_ms = 5000\nbackoff_max_ms = 10\n");
    CHECK(test::error_of({"--config", backoff}).find("upstream.backoff_max_ms") != std::string::npos);
    auto long_backoff = test::write_file("mqtt-proxy-long-backoff.toml", "[upstream]\nbackoff_ms = 60000\n");
    CHECK(test::parse({"--config", long_backoff}).config.connection.upstream.backoff.max == 60'000ms);
  }

  TEST_CASE("a CONNACK that says the node cannot serve rules the node out; one about the client does not") {
    using mqtt::protocol_version;
    const auto v3 = protocol_version::v3_1_1;
    const auto v5 = protocol_version::v5;
    using bytes = std::vector<std::uint8_t>;
    auto rules_out = [](const bytes& answer, protocol_version v) { return answer_rules_out_node(answer, v); };
    CHECK(rules_out({0x20, 0x02, 0x00, 0x03}, v3));  // server unavailable
    CHECK_FALSE(rules_out({0x20, 0x02, 0x00, 0x00}, v3));  // accepted
    CHECK_FALSE(rules_out({0x20, 0x02, 0x00, 0x04}, v3));  // bad user name or password: every node says it
    CHECK_FALSE(rules_out({0x20, 0x02, 0x00, 0x05}, v3));  // not authorised
    CHECK_FALSE(rules_out({0x20, 0x02, 0x00, 0x02}, v3));  // identifier rejected
    for (std::uint8_t code : {0x88, 0x89, 0x9C, 0x9D, 0x9F}) CHECK(rules_out({0x20, 0x03, 0x00, code, 0x00}, v5));
    for (std::uint8_t code : {0x00, 0x80, 0x85, 0x86, 0x87, 0x8A, 0x97})
      CHECK_FALSE(rules_out({0x20, 0x03, 0x00, code, 0x00}, v5));
    // With properties (a reason string), and followed by more bytes.
    CHECK(rules_out({0x20, 0x07, 0x00, 0x89, 0x04, 0x1F, 0x00, 0x01, 'x', 0xD0, 0x00}, v5));
    // Not a whole CONNACK: the session decides what to make of it.
    CHECK_FALSE(rules_out({0x20, 0x02, 0x00}, v3));
    CHECK_FALSE(rules_out({0x20}, v3));
    CHECK_FALSE(rules_out({}, v3));
    CHECK_FALSE(rules_out({0x30, 0x02, 0x00, 0x03}, v3));  // a PUBLISH
    CHECK_FALSE(rules_out({0x20, 0x02, 0x00, 0x03}, v5));  // 3 is no 5.0 reason code: malformed, not "unavailable"
    CHECK_FALSE(rules_out({0x20, 0x02, 0x01, 0x03}, v3));  // session present on a refusal: malformed
  }
}
