// libFuzzer target over the proxy's session state machine. The input is a
// script of events: bytes from the client, bytes from the broker, answers of
// the API server, auth events, timers, shutdown. Whatever the script, the
// session must never let anything reach the broker before a valid session,
// nor forward a PUBLISH, a SUBSCRIBE filter or a will outside the ACL (nor,
// with a RabbitMQ upstream, a topic or filter with '.' or '*'); and nothing
// outside the subscribe ACL in force at that moment may reach the client. An
// acl_changed event for the session's user must be in force at once. With a
// 3.1.1-only broker (`[upstream] protocol = "3.1.1"`) and a 5.0 client, every
// packet to the broker is 3.1.1 and carries no 5.0-only subscription option,
// and nothing reaches either peer unre-encoded. A violation aborts.
#include <cstdlib>

#include "auth/auth_client.hpp"
#include "mqtt/codec.hpp"
#include "mqtt/framer.hpp"
#include "mqtt/topic.hpp"
#include "session/client_session.hpp"

namespace {

const proxy::acl permissions{{"private/alice/#"}, {"private/alice/#", "public/+/news"}};
const proxy::acl narrower{{"private/alice/#"}, {"private/alice/#"}};

void require(bool condition) {
  if (!condition) std::abort();
}

bool rabbit_safe(std::string_view name) { return name.find_first_of(".*") == std::string_view::npos; }

// Checks one packet on its way to the broker.
void check_upstream(const mqtt::bytes& wire, mqtt::protocol_version v, bool authenticated, bool rabbitmq) {
  require(authenticated);
  auto decoded = mqtt::decode(wire, v);
  if (!decoded) return;  // bytes the broker will reject; not a leak past the ACL
  if (auto* p = std::get_if<mqtt::publish>(&*decoded)) {
    require(!p->topic.starts_with("service/auth"));
    require(permissions.may_publish(p->topic));
    if (rabbitmq) require(rabbit_safe(p->topic));
  }
  if (auto* s = std::get_if<mqtt::subscribe>(&*decoded)) {
    for (const auto& sub : s->subscriptions) {
      if (v == mqtt::protocol_version::v3_1_1)
        require(!sub.options.no_local && !sub.options.retain_as_published && sub.options.retain_handling == 0);
      require(permissions.may_subscribe(sub.filter));
      if (rabbitmq) require(rabbit_safe(sub.filter));
    }
  }
  if (auto* c = std::get_if<mqtt::connect>(&*decoded)) {
    if (c->will) require(permissions.may_publish(c->will->topic));
    require(c->client_id.starts_with("5:alice:"));
    require(!c->props.number(mqtt::property_id::topic_alias_maximum));  // the broker must not use aliases
  }
}

// Checks one packet on its way to the client: a PUBLISH is the proxy's own
// answer on the auth topic, or within the subscribe ACL in force now.
void check_client(std::span<const std::uint8_t> wire, const proxy::client_session& session) {
  auto decoded = mqtt::decode(wire, session.version());
  if (!decoded) return;
  if (auto* p = std::get_if<mqtt::publish>(&*decoded)) {
    if (p->topic.starts_with("service/auth")) return;
    require(session.permissions().may_receive(p->topic));
    require(permissions.may_receive(p->topic));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  proxy::session_config config;
  // The input's length picks a deployment, so every seed still parses the same.
  const bool rabbitmq = size % 2 == 1;
  if (rabbitmq) config.upstream = proxy::upstream_kind::rabbitmq;
  if (size % 4 >= 2) {
    config.upstream_max_keep_alive = 10;
    config.limits.maximum_qos = mqtt::qos::at_least_once;
    config.limits.retain_available = false;
  }
  if (size % 8 >= 4) config.protocol = proxy::upstream_protocol::v3_1_1;
  proxy::metrics counters;
  proxy::client_session session(config, counters, "generated");
  // A 5.0 client on a 3.1.1 broker: what goes upstream must be 3.1.1.
  auto bridged = [&] {
    return config.protocol == proxy::upstream_protocol::v3_1_1 && session.version() == mqtt::protocol_version::v5;
  };
  auto upstream_version = [&] { return bridged() ? mqtt::protocol_version::v3_1_1 : session.version(); };
  mqtt::framer from_client(4096), from_broker(4096);
  bool authenticated = false;  // a valid answer has been given

  auto check = [&](proxy::client_session::actions actions, const mqtt::frame* client_frame,
                   const mqtt::frame* broker_frame) {
    for (const auto& a : actions) {
      if (std::holds_alternative<proxy::action::forward_to_upstream>(a)) {
        require(client_frame != nullptr);
        require(!bridged());  // the client's 5.0 bytes unchanged
        check_upstream({client_frame->bytes.begin(), client_frame->bytes.end()}, session.version(), authenticated,
                       rabbitmq);
      } else if (auto* s = std::get_if<proxy::action::send_to_upstream>(&a)) {
        if (bridged()) require(mqtt::decode(s->data, mqtt::protocol_version::v3_1_1).has_value());
        check_upstream(s->data, upstream_version(), authenticated, rabbitmq);
      } else if (auto* c = std::get_if<proxy::action::connect_upstream>(&a)) {
        check_upstream(c->connect_packet, upstream_version(), authenticated, rabbitmq);
      } else if (std::holds_alternative<proxy::action::forward_to_client>(a)) {
        require(broker_frame != nullptr);
        require(!bridged());  // the broker's 3.1.1 bytes unchanged
        check_client(broker_frame->bytes, session);
      } else if (auto* t = std::get_if<proxy::action::send_to_client>(&a)) {
        check_client(t->data, session);
      }
    }
  };
  auto valid = [&](bool stale) {
    proxy::auth_result r{proxy::auth_result::verdict::valid, "alice", "", permissions, std::chrono::seconds(60), stale, ""};
    authenticated = true;
    return r;
  };

  std::size_t at = 0;
  while (at + 2 <= size) {
    const std::uint8_t kind = data[at] % 12;
    const std::size_t length = std::min<std::size_t>(data[at + 1], size - at - 2);
    const std::span<const std::uint8_t> chunk(data + at + 2, length);
    at += 2 + length;
    const std::uint8_t arg = chunk.empty() ? 0 : chunk[0];
    switch (kind) {
      case 0:
      case 1: {
        auto& framer = kind == 0 ? from_client : from_broker;
        framer.feed(chunk);
        for (;;) {
          auto next = framer.next();
          if (!next) {
            if (kind == 0) check(session.on_client_framing_error(next.error()), nullptr, nullptr);
            return 0;
          }
          if (!*next) break;
          if (kind == 0) {
            check(session.on_client_frame(**next), &**next, nullptr);
          } else {
            check(session.on_upstream_frame(**next), nullptr, &**next);
          }
        }
        break;
      }
      case 2: check(session.on_auth_result(valid(false)), nullptr, nullptr); break;
      case 3: check(session.on_auth_result({proxy::auth_result::verdict::invalid}), nullptr, nullptr); break;
      case 4: check(session.on_timer(proxy::timer_kind::handshake), nullptr, nullptr); break;
      case 5: check(session.on_upstream_closed(), nullptr, nullptr); break;
      case 6: check(session.on_auth_result({proxy::auth_result::verdict::unavailable}), nullptr, nullptr); break;
      case 7: check(session.on_auth_result(valid(true)), nullptr, nullptr); break;
      case 8: {
        proxy::auth_event e;
        e.type = static_cast<proxy::auth_event::kind>(arg % 5);
        e.user_id = arg & 0x80 ? "bob" : "alice";
        e.session_digest = proxy::session_digest(arg & 0x40 ? "other" : "tok");
        e.permissions = narrower;
        const bool applies = !session.user_id().empty() && e.user_id == session.user_id() &&
                             session.current_state() != proxy::client_session::state::closed;
        check(session.on_auth_event(e), nullptr, nullptr);
        if (applies && e.type == proxy::auth_event::kind::acl_changed) {
          require(session.permissions().subscribe == narrower.subscribe);  // in force at once
        }
        break;
      }
      case 9: check(session.on_timer(static_cast<proxy::timer_kind>(arg % proxy::timer_kind_count)), nullptr, nullptr); break;
      case 10: check(session.on_client_closed(), nullptr, nullptr); break;
      case 11: check(session.on_shutdown(arg & 1), nullptr, nullptr); break;
    }
    if (session.current_state() == proxy::client_session::state::closed) return 0;
  }
  return 0;
}
