#include "broker.hpp"

#include <spdlog/spdlog.h>

#include "client_link.hpp"
#include "mqtt/topic.hpp"

namespace broker {
namespace {

constexpr std::uint32_t never = UINT32_MAX;
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

mqtt::qos lower(mqtt::qos a, mqtt::qos b) { return a < b ? a : b; }

std::uint32_t will_delay(const mqtt::will_message& will) {
  return will.props.number(mqtt::property_id::will_delay_interval).value_or(0);
}

}  // namespace

broker::broker(asio::io_context& io, broker_options options)
    : io_(io), options_(std::move(options)), acceptor_(io) {}

void broker::listen(const tcp::endpoint& endpoint) {
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen();
  asio::co_spawn(io_, accept_loop(), asio::detached);
  asio::co_spawn(io_, sys_loop(), asio::detached);
}

asio::awaitable<void> broker::accept_loop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(as_tuple_awaitable);
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) continue;
    std::make_shared<client_link>(std::move(socket), *this)->start();
  }
}

// ------------------------------------------------------------------ sessions

broker::attach_result broker::attach(const std::shared_ptr<client_link>& link, const mqtt::connect& c) {
  attach_result result;
  if (options_.username && (c.username != options_.username || c.password != options_.password)) {
    result.refusal = mqtt::reason_code::bad_user_name_or_password;
    return result;
  }
  std::string id = c.client_id;
  if (id.empty()) {
    if (!c.clean_start && c.version != mqtt::protocol_version::v5) {
      result.refusal = mqtt::reason_code::client_identifier_not_valid;  // [MQTT-3.1.3-8]
      return result;
    }
    id = "auto-" + std::to_string(++assigned_ids_);
    result.assigned_id = id;
  }
  if (auto found = sessions_.find(id); found != sessions_.end()) {
    session& old = *found->second;
    if (auto other = old.link.lock()) {
      other->taken_over();
      // The old connection ends without DISCONNECT: its will goes out, unless
      // it is delayed and the session carries on [MQTT-3.1.3-9].
      if (old.will && (c.clean_start || will_delay(*old.will) == 0)) publish_will(old);
      old.will.reset();
      old.link.reset();
    }
    if (old.will_timer) old.will_timer->cancel();  // reconnected within the will delay: no will
    old.will.reset();
    if (old.expiry_timer) old.expiry_timer->cancel();
    if (c.clean_start) {
      sessions_.erase(found);
    } else {
      result.session_present = true;
    }
  }
  auto& slot = sessions_[id];
  if (!slot) {
    slot = std::make_unique<session>();
    slot->client_id = id;
  }
  session& s = *slot;
  s.version = c.version;
  s.link = link;
  s.will = c.will;
  s.receive_maximum = c.props.number(mqtt::property_id::receive_maximum).value_or(65535);
  if (c.version == mqtt::protocol_version::v5) {
    s.expiry_seconds = c.props.number(mqtt::property_id::session_expiry_interval).value_or(0);
  } else {
    s.expiry_seconds = c.clean_start ? 0 : never;
  }
  stats_.connections_total++;
  result.s = &s;
  publish_sys("$SYS/broker/connection/clients/" + id, "online");
  return result;
}

void broker::detach(session& s, bool will) {
  s.link.reset();
  const std::string id = s.client_id;
  publish_sys("$SYS/broker/connection/clients/" + id, "offline");
  if (!will) s.will.reset();
  if (s.will) {
    const auto delay = will_delay(*s.will);
    if (delay == 0 || s.expiry_seconds == 0) {
      publish_will(s);  // also when the session ends now, before any delay [MQTT-3.1.2-8]
    } else {
      s.will_timer = std::make_unique<asio::steady_timer>(io_, std::chrono::seconds(std::min(delay, s.expiry_seconds)));
      s.will_timer->async_wait([this, id](boost::system::error_code ec) {
        auto found = sessions_.find(id);
        if (!ec && found != sessions_.end() && found->second->link.expired()) publish_will(*found->second);
      });
    }
  }
  if (s.expiry_seconds == 0) return end_session(id);
  if (s.expiry_seconds == never) return;
  s.expiry_timer = std::make_unique<asio::steady_timer>(io_, std::chrono::seconds(s.expiry_seconds));
  s.expiry_timer->async_wait([this, id](boost::system::error_code ec) {
    auto found = sessions_.find(id);
    if (ec || found == sessions_.end() || !found->second->link.expired()) return;
    if (found->second->will) publish_will(*found->second);
    end_session(id);
  });
}

