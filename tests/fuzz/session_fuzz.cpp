// libFuzzer target over the proxy's session state machine. The input is a
// script of events: bytes from the client, bytes from the broker, answers of
// the API server, timers. Whatever the script, the session must never let
// anything reach the broker before a valid session, nor forward a PUBLISH, a
// SUBSCRIBE filter or a will outside the ACL. A violation aborts.
#include <cstdlib>

#include "mqtt/codec.hpp"
#include "mqtt/framer.hpp"
#include "mqtt/topic.hpp"
#include "session/client_session.hpp"

namespace {

const proxy::acl permissions{{"private/alice/#"}, {"private/alice/#", "public/+/news"}};

void require(bool condition) {
  if (!condition) std::abort();
}

// Checks one packet on its way to the broker.
void check_upstream(const mqtt::bytes& wire, mqtt::protocol_version v, bool authenticated) {
  require(authenticated);
  auto decoded = mqtt::decode(wire, v);
  if (!decoded) return;  // bytes the broker will reject; not a leak past the ACL
  if (auto* p = std::get_if<mqtt::publish>(&*decoded)) {
    require(!p->topic.starts_with("service/auth"));
    require(permissions.may_publish(p->topic));
  }
  if (auto* s = std::get_if<mqtt::subscribe>(&*decoded))
    for (const auto& sub : s->subscriptions) require(permissions.may_subscribe(sub.filter));
  if (auto* c = std::get_if<mqtt::connect>(&*decoded)) {
    if (c->will) require(permissions.may_publish(c->will->topic));
    require(c->client_id.starts_with("5:alice:"));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  proxy::session_config config;
  proxy::metrics counters;
  proxy::client_session session(config, counters, "generated");
  mqtt::framer from_client(4096), from_broker(4096);
  bool authenticated = false;  // a valid answer has been given

  auto check = [&](proxy::client_session::actions actions, const mqtt::frame* client_frame) {
    for (const auto& a : actions) {
      if (std::holds_alternative<proxy::action::forward_to_upstream>(a)) {
        require(client_frame != nullptr);
        check_upstream({client_frame->bytes.begin(), client_frame->bytes.end()}, session.version(), authenticated);
      } else if (auto* s = std::get_if<proxy::action::send_to_upstream>(&a)) {
        check_upstream(s->data, session.version(), authenticated);
      } else if (auto* c = std::get_if<proxy::action::connect_upstream>(&a)) {
        check_upstream(c->connect_packet, session.version(), authenticated);
      }
    }
  };

  std::size_t at = 0;
  while (at + 2 <= size) {
    const std::uint8_t kind = data[at] % 6;
    const std::size_t length = std::min<std::size_t>(data[at + 1], size - at - 2);
    const std::span<const std::uint8_t> chunk(data + at + 2, length);
    at += 2 + length;
    switch (kind) {
      case 0:
      case 1: {
        auto& framer = kind == 0 ? from_client : from_broker;
        framer.feed(chunk);
        for (;;) {
          auto next = framer.next();
          if (!next) {
            if (kind == 0) check(session.on_client_framing_error(next.error()), nullptr);
            return 0;
          }
          if (!*next) break;
          if (kind == 0) {
            check(session.on_client_frame(**next), &**next);
          } else {
            check(session.on_upstream_frame(**next), nullptr);
          }
        }
        break;
      }
      case 2: {
        proxy::auth_result valid{proxy::auth_result::verdict::valid, "alice", permissions, std::chrono::seconds(60), ""};
        authenticated = true;
        check(session.on_auth_result(valid), nullptr);
        break;
      }
      case 3: check(session.on_auth_result({proxy::auth_result::verdict::invalid}), nullptr); break;
      case 4: check(session.on_timer(proxy::timer_kind::handshake), nullptr); break;
      case 5: check(session.on_upstream_closed(), nullptr); break;
    }
    if (session.current_state() == proxy::client_session::state::closed) return 0;
  }
  return 0;
}
