#include "admin/operator_api.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <ctime>
#include <limits>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "auth/http_auth_client.hpp"
#include "mqtt/topic.hpp"
#include "mqtt/utf8.hpp"
#include "net/client_connection.hpp"
#include "net/log_field.hpp"

namespace proxy {

// GCC 12 reports a false -Wmismatched-new-delete for this file's coroutine
// frames (asio's frame allocator has a matching sized delete); silenced in
// this file only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace asio = boost::asio;
namespace http = boost::beast::http;
using nlohmann::json;

namespace {

constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t max_target = 4096;      // longer targets: 414
constexpr std::size_t max_parameters = 16;
constexpr std::size_t max_name = 256;         // user names and client ids in a query
// GET /v1/connections pages: a listing of every client of a large proxy
// would be one huge answer, and hold each worker while it copies them all.
constexpr std::size_t default_page = 1000;
constexpr std::size_t max_page = 10000;

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> percent_decode(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      const int hi = hex_digit(text[i + 1]), lo = hex_digit(text[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

std::string percent_encode(std::string_view text) {
  static const char* const hex = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// Client-chosen strings can be any bytes: invalid UTF-8 is replaced, not thrown on.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n"; }

operator_api::response answer(const operator_api::request& req, http::status status, const json& body) {
  operator_api::response res{status, req.version()};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  res.body() = dump(body);
  return res;
}

operator_api::response error(const operator_api::request& req, http::status status, std::string code,
                             std::string detail) {
  return answer(req, status, json{{"error", std::move(code)}, {"detail", std::move(detail)}});
}

std::string iso_time(std::chrono::system_clock::time_point t) {
  const auto seconds = std::chrono::system_clock::to_time_t(t);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

json to_json(const connection_snapshot& s) {
  return json{{"id", s.id},
              {"user", s.user},
              {"user_id", s.user_id},
              {"client_id", s.client_id},
              {"upstream_client_id", s.upstream_client_id},
              {"remote_address", s.remote_address},
              {"transport", s.transport},
              {"state", s.state},
              {"acl_mode", s.acl_mode},
              {"since", iso_time(s.since)},
              {"since_unix", std::chrono::duration_cast<std::chrono::seconds>(s.since.time_since_epoch()).count()},
              {"subscriptions", s.subscriptions},
              {"subscription_count", s.subscription_count},
              {"bytes_from_client", s.bytes_from_client},
              {"bytes_to_client", s.bytes_to_client}};
}

// One worker's part of a page: how many of its connections match, and the
// snapshots of those at match positions [skip, skip + take). Only the page is
// copied, so listing a worker with 100,000 clients holds its thread for a
// count, not for 100,000 snapshots.
struct worker_page {
  std::size_t matched = 0;
  std::size_t following = 0;  // cursor paging: matched with an id after the cursor
  std::vector<connection_snapshot> snapshots;
};

bool listed(const client_connection& c, const std::string& user) {
  return c.state() < client_connection::lifecycle::closing && (user.empty() || c.user() == user);
}

// These run on a worker's own thread (co_spawn onto its io_context).
asio::awaitable<worker_page> snapshots_on(connection_registry* registry, std::string user, std::size_t skip,
                                          std::size_t take) {
  worker_page page;
  registry->for_each([&](client_connection& c) {
    if (!listed(c, user)) return;
    const std::size_t position = page.matched++;
    if (position >= skip && position - skip < take) page.snapshots.push_back(c.snapshot());
  });
  co_return page;
}

// Cursor paging: the first `take` matching connections with after < id <
// below. The registry lists a worker's connections in id order, so these are
// its smallest ids past the cursor; `below` spares copying those that the
// workers asked before already beat.
asio::awaitable<worker_page> snapshots_after_on(connection_registry* registry, std::string user,
                                                std::uint64_t after, std::uint64_t below, std::size_t take) {
  worker_page page;
  registry->for_each([&](client_connection& c) {
    if (!listed(c, user)) return;
    ++page.matched;
    if (c.id() <= after) return;
    ++page.following;
    if (c.id() < below && page.snapshots.size() < take) page.snapshots.push_back(c.snapshot());
  });
  co_return page;
}

// What a kick matches: each given field must match (an empty one matches all).
struct kick_target {
  std::string user;
  std::string client_id;
  std::uint64_t id = 0;
};

asio::awaitable<std::size_t> kick_on(connection_registry* registry, kick_target target) {
  std::size_t kicked = 0;
  // for_each iterates a snapshot: kick() may end the connection inline.
  registry->for_each([&](client_connection& c) {
    if (c.state() >= client_connection::lifecycle::closing) return;
    if (target.id != 0 && c.id() != target.id) return;
    const auto s = c.snapshot();
    if (!target.user.empty() && s.user != target.user) return;
    if (!target.client_id.empty() && s.client_id != target.client_id) return;
    spdlog::info("operator kick id={} remote={} client_id={} user={}", s.id, s.remote_address, log_field(s.client_id),
                 s.user.empty() ? "-" : log_field(s.user));
    c.kick();
    ++kicked;
  });
  co_return kicked;
}

// A user name or client id from the query: present, bounded, printable UTF-8.
std::optional<std::string> name_param(const std::map<std::string, std::string>& query, const std::string& key) {
  const auto it = query.find(key);
  if (it == query.end()) return std::nullopt;
  return it->second;
}

// A count from the query: `fallback` when absent, std::nullopt when not a
// decimal number within [0, most].
std::optional<std::size_t> count_param(const std::map<std::string, std::string>& query, const std::string& key,
                                       std::size_t fallback, std::uint64_t most) {
  const auto it = query.find(key);
  if (it == query.end()) return fallback;
  std::uint64_t value = 0;
  const auto& text = it->second;
  const auto [rest, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc{} || rest != text.data() + text.size() || value > most) return std::nullopt;
  return static_cast<std::size_t>(value);
}

bool plausible_name(const std::string& name) {
  if (name.empty() || name.size() > max_name || mqtt::check_utf8(name)) return false;
  return std::none_of(name.begin(), name.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; });
}

struct user_call {
  explicit user_call(asio::io_context& io) : resolver(io), deadline(io) {}
  asio::ip::tcp::resolver resolver;
  asio::steady_timer deadline;
  std::unique_ptr<http_connection> connection;
  void abort() {
    resolver.cancel();
    if (connection) connection->abort();
  }
};

}  // namespace

std::optional<std::map<std::string, std::string>> parse_query(std::string_view query) {
  std::map<std::string, std::string> out;
  std::size_t count = 0;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    if (++count > max_parameters) return std::nullopt;
    const auto eq = pair.find('=');
    auto key = percent_decode(pair.substr(0, eq));
    auto value = percent_decode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1));
    if (!key || !value || key->empty()) return std::nullopt;
    // Repeated keys are ambiguous (which user?): refused rather than guessed.
    if (!out.emplace(std::move(*key), std::move(*value)).second) return std::nullopt;
  }
  return out;
}

operator_api::operator_api(asio::io_context& io, operator_settings settings, std::vector<operator_worker> workers)
    : io_(io), settings_(std::move(settings)), workers_(std::move(workers)) {}

bool operator_api::handles(std::string_view target) { return target.starts_with("/v1/") || target == "/v1"; }

void operator_api::log_state() const {
  if (settings_.token.empty())
    spdlog::warn("operator endpoints (/v1/connections, /v1/explain) are off: they answer 403 until [admin] "
                 "token_file (--admin-token-file) names a Bearer token");
  else
    spdlog::info("operator endpoints on the admin port: Bearer token required");
  if (!settings_.token.empty() && settings_.service_token.empty())
    spdlog::warn("GET /v1/explain asks the API server for users without a service token "
                 "([auth] service_token_file): auth-server will answer 404");
}

bool operator_api::authorized(const request& req) const {
  const auto header = req[http::field::authorization];
  constexpr std::string_view scheme = "Bearer ";
  if (header.size() <= scheme.size() || !std::equal(scheme.begin(), scheme.end(), header.begin(), [](char a, char b) {
        return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
      }))
    return false;
  const auto given = header.substr(scheme.size());
  // Constant time: the comparison does not tell how much of a guess was right.
  return given.size() == settings_.token.size() &&
         CRYPTO_memcmp(given.data(), settings_.token.data(), given.size()) == 0;
}

asio::awaitable<operator_api::response> operator_api::serve(const request& req) {
  // Each answer is a local, co_returned plainly (GCC 12: see docs/STYLE.md).
  auto res = check(req);
  if (res) {
    auto refused = std::move(*res);
    co_return refused;
  }
  const std::string_view target = req.target();
  const auto mark = target.find('?');
  const auto path = target.substr(0, mark);
  auto query = parse_query(mark == std::string_view::npos ? std::string_view{} : target.substr(mark + 1));
  const bool get = req.method() == http::verb::get, post = req.method() == http::verb::post;
  response out;
  if (!query) {
    out = error(req, http::status::bad_request, "malformed_query", "bad %-escape, repeated or too many parameters");
  } else if (path == "/v1/connections" && get) {
    auto answered = co_await list(req, std::move(*query));
    out = std::move(answered);
  } else if (path == "/v1/connections/kick" && post) {
    auto answered = co_await kick(req, std::move(*query));
    out = std::move(answered);
  } else if (path == "/v1/explain" && get) {
    auto answered = co_await explain(req, std::move(*query));
    out = std::move(answered);
  } else if (path == "/v1/connections" || path == "/v1/explain") {
    out = error(req, http::status::method_not_allowed, "method_not_allowed", "GET only");
  } else if (path == "/v1/connections/kick") {
    out = error(req, http::status::method_not_allowed, "method_not_allowed", "POST only");
  } else {
    out = error(req, http::status::not_found, "not_found", "no such operator endpoint");
  }
  co_return out;
}

// Size, then whether the endpoints are on, then the token: an answer when the
// request goes no further.
std::optional<operator_api::response> operator_api::check(const request& req) const {
  if (req.target().size() > max_target)
    return error(req, http::status::uri_too_long, "uri_too_long", "target over 4096 bytes");
  if (settings_.token.empty())
    return error(req, http::status::forbidden, "operator_endpoints_off",
                 "no operator token configured: set [admin] token_file (or --admin-token-file)");
  if (authorized(req)) return std::nullopt;
  auto res = error(req, http::status::unauthorized, "unauthorized", "Authorization: Bearer <admin token> required");
  res.set(http::field::www_authenticate, "Bearer");
  return res;
}

asio::awaitable<operator_api::response> operator_api::list(const request& req, std::map<std::string, std::string> query) {
  std::string user;
  if (auto u = name_param(query, "user")) user = *u;
  response out;
  if (query.contains("user") && !plausible_name(user)) {
    out = error(req, http::status::bad_request, "invalid_value", "'user' must be 1-256 printable UTF-8 bytes");
    co_return out;
  }
  constexpr std::uint64_t most = std::numeric_limits<std::int64_t>::max();
  const auto limit = count_param(query, "limit", default_page, max_page);
  const auto offset = count_param(query, "offset", 0, most);
  const auto after = count_param(query, "after", 0, most);
  if (!limit || *limit == 0 || !offset || !after) {
    out = error(req, http::status::bad_request, "invalid_value",
                "'limit' must be 1-" + std::to_string(max_page) + ", 'offset' and 'after' counts (0 or more)");
    co_return out;
  }
  // Two orders cannot make one page: refused rather than one silently ignored.
  if (query.contains("after") && query.contains("offset")) {
    out = error(req, http::status::bad_request, "conflicting_parameters",
                "'after' (cursor paging, in id order) and 'offset' do not combine");
    co_return out;
  }
  if (query.contains("after")) {
    auto body = co_await page_after(user, *limit, *after);
    out = answer(req, http::status::ok, body);
  } else {
    auto body = co_await page_by_offset(user, *limit, *offset);
    out = answer(req, http::status::ok, body);
  }
  co_return out;
}

// Offset paging, worker by worker: connections that come and go on the
// workers before the offset shift it, so a client may be skipped or repeated
// (README). Kept for the clients that use it; `after` does not have the race.
asio::awaitable<json> operator_api::page_by_offset(std::string user, std::size_t limit, std::size_t offset) {
  json list = json::array();
  std::size_t total = 0;
  for (const auto& w : workers_) {
    // Gathered on the worker's own thread; the registry is touched nowhere else.
    const std::size_t skip = offset > total ? offset - total : 0;
    const std::size_t take = limit - list.size();
    auto task = snapshots_on(w.registry, user, skip, take);
    auto [failure, part] = co_await asio::co_spawn(w.io->get_executor(), std::move(task), as_tuple_awaitable);
    if (failure) continue;
    total += part.matched;
    for (const auto& s : part.snapshots) list.push_back(to_json(s));
  }
  const auto count = list.size();
  json body{{"connections", std::move(list)}, {"count", count}, {"total", total}, {"offset", offset}};
  if (offset + count < total) body["next_offset"] = offset + count;
  co_return body;
}

// Cursor paging: the `limit` smallest ids past `after`, from all workers. Ids
// never repeat and a connection keeps its own, so one that stays open is on
// exactly one page of a walk from after=0, whoever comes and goes meanwhile.
asio::awaitable<json> operator_api::page_after(std::string user, std::size_t limit, std::uint64_t after) {
  std::vector<connection_snapshot> page;
  std::size_t total = 0, following = 0;
  for (const auto& w : workers_) {
    // Once the page is full, a worker need only copy ids below its last one.
    const std::uint64_t below = page.size() == limit ? page.back().id : std::numeric_limits<std::uint64_t>::max();
    auto task = snapshots_after_on(w.registry, user, after, below, limit);
    auto [failure, part] = co_await asio::co_spawn(w.io->get_executor(), std::move(task), as_tuple_awaitable);
    if (failure) continue;
    total += part.matched;
    following += part.following;
    const auto middle = page.insert(page.end(), std::make_move_iterator(part.snapshots.begin()),
                                    std::make_move_iterator(part.snapshots.end()));
    std::inplace_merge(page.begin(), middle, page.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    if (page.size() > limit) page.resize(limit);
  }
  json list = json::array();
  for (const auto& s : page) list.push_back(to_json(s));
  json body{{"connections", std::move(list)}, {"count", page.size()}, {"total", total}, {"after", after}};
  if (following > page.size() && !page.empty()) body["next_after"] = page.back().id;
  co_return body;
}

asio::awaitable<operator_api::response> operator_api::kick(const request& req, std::map<std::string, std::string> query) {
  const auto user = name_param(query, "user");
  const auto client_id = name_param(query, "client_id");
  const auto id = count_param(query, "id", 0, std::numeric_limits<std::int64_t>::max());
  response out;
  if (!user && !client_id && !query.contains("id")) {
    out = error(req, http::status::bad_request, "missing_field", "kick needs ?user=NAME, ?client_id=ID and/or ?id=N");
    co_return out;
  }
  if ((user && !plausible_name(*user)) || (client_id && (client_id->empty() || client_id->size() > 65535))) {
    out = error(req, http::status::bad_request, "invalid_value", "'user' or 'client_id' is empty or too long");
    co_return out;
  }
  if (!id || (query.contains("id") && *id == 0)) {
    out = error(req, http::status::bad_request, "invalid_value", "'id' must be a connection's id (1 or more)");
    co_return out;
  }
  std::size_t kicked = 0;
  for (const auto& w : workers_) {
    auto task = kick_on(w.registry, kick_target{user.value_or(""), client_id.value_or(""), *id});
    auto [failure, n] = co_await asio::co_spawn(w.io->get_executor(), std::move(task), as_tuple_awaitable);
    if (!failure) kicked += n;
  }
  spdlog::info("operator kick user={} client_id={} id={}: {} connections", user ? log_field(*user) : "-",
               client_id ? log_field(*client_id) : "-", *id, kicked);
  if (kicked == 0) out = answer(req, http::status::not_found, json{{"error", "no_connection"}, {"kicked", 0}});
  else out = answer(req, http::status::ok, json{{"kicked", kicked}});
  co_return out;
}

asio::awaitable<std::pair<unsigned, std::string>> operator_api::fetch_user(std::string name) {
  auto call = std::make_shared<user_call>(io_);
  std::pair<unsigned, std::string> out{0, {}};
  call->deadline.expires_after(settings_.auth_timeout);
  auto on_deadline = [weak = std::weak_ptr<user_call>(call)](boost::system::error_code ec) {
    if (ec) return;
    if (auto held = weak.lock()) held->abort();
  };
  call->deadline.async_wait(on_deadline);
  call->connection = http_connection::create(io_, settings_.auth_tls.get());
  const auto connect_error = co_await call->connection->connect(settings_.auth, call->resolver);
  if (connect_error) {
    call->deadline.cancel();
    out.second = connect_error.message();
    co_return out;
  }
  http_request request{http::verb::get, settings_.auth.base_path + "/v1/users/" + percent_encode(name), 11};
  request.set(http::field::host, settings_.auth.host);
  request.set(http::field::user_agent, "mqtt-proxy");
  request.set(http::field::accept, "application/json");
  if (!settings_.service_token.empty()) request.set(http::field::authorization, "Bearer " + settings_.service_token);
  request.keep_alive(false);
  http_response response;
  const auto exchange_error = co_await call->connection->exchange(request, response, 1024 * 1024);
  call->deadline.cancel();
  call->connection->abort();
  if (exchange_error) {
    out.second = exchange_error.message();
  } else {
    out = {response.result_int(), std::move(response.body())};
  }
  co_return out;
}

// What explain's query asks, checked: an error answer when it cannot be asked.
std::optional<operator_api::response> operator_api::check_explain(const request& req,
                                                                  const std::map<std::string, std::string>& query) const {
  const auto user = name_param(query, "user");
  const auto action_text = name_param(query, "action");
  const auto topic = name_param(query, "topic");
  if (!user || !action_text || !topic)
    return error(req, http::status::bad_request, "missing_field", "explain needs user, action and topic");
  if (!plausible_name(*user))
    return error(req, http::status::bad_request, "invalid_value", "'user' must be 1-256 printable UTF-8 bytes");
  const auto action = parse_acl_action(*action_text);
  if (!action)
    return error(req, http::status::bad_request, "invalid_value", "'action' must be publish, subscribe or receive");
  if (topic->empty() || topic->size() > 65535 || mqtt::check_utf8(*topic))
    return error(req, http::status::bad_request, "invalid_value", "'topic' must be 1-65535 bytes of UTF-8");
  if (*action != acl_action::subscribe && !mqtt::topic::is_valid_name(*topic))
    return error(req, http::status::bad_request, "invalid_value", "a topic name (publish, receive) has no wildcards");
  const auto listener = name_param(query, "listener");
  if (listener && !settings_.listener_modes.contains(*listener)) {
    std::string enabled;
    for (const auto& [name, mode] : settings_.listener_modes) enabled += (enabled.empty() ? "" : ", ") + name;
    return error(req, http::status::bad_request, "unknown_listener",
                 "no enabled listener by that name (tcp, tls, ws, wss as in [listeners.NAME]); enabled: " + enabled);
  }
  return std::nullopt;
}

asio::awaitable<operator_api::response> operator_api::explain(const request& req, std::map<std::string, std::string> query) {
  response out;
  if (auto refused = check_explain(req, query)) {
    out = std::move(*refused);
    co_return out;
  }
  const auto user = query.at("user");
  const auto action = *parse_acl_action(query.at("action"));
  const auto topic = query.at("topic");
  const auto client_id = name_param(query, "client_id").value_or("");
  const auto listener = name_param(query, "listener");
  auto fetched = co_await fetch_user(user);
  const auto& [status, body] = fetched;
  if (status == 404) {
    out = error(req, http::status::not_found, "unknown_user", "the API server knows no such user");
    co_return out;
  }
  // Parsed exactly as a validation answer is (same function, same filters dropped).
  const auto parsed = parse_validation_response(status, body);
  if (status != 200 || parsed.outcome != auth_result::verdict::valid) {
    out = error(req, http::status::bad_gateway, "api_unavailable",
                status == 0 ? "API server unreachable: " + body
                            : "API server answered " + std::to_string(status) + ": " + parsed.detail);
    co_return out;
  }
  out = answer(req, http::status::ok, explanation_json(parsed, action, topic, client_id, listener));
  co_return out;
}

json operator_api::explanation_json(const auth_result& parsed, acl_action action, const std::string& topic,
                                    const std::string& client_id, const std::optional<std::string>& listener) const {
  const auto e = proxy::explain(*parsed.permissions, settings_.templates, parsed.user, client_id, action, topic);
  json out{{"user", parsed.user},
           {"user_id", parsed.user_id},
           {"action", to_string(action)},
           {"topic", topic},
           {"client_id", client_id},
           {"decision", e.decision.allowed ? "allow" : "deny"},
           {"allowed", e.decision.allowed},
           {"why", e.decision.why},
           {"acl", {{"publish", parsed.permissions->publish}, {"subscribe", parsed.permissions->subscribe}}},
           {"dropped_templates", e.dropped_templates}};
  add_acl_mode(out, listener);
  if (e.decision.rule) {
    out["rule"] = {{"filter", e.rule}, {"origin", e.origin}, {"index", *e.decision.rule}};
    if (!e.pattern.empty()) out["rule"]["template"] = e.pattern;
  } else {
    out["rule"] = nullptr;
  }
  return out;
}

// Whether the decision is enforced: the listener's mode when one is named,
// else the global one and the listeners that override it ([listeners.ws]
// acl_mode = "report"), so an `enforced: true` does not hide a listener that
// lets everything through.
void operator_api::add_acl_mode(json& out, const std::optional<std::string>& listener) const {
  const auto mode = listener ? settings_.listener_modes.at(*listener) : settings_.mode;
  out["acl_mode"] = to_string(mode);
  out["enforced"] = mode == acl_mode::enforce;
  if (listener) {
    out["listener"] = *listener;
    return;
  }
  json differing = json::object();
  for (const auto& [name, own] : settings_.listener_modes)
    if (own != settings_.mode) differing[name] = to_string(own);
  out["listener_modes"] = std::move(differing);
}

#pragma GCC diagnostic pop

}  // namespace proxy