void broker::end_session(const std::string& client_id) { sessions_.erase(client_id); }

void broker::publish_will(session& s) {
  if (!s.will) return;
  auto will = std::move(*s.will);
  s.will.reset();
  will.props.remove(mqtt::property_id::will_delay_interval);
  route(message{will.topic, will.payload, will.qos, will.retain, will.props, s.client_id});
}

// ------------------------------------------------------------------- routing

void broker::route(message m) {
  stats_.messages_received++;
  if (m.retain) {
    // An empty retained message clears the topic [MQTT-3.3.1-10] [MQTT-3.3.1-11].
    if (m.payload.empty()) {
      retained_.erase(m.topic);
    } else {
      retained_[m.topic] = m;
    }
  }
  for (auto& [id, s] : sessions_) {
    std::optional<mqtt::qos> best;
    std::vector<std::uint32_t> ids;
    bool retain_as_published = false;
    for (const auto& [filter, sub] : s->subscriptions) {
      if (mqtt::topic::parse_shared(filter) || !mqtt::topic::matches(m.topic, filter)) continue;
      if (sub.options.no_local && m.origin == s->client_id) continue;  // [MQTT-3.8.3-3]
      const auto q = lower(sub.options.max_qos, m.qos);
      if (!best || q > *best) best = q;
      if (sub.id) ids.push_back(*sub.id);
      retain_as_published |= sub.options.retain_as_published;
    }
    // Overlapping subscriptions: one copy at the highest QoS, with every
    // matching subscription identifier [MQTT-3.3.4-2] [MQTT-3.3.4-3].
    if (best) deliver(*s, delivery{m, *best, retain_as_published && m.retain, std::move(ids)});
  }
  route_shared(m);
}

void broker::route_shared(const message& m) {
  // Each shared subscription ("$share/group/filter") gets one copy, given to
  // its members in turn, an online one when there is one [MQTT-4.8.2].
  std::map<std::string, std::vector<std::pair<session*, const subscription*>>> groups;
  for (auto& [id, s] : sessions_) {
    for (const auto& [filter, sub] : s->subscriptions) {
      const auto shared = mqtt::topic::parse_shared(filter);
      if (shared && mqtt::topic::matches(m.topic, shared->filter)) groups[filter].emplace_back(s.get(), &sub);
    }
  }
  for (auto& [filter, members] : groups) {
    auto& cursor = share_cursor_[filter];
    std::size_t pick = cursor % members.size();
    for (std::size_t i = 0; i < members.size(); ++i) {
      const std::size_t candidate = (cursor + i) % members.size();
      if (!members[candidate].first->link.expired()) {
        pick = candidate;
        break;
      }
    }
    cursor = pick + 1;
    auto [s, sub] = members[pick];
    std::vector<std::uint32_t> ids;
    if (sub->id) ids.push_back(*sub->id);
    deliver(*s, delivery{m, lower(sub->options.max_qos, m.qos), false, std::move(ids)});
  }
}

void broker::deliver(session& s, delivery d) {
  auto link = s.link.lock();
  if (d.qos == mqtt::qos::at_most_once) {
    if (link) link->send_publish(d, 0, false);  // offline sessions do not queue QoS 0
    return;
  }
  if (s.queued.size() >= options_.max_queued_messages) {
    s.dropped++;
    stats_.messages_dropped++;
    return;
  }
  s.queued.push_back(std::move(d));
  pump(s);
}

