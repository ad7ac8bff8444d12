#include "http/api_server.hpp"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <thread>

#include <spdlog/spdlog.h>

#include "crypto/secrets.hpp"
#include "mqtt/topic.hpp"

namespace auth {
namespace {

using json = nlohmann::json;
using httplib::Request;
using httplib::Response;

constexpr std::size_t events_per_answer = 1000;
constexpr long default_wait = 25, max_wait = 55;  // seconds, GET /v1/events

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void reply(Response& response, int status, const json& body) {
  response.status = status;
  response.set_content(body.dump(), "application/json");
}

void error(Response& response, int status, const std::string& code, const std::string& detail = "") {
  json body{{"error", code}};
  if (!detail.empty()) body["detail"] = detail;
  reply(response, status, body);
}

void set_cache_control(Response& response, const std::string& value) {
  response.headers.erase("Cache-Control");
  response.set_header("Cache-Control", value);
}

void refuse_too_large(Response& response) {
  bounded_server::close_after_reply();
  response.headers.erase("Connection");
  response.set_header("Connection", "close");
  error(response, 413, "body_too_large");
}

// The body of a request, read through the content reader with a running
// count: nullopt (413 written, connection to be closed) past `max` bytes,
// chunked or not, before the rest is read.
std::optional<std::string> read_body(const Request& request, Response& response,
                                     const httplib::ContentReader& reader, std::size_t max) {
  const bool chunked = request.get_header_value("Transfer-Encoding").find("chunked") != std::string::npos;
  if (!chunked && !request.has_header("Content-Length")) return std::string();  // no body [RFC 9112 6.3]
  if (!chunked && request.get_header_value<std::uint64_t>("Content-Length") > max) {
    refuse_too_large(response);
    return std::nullopt;
  }
  std::string body;
  bool too_large = false;
  const bool ok = reader([&](const char* data, std::size_t size) {
    if (body.size() + size > max) {
      too_large = true;
      return false;
    }
    body.append(data, size);
    return true;
  });
  if (too_large || bounded_server::over_budget()) {
    refuse_too_large(response);
    return std::nullopt;
  }
  if (!ok) {
    bounded_server::close_after_reply();
    error(response, 400, "malformed_request", "the body could not be read");
    return std::nullopt;
  }
  return body;
}

using body_handler = std::function<void(const Request&, Response&, const std::string&)>;

httplib::Server::HandlerWithContentReader with_body(std::size_t max, body_handler handler) {
  return [max, handler = std::move(handler)](const Request& request, Response& response,
                                             const httplib::ContentReader& reader) {
    auto body = read_body(request, response, reader, max);
    if (body) handler(request, response, *body);
  };
}

// The JSON object of a request, or a 400 already written into the response.
std::optional<json> json_of(const std::string& text, Response& response) {
  auto body = json::parse(text, nullptr, false);
  if (body.is_discarded()) {
    error(response, 400, "malformed_json");
    return std::nullopt;
  }
  if (!body.is_object()) {
    error(response, 400, "malformed_request", "the body must be a JSON object");
    return std::nullopt;
  }
  return body;
}

std::optional<std::string> string_field(const json& body, const char* name, Response& response) {
  auto field = body.find(name);
  if (field == body.end()) {
    error(response, 400, "missing_field", std::string("'") + name + "' is required");
    return std::nullopt;
  }
  if (!field->is_string()) {
    error(response, 400, "wrong_type", std::string("'") + name + "' must be a string");
    return std::nullopt;
  }
  return field->get<std::string>();
}

std::optional<std::vector<std::string>> string_list(const json& value, const char* name, Response& response) {
  if (!value.is_array()) {
    error(response, 400, "wrong_type", std::string("'") + name + "' must be an array of strings");
    return std::nullopt;
  }
  std::vector<std::string> items;
  for (const auto& item : value) {
    if (!item.is_string()) {
      error(response, 400, "wrong_type", std::string("'") + name + "' must be an array of strings");
      return std::nullopt;
    }
    items.push_back(item.get<std::string>());
  }
  return items;
}

std::optional<long> number_param(const Request& request, const char* name, long max, Response& response) {
  const auto text = request.get_param_value(name);
  long value = 0;
  bool good = !text.empty() && text.size() <= 18;
  for (char c : text) {
    if (c < '0' || c > '9') good = false;
    else value = value * 10 + (c - '0');
  }
  if (!good || value > max) {
    error(response, 400, "malformed_request", std::string("'") + name + "' must be a number from 0 to " + std::to_string(max));
    return std::nullopt;
  }
  return value;
}

std::optional<std::string> bearer_of(const Request& request) {
  const auto header = request.get_header_value("Authorization");
  if (header.size() < 7 || strncasecmp(header.c_str(), "Bearer ", 7) != 0) return std::nullopt;
  auto token = header.substr(7);
  while (!token.empty() && token.front() == ' ') token.erase(token.begin());
  return token;
}

// Constant time in the token's content and length: compares SHA-256 digests.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned char da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(a.data()), a.size(), da);
  SHA256(reinterpret_cast<const unsigned char*>(b.data()), b.size(), db);
  return CRYPTO_memcmp(da, db, sizeof da) == 0;
}

json event_json(const event_record& e) {
  json out{{"seq", e.seq}, {"type", e.type}, {"user_id", std::to_string(e.user_id)}, {"user", e.user}};
  if (!e.session.empty()) out["session"] = e.session;
  if (!e.acl.empty()) out["acl"] = json::parse(e.acl, nullptr, false);
  return out;
}

std::size_t kdf_slot_count(std::size_t threads) { return std::max<std::size_t>(1, threads / 2); }
std::size_t quarter_of(std::size_t threads) { return std::max<std::size_t>(1, threads / 4); }

struct counted {
  explicit counted(std::atomic<std::size_t>& n) : n_(n) {}
  ~counted() { --n_; }
  std::atomic<std::size_t>& n_;
};

}  // namespace

