#include "auth/http_auth_client.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "mqtt/topic.hpp"
#include "mqtt/utf8.hpp"

namespace proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

std::string redact(std::string_view secret) {
  if (secret.size() <= 8) return "****";
  return std::string(secret.substr(0, 4)) + "..." + std::string(secret.substr(secret.size() - 4));
}

namespace {

std::vector<std::string> filters_from(const nlohmann::json& list) {
  std::vector<std::string> filters;
  if (!list.is_array()) return filters;
  for (const auto& item : list)
    if (item.is_string() && mqtt::topic::is_valid_filter(item.get<std::string>())) filters.push_back(item);
  return filters;
}

auth_result unavailable(std::string detail) {
  auth_result r;
  r.outcome = auth_result::verdict::unavailable;
  r.detail = std::move(detail);
  return r;
}

auth_result invalid(std::string detail) {
  auth_result r;
  r.outcome = auth_result::verdict::invalid;
  r.detail = std::move(detail);
  return r;
}

auth_result unplausible() {
  return invalid("the token cannot be a session (binary, control characters or over 4 KiB)");
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// Whoever reads the log can correlate a digest without learning the token.
std::string short_digest(const std::string& digest) { return digest.substr(0, 12); }

}  // namespace

auth_result parse_validation_response(unsigned status, std::string_view body) {
  if (status == 401 || status == 404 || status == 403) return invalid("API server answered " + std::to_string(status));
  if (status != 200) return unavailable("API server answered " + std::to_string(status));
  const auto json = nlohmann::json::parse(body, nullptr, false);
  if (json.is_discarded() || !json.is_object()) return unavailable("API server sent malformed JSON");
  const auto user = json.find("user");
  if (user == json.end() || !user->is_string() || user->get<std::string>().empty())
    return unavailable("API server answer has no user");
  auth_result r;
  r.outcome = auth_result::verdict::valid;
  r.user = user->get<std::string>();
  r.user_id = r.user;
  if (auto id = json.find("user_id"); id != json.end()) {
    if (id->is_string() && !id->get<std::string>().empty()) r.user_id = id->get<std::string>();
    else if (id->is_number_integer()) r.user_id = std::to_string(id->get<long long>());
  }
  if (auto acl_json = json.find("acl"); acl_json != json.end() && acl_json->is_object()) {
    r.permissions = {filters_from(acl_json->value("publish", nlohmann::json::array())),
                     filters_from(acl_json->value("subscribe", nlohmann::json::array()))};
  }
  if (auto expires = json.find("expires_in"); expires != json.end() && expires->is_number_integer())
    r.expires_in = std::chrono::seconds(expires->get<long long>());
  return r;
}

std::optional<std::chrono::seconds> parse_max_age(std::string_view cache_control) {
  std::optional<std::chrono::seconds> max_age;
  while (!cache_control.empty()) {
    const auto comma = cache_control.find(',');
    const auto directive = trim(cache_control.substr(0, comma));
    cache_control = comma == std::string_view::npos ? std::string_view{} : cache_control.substr(comma + 1);
    const auto eq = directive.find('=');
    const auto name = trim(directive.substr(0, eq));
    if (iequals(name, "no-store") || iequals(name, "no-cache")) return std::nullopt;
    if (!iequals(name, "max-age") || eq == std::string_view::npos) continue;
    auto value = trim(directive.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
    if (value.empty() || value.size() > 9 || value.find_first_not_of("0123456789") != std::string_view::npos)
      return std::nullopt;  // a malformed max-age means "do not cache" (RFC 9111 4.2.1)
    max_age = std::chrono::seconds(std::min(std::stol(std::string(value)), 86'400L));
  }
  return max_age;
}

namespace {

// Whether the token's bytes are all printable ASCII (0x20..0x7E), eight at a
// time: a session token almost always is, and such bytes are valid UTF-8 and
// no control character, so the byte-wise checks below have nothing to find
// (they were ~1k instructions per new session, issue 14).
bool printable_ascii(std::string_view token) {
  constexpr std::uint64_t ones = 0x0101010101010101ULL;
  constexpr std::uint64_t highs = 0x8080808080808080ULL;
  std::size_t i = 0;
  for (; i + 8 <= token.size(); i += 8) {
    std::uint64_t word;
    std::memcpy(&word, token.data() + i, sizeof word);
    // A byte below 0x20 borrows in word - 0x20..20; 0x7F carries into its
    // high bit in word + 0x01..01; a byte >= 0x80 has its high bit set.
    const std::uint64_t below_space = (word - 0x20 * ones) & ~word;
    const std::uint64_t del_or_high = (word + ones) | word;
    if ((below_space | del_or_high) & highs) return false;
  }
  for (; i < token.size(); ++i) {
    const auto c = static_cast<unsigned char>(token[i]);
    if (c < 0x20 || c >= 0x7F) return false;
  }
  return true;
}

}  // namespace

bool plausible_token(std::string_view token) {
  if (token.empty() || token.size() > max_token_size) return false;
  if (printable_ascii(token)) return true;
  if (mqtt::check_utf8(token)) return false;
  for (std::size_t i = 0; i < token.size(); ++i) {
    const auto c = static_cast<unsigned char>(token[i]);
    if (c < 0x20 || c == 0x7F) return false;
    // C1 controls U+0080..U+009F are 0xC2 0x80..0x9F in UTF-8.
    if (c == 0xC2 && i + 1 < token.size() && static_cast<unsigned char>(token[i + 1]) <= 0x9F) return false;
  }
  return true;
}

// ------------------------------------------------------------------ the client

// One HTTP call, shared by every waiter validating the same token.
struct http_auth_client::flight {
  explicit flight(asio::io_context& io) : resolver(io), deadline(io) {}
  std::string digest;
  validation_cache::key key{};  // the digest's bytes, as events name sessions
  std::uint64_t as_of = 0;      // events applied when this call was (last) sent for
  int asks = 0;                 // times asked again because events overtook the answer
  std::vector<std::weak_ptr<waiter>> waiters;
  asio::ip::tcp::resolver resolver;
  asio::steady_timer deadline;
  http_connection* current = nullptr;  // the connection in use, closed by abort()
  std::optional<std::chrono::seconds> max_age;
  bool timed_out = false;
  bool cancelled = false;
  bool finished = false;
  bool queued = false;    // waits for a free connection (max_connections): nothing sent yet
  std::string body;       // the request: sent again when an event overtakes the answer
  http_auth_client* owner = nullptr;  // for a withdrawal while queued (the client outlives its waiters' use)
  std::chrono::steady_clock::time_point started;

  bool anyone_waiting() const {
    return std::any_of(waiters.begin(), waiters.end(), [](const auto& w) { return !w.expired(); });
  }
  void abort() {
    resolver.cancel();
    if (current) current->abort();
  }
};

// What validate() hands out: dropping it withdraws the waiter, and the last
// waiter of a call cancels it.
struct http_auth_client::waiter {
  completion done;
  std::weak_ptr<flight> call;
  std::weak_ptr<bool> client_alive;
  // For asking again when an event overtakes the answer on its way.
  std::string token;
  std::string remote_address;
  validation_cache::key key{};
  std::uint64_t as_of = 0;  // events applied when the answer was known current
  int asks = 0;
  auth_result answer;  // on its way to `done` (deliver_later), empty otherwise
  std::chrono::steady_clock::time_point started;  // for the latency histogram
  ~waiter() {
    if (client_alive.expired()) return;  // shutdown: the io_context is going away
    auto f = call.lock();
    if (!f || f->finished || f->anyone_waiting()) return;
    f->cancelled = true;
    if (f->queued) {
      f->owner->withdraw(f);  // never sent: ended now, its request freed
      return;
    }
    f->abort();
  }
};

http_auth_client::http_auth_client(asio::io_context& io, http_auth_settings settings, metrics* counters)
    : io_(io),
      settings_(std::move(settings)),
      metrics_(counters),
      cache_(settings_.cache),
      breaker_(settings_.breaker),
      sweep_(io),
      alive_(std::make_shared<bool>(true)) {}

http_auth_client::~http_auth_client() {
  if (metrics_ && breaker_.current() != circuit_breaker::state::closed) metrics_->auth_breaker_open--;
}

void http_auth_client::deliver_later(const std::shared_ptr<waiter>& w, auth_result result) {
  // The answer agrees with every event applied so far (the cache forgot what
  // they made wrong; a call's answer was checked in finish()); one applied
  // before the handler below runs is checked there.
  w->as_of = events_seen_;
  // The answer waits in the waiter, not in the handler: asio moves a handler
  // several times on its way, and an answer is three strings and a pointer
  // (six moves per new session, issue 14). A waiter has one answer on its
  // way at a time: it asks again (look_up) only once this one is handed over.
  w->answer = std::move(result);
  // Never inline: the caller may be in the middle of something.
  asio::post(io_, [this, weak = std::weak_ptr<waiter>(w)] {
    auto held = weak.lock();
    if (!held || !held->done) return;
    auto answer = std::move(held->answer);
    if (!held->client_alive.expired()) return hand_over(held, answer);
    auto done = std::move(held->done);  // shutdown: the client is gone, events with it
    held->done = nullptr;
    done(answer);
  });
}

void http_auth_client::hand_over(const std::shared_ptr<waiter>& w, auth_result& result) {
  if (result.outcome == auth_result::verdict::valid) {
    const auto verdict = overtaken_by_events(w->as_of, w->key, result);
    if (verdict == overtaken::ask_again && ++w->asks <= max_asks) {
      if (metrics_) metrics_->auth_overtaken_asked_again++;
      look_up(w);
      return;
    }
    if (verdict != overtaken::no) result = overtaken_answer(verdict);
  }
  if (metrics_) metrics_->auth_latency.observe(clock::now() - w->started);
  auto done = std::move(w->done);
  w->done = nullptr;  // the caller's closure may own the caller: break the cycle
  done(result);
}

// A valid answer that events overtook and that is not asked for again:
// refused when they revoked it, else (asked max_asks times) "unavailable".
auth_result http_auth_client::overtaken_answer(overtaken verdict) {
  if (verdict != overtaken::revoked) return unavailable("events kept overtaking the API server's answers");
  if (metrics_) metrics_->auth_overtaken_refused++;
  return invalid("revoked while being validated (an event overtook the answer)");
}

// The event stream and the validation answers travel on different
// connections: an event can be applied here while an answer from before it
// is still on its way, or posted and not yet handed over. A valid answer is
// then wrong if an event since names its session (revoked: refused) or its
// user (deleted: refused, ids are never reused; sessions revoked or ACL
// changed: the answer may be older or newer than the change, so the API
// server is asked again). A resync, or events no longer remembered, ask again.
http_auth_client::overtaken http_auth_client::overtaken_by_events(std::uint64_t as_of,
                                                                  const validation_cache::key& digest,
                                                                  const auth_result& result) const {
  if (events_seen_ == as_of) return overtaken::no;
  if (recent_events_.empty() || recent_events_.front().number > as_of + 1) return overtaken::ask_again;
  auto verdict = overtaken::no;
  for (const auto& mark : recent_events_) {
    if (mark.number <= as_of) continue;
    switch (mark.type) {
      case auth_event::kind::session_revoked:
        if (mark.digest == digest) return overtaken::revoked;
        break;
      case auth_event::kind::user_deleted:
        if (mark.user_id == result.user_id) return overtaken::revoked;
        break;
      case auth_event::kind::user_sessions_revoked:
      case auth_event::kind::acl_changed:
        if (mark.user_id == result.user_id) verdict = overtaken::ask_again;
        break;
      case auth_event::kind::resync: verdict = overtaken::ask_again; break;
    }
  }
  return verdict;
}

auth_client::pending_call http_auth_client::validate(std::string token, const std::string& remote_address,
                                                     completion done) {
  auto w = std::make_shared<waiter>();
  w->started = clock::now();
  w->done = std::move(done);
  w->client_alive = alive_;
  if (!plausible_token(token)) {
    deliver_later(w, unplausible());
    return w;
  }
  w->token = std::move(token);
  w->remote_address = remote_address;
  look_up(w);
  return w;
}

// Answered now from what is cached, or a token that cannot be a session; a
// miss is counted by the validate() that follows it.
std::optional<auth_result> http_auth_client::answer_at_once(std::string_view token) {
  std::optional<auth_result> answer;
  if (plausible_token(token)) {
    answer = cached(session_key_of(token), clock::now());
  } else {
    answer = unplausible();
  }
  if (answer && metrics_) metrics_->auth_latency.observe(clock::duration::zero());
  return answer;
}

// The cache's answer (kept or refusing), counted; nothing on a miss.
std::optional<auth_result> http_auth_client::cached(const validation_cache::key& key, clock::time_point now) {
  auto found = cache_.find(key, now);
  if (found.what == validation_cache::found::kind::miss) return std::nullopt;
  const bool hit = found.what == validation_cache::found::kind::hit;
  if (metrics_) (hit ? metrics_->auth_cache_hit : metrics_->auth_cache_negative_hit)++;
  found.result.detail = hit ? "cached answer" : "cached refusal";
  return std::move(found.result);
}

// The cache, a call under way for the same session, or a new call.
void http_auth_client::look_up(const std::shared_ptr<waiter>& w) {
  w->key = session_key_of(w->token);
  const auto& key = w->key;
  const auto now = clock::now();
  if (auto answer = cached(key, now)) return deliver_later(w, std::move(*answer));
  if (metrics_) metrics_->auth_cache_miss++;
  const auto digest = hex_of(key);  // a miss: the call and the logs name the session by it
  if (auto it = in_flight_.find(digest); it != in_flight_.end() && !it->second->cancelled) {
    it->second->waiters.push_back(w);
    w->call = it->second;
    return;
  }
  const auto before = breaker_.current();
  const auto opens_before = breaker_.opens();
  if (!breaker_.allow(now)) {
    auto result = unavailable("circuit breaker open: not calling the API server");
    if (auto stale = cache_.find_stale(digest, now)) {
      if (metrics_) metrics_->auth_cache_stale++;
      spdlog::warn("auth: API server unavailable (breaker open); session {} admitted from a stale answer",
                   short_digest(digest));
      result = *stale;
      result.detail = "stale answer used: circuit breaker open";
    }
    deliver_later(w, std::move(result));
    return;
  }
  note_breaker(before, opens_before);

  // Not make_shared: the queue holds it weakly, and a withdrawn call's memory
  // must go with it, not stay with the control block.
  auto f = std::shared_ptr<flight>(new flight(io_));
  f->owner = this;
  f->digest = digest;
  f->key = w->key;
  f->as_of = events_seen_;
  f->waiters.push_back(w);
  w->call = f;
  in_flight_[digest] = f;  // replaces a cancelled call that is still winding down
  nlohmann::json request{{"session", w->token}};
  if (!w->remote_address.empty()) request["remote_addr"] = w->remote_address;
  f->body = request.dump();
  f->deadline.expires_after(settings_.timeout);  // the wait for a connection included
  f->deadline.async_wait([this, alive = std::weak_ptr<bool>(alive_), weak = std::weak_ptr<flight>(f)](error_code ec) {
    if (ec || alive.expired()) return;
    if (auto held = weak.lock(); held && !held->finished) on_deadline(held);
  });
  start_or_queue(f);
}

void http_auth_client::start_or_queue(const std::shared_ptr<flight>& f) {
  if (calls_running_ < settings_.max_connections) {
    start_call(f);
  } else {
    f->queued = true;
    queued_.push_back(f);  // weakly: in_flight_ holds it until it ends
  }
}

void http_auth_client::start_call(const std::shared_ptr<flight>& f) {
  ++calls_running_;
  f->queued = false;
  f->started = clock::now();
  asio::co_spawn(io_, call(f), [this, f](std::exception_ptr error, auth_result result) {
    if (error) result = unavailable("internal error in the auth client");
    --calls_running_;
    if (result.outcome != auth_result::verdict::unavailable) note_call_duration(clock::now() - f->started);
    finish(f, std::move(result));
    start_queued();
  });
}

void http_auth_client::note_call_duration(clock::duration took) {
  typical_call_ = typical_call_ == clock::duration::zero() ? took : (4 * typical_call_ + took) / 5;
}

// The oldest waiting calls take the free connections. Each is popped before
// it starts: start_call may run it inline (co_spawn), up to its first wait.
// A call with less time left than the API server's answers take lately is
// not started: it would be cut by its deadline after costing the server a
// request nobody waits for, and under a herd every later call with it.
void http_auth_client::start_queued() {
  while (calls_running_ < settings_.max_connections && !queued_.empty()) {
    auto f = queued_.front().lock();
    queued_.pop_front();
    // Withdrawn (its last waiter left: ~waiter ended it), or timed out while waiting.
    if (!f || f->finished) continue;
    const auto left = f->deadline.expiry() - clock::now();
    if (left < typical_call_) {
      f->timed_out = true;
      if (metrics_) metrics_->auth_queue_timeouts++;
      using std::chrono::duration_cast;
      using std::chrono::milliseconds;
      finish(f, unavailable("API server timed out: its answers take ~" +
                            std::to_string(duration_cast<milliseconds>(typical_call_).count()) + " ms, " +
                            std::to_string(std::max<long long>(0, duration_cast<milliseconds>(left).count())) +
                            " ms were left after waiting for a connection"));
      continue;
    }
    start_call(f);
  }
}

// The last waiter of a call still waiting for a connection left: the call
// ends now (no verdict for the breaker), and the queue's weak entry with it.
void http_auth_client::withdraw(const std::shared_ptr<flight>& f) {
  finish(f, unavailable("cancelled: nobody waits"));
}

// A call in progress is aborted and ends through its coroutine; one still
// waiting for a connection ends here. That is no verdict on the API server
// (nothing was sent), so finish() leaves the circuit breaker alone.
void http_auth_client::on_deadline(const std::shared_ptr<flight>& f) {
  f->timed_out = true;
  if (!f->queued) {
    f->abort();
    return;
  }
  if (metrics_) metrics_->auth_queue_timeouts++;
  finish(f, unavailable("API server timed out: every one of the " + std::to_string(settings_.max_connections) +
                        " connections was busy"));
}

asio::awaitable<auth_result> http_auth_client::call(std::shared_ptr<flight> f) {
  const std::string& body = f->body;  // f, a parameter, keeps it
  bool retry = false;
  auto first = co_await attempt(f, body, true, retry);
  if (!retry) co_return first;
  // The pooled connection failed before an answer: the server had closed it.
  // Retry once on a fresh connection, never on another pooled one.
  spdlog::debug("auth: pooled connection failed ({}), retrying on a fresh one", first.detail);
  bool ignored = false;
  auto second = co_await attempt(f, body, false, ignored);
  co_return second;
}

asio::awaitable<auth_result> http_auth_client::attempt(std::shared_ptr<flight> f, const std::string& body,
                                                       bool pooled, bool& retry) {
  retry = false;
  auto connection = pooled ? take_pooled() : nullptr;
  const bool reused = connection != nullptr;
  auto failed = [&](const char* what, error_code ec) {
    if (f->timed_out) return unavailable("API server timed out");
    if (f->cancelled) return unavailable("cancelled: nobody waits");
    return unavailable(std::string("API server unreachable (") + what + "): " + ec.message());
  };
  if (!connection) {
    connection = http_connection::create(io_, settings_.tls.get());
    f->current = connection.get();
    const auto ec = co_await connection->connect(settings_.endpoint, f->resolver);
    f->current = nullptr;
    if (ec) co_return failed("connect", ec);
    // abort() closes the socket, and an async_connect that had not opened it
    // yet (its resolve already complete, the handler queued) would open a
    // new one: the deadline is checked again before anything is sent.
    if (f->timed_out || f->cancelled) co_return failed("connect", asio::error::operation_aborted);
  }
  http_request request{http::verb::post, settings_.endpoint.base_path + "/v1/sessions/validate", 11};
  request.set(http::field::host, settings_.endpoint.host);
  request.set(http::field::content_type, "application/json");
  request.set(http::field::user_agent, "mqtt-proxy");
  request.keep_alive(true);
  request.body() = body;
  request.prepare_payload();
  http_response response;
  f->current = connection.get();
  // An ACL is small; a huge answer is an error, not a reason to buffer.
  const auto ec = co_await connection->exchange(request, response, 64 * 1024);
  f->current = nullptr;
  if (ec) {
    retry = reused && !f->timed_out && !f->cancelled;
    co_return failed("exchange", ec);
  }
  if (response.result_int() == 200) {
    if (auto header = response.find(http::field::cache_control); header != response.end())
      f->max_age = parse_max_age(header->value());
  }
  auto result = parse_validation_response(response.result_int(), response.body());
  if (response.keep_alive() && !f->cancelled && !f->timed_out) put_back(std::move(connection));
  co_return result;
}

void http_auth_client::finish(const std::shared_ptr<flight>& f, auth_result result) {
  bool overtaken_too_often = false;
  if (!f->cancelled && result.outcome == auth_result::verdict::valid) {
    const auto verdict = overtaken_by_events(f->as_of, f->key, result);
    if (verdict == overtaken::ask_again && ask_again(f)) return;
    if (verdict != overtaken::no) {
      // Asked too often: the API server did answer, so no failure and no stale answer.
      overtaken_too_often = verdict == overtaken::ask_again;
      result = overtaken_answer(verdict);
    }
  }
  f->finished = true;
  f->deadline.cancel();
  if (auto it = in_flight_.find(f->digest); it != in_flight_.end() && it->second == f) in_flight_.erase(it);
  const auto now = clock::now();
  const auto before = breaker_.current();
  const auto opens_before = breaker_.opens();
  if (f->cancelled) {
    breaker_.on_abandoned();  // no verdict on the API server either way
    return;
  }
  if (overtaken_too_often) {
    breaker_.on_success();
  } else if (result.outcome == auth_result::verdict::unavailable) {
    if (f->queued) breaker_.on_abandoned();  // never sent: no verdict
    else breaker_.on_failure(now);
    if (auto stale = cache_.find_stale(f->digest, now)) {
      if (metrics_) metrics_->auth_cache_stale++;
      spdlog::warn("auth: {}; session {} admitted from a stale answer (degraded mode)", result.detail,
                   short_digest(f->digest));
      auto detail = "stale answer used: " + result.detail;
      result = *stale;
      result.detail = std::move(detail);
    }
  } else {
    breaker_.on_success();
    // Checked against the events since it was asked for (above): safe to keep.
    cache_.store(f->digest, result, f->max_age.value_or(std::chrono::seconds(0)), now);
  }
  note_breaker(before, opens_before);
  for (const auto& weak : f->waiters)
    if (auto w = weak.lock()) deliver_later(w, result);
}

void http_auth_client::note_breaker(circuit_breaker::state before, std::uint64_t opens_before) {
  const auto after = breaker_.current();
  const bool was_closed = before == circuit_breaker::state::closed;
  const bool is_closed = after == circuit_breaker::state::closed;
  if (metrics_) {
    if (was_closed && !is_closed) metrics_->auth_breaker_open++;
    if (!was_closed && is_closed) metrics_->auth_breaker_open--;
    metrics_->auth_breaker_opens += breaker_.opens() - opens_before;
  }
  if (breaker_.opens() != opens_before)
    spdlog::warn("auth: circuit breaker open: the API server failed {} times in a row; answering "
                 "auth_unavailable at once for {} ms, then probing",
                 settings_.breaker.failure_threshold, settings_.breaker.cool_down.count());
  else if (!was_closed && is_closed)
    spdlog::info("auth: circuit breaker closed: the API server answers again");
}

// The answer (valid) was overtaken by an event that may have changed it: the
// same call goes again, for every waiter, within its first deadline.
bool http_auth_client::ask_again(const std::shared_ptr<flight>& f) {
  if (f->asks >= max_asks || f->timed_out) return false;
  ++f->asks;
  if (metrics_) metrics_->auth_overtaken_asked_again++;
  const auto before = breaker_.current();
  const auto opens_before = breaker_.opens();
  breaker_.on_success();  // the API server did answer
  note_breaker(before, opens_before);
  f->as_of = events_seen_;
  f->max_age.reset();
  start_or_queue(f);
  return true;
}

void http_auth_client::apply(const auth_event& event) {
  cache_.apply(event);
  // Remembered for the answers under way or posted (overtaken_by_events):
  // one the event made wrong is neither used nor kept.
  event_mark mark;
  mark.number = ++events_seen_;
  mark.type = event.type;
  mark.user_id = event.user_id;
  if (event.type == auth_event::kind::session_revoked) mark.digest = validation_cache::key_of(event.session_digest);
  recent_events_.push_back(std::move(mark));
  if (recent_events_.size() > kept_events) recent_events_.pop_front();
}

// ------------------------------------------------------------------ the pool

std::unique_ptr<http_connection> http_auth_client::take_pooled() {
  const auto now = clock::now();
  while (!idle_.empty()) {
    auto connection = std::move(idle_.back());
    idle_.pop_back();
    if (now - connection->idle_since >= settings_.idle_timeout) continue;
    if (connection->unusable_when_idle()) {
      spdlog::debug("auth: dropping a pooled connection the API server has closed");
      continue;
    }
    return connection;
  }
  return nullptr;
}

void http_auth_client::put_back(std::unique_ptr<http_connection> connection) {
  if (idle_.size() >= settings_.max_idle_connections) return;
  connection->idle_since = clock::now();
  idle_.push_back(std::move(connection));
  arm_sweep();
}

void http_auth_client::prune_idle() {
  const auto now = clock::now();
  std::erase_if(idle_, [&](const auto& c) {
    return now - c->idle_since >= settings_.idle_timeout || c->unusable_when_idle();
  });
}

// Idle connections are closed by us before the server's keep-alive runs out,
// not left in CLOSE-WAIT until the next call.
void http_auth_client::arm_sweep() {
  if (sweep_armed_) return;
  if (idle_.empty()) return;
  sweep_armed_ = true;
  sweep_.expires_at(idle_.front()->idle_since + settings_.idle_timeout);
  sweep_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](error_code ec) {
    if (ec || alive.expired()) return;
    sweep_armed_ = false;
    prune_idle();
    if (!idle_.empty()) arm_sweep();
  });
}

}  // namespace proxy
