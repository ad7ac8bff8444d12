#include "session/client_session.hpp"

#include <nlohmann/json.hpp>

#include "support/overloaded.hpp"

namespace proxy {
namespace {

using mqtt::reason_code;

mqtt::bytes copy_of(std::span<const std::uint8_t> bytes) { return {bytes.begin(), bytes.end()}; }

// Held packets are kept as their original bytes; this makes a frame of them
// again so they take the same relay path as live ones.
mqtt::frame frame_of(const mqtt::bytes& packet) {
  const auto header = mqtt::parse_frame_header(packet, packet.size());
  const std::size_t header_size = header && *header ? (*header)->header_size : packet.size();
  return {packet.front(), std::span(packet).subspan(header_size), packet};
}

// DISCONNECT allows fewer reason codes than CONNACK (table 3.14.2.1): "server
// unavailable" becomes "server busy", which also tells the client to retry.
reason_code disconnect_reason(reason_code code) {
  if (code == reason_code::server_unavailable) return reason_code::server_busy;
  return mqtt::is_valid_reason(mqtt::packet_type::disconnect, code) ? code : reason_code::unspecified_error;
}

}  // namespace

std::string upstream_client_id(std::string_view user, std::string_view client_id) {
  return std::to_string(user.size()) + ":" + std::string(user) + ":" + std::string(client_id);
}

client_session::client_session(const session_config& config, metrics& counters, std::string generated_client_id)
    : config_(config), metrics_(counters), generated_client_id_(std::move(generated_client_id)) {}

std::chrono::milliseconds client_session::keep_alive_limit() const {
  if (state_ == state::awaiting_connect) return std::chrono::milliseconds{0};
  return std::chrono::milliseconds{client_connect_.keep_alive * 1500};
}

void client_session::begin() { actions_.clear(); }

// ---------------------------------------------------------------- client side

client_session::actions client_session::on_client_frame(const mqtt::frame& frame) {
  begin();
  if (state_ == state::closed) return take();
  auto decoded = mqtt::decode(frame.first_byte, frame.body, version_);
  if (!decoded) {
    if (state_ == state::awaiting_connect && decoded.error() == mqtt::error::unsupported_protocol_version) {
      // [MQTT-3.1.2-2]: answer in the 3.1.1 form, which every version can read.
      emit(action::send_to_client{{0x20, 0x02, 0x00, 0x01}});
      close("unsupported protocol version");
    } else {
      protocol_error(decoded.error().message(), reason_code::malformed_packet);
    }
    return take();
  }
  current_client_frame_ = &frame;
  if (state_ == state::awaiting_connect) {
    if (auto* c = std::get_if<mqtt::connect>(&*decoded)) {
      handle_connect(*c);
    } else {
      close("first packet was not CONNECT [MQTT-3.1.0-1]");
    }
  } else if (state_ == state::relaying) {
    handle_relay(*decoded, frame);
  } else {
    handle_before_relay(*decoded, frame);
  }
  current_client_frame_ = nullptr;
  return take();
}

client_session::actions client_session::on_client_first_byte(std::uint8_t byte) {
  begin();
  if (state_ == state::awaiting_connect && byte != 0x10) {
    metrics_.protocol_errors++;
    close("first packet was not CONNECT [MQTT-3.1.0-1]");
  }
  return take();
}

client_session::actions client_session::on_client_framing_error(boost::system::error_code error) {
  begin();
  if (state_ == state::closed) return take();
  const bool too_large = error == mqtt::error::packet_too_large;
  protocol_error(error.message(), too_large ? reason_code::packet_too_large : reason_code::malformed_packet);
  return take();
}

client_session::actions client_session::on_client_closed() {
  begin();
  if (state_ != state::closed) close("client dropped the connection");
  return take();
}

void client_session::handle_connect(const mqtt::connect& c) {
  version_ = c.version == mqtt::protocol_version::v3_1 ? mqtt::protocol_version::v3_1_1 : c.version;
  client_connect_ = c;
  client_id_ = c.client_id;
  if (c.props.text(mqtt::property_id::authentication_method)) {
    send_to_client(mqtt::connack{false, reason_code::bad_authentication_method, {}});
    close("enhanced authentication (AUTH) is not supported");
    return;
  }
  if (client_id_.empty()) {
    if (!c.clean_start && version_ != mqtt::protocol_version::v5) {
      // [MQTT-3.1.3-8]: an empty client id needs clean session in 3.1.1.
      send_to_client(mqtt::connack{false, reason_code::client_identifier_not_valid, {}});
      close("empty client id without clean session");
      return;
    }
    client_id_ = generated_client_id_;
    client_id_assigned_ = true;
  }
  emit(action::arm_timer{timer_kind::handshake, config_.auth_timeout});
  if (c.password) {
    direct_mode_ = true;
    start_auth(*c.password);
    return;
  }
  mqtt::connack ack;
  if (version_ == mqtt::protocol_version::v5) {
    if (client_id_assigned_) ack.props.add(mqtt::property_id::assigned_client_identifier, client_id_);
    ack.props.add(mqtt::property_id::maximum_packet_size, static_cast<std::uint32_t>(config_.max_packet_size));
  }
  send_to_client(ack);
  connack_sent_ = true;
  state_ = state::awaiting_auth;
}

void client_session::handle_before_relay(const mqtt::packet& p, const mqtt::frame& frame) {
  std::visit(support::overloaded{
                 [&](const mqtt::publish& publish) {
                   if (!is_auth_topic(publish.topic) || direct_mode_) return hold(frame);
                   ack_locally(publish, reason_code::success);
                   // One validation at a time; a repeat while one runs is answered and dropped.
                   if (state_ != state::awaiting_auth) return;
                   auth_topic_used_ = publish.topic;
                   start_auth(auth_token(publish).value_or(""));
                 },
                 [&](const mqtt::pingreq&) {
                   if (connack_sent_) return send_to_client(mqtt::pingresp{});
                   hold(frame);
                 },
                 [&](const mqtt::pubrel& rel) {
                   if (local_qos2_ids_.erase(rel.packet_id)) return send_to_client(mqtt::pubcomp{rel.packet_id});
                   hold(frame);
                 },
                 [&](const mqtt::disconnect&) {
                   // CONNECT is already queued upstream: let the broker see a clean end, so no will.
                   if (state_ == state::connecting_upstream) emit(action::forward_to_upstream{});
                   close("client disconnected before the relay began");
                 },
                 [&](const mqtt::connect&) { protocol_error("second CONNECT [MQTT-3.1.0-2]", reason_code::protocol_error); },
                 [&](const mqtt::auth&) { protocol_error("AUTH is not supported", reason_code::protocol_error); },
                 [&](const mqtt::subscribe&) { hold(frame); },
                 [&](const mqtt::unsubscribe&) { hold(frame); },
                 [&](const mqtt::puback&) { hold(frame); },
                 [&](const mqtt::pubrec&) { hold(frame); },
                 [&](const mqtt::pubcomp&) { hold(frame); },
                 [&](const auto& other) {
                   protocol_error(std::string(mqtt::to_string(mqtt::type_of(other))) + " is a server packet",
                                  reason_code::protocol_error);
                 },
             },
             p);
}

void client_session::hold(const mqtt::frame& frame) {
  if (held_.size() >= config_.max_held_packets || held_bytes_ + frame.bytes.size() > config_.max_held_bytes) {
    protocol_error("more packets before authentication than the proxy holds", reason_code::quota_exceeded);
    return;
  }
  held_bytes_ += frame.bytes.size();
  held_.push_back(copy_of(frame.bytes));
}

// ------------------------------------------------------------ authentication

bool client_session::is_auth_topic(std::string_view topic) const {
  return topic == config_.auth_topic ||
         (topic.size() > config_.auth_topic.size() && topic.starts_with(config_.auth_topic) &&
          topic[config_.auth_topic.size()] == '/');
}

std::optional<std::string> client_session::auth_token(const mqtt::publish& p) const {
  if (p.topic == config_.auth_topic) return p.payload;
  if (!is_auth_topic(p.topic)) return std::nullopt;
  return p.topic.substr(config_.auth_topic.size() + 1);
}

void client_session::start_auth(std::string token) {
  if (token.empty()) {
    metrics_.auth_invalid++;
    deny("invalid_session", reason_code::not_authorized);
    return;
  }
  state_ = state::authenticating;
  emit(action::validate_session{std::move(token)});
}

client_session::actions client_session::on_auth_result(const auth_result& result) {
  begin();
  if (state_ == state::relaying && reauth_pending_) {
    handle_reauth(result);
    return take();
  }
  if (state_ != state::authenticating) return take();
  switch (result.outcome) {
    case auth_result::verdict::invalid:
      metrics_.auth_invalid++;
      deny("invalid_session", reason_code::not_authorized);
      return take();
    case auth_result::verdict::unavailable:
      metrics_.auth_unavailable++;
      deny("auth_unavailable", reason_code::server_unavailable);
      return take();
    case auth_result::verdict::valid: break;
  }
  user_ = result.user;
  user_id_ = result.user_id.empty() ? result.user : result.user_id;
  acl_ = with_templates(result.permissions, config_.templates, user_, client_id_);
  if (client_connect_.will && !acl_.may_publish(client_connect_.will->topic)) {
    deny("will_not_allowed", reason_code::not_authorized);
    return take();
  }
  metrics_.auth_ok++;
  if (result.expires_in.count() > 0) emit(action::arm_timer{timer_kind::session_expiry, result.expires_in});
  connect_upstream();
  return take();
}

void client_session::handle_reauth(const auth_result& result) {
  reauth_pending_ = false;
  if (result.outcome == auth_result::verdict::valid && result.user == user_) {
    metrics_.auth_ok++;
    acl_ = with_templates(result.permissions, config_.templates, user_, client_id_);
    if (result.expires_in.count() > 0) emit(action::arm_timer{timer_kind::session_expiry, result.expires_in});
    send_auth_message(nlohmann::json{{"result", "ok"}, {"user", user_}}.dump());
    return;
  }
  if (result.outcome == auth_result::verdict::valid) return deny("user_mismatch", reason_code::not_authorized);
  if (result.outcome == auth_result::verdict::invalid) {
    metrics_.auth_invalid++;
    return deny("invalid_session", reason_code::not_authorized);
  }
  metrics_.auth_unavailable++;
  deny("auth_unavailable", reason_code::server_unavailable);
}

void client_session::deny(std::string_view reason, mqtt::reason_code code) {
  if (!connack_sent_) {
    send_to_client(mqtt::connack{false, code, {}});
  } else {
    send_auth_message(nlohmann::json{{"result", "denied"}, {"reason", reason}}.dump());
    if (version_ == mqtt::protocol_version::v5) send_to_client(mqtt::disconnect{disconnect_reason(code), {}});
  }
  close("denied: " + std::string(reason));
}

void client_session::send_auth_message(std::string json) {
  // Before any auth PUBLISH (a timeout) the base auth topic is all there is.
  const auto& topic = auth_topic_used_.empty() ? config_.auth_topic : auth_topic_used_;
  send_to_client(mqtt::publish{topic, std::move(json), mqtt::qos::at_most_once, false, false, 0, {}});
}

// ------------------------------------------------------------------ upstream

void client_session::connect_upstream() {
  mqtt::connect up;
  up.version = client_connect_.version;
  up.clean_start = client_connect_.clean_start;
  up.keep_alive = client_connect_.keep_alive;
  up.props = client_connect_.props;  // session expiry, receive maximum, packet size, user properties...
  up.client_id = upstream_client_id(user_, client_id_);
  up.will = client_connect_.will;
  up.username = config_.upstream_username;
  up.password = config_.upstream_password;
  auto wire = mqtt::encode(up, version_);
  if (!wire) return protocol_error("cannot build the upstream CONNECT: " + wire.error().message(),
                                   reason_code::implementation_specific_error);
  state_ = state::connecting_upstream;
  emit(action::connect_upstream{std::move(*wire)});
}

client_session::actions client_session::on_upstream_connect_failed(std::string_view why) {
  begin();
  if (state_ != state::connecting_upstream) return take();
  metrics_.upstream_connect_failures++;
  deny("upstream_unavailable", reason_code::server_unavailable);
  actions_.back() = action::close{"broker unreachable: " + std::string(why)};
  return take();
}

client_session::actions client_session::on_upstream_frame(const mqtt::frame& frame) {
  begin();
  if (state_ != state::connecting_upstream && state_ != state::relaying) return take();
  auto decoded = mqtt::decode(frame.first_byte, frame.body, version_);
  if (!decoded) {
    if (version_ == mqtt::protocol_version::v5 && connack_sent_)
      send_to_client(mqtt::disconnect{reason_code::unspecified_error, {}});
    close("broker sent a packet we reject: " + decoded.error().message());
    return take();
  }
  if (state_ == state::connecting_upstream) {
    if (auto* ack = std::get_if<mqtt::connack>(&*decoded)) {
      handle_upstream_connack(*ack);
    } else {
      close("broker sent " + std::string(mqtt::to_string(mqtt::type_of(*decoded))) + " before CONNACK");
    }
    return take();
  }
  std::visit(support::overloaded{
                 [&](const mqtt::suback& ack) { handle_upstream_suback(ack); },
                 [&](const mqtt::disconnect& d) {
                   emit(action::forward_to_client{});
                   close("broker disconnected: " + std::string(mqtt::to_string(d.reason)));
                 },
                 [&](const mqtt::connack&) { close("broker sent a second CONNACK"); },
                 [&](const auto&) { emit(action::forward_to_client{}); },
             },
             *decoded);
  return take();
}

void client_session::handle_upstream_connack(const mqtt::connack& ack) {
  if (is_failure(ack.reason)) {
    metrics_.upstream_connect_failures++;
    if (!connack_sent_) {
      send_to_client(mqtt::connack{false, ack.reason, {}});
      close("broker refused the connection: " + std::string(mqtt::to_string(ack.reason)));
    } else {
      deny("upstream_refused", reason_code::server_unavailable);
    }
    return;
  }
  if (!connack_sent_) {
    // Direct mode: the broker's own CONNACK, so session-present is exact. The
    // proxy grants no topic aliases (it must read every topic to apply the ACL).
    mqtt::connack out = ack;
    out.props.remove(mqtt::property_id::topic_alias_maximum);
    if (client_id_assigned_ && version_ == mqtt::protocol_version::v5)
      out.props.set(mqtt::property_id::assigned_client_identifier, client_id_);
    const auto broker_limit = ack.props.number(mqtt::property_id::maximum_packet_size);
    if (version_ == mqtt::protocol_version::v5)
      out.props.set(mqtt::property_id::maximum_packet_size,
                    static_cast<std::uint32_t>(std::min<std::size_t>(broker_limit.value_or(UINT32_MAX), config_.max_packet_size)));
    send_to_client(out);
    connack_sent_ = true;
  } else {
    send_auth_message(nlohmann::json{{"result", "ok"}, {"user", user_}}.dump());
  }
  enter_relaying();
}

void client_session::enter_relaying() {
  state_ = state::relaying;
  emit(action::disarm_timer{timer_kind::handshake});
  auto held = std::move(held_);
  held_.clear();
  held_bytes_ = 0;
  for (const auto& packet : held) {
    if (state_ != state::relaying) break;
    const auto frame = frame_of(packet);
    auto decoded = mqtt::decode(frame.first_byte, frame.body, version_);
    if (decoded) handle_relay(*decoded, frame);
  }
}

client_session::actions client_session::on_upstream_closed() {
  begin();
  if (state_ == state::closed) return take();
  if (state_ == state::connecting_upstream) {
    metrics_.upstream_connect_failures++;
    deny("upstream_unavailable", reason_code::server_unavailable);
    return take();
  }
  if (version_ == mqtt::protocol_version::v5 && connack_sent_)
    send_to_client(mqtt::disconnect{reason_code::server_busy, {}});
  close("broker closed the connection");
  return take();
}

// ------------------------------------------------------------------- relaying

void client_session::handle_relay(const mqtt::packet& p, const mqtt::frame& frame) {
  std::visit(support::overloaded{
                 [&](const mqtt::publish& publish) { handle_publish(publish, frame); },
                 [&](const mqtt::subscribe& s) { handle_subscribe(s, frame); },
                 [&](const mqtt::unsubscribe& u) { handle_unsubscribe(u, frame); },
                 [&](const mqtt::pubrel& rel) {
                   if (local_qos2_ids_.erase(rel.packet_id)) return send_to_client(mqtt::pubcomp{rel.packet_id});
                   forward_upstream(frame);
                 },
                 [&](const mqtt::disconnect&) {
                   forward_upstream(frame);
                   close("client disconnected");
                 },
                 [&](const mqtt::connect&) { protocol_error("second CONNECT [MQTT-3.1.0-2]", reason_code::protocol_error); },
                 [&](const mqtt::auth&) { protocol_error("AUTH is not supported", reason_code::protocol_error); },
                 [&](const mqtt::connack&) { protocol_error("CONNACK is a server packet", reason_code::protocol_error); },
                 [&](const mqtt::suback&) { protocol_error("SUBACK is a server packet", reason_code::protocol_error); },
                 [&](const mqtt::unsuback&) { protocol_error("UNSUBACK is a server packet", reason_code::protocol_error); },
                 [&](const mqtt::pingresp&) { protocol_error("PINGRESP is a server packet", reason_code::protocol_error); },
                 [&](const auto&) { forward_upstream(frame); },  // PUBACK, PUBREC, PUBCOMP, PINGREQ
             },
             p);
}

void client_session::forward_upstream(const mqtt::frame& frame) {
  if (&frame == current_client_frame_) {
    emit(action::forward_to_upstream{});
  } else {
    emit(action::send_to_upstream{copy_of(frame.bytes)});
  }
}

void client_session::handle_publish(const mqtt::publish& p, const mqtt::frame& frame) {
  if (is_auth_topic(p.topic)) {
    // Re-authentication: never forwarded, one at a time.
    ack_locally(p, reason_code::success);
    if (reauth_pending_) return;
    reauth_pending_ = true;
    auth_topic_used_ = p.topic;
    emit(action::validate_session{auth_token(p).value_or("")});
    return;
  }
  if (p.props.number(mqtt::property_id::topic_alias)) {
    // The proxy's CONNACK grants no aliases, so using one is an error [MQTT-3.3.2-9].
    return protocol_error("topic alias used, none was granted", reason_code::topic_alias_invalid);
  }
  if (!acl_.may_publish(p.topic)) {
    metrics_.acl_denied_publish++;
    ack_locally(p, reason_code::not_authorized);
    return;
  }
  forward_upstream(frame);
}

void client_session::handle_subscribe(const mqtt::subscribe& s, const mqtt::frame& frame) {
  std::vector<std::optional<reason_code>> refusals(s.subscriptions.size());
  mqtt::subscribe allowed{s.packet_id, s.props, {}};
  for (std::size_t i = 0; i < s.subscriptions.size(); ++i) {
    const auto& sub = s.subscriptions[i];
    if (!acl_.may_subscribe(sub.filter)) {
      metrics_.acl_denied_subscribe++;
      refusals[i] = reason_code::not_authorized;
    } else if (!subscriptions_.contains(sub.filter) && subscriptions_.size() >= config_.max_subscriptions) {
      refusals[i] = reason_code::quota_exceeded;
    } else {
      subscriptions_.insert(sub.filter);
      allowed.subscriptions.push_back(sub);
    }
  }
  if (allowed.subscriptions.size() == s.subscriptions.size()) return forward_upstream(frame);  // same bytes, same QoS
  if (allowed.subscriptions.empty()) {
    mqtt::suback refusal{s.packet_id, {}, {}};
    for (const auto& code : refusals) refusal.reasons.push_back(*code);
    return send_to_client(refusal);
  }
  auto wire = mqtt::encode(allowed, version_);
  if (!wire) return protocol_error(wire.error().message(), reason_code::implementation_specific_error);
  pending_subacks_[s.packet_id] = std::move(refusals);
  emit(action::send_to_upstream{std::move(*wire)});
}

void client_session::handle_upstream_suback(const mqtt::suback& ack) {
  auto pending = pending_subacks_.find(ack.packet_id);
  if (pending == pending_subacks_.end()) return emit(action::forward_to_client{});
  mqtt::suback merged{ack.packet_id, ack.props, {}};
  std::size_t next = 0;
  for (const auto& refusal : pending->second) {
    if (refusal) {
      merged.reasons.push_back(*refusal);
    } else {
      merged.reasons.push_back(next < ack.reasons.size() ? ack.reasons[next++] : reason_code::unspecified_error);
    }
  }
  pending_subacks_.erase(pending);
  send_to_client(merged);
}

void client_session::handle_unsubscribe(const mqtt::unsubscribe& u, const mqtt::frame& frame) {
  for (const auto& filter : u.filters) subscriptions_.erase(filter);
  forward_upstream(frame);
}

// -------------------------------------------------------------------- helpers

void client_session::ack_locally(const mqtt::publish& p, reason_code reason) {
  const bool v5 = version_ == mqtt::protocol_version::v5;
  const auto code = v5 ? reason : reason_code::success;
  if (p.qos == mqtt::qos::at_least_once) send_to_client(mqtt::puback{p.packet_id, code, {}});
  if (p.qos == mqtt::qos::exactly_once) {
    send_to_client(mqtt::pubrec{p.packet_id, code, {}});
    // A failing 5.0 PUBREC ends the exchange; otherwise a PUBREL will follow.
    if (!is_failure(code)) local_qos2_ids_.insert(p.packet_id);
  }
}

void client_session::send_to_client(const mqtt::packet& p) {
  auto wire = mqtt::encode(p, version_);
  if (wire) emit(action::send_to_client{std::move(*wire)});
}

void client_session::protocol_error(std::string reason, reason_code code) {
  metrics_.protocol_errors++;
  if (version_ == mqtt::protocol_version::v5 && connack_sent_)
    send_to_client(mqtt::disconnect{disconnect_reason(code), {}});
  close("protocol error: " + reason);
}

void client_session::close(std::string reason) {
  state_ = state::closed;
  emit(action::close{std::move(reason)});
}

client_session::actions client_session::on_timer(timer_kind kind) {
  begin();
  if (kind == timer_kind::session_expiry) {
    if (state_ != state::closed && !user_.empty()) deny("session_expired", reason_code::not_authorized);
    return take();
  }
  if (kind != timer_kind::handshake) return take();
  switch (state_) {
    case state::awaiting_connect: close("no CONNECT within the connect timeout"); break;
    case state::awaiting_auth:
    case state::authenticating:
    case state::connecting_upstream:
      metrics_.auth_timeout++;
      deny("timeout", reason_code::not_authorized);
      break;
    case state::relaying:
    case state::closed: break;
  }
  return take();
}

client_session::actions client_session::on_auth_event(const auth_event& event) {
  begin();
  (void)event;  // TODO(issue 11): revocation and ACL changes on live connections
  return take();
}

// Minimal version written by the connection helper to test the drain; the
// session helper owns the real one (issue 12).
client_session::actions client_session::on_shutdown(bool fire_will) {
  begin();
  if (state_ == state::closed) return take();
  // [MQTT-3.14.2-1] 0x8B Server shutting down: the client reconnects elsewhere.
  if (version_ == mqtt::protocol_version::v5 && connack_sent_)
    send_to_client(mqtt::disconnect{reason_code::server_shutting_down, {}});
  // A normal DISCONNECT ends the broker session without its will
  // [MQTT-3.1.2-10]: a planned restart is not a crash.
  if (!fire_will && (state_ == state::relaying || state_ == state::connecting_upstream)) {
    auto wire = mqtt::encode(mqtt::disconnect{reason_code::success, {}}, version_);
    if (wire) emit(action::send_to_upstream{std::move(*wire)});
  }
  close("proxy shutting down");
  return take();
}

client_session::actions client_session::on_keep_alive_expired() {
  begin();
  if (state_ == state::closed) return take();
  // [MQTT-3.1.2-24]: close as if the network had failed, so the will goes out.
  if (version_ == mqtt::protocol_version::v5 && connack_sent_)
    send_to_client(mqtt::disconnect{reason_code::keep_alive_timeout, {}});
  close("keep-alive expired");
  return take();
}

}  // namespace proxy