api_server::api_server(auth_store& store, api_settings settings)
    : store_(store),
      settings_(std::move(settings)),
      throttle_(settings_.throttle),
      kdf_slots_(static_cast<std::ptrdiff_t>(kdf_slot_count(settings_.threads))),
      delay_slots_(static_cast<std::ptrdiff_t>(quarter_of(settings_.threads))),
      decoy_hash_(hash_password(new_session_token())),
      hub_(store, settings_.event_poll_interval),
      cors_(settings_.cors_origins),
      server_(settings_.connection) {
  if (settings_.max_long_polls == 0) settings_.max_long_polls = quarter_of(settings_.threads);
  const auto threads = settings_.threads;
  server_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server_.set_payload_max_length(settings_.max_body);
  // Headers and body go out in separate writes: without TCP_NODELAY each answer
  // waits for the peer's delayed ACK (about 40 ms).
  server_.set_tcp_nodelay(true);
  // Nothing here may be stored by a cache unless an answer says otherwise (validate).
  server_.set_default_headers({{"Cache-Control", "no-store"}});
  if (!settings_.console_dir.empty()) console_.emplace(settings_.console_dir);
  routes();
  browser_routes();
  hub_.start();
}

api_server::~api_server() { hub_.stop(); }

void api_server::routes() {
  const auto max = settings_.max_body;
  auto bind = [this](auto member) {
    return [this, member](const Request& req, Response& res, const std::string& body) { (this->*member)(req, res, body); };
  };
  server_.Post("/v1/login", with_body(max, bind(&api_server::login)));
  server_.Post("/v1/sessions/validate", with_body(max, bind(&api_server::validate)));
  server_.Post("/v1/sessions/revoke", with_body(max, bind(&api_server::revoke)));
  server_.Post("/v1/sessions/refresh", with_body(max, bind(&api_server::refresh)));
  // The old paths put the bearer secret in the URL, where access logs and
  // intermediaries record it: gone, and the session is left as it was.
  const auto gone = with_body(max, [](const Request&, Response& res, const std::string&) {
    error(res, 410, "gone",
          "sessions are no longer named in URLs: use POST /v1/sessions/revoke or POST /v1/sessions/refresh "
          "with the session in the body or an Authorization: Bearer header");
  });
  server_.Delete(R"(/v1/sessions/([^/]{1,512}))", gone);
  server_.Post(R"(/v1/sessions/([^/]{1,512})/refresh)", gone);
  server_.Get("/v1/events", [this](const Request& req, Response& res) { events(req, res); });
  server_.Patch(R"(/v1/users/([^/]{1,256}))", with_body(max, bind(&api_server::modify_user)));
  server_.Delete(R"(/v1/users/([^/]{1,256}))",
                 with_body(max, [this](const Request& req, Response& res, const std::string&) { delete_user(req, res); }));
  server_.Get(R"(/v1/users/([^/]{1,256}))", [this](const Request& req, Response& res) { get_user(req, res); });
  server_.Get("/healthz", [this](const Request& req, Response& res) { health(req, res); });
  server_.set_expect_100_continue_handler([max](const Request& req, Response& res) {
    if (req.has_header("Content-Length") && req.get_header_value<std::uint64_t>("Content-Length") > max) {
      refuse_too_large(res);
      return 413;
    }
    return 100;
  });
  server_.set_error_handler([](const Request&, Response& res) {
    if (bounded_server::over_budget() || res.status == 413) {
      res.body.clear();
      return refuse_too_large(res);
    }
    if (!res.body.empty()) return;
    if (res.status == 404) return error(res, 404, "not_found");
    if (res.status == 405) return error(res, 405, "method_not_allowed");
    error(res, res.status, "http_error");
  });
  server_.set_exception_handler([](const Request&, Response& res, std::exception_ptr e) {
    try {
      std::rethrow_exception(e);
    } catch (const pool_exhausted&) {
      res.set_header("Retry-After", "1");
      return error(res, 503, "busy");
    } catch (const std::exception& ex) {
      spdlog::error("request failed: {}", ex.what());
    }
    error(res, 500, "internal_error");
  });
}

