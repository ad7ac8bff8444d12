#include "session/client_session.hpp"

#include <algorithm>
#include <charconv>

#include <nlohmann/json.hpp>

#include "auth/auth_client.hpp"
#include "mqtt/topic.hpp"
#include "support/escape.hpp"
#include "support/overloaded.hpp"
#include "session/version_bridge.hpp"

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

std::string upstream_client_id(std::string_view user_id, std::string_view client_id) {
  char length[24];
  const auto digits = std::to_chars(length, length + sizeof length, user_id.size()).ptr - length;
  std::string id;  // built in one allocation: five temporaries were ~500 instructions per session (issue 14)
  id.reserve(static_cast<std::size_t>(digits) + 2 + user_id.size() + client_id.size());
  id.append(length, static_cast<std::size_t>(digits)).append(1, ':').append(user_id).append(1, ':').append(client_id);
  return id;
}

upstream_limits limits_from_connack(const mqtt::connack& ack) {
  using mqtt::property_id;
  upstream_limits limits;
  const auto& props = ack.props;
  auto flag = [&](property_id id) -> std::optional<bool> {
    if (auto value = props.number(id)) return *value != 0;
    return std::nullopt;
  };
  if (auto qos = props.number(property_id::maximum_qos)) limits.maximum_qos = static_cast<mqtt::qos>(std::min(*qos, 2u));
  limits.retain_available = flag(property_id::retain_available);
  if (auto value = props.number(property_id::receive_maximum)) limits.receive_maximum = static_cast<std::uint16_t>(*value);
  limits.maximum_packet_size = props.number(property_id::maximum_packet_size);
  if (auto value = props.number(property_id::server_keep_alive)) limits.server_keep_alive = static_cast<std::uint16_t>(*value);
  limits.wildcard_subscription_available = flag(property_id::wildcard_subscription_available);
  limits.subscription_identifiers_available = flag(property_id::subscription_identifier_available);
  limits.shared_subscription_available = flag(property_id::shared_subscription_available);
  return limits;
}

upstream_limits merge_limits(upstream_limits configured, const upstream_limits& learned) {
  auto fill = [](auto& into, const auto& from) {
    if (!into) into = from;
  };
  fill(configured.maximum_qos, learned.maximum_qos);
  fill(configured.retain_available, learned.retain_available);
  fill(configured.receive_maximum, learned.receive_maximum);
  fill(configured.maximum_packet_size, learned.maximum_packet_size);
  fill(configured.server_keep_alive, learned.server_keep_alive);
  fill(configured.wildcard_subscription_available, learned.wildcard_subscription_available);
  fill(configured.subscription_identifiers_available, learned.subscription_identifiers_available);
  fill(configured.shared_subscription_available, learned.shared_subscription_available);
  return configured;
}

client_session::client_session(const session_config& config, metrics& counters, std::string generated_client_id)
    : config_(config), metrics_(counters), generated_client_id_(std::move(generated_client_id)),
      acl_mode_(config.acl_enforcement) {
  take_late_limits();
}

client_session::client_session(const session_config& config, metrics& counters, client_id_maker make_client_id)
    : config_(config), metrics_(counters), make_client_id_(make_client_id), acl_mode_(config.acl_enforcement) {
  take_late_limits();
}

// One atomic load per new connection; none when nothing is left to learn.
void client_session::take_late_limits() {
  limits_late_ = config_.late_limits && config_.late_limits->load(std::memory_order_acquire) != nullptr;
}

const std::set<std::string>& client_session::subscriptions() const {
  static const std::set<std::string> none;
  return extra_ ? extra_->subscriptions_ : none;
}

std::chrono::milliseconds client_session::keep_alive_limit() const {
  if (state_ == state::awaiting_connect) return std::chrono::milliseconds{0};
  return std::chrono::milliseconds{client_keep_alive_ * 1500};
}

namespace {
thread_local session_actions spare_actions;  // client_session::recycle
// The vectors of the proxy's own packets, once the connection has copied
// them into its queues (small packets are appended, not moved): encoded
// into again instead of allocating (a new session sends three, issue 14).
constexpr std::size_t kept_wires = 4;
thread_local std::vector<mqtt::bytes> spare_wires;

void keep_wire(mqtt::bytes& wire) {
  // Only what encode() reserved: a smaller (exact) copy would be grown again.
  if (wire.capacity() != mqtt::reusable_capacity() || spare_wires.size() >= kept_wires) return;
  if (spare_wires.capacity() == 0) spare_wires.reserve(kept_wires);
  spare_wires.push_back(std::move(wire));
}

mqtt::bytes take_wire() {
  if (spare_wires.empty()) return {};
  auto wire = std::move(spare_wires.back());
  spare_wires.pop_back();
  return wire;
}
}  // namespace

void client_session::recycle(actions&& done) {
  for (auto& a : done) {
    if (auto* to_client = std::get_if<action::send_to_client>(&a)) keep_wire(to_client->data);
    else if (auto* to_upstream = std::get_if<action::send_to_upstream>(&a)) keep_wire(to_upstream->data);
  }
  // A list grown by a burst (a replay of held packets) is not kept.
  if (done.capacity() > 16 || done.capacity() <= spare_actions.capacity()) return;
  done.clear();
  spare_actions = std::move(done);
}

void client_session::begin() {
  if (actions_.capacity() == 0) actions_.swap(spare_actions);
  actions_.clear();
}

