// One client connection's protocol state, from CONNECT to close: the auth
// gate, the ACL, packet-id bookkeeping for what the proxy answers itself, and
// the upstream CONNECT. Sans-I/O: each event returns the actions to perform.
//
//   awaiting_connect --CONNECT--> awaiting_auth --auth PUBLISH--> authenticating
//        |                                                             |
//        | CONNECT with the session as password                        | valid
//        +--------------------> authenticating (direct) ----------------+
//                                                                      v
//                 relaying <--upstream CONNACK-- connecting_upstream <-+
//
// Any state can go to closed.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <utility>
#include <string>
#include <vector>

#include "admin/metrics.hpp"
#include "auth/auth_event.hpp"
#include "auth/auth_result.hpp"
#include "mqtt/codec.hpp"
#include "mqtt/framer.hpp"
#include "mqtt/packet_id_set.hpp"
#include "session/acl_pool.hpp"
#include "session/session_actions.hpp"
#include "session/version_bridge.hpp"
#include "support/rare_string.hpp"

namespace proxy {

// What the broker behind the proxy accepts, from `[upstream]` keys or learned
// by a probe CONNECT at start-up, or later if the broker was down then
// (session_config::late_limits; config wins). Unset: the broker's default
// (no limit). In auth-PUBLISH mode the proxy answers CONNACK itself, so it
// advertises these to 5.0 clients and enforces what it cannot advertise.
struct upstream_limits {
  std::optional<mqtt::qos> maximum_qos;
  std::optional<bool> retain_available;
  std::optional<std::uint16_t> receive_maximum;
  std::optional<std::uint32_t> maximum_packet_size;
  std::optional<std::uint16_t> server_keep_alive;  // the largest keep-alive the broker grants
  std::optional<bool> wildcard_subscription_available;
  std::optional<bool> subscription_identifiers_available;
  std::optional<bool> shared_subscription_available;
  bool operator==(const upstream_limits&) const = default;
};

// The limits a broker's CONNACK states (pure; the probe and tests use it).
upstream_limits limits_from_connack(const mqtt::connack& ack);
// `configured` with its unset fields filled from `learned`: config wins.
upstream_limits merge_limits(upstream_limits configured, const upstream_limits& learned);

// What kind of broker is behind the proxy: RabbitMQ maps '/' to '.' in its
// routing keys and treats '*' as a wildcard, so names with either could
// cross topic trees there.
enum class upstream_kind { generic, mosquitto, rabbitmq };

// Which MQTT version the proxy speaks to the broker (`[upstream] protocol`).
// `automatic` and `v5`: the client's own. `v3_1_1`: 5.0 clients are bridged
// to 3.1.1 (session/version_bridge.hpp); "auto" becomes that at start-up
// when the broker refuses the probe's 5.0 CONNECT (net/upstream_protocol_probe.hpp).
enum class upstream_protocol { automatic, v5, v3_1_1 };

struct session_config {
  std::string auth_topic = "service/auth";  // PUBLISH here (or below it) authenticates
  std::optional<std::string> upstream_username;
  std::optional<std::string> upstream_password;
  acl templates;  // %u / %c patterns added to every user's ACL
  std::chrono::milliseconds auth_timeout{10'000};
  std::size_t max_held_packets = 64;
  std::size_t max_held_bytes = 256 * 1024;
  std::size_t max_subscriptions = 256;
  std::size_t max_packet_size = 1024 * 1024;  // advertised to 5.0 clients in CONNACK
  upstream_kind upstream = upstream_kind::generic;
  upstream_limits limits;
  // Mosquitto's max_keepalive: the upstream CONNECT never asks for more (nor
  // for 0, which such a broker refuses from 3.1.1 clients); the proxy pings
  // the broker itself when the client's keep-alive is longer.
  std::optional<std::uint16_t> upstream_max_keep_alive;
  // Degraded mode and failed re-validations: when to ask the API server again.
  std::chrono::milliseconds revalidate_interval{5'000};
  // `[acl] mode`: report-only lets everything the ACL would refuse through,
  // reporting it (a listener's acl_mode overrides it: set_acl_mode).
  acl_mode acl_enforcement = acl_mode::enforce;
  // Report mode logs each (action, topic or filter) once per connection, up
  // to this many; later ones are only counted.
  std::size_t max_acl_reports = 64;
  upstream_protocol protocol = upstream_protocol::automatic;
  // "auto" that the start-up probe could not resolve (the broker was down):
  // found later by a re-probe, read by each new connection. Null otherwise.
  const std::atomic<upstream_protocol>* detected_protocol = nullptr;
  // The broker's limits when the start-up probe could not learn them (the
  // broker was down): published once by a re-probe, null until then (over
  // `limits`, which holds the configured ones). A session takes them if they
  // are there when it begins and keeps what it began with: its CONNACK
  // cannot be taken back. Null when nothing is left to learn.
  const std::atomic<const upstream_limits*>* late_limits = nullptr;
};

// The broker-side client id: "<length of user id>:<user id>:<client id>".
// Built from the API server's immutable user id, so a new user with an old
// name starts with nothing of the old broker sessions. The length prefix makes
// it injective, so no two (user id, client id) pairs map to the same broker
// session, whatever characters either contains.
std::string upstream_client_id(std::string_view user_id, std::string_view client_id);

// The auth topic's answer to an admitted session: {"result":"ok","user":"<user>"}.
std::string auth_ok_message(const std::string& user);

class client_session {
 public:
  enum class state { awaiting_connect, awaiting_auth, authenticating, connecting_upstream, relaying, closed };
  using actions = session_actions;  // by value: each action owns its bytes

  // `generated_client_id` is used when the client sends an empty client id.
  client_session(const session_config& config, metrics& counters, std::string generated_client_id);
  // The same, the id made by `make_client_id` only when a client sends an
  // empty one: drawing it for every connection (two CSPRNG calls and a heap
  // string) was 9 % of the proxy's instructions per new session (issue 14).
  using client_id_maker = std::string (*)();
  client_session(const session_config& config, metrics& counters, client_id_maker make_client_id);

  // The first byte of the stream, before a whole packet is in: anything but
  // CONNECT is refused at once rather than after the connect timeout.
  actions on_client_first_byte(std::uint8_t byte);
  actions on_client_frame(const mqtt::frame& frame);
  actions on_client_framing_error(boost::system::error_code error);
  actions on_client_closed();
  actions on_upstream_frame(const mqtt::frame& frame);
  actions on_upstream_closed();
  actions on_upstream_connect_failed(std::string_view why);
  actions on_auth_result(const auth_result& result);
  actions on_timer(timer_kind kind);
  actions on_keep_alive_expired();
  // An event from the API server's stream, given to every live session: the
  // session decides whether it concerns it (its user id or its session
  // digest) and applies it: revocation ends the connection, an ACL change
  // narrows what is delivered and unsubscribes what is no longer allowed.
  actions on_auth_event(const auth_event& event);
  // The proxy is shutting down (SIGTERM). 5.0 clients get DISCONNECT 0x8B;
  // with `fire_will` false the broker gets a normal DISCONNECT, so a planned
  // restart publishes no will.
  actions on_shutdown(bool fire_will);
  // An operator ended the connection (POST /v1/connections/kick): 5.0
  // clients get DISCONNECT 0x98, the broker a normal DISCONNECT (no will).
  actions on_kick();
  // The listener's acl_mode, when it has one (over session_config's).
  void set_acl_mode(acl_mode mode) { acl_mode_ = mode; }
  // The driver hands back a list it has carried out: the next event on this
  // thread fills it again instead of allocating one per packet. One spare per
  // thread, so an idle connection holds no capacity.
  static void recycle(actions&& done);
  acl_mode current_acl_mode() const { return acl_mode_; }

  state current_state() const { return state_; }
  mqtt::protocol_version version() const { return version_; }
  // The version spoken to the broker: the client's, or 3.1.1 when bridged.
  mqtt::protocol_version upstream_version() const;
  // Bridged deliveries held back for the client's Receive Maximum: the
  // connection counts them as queued to the client (back-pressure). Not while
  // a QoS 2 delivery waits for the broker's PUBREL: pausing the broker side
  // then would hold back the PUBREL that frees the client's window (a
  // deadlock); what is read meanwhile is bounded by the broker's own queue.
  std::size_t held_delivery_bytes() const {
    return extra_ && extra_->awaiting_pubrel_.empty() ? extra_->held_delivery_bytes_ : 0;
  }
  // 1.5 times the client's keep-alive [MQTT-3.1.2-24]; zero when it has none.
  std::chrono::milliseconds keep_alive_limit() const;
  const std::string& user() const { return user_; }
  const std::string& user_id() const { return user_id_; }
  const std::string& client_id() const { return client_id_; }
  // The ACL in force now (what deliveries are checked against).
  const acl& permissions() const;
  // Where admitted sessions take their ACL from: one copy per distinct ACL
  // (acl_pool.hpp). Without a pool each session holds its own.
  void share_acls_through(acl_pool* pool) { acl_pool_ = pool; }
  // The filters the client subscribed to through the proxy (forwarded ones).
  const std::set<std::string>& subscriptions() const;

 private:
  void begin();
  void take_late_limits();
  actions take() { return std::exchange(actions_, {}); }
  // Client packets, by state.
  void handle_connect(const mqtt::connect& c);
  void handle_before_relay(const mqtt::packet& p, const mqtt::frame& frame);
  void handle_relay(const mqtt::packet& p, const mqtt::frame& frame);
  void relay_client_publish(const mqtt::frame& frame);
  void handle_publish(const mqtt::publish_header& p, const mqtt::frame& frame);
  void handle_subscribe(const mqtt::subscribe& s, const mqtt::frame& frame);
  void handle_unsubscribe(const mqtt::unsubscribe& u, const mqtt::frame& frame);
  // Authentication.
  std::optional<std::string> auth_token(const mqtt::publish& p) const;
  bool is_auth_topic(std::string_view topic) const;
  void start_auth(std::string token);
  void handle_reauth(const auth_result& result);
  void admit(const auth_result& result);
  void revalidate();
  void on_session_expiry();
  void revoke();
  void apply_acl(acl permissions);
  void set_acl(acl permissions);
  void set_answered_acl(const shared_acl& answered);
  std::optional<std::uint16_t> free_packet_id() const;
  void deny(std::string_view reason, mqtt::reason_code code);
  void connect_upstream();
  void handle_upstream_connack(const mqtt::connack& ack);
  void enter_relaying();
  // Upstream packets.
  void handle_upstream_suback(const mqtt::suback& ack);
  void relay_delivery(const mqtt::frame& frame);
  void reject_broker_packet(boost::system::error_code error);
  void handle_delivery(const mqtt::publish_header& p);
  bool subscribed_here(std::string_view topic) const;
  void broker_error(std::string reason);
  void start_upstream_pings(std::uint16_t broker_keep_alive);
  // The broker's limits this session states and enforces: the configured
  // (and start-up) ones, or the late ones if published before it began. They
  // are published once, so a flag says which (no pointer per session).
  const upstream_limits& limits() const {
    return limits_late_ ? *config_.late_limits->load(std::memory_order_acquire) : config_.limits;
  }
  void advertise_limits(mqtt::connack& ack);
  std::optional<std::uint16_t> broker_keep_alive_cap() const;
  bool within_limits(const mqtt::publish_header& p, const mqtt::frame& frame);
  bool broker_safe(std::string_view topic) const;
  std::optional<mqtt::reason_code> unsupported_by_broker(std::string_view filter) const;
  // session_operator.cpp: the ACL's answer, carried out or (report mode) only reported.
  bool acl_allows(acl_action action, std::string_view name);
  void report_acl(acl_action action, std::string_view name, const acl_decision& decision);
  // Helpers.
  void hold(const mqtt::frame& frame);
  void forward_upstream(const mqtt::frame& frame);
  void ack_locally(mqtt::qos qos, std::uint16_t packet_id, mqtt::reason_code reason);
  void send_to_client(const mqtt::packet& p);
  void send_auth_message(std::string json);
  void protocol_error(std::string reason, mqtt::reason_code code);
  void close(std::string reason, bool client_left = false);
  void send_upstream(const mqtt::packet& p);
  void emit(session_action a) { actions_.push_back(std::move(a)); }
  // Version bridging (5.0 client, 3.1.1 broker): session/version_bridge.hpp.
  bridge::broker_traits bridge_traits() const;
  void count_drops(const bridge::drop_counts& drops);
  mqtt::result<mqtt::bytes> encode_for_upstream(const mqtt::packet& p);
  void bridge_to_upstream(const mqtt::frame& frame);
  void bridge_from_upstream(mqtt::packet& p);
  void bridge_forwards_to_client(const mqtt::packet& p, std::size_t first_action);
  // The client's Receive Maximum on bridged deliveries (client_session_bridge.cpp).
  bool must_hold_delivery(const mqtt::publish& p);
  bool takes_client_window(mqtt::qos qos, std::uint16_t packet_id) const;
  bool acknowledges_held_delivery(std::uint16_t packet_id) const;
  void client_completed_delivery(std::uint16_t packet_id);
  void release_held_deliveries();
  void complete_with_broker(mqtt::qos qos, std::uint16_t packet_id);

  const session_config& config_;
  metrics& metrics_;
  rare_string generated_client_id_;  // tests' fixed id; connections use make_client_id_
  client_id_maker make_client_id_ = nullptr;
  state state_ = state::awaiting_connect;
  mqtt::protocol_version version_ = mqtt::protocol_version::v3_1_1;
  // Flags sit beside other small members: padding is paid by every idle session.
  bool client_clean_start_ = false;
  bool client_id_assigned_ = false;
  bool direct_mode_ = false;  // session came as the CONNECT password
  std::vector<session_action> actions_;

  // The client's CONNECT, kept only until the upstream CONNECT is answered
  // (its will, clean start and properties go into it); then freed.
  std::unique_ptr<mqtt::connect> client_connect_;
  std::optional<std::uint32_t> client_max_packet_size_;  // 5.0 CONNECT's Maximum Packet Size (bridged deliveries)
  std::string client_id_;
  std::string auth_topic_used_;
  std::string user_;
  std::string user_id_;
  std::shared_ptr<const acl> acl_;  // null until admitted; shared with the pool's other holders
  acl_pool* acl_pool_ = nullptr;
  bool acl_subscribe_valid_ = false;  // acl_.subscribe_entries_valid(), asked when acl_ is set
  bool reauth_pending_ = false;
  bool connack_sent_ = false;
  bool bridged_ = false;  // a 5.0 client on a 3.1.1 broker
  bool only_own_subscriptions_ = false;  // bridged Clean Start with expiry: the broker may resume an old session
  bool limits_late_ = false;  // began after late limits were published: limits() are those
  const mqtt::frame* current_client_frame_ = nullptr;  // forwarded without a copy when relayed as is

  std::vector<mqtt::bytes> held_;
  std::size_t held_bytes_ = 0;

  // Re-validation: the token the session authenticated with (re-validated on
  // a resync or in degraded mode) and its digest (what a revocation names).
  // The token being validated and the digest are empty in an idle session
  // (the digest is made only for a revocation of the session's own user):
  // rare_strings, 8 B each then instead of 32 (issue 14).
  std::string token_;
  rare_string pending_token_;
  rare_string session_digest_;  // computed when an event first needs it (SHA-256: not on every admission)
  bool silent_revalidation_ = false;  // the proxy asked, not the client: no "ok" message
  bool expiry_check_ = false;  // the pending validation decides whether the expired session lives on
  // The client sent DISCONNECT while packets were held: it is replayed after them.
  bool disconnect_held_ = false;
  std::uint16_t client_keep_alive_ = 0;  // the client's own: what the proxy holds it to
  std::uint16_t upstream_keep_alive_ = 0;  // what the upstream CONNECT asked for
  std::chrono::milliseconds upstream_ping_interval_{0};
  unsigned upstream_pings_outstanding_ = 0;
  acl_mode acl_mode_ = acl_mode::enforce;
  // The packet-id and subscription bookkeeping, allocated on first use: an
  // idle QoS 0 session (most of them) carries none of it, and the sets and
  // maps below, empty, would cost about 600 B per connection (issue 14).
  struct extra_state {
    mqtt::packet_id_set local_qos2_ids_;  // PUBRECs the proxy sent itself: it owes the PUBCOMP
    // SUBSCRIBEs forwarded with some filters removed: the refusal codes by
    // position, so the broker's SUBACK can be widened back to the client's count.
    std::map<std::uint16_t, std::vector<std::optional<mqtt::reason_code>>> pending_subacks_;
    std::set<std::string> subscriptions_;
    // Packet ids the client has in flight towards the broker (SUBSCRIBE and
    // UNSUBSCRIBE until their ack, QoS 1/2 PUBLISH until PUBACK/PUBCOMP): the
    // proxy's own UNSUBSCRIBE takes an id outside them.
    mqtt::packet_id_set client_ids_in_use_;
    mqtt::packet_id_set proxy_unsubscribes_;  // the proxy's UNSUBSCRIBEs: their UNSUBACK is swallowed
    // QoS 2 deliveries the proxy refused (ACL) and answered PUBREC itself: it
    // owes the broker the PUBCOMP. At most 65536 entries (one per id).
    mqtt::packet_id_set dropped_qos2_ids_;
    // Report mode: what was reported on this connection (bounded by max_acl_reports).
    std::set<std::pair<acl_action, std::string>> acl_reported_;
    std::map<std::uint16_t, std::size_t> bridged_unsubscribes_;  // UNSUBSCRIBE id -> filters, for the 5.0 UNSUBACK
    // Client QoS 1/2 PUBLISHes the 3.1.1 broker has not completed: held to the
    // Receive Maximum the proxy advertised, which a 3.1.1 broker does not enforce.
    mqtt::packet_id_set bridged_in_flight_;
    // The other way: the 5.0 client's Receive Maximum, which the 3.1.1 broker
    // never heard of, held by the proxy [MQTT-3.3.4-9]. QoS 1/2 deliveries the
    // client has not completed, and the deliveries waiting behind them, in
    // order (QoS 0 ones too, once one waits). Bounded by the connection: the
    // broker's reader pauses while these and the client queue are over the
    // high-water mark (held_delivery_bytes).
    std::uint16_t client_receive_maximum_ = 0;  // 0: the client set none below 65535
    mqtt::packet_id_set deliveries_in_flight_;
    // QoS 2 deliveries the client has PUBRECed: they complete only once the
    // broker's PUBREL has been read, so its side must not pause meanwhile.
    mqtt::packet_id_set awaiting_pubrel_;
    struct held_delivery {
      mqtt::bytes wire;  // 5.0-encoded
      std::string topic;  // checked against the ACL again when it goes
      mqtt::qos qos;
      std::uint16_t packet_id;
      std::size_t cost;  // the bytes it holds, as counted in held_delivery_bytes_
    };
    std::deque<held_delivery> held_deliveries_;
    std::size_t held_delivery_bytes_ = 0;
  };
  extra_state& extra() {
    if (!extra_) extra_ = std::make_unique<extra_state>();
    return *extra_;
  }
  std::unique_ptr<extra_state> extra_;
};


}  // namespace proxy