void api_server::login(const Request& request, Response& response, const std::string& text) {
  auto body = json_of(text, response);
  if (!body) return;
  auto username = string_field(*body, "username", response);
  if (!username) return;
  auto password = string_field(*body, "password", response);
  if (!password) return;

  // The attempt is reserved before the password is checked, so parallel
  // guesses cannot all pass the check while the failures are still running.
  auto decision = throttle_.reserve(*username, request.remote_addr, login_throttle::clock::now());
  if (!decision.admitted) {
    response.set_header("Retry-After", std::to_string(decision.retry_after.count()));
    spdlog::warn("login throttled user={} addr={}", log_safe(*username), request.remote_addr);
    return error(response, 429, "too_many_attempts");
  }
  auto& ticket = decision.admitted;
  if (decision.delay.count() > 0) {
    // Many failures for this user from elsewhere: slow down, never lock out.
    if (!delay_slots_.try_acquire()) {
      response.set_header("Retry-After", "1");
      return error(response, 503, "busy");
    }
    std::this_thread::sleep_for(decision.delay);
    delay_slots_.release();
  }
  // The KDF is deliberately slow: cap how many threads it may occupy.
  if (!kdf_slots_.try_acquire()) {
    response.set_header("Retry-After", "1");
    return error(response, 503, "busy");
  }
  std::optional<user_record> user;
  bool good = false;
  try {
    user = store_.find_user(*username);
    good = verify_password(*password, user ? user->password_hash : decoy_hash_) && user.has_value();
  } catch (...) {
    kdf_slots_.release();
    throw;
  }
  kdf_slots_.release();
  if (!good) {
    ticket.failed(login_throttle::clock::now());
    spdlog::info("login failed user={} addr={}", log_safe(*username), request.remote_addr);
    return error(response, 401, "invalid_credentials");
  }
  ticket.succeeded();
  const auto token = new_session_token();
  const auto issued = unix_now();
  store_.create_session(token_digest(token), user->id, issued, issued + settings_.session_ttl);
  spdlog::info("login ok user={} addr={}", log_safe(user->name), request.remote_addr);
  reply(response, 200, {{"session", token}, {"user", user->name}, {"expires_in", settings_.session_ttl}});
}