// ---------------------------------------------------------------- client side

client_session::actions client_session::on_client_frame(const mqtt::frame& frame) {
  begin();
  if (state_ == state::closed) return take();
  if (state_ == state::relaying && mqtt::is_publish(frame.first_byte)) {
    relay_client_publish(frame);
    return take();
  }
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
  // A DISCONNECT is held behind packets awaiting authentication: the client
  // closing its side after it is the normal ending, and the session goes on
  // until they are relayed (or dropped if authentication fails).
  if (state_ != state::closed && !disconnect_held_) close("client dropped the connection");
  return take();
}

void client_session::handle_connect(const mqtt::connect& c) {
  version_ = c.version == mqtt::protocol_version::v3_1 ? mqtt::protocol_version::v3_1_1 : c.version;
  client_connect_ = std::make_unique<mqtt::connect>(c);
  client_clean_start_ = c.clean_start;
  client_max_packet_size_ = c.props.number(mqtt::property_id::maximum_packet_size);
  // Needed only here: moved out, so its bytes go when this returns.
  auto generated_client_id = generated_client_id_.take();
  client_id_ = c.client_id;
  client_keep_alive_ = c.keep_alive;
  auto protocol = config_.protocol;
  if (protocol == upstream_protocol::automatic && config_.detected_protocol)
    protocol = config_.detected_protocol->load(std::memory_order_relaxed);
  bridged_ = version_ == mqtt::protocol_version::v5 && protocol == upstream_protocol::v3_1_1;
  if (const auto receive_maximum = c.props.number(mqtt::property_id::receive_maximum);
      bridged_ && receive_maximum && *receive_maximum < 65535)
    extra().client_receive_maximum_ = static_cast<std::uint16_t>(*receive_maximum);
  // Clean Start with a Session Expiry goes to a 3.1.1 broker as clean session
  // 0, which resumes whatever that client id left there. The client was told
  // it starts afresh, so only what it subscribes to on this connection reaches it.
  only_own_subscriptions_ = bridged_ && c.clean_start &&
                            c.props.number(mqtt::property_id::session_expiry_interval).value_or(0) > 0;
  if (bridged_) metrics_.bridged_connections++;
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
    client_id_ = make_client_id_ ? make_client_id_() : std::move(generated_client_id);
    client_id_assigned_ = true;
  }
  const auto& broker = limits();
  if (c.will && broker.maximum_qos && c.will->qos > *broker.maximum_qos) {
    // [MQTT-3.2.2-12]: a will the broker cannot take refuses the connection.
    send_to_client(mqtt::connack{false, reason_code::qos_not_supported, {}});
    close("will QoS above the broker's maximum");
    return;
  }
  if (c.will && c.will->retain && broker.retain_available == false) {
    send_to_client(mqtt::connack{false, reason_code::retain_not_supported, {}});  // [MQTT-3.2.2-13]
    close("retained will, the broker has no retained messages");
    return;
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
    advertise_limits(ack);
    if (bridged_) bridge::advertise(ack, bridge_traits());
  }
  send_to_client(ack);
  connack_sent_ = true;
  state_ = state::awaiting_auth;
}

// The longest keep-alive the broker grants: `upstream.max_keep_alive` or the
// probe's Server Keep Alive, whichever is shorter; none when neither is known.
std::optional<std::uint16_t> client_session::broker_keep_alive_cap() const {
  std::optional<std::uint16_t> cap = limits().server_keep_alive;
  if (config_.upstream_max_keep_alive && (!cap || *config_.upstream_max_keep_alive < *cap))
    cap = config_.upstream_max_keep_alive;
  if (cap && *cap == 0) return std::nullopt;
  return cap;
}

// The proxy's own CONNACK speaks for the broker behind it: its limits go to
// 5.0 clients, so they hold for the whole path ([MQTT-3.2.2-9] and on).
void client_session::advertise_limits(mqtt::connack& ack) {
  using mqtt::property_id;
  const auto& broker = limits();
  const auto packet_size = std::min<std::size_t>(broker.maximum_packet_size.value_or(UINT32_MAX), config_.max_packet_size);
  ack.props.add(property_id::maximum_packet_size, static_cast<std::uint32_t>(packet_size));
  if (broker.maximum_qos && *broker.maximum_qos != mqtt::qos::exactly_once)
    ack.props.add(property_id::maximum_qos, static_cast<std::uint32_t>(*broker.maximum_qos));
  if (broker.retain_available == false) ack.props.add(property_id::retain_available, 0u);
  if (broker.receive_maximum) ack.props.add(property_id::receive_maximum, static_cast<std::uint32_t>(*broker.receive_maximum));
  if (broker.wildcard_subscription_available == false) ack.props.add(property_id::wildcard_subscription_available, 0u);
  if (broker.subscription_identifiers_available == false)
    ack.props.add(property_id::subscription_identifier_available, 0u);
  if (broker.shared_subscription_available == false) ack.props.add(property_id::shared_subscription_available, 0u);
  // Server Keep Alive only when it is shorter than what the client asked
  // for (0 is "never"): the client must then use it [MQTT-3.2.2-21]. Some
  // clients ignore it (paho-mqtt 1.6), so the proxy still holds the client
  // to its own keep-alive only, and pings the broker itself on the broker's
  // schedule (start_upstream_pings): either way the broker stays content.
  const auto cap = broker_keep_alive_cap();
  if (cap && (client_keep_alive_ == 0 || client_keep_alive_ > *cap))
    ack.props.add(property_id::server_keep_alive, static_cast<std::uint32_t>(*cap));
}

