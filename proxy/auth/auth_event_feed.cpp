#include "auth/auth_event_feed.hpp"

#include <algorithm>
#include <optional>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "mqtt/topic.hpp"

namespace proxy {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using boost::system::error_code;

namespace {

std::optional<auth_event::kind> kind_of(const std::string& type) {
  using k = auth_event::kind;
  if (type == "session_revoked") return k::session_revoked;
  if (type == "user_deleted") return k::user_deleted;
  if (type == "user_sessions_revoked") return k::user_sessions_revoked;
  if (type == "acl_changed") return k::acl_changed;
  return std::nullopt;
}

bool is_digest(const std::string& s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

std::optional<std::vector<std::string>> filter_list(const nlohmann::json& acl, const char* key) {
  std::vector<std::string> out;
  const auto it = acl.find(key);
  if (it == acl.end()) return out;
  if (!it->is_array()) return std::nullopt;
  for (const auto& item : *it)
    if (item.is_string() && mqtt::topic::is_valid_filter(item.get<std::string>())) out.push_back(item);
  return out;
}

// One event; nullopt with known=true when it is of a known kind but malformed.
std::optional<auth_event> event_of(const nlohmann::json& json, std::uint64_t seq, bool& malformed) {
  malformed = false;
  const auto type = json.find("type");
  if (type == json.end() || !type->is_string()) {
    malformed = true;
    return std::nullopt;
  }
  const auto kind = kind_of(type->get<std::string>());
  if (!kind) return std::nullopt;  // a newer server's event: not ours to act on
  auth_event event;
  event.type = *kind;
  event.seq = seq;
  if (auto user = json.find("user"); user != json.end() && user->is_string()) event.user = *user;
  if (auto id = json.find("user_id"); id != json.end()) {
    if (id->is_string()) event.user_id = *id;
    else if (id->is_number_unsigned()) event.user_id = std::to_string(id->get<std::uint64_t>());
  }
  if (event.type == auth_event::kind::session_revoked) {
    const auto session = json.find("session");
    if (session == json.end() || !session->is_string() || !is_digest(*session)) {
      malformed = true;
      return std::nullopt;
    }
    event.session_digest = *session;
    return event;
  }
  if (event.user_id.empty()) {
    malformed = true;
    return std::nullopt;
  }
  if (event.type == auth_event::kind::acl_changed) {
    const auto acl = json.find("acl");
    if (acl == json.end() || !acl->is_object()) {
      malformed = true;
      return std::nullopt;
    }
    auto publish = filter_list(*acl, "publish");
    auto subscribe = filter_list(*acl, "subscribe");
    if (!publish || !subscribe) {
      malformed = true;
      return std::nullopt;
    }
    event.permissions.publish = std::move(*publish);
    event.permissions.subscribe = std::move(*subscribe);
  }
  return event;
}

}  // namespace

event_batch parse_event_batch(unsigned status, std::string_view body) {
  event_batch batch;
  if (status == 404) {
    batch.what = event_batch::status::not_found;
    batch.error = "the API server has no event stream (404)";
    return batch;
  }
  if (status == 401 || status == 403) {
    batch.what = event_batch::status::unauthorized;
    batch.error = "the API server refused the service token (" + std::to_string(status) + ")";
    return batch;
  }
  if (status != 200) {
    batch.error = "the API server answered " + std::to_string(status);
    return batch;
  }
  const auto json = nlohmann::json::parse(body, nullptr, false);
  if (json.is_discarded() || !json.is_object()) {
    batch.error = "malformed JSON";
    return batch;
  }
  const auto next = json.find("next");
  const auto events = json.find("events");
  if (next == json.end() || !next->is_number_unsigned() || events == json.end() || !events->is_array()) {
    batch.error = "answer without events or next";
    return batch;
  }
  batch.next = next->get<std::uint64_t>();
  if (auto reset = json.find("reset"); reset != json.end() && reset->is_boolean()) batch.reset = reset->get<bool>();
  std::uint64_t last = 0;
  for (const auto& item : *events) {
    const auto seq = item.is_object() ? item.find("seq") : item.end();
    if (!item.is_object() || seq == item.end() || !seq->is_number_unsigned() || seq->get<std::uint64_t>() <= last) {
      batch.damaged = true;  // cannot even tell where it stands: re-validate everything
      continue;
    }
    last = seq->get<std::uint64_t>();
    bool malformed = false;
    auto event = event_of(item, last, malformed);
    if (malformed) batch.damaged = true;
    if (event) batch.events.push_back(std::move(*event));
  }
  batch.what = event_batch::status::ok;
  return batch;
}

std::vector<auth_event> event_sequencer::accept(const event_batch& batch) {
  std::vector<auth_event> out;
  if (!after_) {  // the first answer: start from now
    after_ = batch.next;
    return out;
  }
  if (batch.reset || batch.damaged || batch.next < *after_) {
    spdlog::warn("auth event stream: {} at seq {}; re-validating every session",
                 batch.reset ? "events were missed (reset)" : "the stream is inconsistent", *after_);
    auth_event resync;
    resync.type = auth_event::kind::resync;
    resync.seq = batch.next;
    out.push_back(std::move(resync));
    if (batch.reset) {
      after_ = batch.next;
      return out;
    }
    // The well-formed events of a damaged batch still go out: they act at
    // once, the resync catches what was lost.
    out.insert(out.end(), batch.events.begin(), batch.events.end());
    after_ = batch.next;
    return out;
  }
  for (const auto& event : batch.events) {
    if (event.seq <= *after_) continue;  // already delivered
    out.push_back(event);
    after_ = event.seq;
  }
  after_ = std::max(*after_, batch.next);
  return out;
}

// ------------------------------------------------------------------ the feed

struct auth_event_feed::state : std::enable_shared_from_this<state> {
  state(asio::io_context& io_, auth_event_feed_settings s, metrics* m, handler h)
      : io(io_), settings(std::move(s)), counters(m), on_event(std::move(h)), resolver(io_), timer(io_), deadline(io_) {}