void api_server::validate(const Request&, Response& response, const std::string& text) {
  auto body = json_of(text, response);
  if (!body) return;
  auto token = string_field(*body, "session", response);
  if (!token) return;
  const auto now = unix_now();
  auto session = store_.live_session(token_digest(*token), now);
  if (!session) return error(response, 401, "invalid_session");
  const auto expires_in = session->expires_at - now;
  set_cache_control(response, "private, max-age=" + std::to_string(std::min(expires_in, settings_.validate_max_age)));
  reply(response, 200,
        {{"user", session->user.name},
         {"user_id", std::to_string(session->user.id)},
         {"groups", session->user.groups},
         {"acl", acl_of(session->user)},
         {"expires_in", expires_in}});
}

std::optional<std::string> api_server::session_of(const Request& request, Response& response, const std::string& text) {
  if (auto bearer = bearer_of(request)) return bearer;
  auto body = json_of(text, response);
  if (!body) return std::nullopt;
  return string_field(*body, "session", response);
}

void api_server::revoke(const Request& request, Response& response, const std::string& text) {
  auto token = session_of(request, response, text);
  if (!token) return;
  if (!store_.revoke_session(token_digest(*token), unix_now())) return error(response, 401, "invalid_session");
  hub_.refresh();
  response.status = 204;
}

void api_server::refresh(const Request& request, Response& response, const std::string& text) {
  auto token = session_of(request, response, text);
  if (!token) return;
  const auto now = unix_now();
  if (!store_.extend_session(token_digest(*token), now, now + settings_.session_ttl))
    return error(response, 401, "invalid_session");
  reply(response, 200, {{"expires_in", settings_.session_ttl}});
}

bool api_server::authorized(const Request& request, Response& response) {
  if (settings_.service_token.empty()) return true;
  const auto bearer = bearer_of(request);
  if (bearer && same_secret(*bearer, settings_.service_token)) return true;
  response.set_header("WWW-Authenticate", "Bearer");
  error(response, 401, "unauthorized");
  return false;
}

bool api_server::operator_enabled(const Request& request, Response& response) {
  if (settings_.service_token.empty()) {
    error(response, 404, "not_found", "operator endpoints need auth-server serve --service-token-file");
    return false;
  }
  return authorized(request, response);
}

void api_server::events(const Request& request, Response& response) {
  if (!authorized(request, response)) return;
  std::optional<std::int64_t> after;
  if (request.has_param("after")) {
    auto value = number_param(request, "after", std::numeric_limits<long>::max() / 10, response);
    if (!value) return;
    after = *value;
  }
  long wait = default_wait;
  if (request.has_param("wait")) {
    auto value = number_param(request, "wait", max_wait, response);
    if (!value) return;
    wait = *value;
  }
  auto page = store_.events_after(after, events_per_answer);
  if (after && !page.reset && page.events.empty() && *after == page.newest && wait > 0) {
    // A long-poll holds a thread: at most max_long_polls at once, so
    // validations always find threads.
    if (++long_polls_ > settings_.max_long_polls) {
      --long_polls_;
      response.set_header("Retry-After", "5");
      return error(response, 503, "busy", "too many event long-polls");
    }
    counted guard(long_polls_);
    if (hub_.wait_past(*after, std::chrono::steady_clock::now() + std::chrono::seconds(wait)))
      page = store_.events_after(after, events_per_answer);
  }
  json list = json::array();
  for (const auto& e : page.events) list.push_back(event_json(e));
  std::int64_t next = page.newest;
  if (after && !page.reset) next = page.events.empty() ? *after : page.events.back().seq;
  reply(response, 200, {{"events", list}, {"next", next}, {"reset", page.reset}});
}