void client_session::handle_before_relay(const mqtt::packet& p, const mqtt::frame& frame) {
  // Nothing may follow a DISCONNECT [MQTT-3.14.4-1]; the client has closed its side.
  if (disconnect_held_) return;
  std::visit(support::overloaded{
                 [&](const mqtt::publish& publish) {
                   if (!is_auth_topic(publish.topic) || direct_mode_) return hold(frame);
                   ack_locally(publish.qos, publish.packet_id, reason_code::success);
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
                   if (extra().local_qos2_ids_.erase(rel.packet_id)) return send_to_client(mqtt::pubcomp{rel.packet_id});
                   hold(frame);
                 },
                 [&](const mqtt::disconnect&) {
                   // Held packets are never lost: once authenticated they are
                   // replayed and the DISCONNECT after them (then no will).
                   if (!held_.empty() && state_ != state::awaiting_auth) {
                     hold(frame);
                     disconnect_held_ = state_ != state::closed;
                     return;
                   }
                   // CONNECT is already queued upstream: let the broker see a clean end, so no will.
                   if (state_ == state::connecting_upstream) forward_upstream(frame);
                   close("client disconnected before the relay began", true);
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
  pending_token_ = token;
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
  set_answered_acl(result.permissions);
  if (client_connect_->will &&
      (!acl_allows(acl_action::publish, client_connect_->will->topic) || !broker_safe(client_connect_->will->topic))) {
    deny("will_not_allowed", reason_code::not_authorized);
    return take();
  }
  metrics_.auth_ok++;
  admit(result);
  connect_upstream();
  return take();
}

// A valid answer (first or re-validation): remember the token it was for, so
// that a revocation naming it is recognised and a resync can ask again.
void client_session::admit(const auth_result& result) {
  token_ = pending_token_.take();
  session_digest_.clear();  // of the token before: made again when an event needs it
  if (result.expires_in.count() > 0) emit(action::arm_timer{timer_kind::session_expiry, result.expires_in});
  if (result.stale) {
    // Degraded mode: a cached answer past its max-age while the API server is
    // unreachable. Admitted, and asked again until a fresh answer comes.
    emit(action::arm_timer{timer_kind::revalidate, config_.revalidate_interval});
  } else {
    emit(action::disarm_timer{timer_kind::revalidate});
  }
}

void client_session::handle_reauth(const auth_result& result) {
  reauth_pending_ = false;
  const bool silent = std::exchange(silent_revalidation_, false);
  if (std::exchange(expiry_check_, false) && result.outcome != auth_result::verdict::valid)
    return deny("session_expired", reason_code::not_authorized);  // not extended, or nobody to say it was
  const auto id = result.user_id.empty() ? result.user : result.user_id;
  if (result.outcome == auth_result::verdict::valid && result.user == user_ && id == user_id_) {
    metrics_.auth_ok++;
    admit(result);
    apply_acl(with_templates(*result.permissions, config_.templates, user_, client_id_));
    if (!silent) send_auth_message(nlohmann::json{{"result", "ok"}, {"user", user_}}.dump());
    return;
  }
  if (result.outcome == auth_result::verdict::valid) return deny("user_mismatch", reason_code::not_authorized);
  if (result.outcome == auth_result::verdict::invalid) {
    metrics_.auth_invalid++;
    if (silent) return revoke();
    return deny("invalid_session", reason_code::not_authorized);
  }
  metrics_.auth_unavailable++;
  if (silent) {
    // The proxy asked on its own (resync, degraded mode): an API server that
    // cannot answer is no reason to end a session it admitted; ask again later.
    pending_token_.clear();
    emit(action::arm_timer{timer_kind::revalidate, config_.revalidate_interval});
    return;
  }
  deny("auth_unavailable", reason_code::server_unavailable);
}

// The session's lifetime as last validated has run out. It may have been
// refreshed since (POST /v1/sessions/refresh extends the same token), and a
// re-authentication may have been answered from the validation cache with the
// old expiry: ask the API server before ending a session that is still live.
// At the expiry no cached answer is fresh any more (max-age <= expires_in),
// so this reaches the API server. Only a valid answer keeps the session (and
// re-arms the timer with the new expires_in); invalid or unavailable end it.
void client_session::on_session_expiry() {
  if (state_ == state::closed || user_.empty()) return;
  if (reauth_pending_) {
    // A validation is on its way: its answer re-arms the timer or ends the session.
    expiry_check_ = true;
    return;
  }
  if (state_ != state::relaying || token_.empty()) return deny("session_expired", reason_code::not_authorized);
  revalidate();
  expiry_check_ = true;
}

// Re-validates the session with the token it authenticated with, as a
// re-authentication would, but without telling the client unless it fails.
void client_session::revalidate() {
  if (state_ == state::connecting_upstream) {
    emit(action::arm_timer{timer_kind::revalidate, config_.revalidate_interval});  // once relaying
    return;
  }
  if (state_ != state::relaying || reauth_pending_ || token_.empty()) return;
  reauth_pending_ = true;
  silent_revalidation_ = true;
  pending_token_ = token_;
  emit(action::validate_session{token_});
}

// The session's rights are gone (logout, deleted user, changed password).
// 0x87 Not authorized rather than 0x98 Administrative action: the client's
// credentials are what became invalid, and 0x87 is also what a reconnect with
// the same token gets (CONNACK 0x87), so a client library reacts once, by
// logging in again, instead of retrying a session that cannot come back.
// The broker gets a normal DISCONNECT first: a user who has no rights any
// more must not have a will published in their name.
void client_session::revoke() {
  metrics_.sessions_revoked++;
  if (state_ == state::relaying || state_ == state::connecting_upstream)
    send_upstream(mqtt::disconnect{reason_code::success, {}});
  deny("session_revoked", reason_code::not_authorized);
}

const acl& client_session::permissions() const {
  static const acl none;  // before admission: nothing is allowed
  return acl_ ? *acl_ : none;
}

// The pool's copy when there is a pool: sessions of one user share one.
void client_session::set_acl(acl permissions) {
  acl_ = acl_pool_ ? acl_pool_->intern(std::move(permissions)) : std::make_shared<const acl>(std::move(permissions));
  acl_subscribe_valid_ = acl_->subscribe_entries_valid();
}

// An admitting answer's ACL. With the deployment's templates it is a new
// ACL; without, the answer's own rules, not copied to be looked up: the
// pool's equal ACL (copied into the pool only when it holds none), or the
// answer's own, shared with the validation cache (issue 14).
void client_session::set_answered_acl(const shared_acl& answered) {
  if (!config_.templates.publish.empty() || !config_.templates.subscribe.empty())
    return set_acl(with_templates(*answered, config_.templates, user_, client_id_));
  if (acl_pool_) {
    acl_ = acl_pool_->intern_copy_of(*answered);  // equal rules: their validity is the answer's
  } else {
    acl_ = answered.shared() ? answered.shared() : std::make_shared<const acl>();
  }
  acl_subscribe_valid_ = answered.subscribe_entries_valid();
}

// A new ACL on a live connection (re-authentication, acl_changed, resync):
// deliveries are checked against it from now on (handle_delivery), and the
// broker is told to drop every subscription it no longer allows, in one
// UNSUBSCRIBE whose UNSUBACK the proxy keeps. The client stays connected.
void client_session::apply_acl(acl permissions) {
  set_acl(std::move(permissions));
  if (state_ != state::relaying) return;  // held SUBSCRIBEs are checked when replayed
  if (!extra_) return;  // no subscriptions, nothing to withdraw
  mqtt::unsubscribe revoked;
  for (const auto& filter : extra().subscriptions_)
    if (!acl_allows(acl_action::subscribe, filter) || !broker_safe(filter)) revoked.filters.push_back(filter);
  if (revoked.filters.empty()) return;
  for (const auto& filter : revoked.filters) extra().subscriptions_.erase(filter);
  const auto id = free_packet_id();
  if (!id) return;  // 65535 ids in flight: deliveries are still filtered
  revoked.packet_id = *id;
  extra().proxy_unsubscribes_.insert(*id);
  metrics_.acl_unsubscribes++;
  send_upstream(revoked);
}

// An id the client is not using towards the broker, from the top down (client
// libraries count up from 1, so a clash is unlikely as well as avoided). Ids
// are per direction [MQTT-2.2.1-3]; the client may pick this id for a later
// packet while the proxy's UNSUBSCRIBE is in flight, which is harmless: the
// broker answers in order, so the first UNSUBACK with this id is the proxy's,
// and a SUBSCRIBE or PUBLISH with it gets a different kind of answer.
std::optional<std::uint16_t> client_session::free_packet_id() const {
  for (std::uint32_t id = 65535; id > 0; --id) {
    const auto candidate = static_cast<std::uint16_t>(id);
    if (!extra_ || (!extra_->client_ids_in_use_.contains(candidate) && !extra_->proxy_unsubscribes_.contains(candidate)))
      return candidate;
  }
  return std::nullopt;
}

client_session::actions client_session::on_auth_event(const auth_event& event) {
  begin();
  if (state_ == state::closed) return take();
  if (event.type == auth_event::kind::resync) {
    revalidate();
    return take();
  }
  // Before a valid answer the session has no user yet. The answer it waits
  // for is checked against the events that overtake it on its way (the auth
  // client's overtaken_by_events): it comes refused, asked again, or newer.
  if (user_id_.empty() || event.user_id != user_id_) return take();
  switch (event.type) {
    case auth_event::kind::session_revoked:
      if (session_digest_.empty() && !token_.empty()) session_digest_ = session_digest(token_);
      if (!event.session_digest.empty() && event.session_digest == session_digest_.str()) revoke();
      break;
    case auth_event::kind::user_deleted:
    case auth_event::kind::user_sessions_revoked: revoke(); break;
    case auth_event::kind::acl_changed:
      apply_acl(with_templates(event.permissions, config_.templates, user_, client_id_));
      break;
    case auth_event::kind::resync: break;
  }
  return take();
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

// {"result":"ok","user":...}, byte for byte what nlohmann::json{{"result",
// "ok"}, {"user", user}}.dump() writes (keys in order), without building the
// object's map for every admitted session. A name of printable ASCII without
// '"' and '\\' (which JSON writes as they are) is copied in, one allocation
// instead of four (issue 14); any other is escaped by the library.
std::string auth_ok_message(const std::string& user) {
  constexpr std::string_view head = R"({"result":"ok","user":")";
  const bool as_is =
      std::all_of(user.begin(), user.end(), [](char c) { return c >= 0x20 && c < 0x7F && c != '"' && c != '\\'; });
  if (!as_is) return R"({"result":"ok","user":)" + nlohmann::json(user).dump() + "}";
  std::string out;
  out.reserve(head.size() + user.size() + 2);
  out.append(head).append(user).append("\"}");
  return out;
}

void client_session::send_auth_message(std::string json) {
  // Before any auth PUBLISH (a timeout) the base auth topic is all there is.
  const auto& topic = auth_topic_used_.empty() ? config_.auth_topic : auth_topic_used_;
  send_to_client(mqtt::publish{topic, std::move(json), mqtt::qos::at_most_once, false, false, 0, {}});
}

// ------------------------------------------------------------------ upstream

void client_session::connect_upstream() {
  mqtt::connect up;
  up.version = client_connect_->version;
  up.clean_start = client_connect_->clean_start;
  up.keep_alive = client_keep_alive_;
  // A broker with a maximum keep-alive refuses (3.1.1) or shortens (5.0) a
  // longer one, and 0 ("never"): ask for at most its maximum, and ping it
  // on that schedule if the client's is longer (start_upstream_pings).
  const auto cap = broker_keep_alive_cap();
  if (cap && (up.keep_alive == 0 || up.keep_alive > *cap)) up.keep_alive = *cap;
  upstream_keep_alive_ = up.keep_alive;
  up.props = client_connect_->props;  // session expiry, receive maximum, packet size, user properties...
  // No topic aliases from the broker [MQTT-3.1.2-26]: absent means 0, so the
  // broker sends every topic in full and the delivery ACL can read it.
  up.props.remove(mqtt::property_id::topic_alias_maximum);
  up.client_id = upstream_client_id(user_id_, client_id_);
  up.will = client_connect_->will;
  up.username = config_.upstream_username;
  up.password = config_.upstream_password;
  if (bridged_) {
    bridge::drop_counts drops{};
    up = bridge::to_broker_connect(up, drops);
    count_drops(drops);
  }
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
  if (state_ == state::relaying && !bridged_ && mqtt::is_publish(frame.first_byte)) {
    relay_delivery(frame);
    return take();
  }
  auto decoded = mqtt::decode(frame.first_byte, frame.body, upstream_version());
  if (!decoded) {
    reject_broker_packet(decoded.error());
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
  const std::size_t first_action = actions_.size();
  if (bridged_) bridge_from_upstream(*decoded);
  std::visit(support::overloaded{
                 [&](const mqtt::publish& p) { handle_delivery(mqtt::header_of(p)); },
                 [&](const mqtt::pubrel& rel) {
                   // The PUBREL of a delivery the proxy refused: it completes the flow itself.
                   if (extra().dropped_qos2_ids_.erase(rel.packet_id)) return send_upstream(mqtt::pubcomp{rel.packet_id});
                   emit(action::forward_to_client{});
                 },
                 [&](const mqtt::suback& ack) {
                   extra().client_ids_in_use_.erase(ack.packet_id);
                   handle_upstream_suback(ack);
                 },
                 [&](const mqtt::unsuback& ack) {
                   if (extra().proxy_unsubscribes_.erase(ack.packet_id)) return;  // the proxy's own UNSUBSCRIBE
                   extra().client_ids_in_use_.erase(ack.packet_id);
                   emit(action::forward_to_client{});
                 },
                 [&](const mqtt::puback& ack) {
                   extra().client_ids_in_use_.erase(ack.packet_id);
                   emit(action::forward_to_client{});
                 },
                 [&](const mqtt::pubrec& rec) {
                   if (is_failure(rec.reason)) extra().client_ids_in_use_.erase(rec.packet_id);  // the flow ends here
                   emit(action::forward_to_client{});
                 },
                 [&](const mqtt::pubcomp& comp) {
                   extra().client_ids_in_use_.erase(comp.packet_id);
                   emit(action::forward_to_client{});
                 },
                 [&](const mqtt::pingresp&) {
                   if (upstream_pings_outstanding_ > 0) {
                     --upstream_pings_outstanding_;  // the answer to the proxy's own PINGREQ
                     return;
                   }
                   emit(action::forward_to_client{});
                 },
                 [&](const mqtt::disconnect& d) {
                   emit(action::forward_to_client{});
                   close("broker disconnected: " + std::string(mqtt::to_string(d.reason)));
                 },
                 [&](const mqtt::connack&) { close("broker sent a second CONNACK"); },
                 [&](const auto&) { emit(action::forward_to_client{}); },
             },
             *decoded);
  if (bridged_) bridge_forwards_to_client(*decoded, first_action);
  return take();
}

// The relay's common case from the broker: a delivery, routed on its topic
// and flags read in place, without a copy or an allocation (issue 14).
void client_session::relay_delivery(const mqtt::frame& frame) {
  const auto header = mqtt::decode_publish_header(frame.first_byte, frame.body, upstream_version());
  if (!header) return reject_broker_packet(header.error());
  handle_delivery(*header);
}

void client_session::reject_broker_packet(boost::system::error_code error) {
  if (version_ == mqtt::protocol_version::v5 && connack_sent_)
    send_to_client(mqtt::disconnect{reason_code::unspecified_error, {}});
  close("broker sent a packet we reject: " + error.message());
}

// A PUBLISH from the broker reaches the client only if the client may
// subscribe to its topic now: some allowed subscribe filter matches it. This
// covers retained messages, subscriptions the broker kept in a resumed
// session from a wider ACL, and an ACL that narrowed since the SUBSCRIBE.
void client_session::handle_delivery(const mqtt::publish_header& p) {
  if (p.props.number(mqtt::property_id::topic_alias))
    return broker_error("broker used a topic alias, the proxy allowed none [MQTT-3.3.2-10]");
  if (only_own_subscriptions_ && !subscribed_here(p.topic)) {
    metrics_.bridge_unasked_dropped++;
  } else if ((acl_subscribe_valid_ && acl_->allows_receive_of_valid(p.topic)) ||
             acl_allows(acl_action::receive, p.topic)) {  // the first: entries validated once, when set
    return emit(action::forward_to_client{});
  } else {
    metrics_.acl_denied_deliver++;
  }
  complete_with_broker(p.qos, p.packet_id);
}

// A delivery the client will not get, completed with the broker as if
// delivered, so its in-flight window (Receive Maximum) does not fill with
// messages nobody will acknowledge.
void client_session::complete_with_broker(mqtt::qos qos, std::uint16_t packet_id) {
  if (qos == mqtt::qos::at_least_once) send_upstream(mqtt::puback{packet_id, reason_code::success, {}});
  if (qos == mqtt::qos::exactly_once) {
    extra().dropped_qos2_ids_.insert(packet_id);
    send_upstream(mqtt::pubrec{packet_id, reason_code::success, {}});
  }
}

bool client_session::subscribed_here(std::string_view topic) const {
  for (const auto& filter : subscriptions())
    if (mqtt::topic::matches(topic, mqtt::topic::effective_filter(filter))) return true;
  return false;
}

void client_session::broker_error(std::string reason) {
  if (version_ == mqtt::protocol_version::v5) {
    send_upstream(mqtt::disconnect{reason_code::protocol_error, {}});
    if (connack_sent_) send_to_client(mqtt::disconnect{reason_code::unspecified_error, {}});
  }
  close(std::move(reason));
}

// The broker's keep-alive (its Server Keep Alive, else what the upstream
// CONNECT asked for) is shorter than the client's: the proxy keeps the
// broker connection alive itself, and keeps the PINGRESPs to itself.
void client_session::start_upstream_pings(std::uint16_t broker_keep_alive) {
  if (broker_keep_alive == 0 || (client_keep_alive_ != 0 && client_keep_alive_ <= broker_keep_alive)) return;
  upstream_ping_interval_ = std::max(std::chrono::milliseconds(500), std::chrono::milliseconds(broker_keep_alive * 500));
  emit(action::arm_timer{timer_kind::upstream_ping, upstream_ping_interval_});
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
    if (bridged_) out = bridge::to_client_connack(ack, client_clean_start_, bridge_traits());
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
    send_auth_message(auth_ok_message(user_));
  }
  const auto broker_keep_alive = ack.props.number(mqtt::property_id::server_keep_alive);
  start_upstream_pings(broker_keep_alive ? static_cast<std::uint16_t>(*broker_keep_alive) : upstream_keep_alive_);
  enter_relaying();
}

void client_session::enter_relaying() {
  state_ = state::relaying;
  client_connect_.reset();  // the upstream CONNECT is answered: nothing reads it any more
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
                 [&](const mqtt::publish& publish) { handle_publish(mqtt::header_of(publish), frame); },
                 [&](const mqtt::subscribe& s) { handle_subscribe(s, frame); },
                 [&](const mqtt::unsubscribe& u) { handle_unsubscribe(u, frame); },
                 [&](const mqtt::pubrel& rel) {
                   if (extra().local_qos2_ids_.erase(rel.packet_id)) return send_to_client(mqtt::pubcomp{rel.packet_id});
                   forward_upstream(frame);
                 },
                 [&](const mqtt::disconnect&) {
                   forward_upstream(frame);
                   close("client disconnected", true);
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
  if (bridged_) return bridge_to_upstream(frame);
  if (&frame == current_client_frame_) {
    emit(action::forward_to_upstream{});
  } else {
    emit(action::send_to_upstream{copy_of(frame.bytes)});
  }
}

// The relay's common case from the client: a PUBLISH read in place, its
// topic a view into the frame, its payload not copied (handle_publish reads
// the frame again for a re-authentication's token), nothing allocated (issue 14).
void client_session::relay_client_publish(const mqtt::frame& frame) {
  const auto header = mqtt::decode_publish_header(frame.first_byte, frame.body, version_);
  if (!header) return protocol_error(header.error().message(), reason_code::malformed_packet);
  current_client_frame_ = &frame;
  handle_publish(*header, frame);
  current_client_frame_ = nullptr;
}

void client_session::handle_publish(const mqtt::publish_header& p, const mqtt::frame& frame) {
  if (is_auth_topic(p.topic)) {
    // Re-authentication: never forwarded, one at a time.
    ack_locally(p.qos, p.packet_id, reason_code::success);
    // One at a time; the client's own supersedes a re-validation the proxy
    // started (the driver withdraws the earlier call).
    if (reauth_pending_ && !silent_revalidation_) return;
    reauth_pending_ = true;
    silent_revalidation_ = false;
    auth_topic_used_ = p.topic;
    // Relayed PUBLISHes come without their payload, and the token may be it.
    const auto whole = mqtt::decode(frame.first_byte, frame.body, version_);
    const auto* with_payload = whole ? std::get_if<mqtt::publish>(&*whole) : nullptr;
    pending_token_ = with_payload ? auth_token(*with_payload).value_or("") : "";
    emit(action::validate_session{pending_token_});
    return;
  }
  if (p.props.number(mqtt::property_id::topic_alias)) {
    // The proxy's CONNACK grants no aliases, so using one is an error [MQTT-3.3.2-9].
    return protocol_error("topic alias used, none was granted", reason_code::topic_alias_invalid);
  }
  if (!p.props.numbers(mqtt::property_id::subscription_identifier).empty()) {
    // [MQTT-3.3.4-6]: only a server puts Subscription Identifiers in a PUBLISH.
    return protocol_error("subscription identifier in a PUBLISH to " + escape_for_log(p.topic) + " [MQTT-3.3.4-6]",
                          reason_code::protocol_error);
  }
  if (!within_limits(p, frame)) return;
  if (!acl_allows(acl_action::publish, p.topic) || !broker_safe(p.topic)) {
    metrics_.acl_denied_publish++;
    ack_locally(p.qos, p.packet_id, reason_code::not_authorized);
    return;
  }
  if (p.qos != mqtt::qos::at_most_once) extra().client_ids_in_use_.insert(p.packet_id);
  forward_upstream(frame);
}

// What the broker cannot take and the proxy could not (3.1.1) or did (5.0)
// tell the client: 5.0 clients that ignore the CONNACK get the DISCONNECT the
// spec names [MQTT-3.2.2-11] [MQTT-3.2.2-14]; 3.1.1 has no way to say it, and
// silently downgrading the QoS or dropping the retain flag would break the
// client's delivery guarantee, so those clients are disconnected too (the
// broker would do the same, with a will).
bool client_session::within_limits(const mqtt::publish_header& p, const mqtt::frame& frame) {
  const auto& broker = limits();
  if (broker.maximum_qos && p.qos > *broker.maximum_qos) {
    protocol_error("QoS " + std::to_string(static_cast<int>(p.qos)) + " PUBLISH to " + escape_for_log(p.topic) +
                       " above the broker's maximum",
                   reason_code::qos_not_supported);
    return false;
  }
  if (p.retain && broker.retain_available == false) {
    protocol_error("retained PUBLISH to " + escape_for_log(p.topic) + ", the broker has no retained messages",
                   reason_code::retain_not_supported);
    return false;
  }
  if (broker.maximum_packet_size && frame.bytes.size() > *broker.maximum_packet_size) {
    protocol_error("PUBLISH larger than the broker's maximum packet size", reason_code::packet_too_large);
    return false;
  }
  return true;
}

// A filter the broker said it does not support (5.0 CONNACK, or config):
// refused with the code the broker would use [MQTT-3.2.2-16] [MQTT-3.2.2-17].
std::optional<reason_code> client_session::unsupported_by_broker(std::string_view filter) const {
  const auto& broker = limits();
  const bool shared = mqtt::topic::parse_shared(filter).has_value();
  if (shared && broker.shared_subscription_available == false) return reason_code::shared_subscriptions_not_supported;
  if (broker.wildcard_subscription_available == false && mqtt::topic::has_wildcard(mqtt::topic::effective_filter(filter)))
    return reason_code::wildcard_subscriptions_not_supported;
  return std::nullopt;
}

// RabbitMQ maps '/' to '.' and keeps dots, and '*' is a wildcard in its
// binding keys: "private/bob.smith/x" would be "private/bob/smith/x" there.
bool client_session::broker_safe(std::string_view topic) const {
  return config_.upstream != upstream_kind::rabbitmq || topic.find_first_of(".*") == std::string_view::npos;
}

void client_session::handle_subscribe(const mqtt::subscribe& s, const mqtt::frame& frame) {
  std::vector<std::optional<reason_code>> refusals(s.subscriptions.size());
  mqtt::subscribe allowed{s.packet_id, s.props, {}};
  for (std::size_t i = 0; i < s.subscriptions.size(); ++i) {
    const auto& sub = s.subscriptions[i];
    if (!acl_allows(acl_action::subscribe, sub.filter) || !broker_safe(sub.filter)) {
      metrics_.acl_denied_subscribe++;
      refusals[i] = reason_code::not_authorized;
    } else if (!extra().subscriptions_.contains(sub.filter) && extra().subscriptions_.size() >= config_.max_subscriptions) {
      refusals[i] = reason_code::quota_exceeded;
    } else if (auto unsupported = unsupported_by_broker(sub.filter)) {
      refusals[i] = *unsupported;  // what the broker would refuse, refused here for 3.1.1 clients too
    } else if (auto unbridgeable = bridged_ ? bridge::refusal(s, sub, bridge_traits()) : std::nullopt) {
      metrics_.bridge_refused_subscriptions++;
      refusals[i] = *unbridgeable;  // a 5.0-only option a 3.1.1 broker would ignore
    } else {
      extra().subscriptions_.insert(sub.filter);
      allowed.subscriptions.push_back(sub);
    }
  }
  if (!allowed.subscriptions.empty()) extra().client_ids_in_use_.insert(s.packet_id);
  if (allowed.subscriptions.size() == s.subscriptions.size()) return forward_upstream(frame);  // same bytes, same QoS
  if (allowed.subscriptions.empty()) {
    mqtt::suback refusal{s.packet_id, {}, {}};
    for (const auto& code : refusals) refusal.reasons.push_back(*code);
    return send_to_client(refusal);
  }
  auto wire = encode_for_upstream(allowed);
  if (!wire) return protocol_error(wire.error().message(), reason_code::implementation_specific_error);
  extra().pending_subacks_[s.packet_id] = std::move(refusals);
  emit(action::send_to_upstream{std::move(*wire)});
}

void client_session::handle_upstream_suback(const mqtt::suback& ack) {
  auto pending = extra().pending_subacks_.find(ack.packet_id);
  if (pending == extra().pending_subacks_.end()) return emit(action::forward_to_client{});
  mqtt::suback merged{ack.packet_id, ack.props, {}};
  std::size_t next = 0;
  for (const auto& refusal : pending->second) {
    if (refusal) {
      merged.reasons.push_back(*refusal);
    } else {
      merged.reasons.push_back(next < ack.reasons.size() ? ack.reasons[next++] : reason_code::unspecified_error);
    }
  }
  extra().pending_subacks_.erase(pending);
  send_to_client(merged);
}

void client_session::handle_unsubscribe(const mqtt::unsubscribe& u, const mqtt::frame& frame) {
  for (const auto& filter : u.filters) extra().subscriptions_.erase(filter);
  extra().client_ids_in_use_.insert(u.packet_id);
  if (bridged_) extra().bridged_unsubscribes_[u.packet_id] = u.filters.size();
  forward_upstream(frame);
}

// -------------------------------------------------------------------- helpers

void client_session::ack_locally(mqtt::qos qos, std::uint16_t packet_id, reason_code reason) {
  const bool v5 = version_ == mqtt::protocol_version::v5;
  const auto code = v5 ? reason : reason_code::success;
  if (qos == mqtt::qos::at_least_once) send_to_client(mqtt::puback{packet_id, code, {}});
  if (qos == mqtt::qos::exactly_once) {
    send_to_client(mqtt::pubrec{packet_id, code, {}});
    // A failing 5.0 PUBREC ends the exchange; otherwise a PUBREL will follow.
    if (!is_failure(code)) extra().local_qos2_ids_.insert(packet_id);
  }
}

void client_session::send_to_client(const mqtt::packet& p) {
  auto wire = mqtt::encode(p, version_, take_wire());
  if (wire) emit(action::send_to_client{std::move(*wire)});
}

void client_session::protocol_error(std::string reason, reason_code code) {
  metrics_.protocol_errors++;
  if (version_ == mqtt::protocol_version::v5 && connack_sent_)
    send_to_client(mqtt::disconnect{disconnect_reason(code), {}});
  close("protocol error: " + reason);
}

void client_session::send_upstream(const mqtt::packet& p) {
  if (bridged_) {
    // The proxy's own packets take the bridge too: a DISCONNECT asking for the
    // will (0x04 at shutdown) is not sent, so the 3.1.1 broker publishes it.
    bridge::drop_counts drops{};
    auto translated = bridge::to_broker(p, drops);
    if (!translated) return;
    auto wire = mqtt::encode(*translated, mqtt::protocol_version::v3_1_1, take_wire());
    if (wire) emit(action::send_to_upstream{std::move(*wire)});
    return;
  }
  auto wire = mqtt::encode(p, version_, take_wire());
  if (wire) emit(action::send_to_upstream{std::move(*wire)});
}

void client_session::close(std::string reason, bool client_left) {
  if (state_ != state::relaying && !held_.empty()) {
    metrics_.held_dropped += held_.size();  // authentication failed or never finished
    held_.clear();
    held_bytes_ = 0;
  }
  disconnect_held_ = false;
  state_ = state::closed;
  emit(action::close{std::move(reason), client_left});
}

client_session::actions client_session::on_timer(timer_kind kind) {
  begin();
  if (kind == timer_kind::session_expiry) {
    on_session_expiry();
    return take();
  }
  if (kind == timer_kind::revalidate) {
    revalidate();
    return take();
  }
  if (kind == timer_kind::upstream_ping) {
    if (state_ != state::relaying || upstream_ping_interval_.count() == 0) return take();
    if (upstream_pings_outstanding_ >= 3) {
      // Three keep-alive halves without an answer: the broker is gone.
      if (version_ == mqtt::protocol_version::v5 && connack_sent_)
        send_to_client(mqtt::disconnect{reason_code::server_busy, {}});
      close("broker does not answer PINGREQ");
      return take();
    }
    ++upstream_pings_outstanding_;
    send_upstream(mqtt::pingreq{});
    emit(action::arm_timer{timer_kind::upstream_ping, upstream_ping_interval_});
    return take();
  }
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


client_session::actions client_session::on_shutdown(bool fire_will) {
  begin();
  if (state_ == state::closed) return take();
  // A planned restart is not a crash: the broker gets a normal DISCONNECT (no
  // will) unless the operator wants wills fired: 5.0 says so with 0x04, a
  // 3.1.1 broker sees the connection end without one.
  if (state_ == state::relaying || state_ == state::connecting_upstream) {
    if (!fire_will) send_upstream(mqtt::disconnect{reason_code::success, {}});
    else if (version_ == mqtt::protocol_version::v5) send_upstream(mqtt::disconnect{reason_code::disconnect_with_will, {}});
  }
  if (version_ == mqtt::protocol_version::v5 && connack_sent_)
    send_to_client(mqtt::disconnect{reason_code::server_shutting_down, {}});
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
