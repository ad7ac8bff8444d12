// Validates sessions with the API server: POST {base}/v1/sessions/validate.
// One instance per io_context (per worker thread), so it needs no locks.
//  - screening: a token that cannot be a session (binary, control
//    characters, over 4 KiB) is invalid without asking;
//  - cache: answers kept as the API server allows (validation_cache);
//  - coalescing: concurrent validations of one token share one HTTP call;
//  - breaker: after repeated failures, "unavailable" at once for a while;
//  - keep-alive: idle connections are pooled, checked before reuse (one the
//    server closed is readable: EOF) and never kept past idle_timeout, which
//    must stay below the server's keep-alive; a failure on a pooled
//    connection is retried once on a fresh one;
//  - one deadline per call covers resolve, connect, TLS, send and receive;
//  - dropping the pending_call withdraws the waiter; a call nobody waits for
//    is cancelled (its socket closed);
//  - an answer overtaken by an event is not handed on as it is: the event
//    stream and the answers travel apart, so a logout (or an ACL change) can
//    reach the proxy while a "valid" answer from before it is on its way or
//    waiting to be delivered. Such an answer is refused (the session itself
//    was revoked, or its user deleted) or asked for again (the user's
//    sessions or ACL changed, a resync); see overtaken_by_events.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "admin/metrics.hpp"
#include "auth/auth_client.hpp"
#include "auth/circuit_breaker.hpp"
#include "auth/http_connection.hpp"
#include "auth/validation_cache.hpp"

namespace proxy {

// Turns the API server's answer into an auth_result (pure, unit-tested).
// user_id falls back to the user name when the answer has none.
auth_result parse_validation_response(unsigned status, std::string_view body);

// The max-age of a Cache-Control header value; nullopt when the answer must
// not be cached (no header, no max-age, no-store, no-cache, malformed).
std::optional<std::chrono::seconds> parse_max_age(std::string_view cache_control);

// Longest token the proxy sends to the API server.
inline constexpr std::size_t max_token_size = 4096;
// Whether a token can be a session at all: non-empty, at most 4 KiB, UTF-8
// without control characters. Anything else is invalid without an HTTP call.
bool plausible_token(std::string_view token);

struct http_auth_settings {
  http_endpoint endpoint;
  std::chrono::milliseconds timeout{3'000};      // one deadline per call, everything included
  std::size_t max_idle_connections = 4;
  // Calls in progress at once (a connection each); more wait their turn,
  // within their deadline. Bounds the descriptors a burst of new sessions
  // takes, and what a herd of reconnecting clients asks of the API server.
  std::size_t max_connections = 16;
  std::chrono::milliseconds idle_timeout{4'000};  // below the server's keep-alive (cpp-httplib: 5 s)
  std::shared_ptr<boost::asio::ssl::context> tls;  // https: verifies the server (make_api_tls_context)
  validation_cache_settings cache;
  circuit_breaker_settings breaker;
};

class http_auth_client final : public auth_client {
 public:
  // counters: may be null (tests).
  http_auth_client(boost::asio::io_context& io, http_auth_settings settings, metrics* counters = nullptr);
  ~http_auth_client() override;

  pending_call validate(std::string token, const std::string& remote_address, completion done) override;
  std::optional<auth_result> answer_at_once(std::string_view token) override;
  void apply(const auth_event& event) override;

  std::size_t idle_connections() const { return idle_.size(); }

 private:
  struct waiter;
  struct flight;
  using clock = std::chrono::steady_clock;

  // What an event named, kept for a while (kept_events) with its number.
  struct event_mark {
    std::uint64_t number = 0;
    auth_event::kind type = auth_event::kind::resync;
    std::string user_id;
    validation_cache::key digest{};  // session_revoked
  };
  static constexpr std::size_t kept_events = 256;
  // How many times one validation is asked again because events overtook
  // its answers, before it is answered "unavailable" (the client retries).
  static constexpr int max_asks = 3;
  enum class overtaken { no, revoked, ask_again };
  // Whether events applied after `as_of` (events_seen_ then) make a valid
  // answer for the session with this digest wrong.
  overtaken overtaken_by_events(std::uint64_t as_of, const validation_cache::key& digest,
                                const auth_result& result) const;
  auth_result overtaken_answer(overtaken verdict);
  void look_up(const std::shared_ptr<waiter>& w);
  std::optional<auth_result> cached(const validation_cache::key& key, clock::time_point now);
  void hand_over(const std::shared_ptr<waiter>& w, auth_result& result);
  bool ask_again(const std::shared_ptr<flight>& f);

  void start_call(const std::shared_ptr<flight>& f);
  void start_or_queue(const std::shared_ptr<flight>& f);
  void start_queued();
  void note_call_duration(clock::duration took);
  void on_deadline(const std::shared_ptr<flight>& f);
  void withdraw(const std::shared_ptr<flight>& f);
  boost::asio::awaitable<auth_result> call(std::shared_ptr<flight> f);
  boost::asio::awaitable<auth_result> attempt(std::shared_ptr<flight> f, const std::string& body, bool pooled,
                                              bool& retry);
  void finish(const std::shared_ptr<flight>& f, auth_result result);
  void deliver_later(const std::shared_ptr<waiter>& w, auth_result result);
  std::unique_ptr<http_connection> take_pooled();
  void put_back(std::unique_ptr<http_connection> connection);
  void prune_idle();
  void arm_sweep();
  void note_breaker(circuit_breaker::state before, std::uint64_t opens_before);

  boost::asio::io_context& io_;
  http_auth_settings settings_;
  metrics* metrics_;
  validation_cache cache_;
  circuit_breaker breaker_;
  std::vector<std::unique_ptr<http_connection>> idle_;
  boost::asio::steady_timer sweep_;
  bool sweep_armed_ = false;
  std::unordered_map<std::string, std::shared_ptr<flight>> in_flight_;  // digest -> call
  std::size_t calls_running_ = 0;                 // at most settings_.max_connections
  std::deque<std::weak_ptr<flight>> queued_;      // calls waiting for one of them, oldest first
  clock::duration typical_call_{0};               // moving average of answered calls' durations
  std::uint64_t events_seen_ = 0;          // events applied so far
  std::deque<event_mark> recent_events_;  // the last kept_events of them
  std::shared_ptr<bool> alive_;  // waiters outlive the client at shutdown
};

}  // namespace proxy
