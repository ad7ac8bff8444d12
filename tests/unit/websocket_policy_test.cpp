#include <doctest/doctest.h>

#include "net/websocket_policy.hpp"

using namespace proxy;
using namespace proxy::websocket_policy;

namespace {

upgrade_request good() {
  upgrade_request r;
  r.method = "GET";
  r.target = "/mqtt";
  r.is_websocket_upgrade = true;
  r.subprotocols = "mqtt";
  return r;
}

}  // namespace

TEST_SUITE("websocket policy") {
  TEST_CASE("subprotocol: the first MQTT name in the client's order") {
    CHECK(choose_subprotocol("mqtt") == "mqtt");
    CHECK(choose_subprotocol("mqttv3.1") == "mqttv3.1");
    CHECK(choose_subprotocol("wamp, mqttv3.1 ,mqtt") == "mqttv3.1");
    CHECK(choose_subprotocol(" chat,\tmqtt ") == "mqtt");
    CHECK_FALSE(choose_subprotocol(""));
    CHECK_FALSE(choose_subprotocol("MQTT"));  // case-sensitive (RFC 6455 4.1)
    CHECK_FALSE(choose_subprotocol("mqtt5, xmqtt, mqt"));
    CHECK_FALSE(choose_subprotocol(",,,"));
  }

  TEST_CASE("path ignores the query string only") {
    CHECK(path_matches("/mqtt", "/mqtt"));
    CHECK(path_matches("/mqtt?token=x", "/mqtt"));
    CHECK_FALSE(path_matches("/mqtt/", "/mqtt"));
    CHECK_FALSE(path_matches("/MQTT", "/mqtt"));
    CHECK_FALSE(path_matches("/", "/mqtt"));
  }

  TEST_CASE("origins: empty list allows all; otherwise exact, case-insensitive") {
    websocket_options open;
    CHECK(origin_allowed("https://evil.example", open));
    websocket_options strict;
    strict.allowed_origins = {"https://app.example", "http://localhost:3000"};
    CHECK(origin_allowed("https://app.example", strict));
    CHECK(origin_allowed("HTTPS://APP.example", strict));
    CHECK_FALSE(origin_allowed("https://app.example.evil", strict));
    CHECK_FALSE(origin_allowed("http://app.example", strict));
    CHECK_FALSE(origin_allowed("null", strict));
  }

  TEST_CASE("verdicts") {
    websocket_options options;
    options.allowed_origins = {"https://app.example"};
    CHECK(check(good(), options).status == 101);
    CHECK(check(good(), options).subprotocol == "mqtt");

    auto plain_http = good();
    plain_http.is_websocket_upgrade = false;
    CHECK(check(plain_http, options).status == 426);

    auto post = good();
    post.method = "POST";
    CHECK(check(post, options).status == 405);

    auto elsewhere = good();
    elsewhere.target = "/ws";
    CHECK(check(elsewhere, options).status == 404);

    auto foreign = good();
    foreign.origin = "https://evil.example";
    CHECK(check(foreign, options).status == 403);

    auto allowed_origin = good();
    allowed_origin.origin = "https://app.example";
    CHECK(check(allowed_origin, options).status == 101);

    auto no_origin = good();  // not a browser: origin checks do not apply
    CHECK(check(no_origin, options).status == 101);

    auto wrong_protocol = good();
    wrong_protocol.subprotocols = "chat";
    const auto refused = check(wrong_protocol, options);
    CHECK(refused.status == 400);
    CHECK(refused.reason.find("mqtt") != std::string::npos);

    auto no_protocol = good();
    no_protocol.subprotocols = "";
    CHECK(check(no_protocol, options).status == 400);
  }
}