void api_server::modify_user(const Request& request, Response& response, const std::string& text) {
  if (!operator_enabled(request, response)) return;
  const auto name = request.matches[1].str();
  auto body = json_of(text, response);
  if (!body) return;
  user_changes changes;
  std::optional<std::string> password;
  for (const auto& [key, value] : body->items()) {
    if (key == "password") {
      if (!value.is_string() || value.get<std::string>().empty())
        return error(response, 400, "wrong_type", "'password' must be a non-empty string");
      password = value.get<std::string>();
    } else if (key == "groups" || key == "publish" || key == "subscribe") {
      auto list = string_list(value, key.c_str(), response);
      if (!list) return;
      for (const auto& item : *list) {
        const bool good = key == "groups" ? is_valid_name(item) : mqtt::topic::is_valid_filter(item);
        if (!good)
          return error(response, 400, "invalid_value",
                       key == "groups" ? std::string("group names: ") + name_rule : "'" + key + "' holds an invalid topic filter");
      }
      (key == "groups" ? changes.groups : key == "publish" ? changes.publish : changes.subscribe) = std::move(*list);
    } else {
      return error(response, 400, "unknown_field", "'" + key + "' is not a user field");
    }
  }
  if (!password && !changes.groups && !changes.publish && !changes.subscribe)
    return error(response, 400, "missing_field", "nothing to change");
  if (password) {
    if (!kdf_slots_.try_acquire()) {
      response.set_header("Retry-After", "1");
      return error(response, 503, "busy");
    }
    try {
      changes.password_hash = hash_password(*password);
    } catch (...) {
      kdf_slots_.release();
      throw;
    }
    kdf_slots_.release();
  }
  auto user = store_.modify_user(name, changes, unix_now());
  if (!user) return error(response, 404, "unknown_user");
  hub_.refresh();
  spdlog::info("operator changed user={} addr={}", log_safe(name), request.remote_addr);
  reply(response, 200,
        {{"user", user->name}, {"user_id", std::to_string(user->id)}, {"groups", user->groups}, {"acl", acl_of(*user)}});
}

void api_server::delete_user(const Request& request, Response& response) {
  if (!operator_enabled(request, response)) return;
  const auto name = request.matches[1].str();
  if (!store_.delete_user(name, unix_now())) return error(response, 404, "unknown_user");
  hub_.refresh();
  spdlog::info("operator deleted user={} addr={}", log_safe(name), request.remote_addr);
  response.status = 204;
}

// The proxy's GET /v1/explain asks here, so that it decides with the ACL a
// validation would hand a connection now: same fields, same acl_of.
void api_server::get_user(const Request& request, Response& response) {
  if (!operator_enabled(request, response)) return;
  const auto name = request.matches[1].str();
  auto user = store_.find_user(name);
  if (!user) return error(response, 404, "unknown_user");
  reply(response, 200,
        {{"user", user->name}, {"user_id", std::to_string(user->id)}, {"groups", user->groups}, {"acl", acl_of(*user)}});
}

void api_server::health(const Request&, Response& response) {
  if (store_.healthy()) return reply(response, 200, {{"status", "ok"}});
  error(response, 503, "database_unavailable");
}

void api_server::browser_routes() {
  if (cors_.enabled()) {
    server_.Options(".*", [this](const Request& req, Response& res) { cors_.preflight(req, res); });
    // Every answer, errors included, so a page can read why it was refused.
    server_.set_post_routing_handler([this](const Request& req, Response& res) { cors_.decorate(req, res); });
  }
  if (!console_) return;
  server_.Get("/console", [](const Request&, Response& res) { res.set_redirect("/console/", 301); });
  server_.Get(R"(/console/(.*))", [this](const Request& req, Response& res) { console(req, res); });
}

void api_server::console(const Request& request, Response& response) {
  auto file = console_->find(request.matches[1].str());
  if (!file) return error(response, 404, "not_found");
  // The page talks to this API and to the proxy's WebSocket listener, on any
  // host the operator configures; it loads nothing else and is never framed.
  // MQTT.js runs its keep-alive timer in a worker made from a blob: URL.
  response.set_header("Content-Security-Policy",
                      "default-src 'self'; connect-src 'self' http: https: ws: wss:; img-src 'self' data:; worker-src 'self' blob:; "
                      "frame-ancestors 'none'; base-uri 'none'; form-action 'none'");
  response.set_header("X-Content-Type-Options", "nosniff");
  response.set_header("Referrer-Policy", "no-referrer");
  response.set_content(std::move(file->body), file->content_type);
}

bool api_server::listen(const std::string& host, int port) { return bind(host, port) && listen_after_bind(); }
bool api_server::bind(const std::string& host, int port) { return server_.bind_with_backlog(host, port); }
bool api_server::listen_after_bind() { return server_.listen_after_bind(); }
void api_server::stop() {
  hub_.stop();  // wakes long-polls, so the thread pool can be joined
  server_.stop();
}

}  // namespace auth
