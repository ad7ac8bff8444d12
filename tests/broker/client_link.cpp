#include "client_link.hpp"

#include <spdlog/spdlog.h>

#include "support/overloaded.hpp"

namespace broker {
namespace {

constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t read_chunk = 16 * 1024;

// The message properties a broker passes on (3.3.2.3); topic aliases and
// subscription identifiers belong to one hop only.
mqtt::properties forwarded(const mqtt::properties& props) {
  mqtt::properties out = props;
  out.remove(mqtt::property_id::topic_alias);
  out.remove(mqtt::property_id::subscription_identifier);
  return out;
}

}  // namespace

client_link::client_link(tcp::socket socket, broker& owner)
    : socket_(std::move(socket)),
      broker_(owner),
      framer_(owner.options().max_packet_size),
      wake_(socket_.get_executor(), std::chrono::steady_clock::time_point::max()),
      keep_alive_(socket_.get_executor()) {}

void client_link::start() {
  boost::system::error_code ignored;
  socket_.set_option(tcp::no_delay(true), ignored);
  asio::co_spawn(socket_.get_executor(), read_loop(shared_from_this()), asio::detached);
  asio::co_spawn(socket_.get_executor(), write_loop(shared_from_this()), asio::detached);
  asio::co_spawn(socket_.get_executor(), keep_alive_loop(shared_from_this()), asio::detached);
}

// ------------------------------------------------------------------ writing

void client_link::send(const mqtt::packet& p) {
  if (closing_ && !std::holds_alternative<mqtt::disconnect>(p)) return;
  auto wire = mqtt::encode(p, version_);
  if (!wire) return;
  queued_bytes_ += wire->size();
  queue_.push_back(std::move(*wire));
  wake();
}

void client_link::send_publish(const delivery& d, std::uint16_t packet_id, bool dup) {
  if (closing_) return;
  // A slow reader loses QoS 0 beyond the bound; QoS 1/2 wait in the session.
  if (d.qos == mqtt::qos::at_most_once && queued_bytes_ > broker_.options().max_write_queue_bytes) {
    broker_.stats().messages_dropped++;
    if (session_) session_->dropped++;
    return;
  }
  mqtt::publish p{d.msg.topic, d.msg.payload, d.qos, d.retain, dup, packet_id, {}};
  if (version_ == mqtt::protocol_version::v5) {
    p.props = forwarded(d.msg.props);
    for (auto id : d.subscription_ids) p.props.add(mqtt::property_id::subscription_identifier, id);
  }
  broker_.stats().messages_sent++;
  send(p);
}

asio::awaitable<void> client_link::write_loop(self_ptr self) {
  std::vector<asio::const_buffer> buffers;
  for (;;) {
    if (queue_.empty()) {
      if (closing_) break;
      co_await wake_.async_wait(as_tuple_awaitable);
      continue;
    }
    buffers.clear();
    const std::size_t count = std::min<std::size_t>(queue_.size(), 64);
    for (std::size_t i = 0; i < count; ++i) buffers.push_back(asio::buffer(queue_[i]));
    auto [ec, n] = co_await asio::async_write(socket_, buffers, as_tuple_awaitable);
    if (ec) {
      queue_.clear();
      if (!closing_) close(true);
      break;
    }
    for (std::size_t i = 0; i < count; ++i) {
      queued_bytes_ -= queue_.front().size();
      queue_.pop_front();
    }
  }
  boost::system::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
  keep_alive_.cancel();
  (void)self;
}

// ------------------------------------------------------------------ reading

asio::awaitable<void> client_link::read_loop(self_ptr self) {
  for (;;) {
    auto space = framer_.prepare(read_chunk);
    auto [ec, n] = co_await socket_.async_read_some(asio::buffer(space.data(), space.size()), as_tuple_awaitable);
    if (ec) break;
    if (closing_) continue;  // drain until the peer closes, so our last packets are not lost to RST
    framer_.commit(n);
    for (;;) {
      auto next = framer_.next();
      if (!next) {
        close(true, next.error() == mqtt::error::packet_too_large ? mqtt::reason_code::packet_too_large
                                                                   : mqtt::reason_code::malformed_packet);
        break;
      }
      if (!*next) break;
      auto decoded = mqtt::decode((*next)->first_byte, (*next)->body, version_);
      if (!decoded) {
        spdlog::debug("closing {}: {}", session_ ? session_->client_id : "?", decoded.error().message());
        close(true, mqtt::reason_code::malformed_packet);
        break;
      }
      last_packet_ = std::chrono::steady_clock::now();
      handle(*decoded);
      if (closing_) break;
    }
  }
  if (!closing_) close(true);  // the client vanished: publish its will
  boost::system::error_code ignored;
  socket_.close(ignored);
  wake();
  (void)self;
}

asio::awaitable<void> client_link::keep_alive_loop(self_ptr self) {
  while (!closing_) {
    // Before CONNECT the connect deadline applies; after it, 1.5 x keep-alive.
    const auto limit = connected_ ? keep_alive_limit_ : std::chrono::milliseconds(10'000);
    if (limit.count() == 0) {
      keep_alive_.expires_at(std::chrono::steady_clock::time_point::max());
    } else {
      if (std::chrono::steady_clock::now() >= last_packet_ + limit) {
        close(true, mqtt::reason_code::keep_alive_timeout);
        break;
      }
      keep_alive_.expires_at(last_packet_ + limit);
    }
    co_await keep_alive_.async_wait(as_tuple_awaitable);
  }
  (void)self;
}

// ------------------------------------------------------------------ packets

void client_link::handle(const mqtt::packet& p) {
  if (!connected_ && !std::holds_alternative<mqtt::connect>(p)) return close(false);  // [MQTT-3.1.0-1]
  std::visit(support::overloaded{
                 [&](const mqtt::connect& c) {
                   if (connected_) return close(true, mqtt::reason_code::protocol_error);  // [MQTT-3.1.0-2]
                   on_connect(c);
                 },
                 [&](const mqtt::publish& pub) { on_publish(pub); },
                 [&](const mqtt::puback& ack) { broker_.acknowledge(*session_, ack.packet_id); },
                 [&](const mqtt::pubrec& rec) {
                   auto found = session_->inflight.find(rec.packet_id);
                   if (found != session_->inflight.end() && !is_failure(rec.reason)) {
                     found->second.released = true;
                     send(mqtt::pubrel{rec.packet_id, mqtt::reason_code::success, {}});
                   } else {
                     broker_.acknowledge(*session_, rec.packet_id);  // a failing PUBREC ends the exchange
                   }
                 },
                 [&](const mqtt::pubrel& rel) {
                   const bool known = session_->inbound_qos2.erase(rel.packet_id) > 0;
                   send(mqtt::pubcomp{rel.packet_id,
                                      known ? mqtt::reason_code::success : mqtt::reason_code::packet_identifier_not_found,
                                      {}});
                 },
                 [&](const mqtt::pubcomp& comp) { broker_.acknowledge(*session_, comp.packet_id); },
                 [&](const mqtt::subscribe& s) { on_subscribe(s); },
                 [&](const mqtt::unsubscribe& u) { on_unsubscribe(u); },
                 [&](const mqtt::pingreq&) { send(mqtt::pingresp{}); },
                 [&](const mqtt::disconnect& d) { on_disconnect(d); },
                 [&](const auto&) { close(true, mqtt::reason_code::protocol_error); },  // server packets, AUTH
             },
             p);
}

void client_link::on_connect(const mqtt::connect& c) {
  version_ = c.version == mqtt::protocol_version::v3_1 ? mqtt::protocol_version::v3_1_1 : c.version;
  auto result = broker_.attach(shared_from_this(), c);
  if (!result.s) {
    send(mqtt::connack{false, result.refusal, {}});
    return close(false);
  }
  session_ = result.s;
  connected_ = true;
  keep_alive_limit_ = std::chrono::milliseconds(c.keep_alive * 1500);
  mqtt::connack ack{result.session_present, mqtt::reason_code::success, {}};
  if (version_ == mqtt::protocol_version::v5) {
    if (!result.assigned_id.empty()) ack.props.add(mqtt::property_id::assigned_client_identifier, result.assigned_id);
    ack.props.add(mqtt::property_id::maximum_packet_size, static_cast<std::uint32_t>(broker_.options().max_packet_size));
  }
  send(ack);
  wake_.cancel();
  keep_alive_.cancel();  // re-arm with the client's keep-alive
  resend_inflight();
  broker_.pump(*session_);
}

void client_link::resend_inflight() {
  // A resumed session re-sends unacknowledged messages with DUP, and PUBREL
  // for those already received [MQTT-4.4.0-1].
  for (const auto& [id, out] : session_->inflight) {
    if (out.released) {
      send(mqtt::pubrel{id, mqtt::reason_code::success, {}});
    } else {
      send_publish(out.d, id, true);
    }
  }
}

void client_link::on_publish(const mqtt::publish& p) {
  if (p.props.number(mqtt::property_id::topic_alias)) return close(true, mqtt::reason_code::topic_alias_invalid);
  message m{p.topic, p.payload, p.qos, p.retain, forwarded(p.props), session_->client_id};
  switch (p.qos) {
    case mqtt::qos::at_most_once: broker_.route(std::move(m)); break;
    case mqtt::qos::at_least_once:
      broker_.route(std::move(m));
      send(mqtt::puback{p.packet_id, mqtt::reason_code::success, {}});
      break;
    case mqtt::qos::exactly_once:
      // Route once per packet id until its PUBREL, however often it is resent [MQTT-4.3.3-10].
      if (session_->inbound_qos2.insert(p.packet_id).second) broker_.route(std::move(m));
      send(mqtt::pubrec{p.packet_id, mqtt::reason_code::success, {}});
      break;
  }
}

void client_link::on_subscribe(const mqtt::subscribe& s) {
  const auto id = s.props.number(mqtt::property_id::subscription_identifier);
  mqtt::suback ack{s.packet_id, {}, {}};
  std::vector<bool> existed;
  for (const auto& sub : s.subscriptions) {
    existed.push_back(broker_.add_subscription(*session_, sub, id));
    ack.reasons.push_back(mqtt::granted(sub.options.max_qos));
  }
  send(ack);
  // Retained messages follow the SUBACK.
  for (std::size_t i = 0; i < s.subscriptions.size(); ++i) broker_.send_retained(*session_, s.subscriptions[i], id, existed[i]);
}

void client_link::on_unsubscribe(const mqtt::unsubscribe& u) {
  mqtt::unsuback ack{u.packet_id, {}, {}};
  for (const auto& filter : u.filters)
    ack.reasons.push_back(broker_.unsubscribe(*session_, filter) ? mqtt::reason_code::success
                                                                  : mqtt::reason_code::no_subscription_existed);
  send(ack);
}

void client_link::on_disconnect(const mqtt::disconnect& d) {
  if (auto expiry = d.props.number(mqtt::property_id::session_expiry_interval))
    broker_.set_session_expiry(*session_, *expiry);
  // 5.0 lets a client ask for its will with reason 0x04.
  close(d.reason == mqtt::reason_code::disconnect_with_will);
}

// ------------------------------------------------------------------ endings

void client_link::close(bool publish_will, std::optional<mqtt::reason_code> reason) {
  if (closing_) return;
  if (reason && connected_ && version_ == mqtt::protocol_version::v5) send(mqtt::disconnect{*reason, {}});
  closing_ = true;
  if (session_) {
    session* s = session_;
    session_ = nullptr;
    broker_.detach(*s, publish_will);
  }
  wake();
  keep_alive_.cancel();
}

void client_link::taken_over() {
  if (connected_ && version_ == mqtt::protocol_version::v5)
    send(mqtt::disconnect{mqtt::reason_code::session_taken_over, {}});
  session_ = nullptr;  // the session now belongs to the new connection
  closing_ = true;
  wake();
  keep_alive_.cancel();
}

}  // namespace broker