std::uint16_t broker::allocate_packet_id(session& s) {
  while (s.next_packet_id == 0 || s.inflight.contains(s.next_packet_id)) ++s.next_packet_id;
  return s.next_packet_id++;
}

void broker::pump(session& s) {
  auto link = s.link.lock();
  if (!link) return;
  const std::size_t window = std::min<std::size_t>(s.receive_maximum, options_.max_inflight);
  while (!s.queued.empty() && s.inflight.size() < window) {
    const auto id = allocate_packet_id(s);
    auto& entry = s.inflight[id] = outgoing{std::move(s.queued.front()), false};
    s.queued.pop_front();
    link->send_publish(entry.d, id, false);
  }
}

void broker::acknowledge(session& s, std::uint16_t packet_id) {
  s.inflight.erase(packet_id);
  pump(s);
}

// ------------------------------------------------------------- subscriptions

bool broker::add_subscription(session& s, const mqtt::subscription& sub, std::optional<std::uint32_t> id) {
  const bool existed = s.subscriptions.contains(sub.filter);
  s.subscriptions[sub.filter] = subscription{sub.options, id};
  return existed;
}

void broker::send_retained(session& s, const mqtt::subscription& sub, std::optional<std::uint32_t> id, bool existed) {
  // Retain handling 1: only for a new subscription; 2: never. Shared
  // subscriptions get no retained messages [MQTT-3.8.4-?] (4.8.2).
  if (sub.options.retain_handling == 2 || (sub.options.retain_handling == 1 && existed)) return;
  if (mqtt::topic::parse_shared(sub.filter)) return;
  std::vector<std::uint32_t> ids;
  if (id) ids.push_back(*id);
  for (const auto& [topic, m] : retained_)
    if (mqtt::topic::matches(topic, sub.filter)) deliver(s, delivery{m, lower(sub.options.max_qos, m.qos), true, ids});
}

bool broker::unsubscribe(session& s, const std::string& filter) { return s.subscriptions.erase(filter) > 0; }

// ---------------------------------------------------------------------- $SYS

void broker::publish_sys(const std::string& topic, const std::string& value) {
  message m{topic, value, mqtt::qos::at_most_once, true, {}, ""};
  retained_[topic] = m;
  for (auto& [id, s] : sessions_) {
    for (const auto& [filter, sub] : s->subscriptions) {
      if (mqtt::topic::parse_shared(filter) || !mqtt::topic::matches(topic, filter)) continue;
      deliver(*s, delivery{m, mqtt::qos::at_most_once, sub.options.retain_as_published, {}});
      break;
    }
  }
}

asio::awaitable<void> broker::sys_loop() {
  asio::steady_timer timer(io_);
  for (;;) {
    std::size_t online = 0;
    for (const auto& [id, s] : sessions_) online += s->link.expired() ? 0 : 1;
    const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_);
    publish_sys("$SYS/broker/version", "test-broker 0.1.0");
    publish_sys("$SYS/broker/uptime", std::to_string(uptime.count()) + " seconds");
    publish_sys("$SYS/broker/clients/connected", std::to_string(online));
    publish_sys("$SYS/broker/clients/total", std::to_string(sessions_.size()));
    publish_sys("$SYS/broker/messages/received", std::to_string(stats_.messages_received));
    publish_sys("$SYS/broker/messages/sent", std::to_string(stats_.messages_sent));
    publish_sys("$SYS/broker/messages/dropped", std::to_string(stats_.messages_dropped));
    publish_sys("$SYS/broker/retained messages/count", std::to_string(retained_.size()));
    timer.expires_after(options_.sys_interval);
    auto [ec] = co_await timer.async_wait(as_tuple_awaitable);
    if (ec) co_return;
  }
}

}  // namespace broker
