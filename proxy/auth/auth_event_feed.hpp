// The API server's event stream, consumed by long-polling
// GET {base}/v1/events?after=N&wait=S (auth/API.md). One per process, on
// worker 0's io_context; every event goes to `on_event` in order. A `reset`
// answer (the proxy missed events that are gone) or a stream that goes
// backwards becomes one auth_event{resync}. Starts "from now" (no `after`),
// reconnects with capped exponential backoff, stop() ends it at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>

#include "admin/metrics.hpp"
#include "auth/auth_event.hpp"
#include "auth/http_connection.hpp"

namespace proxy {

// One answer of GET /v1/events (pure, unit-tested).
struct event_batch {
  enum class status { ok, not_found, unauthorized, error };
  status what = status::error;
  std::string error;  // why, for logs
  std::vector<auth_event> events;  // known kinds, well-formed, in order
  std::uint64_t next = 0;
  bool reset = false;
  // An event of a known kind was malformed or out of order: the safe
  // reaction is to re-validate everything (a resync), not to skip it.
  bool damaged = false;
};
event_batch parse_event_batch(unsigned status, std::string_view body);

// Where the feed stands in the stream, and what a batch means for it (pure,
// unit-tested): the first answer only sets the position ("from now"); events
// already seen are skipped; a reset, a damaged batch or a `next` that goes
// backwards (another database) becomes one resync. Event seqs need not be
// consecutive (the contract promises strictly increasing, not gapless).
class event_sequencer {
 public:
  // The events to deliver, in order.
  std::vector<auth_event> accept(const event_batch& batch);
  const std::optional<std::uint64_t>& after() const { return after_; }

 private:
  std::optional<std::uint64_t> after_;
};

struct auth_event_feed_settings {
  http_endpoint endpoint;
  std::shared_ptr<boost::asio::ssl::context> tls;  // https
  std::string service_token;                        // Bearer; empty: none sent
  std::chrono::seconds wait{25};                    // long-poll length asked of the server
  std::chrono::milliseconds backoff_min{250};
  std::chrono::milliseconds backoff_max{5'000};  // revocations wait for the stream: come back soon
  std::chrono::milliseconds not_found_retry{60'000};  // the API server has no event stream
};

class auth_event_feed {
 public:
  using handler = std::function<void(const auth_event&)>;
  auth_event_feed(boost::asio::io_context& io, auth_event_feed_settings settings, metrics* counters,
                  handler on_event);
  ~auth_event_feed();
  auth_event_feed(const auth_event_feed&) = delete;
  auth_event_feed& operator=(const auth_event_feed&) = delete;

  void start();
  void stop();

  struct state;  // shared with the running coroutine

 private:
  std::shared_ptr<state> state_;
};

}  // namespace proxy