  asio::io_context& io;
  auth_event_feed_settings settings;
  metrics* counters;
  handler on_event;
  asio::ip::tcp::resolver resolver;
  asio::steady_timer timer;     // backoff
  asio::steady_timer deadline;  // per request
  std::unique_ptr<http_connection> connection;
  event_sequencer position;
  bool stopped = false;
  bool connected = false;
  bool warned_not_found = false;
  bool warned_down = false;
  std::chrono::milliseconds backoff{0};

  void set_connected(bool now) {
    if (now == connected) return;
    connected = now;
    if (counters) counters->auth_events_connected = now ? 1 : 0;
  }
  void abort() {
    resolver.cancel();
    timer.cancel();
    if (connection) connection->abort();
  }
  void deliver(const auth_event& event) {
    if (counters) counters->auth_events_received++;
    spdlog::debug("auth event {} {} user_id={}", event.seq, to_string(event.type), event.user_id);
    if (on_event) on_event(event);
  }
  std::string target() const {
    // Until the stream is known to be up, ask without waiting: the answer
    // itself says so at once (a long-poll would hold that news for `wait`).
    const auto wait = connected ? settings.wait.count() : 0;
    std::string t = settings.endpoint.base_path + "/v1/events?wait=" + std::to_string(wait);
    if (position.after()) t += "&after=" + std::to_string(*position.after());
    return t;
  }
};

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// One long-poll: an answer, or an error (the connection is dropped).
asio::awaitable<std::pair<error_code, http_response>> poll_once(std::shared_ptr<auth_event_feed::state> s) {
  http_response response;
  // One deadline for the whole request, a little beyond the long-poll.
  s->deadline.expires_after(s->settings.wait + std::chrono::seconds(10));
  s->deadline.async_wait([weak = std::weak_ptr<auth_event_feed::state>(s)](error_code ec) {
    if (ec) return;
    if (auto held = weak.lock()) held->abort();
  });
  if (!s->connection || !s->connection->is_open() || s->connection->unusable_when_idle()) {
    s->connection = http_connection::create(s->io, s->settings.tls.get());
    const auto ec = co_await s->connection->connect(s->settings.endpoint, s->resolver);
    if (ec) {
      s->connection.reset();
      s->deadline.cancel();
      co_return std::pair{ec, std::move(response)};
    }
  }
  http_request request{http::verb::get, s->target(), 11};
  request.set(http::field::host, s->settings.endpoint.host);
  request.set(http::field::user_agent, "mqtt-proxy");
  request.set(http::field::accept, "application/json");
  if (!s->settings.service_token.empty())
    request.set(http::field::authorization, "Bearer " + s->settings.service_token);
  request.keep_alive(true);
  const auto ec = co_await s->connection->exchange(request, response, 16 * 1024 * 1024);
  s->deadline.cancel();
  if (ec || !response.keep_alive()) s->connection.reset();
  co_return std::pair{ec, std::move(response)};
}

asio::awaitable<void> run(std::shared_ptr<auth_event_feed::state> s) {
  const auto url = std::string(s->settings.endpoint.tls ? "https://" : "http://") + s->settings.endpoint.host + ":" +
                   s->settings.endpoint.port + s->settings.endpoint.base_path + "/v1/events";
  while (!s->stopped) {
    auto [ec, response] = co_await poll_once(s);
    if (s->stopped) break;
    std::chrono::milliseconds pause{0};
    std::string problem;
    if (ec) {
      problem = ec == asio::error::operation_aborted ? "timed out" : ec.message();
    } else {
      const auto batch = parse_event_batch(response.result_int(), response.body());
      if (batch.what == event_batch::status::ok) {
        if (!s->connected)
          spdlog::info("auth event stream connected: {}{}", url,
                       s->position.after() ? " from seq " + std::to_string(*s->position.after())
                                           : std::string(" (from now)"));
        s->set_connected(true);
        s->warned_down = false;
        s->backoff = std::chrono::milliseconds(0);
        for (const auto& event : s->position.accept(batch)) {
          if (s->stopped) break;
          s->deliver(event);
        }
        continue;
      }
      if (batch.what == event_batch::status::not_found) {
        if (!s->warned_not_found)
          spdlog::warn("auth event stream: {} answered 404; revocations reach open connections only when they "
                       "re-validate. Retrying every {} ms",
                       url, s->settings.not_found_retry.count());
        s->warned_not_found = true;
        s->set_connected(false);
        pause = s->settings.not_found_retry;
      } else {
        problem = batch.error;
        if (batch.what == event_batch::status::unauthorized) s->backoff = s->settings.backoff_max;
      }
    }
    if (pause.count() == 0) {
      s->backoff = std::clamp(s->backoff * 2, s->settings.backoff_min, s->settings.backoff_max);
      pause = s->backoff;
      if (s->connected) spdlog::warn("auth event stream lost: {}; reconnecting", problem);
      else if (!s->warned_down) spdlog::warn("auth event stream: cannot reach {}: {}; retrying with backoff", url, problem);
      else spdlog::debug("auth event stream: {}; retrying in {} ms", problem, pause.count());
      s->warned_down = true;
      s->set_connected(false);
    }
    s->timer.expires_after(pause);
    auto [wait_error] = co_await s->timer.async_wait(use_tuple);
    (void)wait_error;
  }
  s->set_connected(false);
}

}  // namespace

auth_event_feed::auth_event_feed(asio::io_context& io, auth_event_feed_settings settings, metrics* counters,
                                 handler on_event)
    : state_(std::make_shared<state>(io, std::move(settings), counters, std::move(on_event))) {}

auth_event_feed::~auth_event_feed() { stop(); }

void auth_event_feed::start() {
  asio::co_spawn(state_->io, run(state_), [](std::exception_ptr error) {
    if (!error) return;
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      spdlog::error("auth event stream stopped: {}", e.what());
    }
  });
}

void auth_event_feed::stop() {
  if (state_->stopped) return;
  state_->stopped = true;
  state_->on_event = nullptr;
  state_->deadline.cancel();
  state_->abort();
}

}  // namespace proxy
