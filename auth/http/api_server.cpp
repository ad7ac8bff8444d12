#include "http/api_server.hpp"

#include <spdlog/spdlog.h>

#include "crypto/secrets.hpp"
#include "mqtt/topic.hpp"
#include "mqtt/utf8.hpp"

namespace auth {
namespace {

using json = nlohmann::json;

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void reply(httplib::Response& response, int status, const json& body) {
  response.status = status;
  response.set_content(body.dump(), "application/json");
}

void error(httplib::Response& response, int status, const std::string& code, const std::string& detail = "") {
  json body{{"error", code}};
  if (!detail.empty()) body["detail"] = detail;
  reply(response, status, body);
}

// The JSON object of a request, or a 400 already written into the response.
std::optional<json> body_of(const httplib::Request& request, httplib::Response& response) {
  auto body = json::parse(request.body, nullptr, false);
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

std::optional<std::string> string_field(const json& body, const char* name, httplib::Response& response) {
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

std::size_t kdf_slot_count(std::size_t threads) { return std::max<std::size_t>(1, threads / 2); }

}  // namespace

bool is_valid_name(const std::string& name) {
  if (name.empty() || name.size() > 64 || mqtt::check_utf8(name)) return false;
  for (unsigned char c : name)
    if (c == '/' || c == '+' || c == '#' || c < 0x20 || c == 0x7F) return false;
  return true;
}

json acl_of(const user_record& user) {
  json publish = json::array({"private/" + user.name + "/#"});
  for (const auto& g : user.groups) publish.push_back("group/" + g + "/#");
  json subscribe = publish;
  for (const auto& f : user.publish) publish.push_back(f);
  for (const auto& f : user.subscribe) subscribe.push_back(f);
  return {{"publish", publish}, {"subscribe", subscribe}};
}

api_server::api_server(auth_store& store, api_settings settings)
    : store_(store),
      settings_(settings),
      throttle_(settings.max_login_failures, settings.throttle_window),
      kdf_slots_(static_cast<std::ptrdiff_t>(kdf_slot_count(settings.threads))),
      decoy_hash_(hash_password(new_session_token())) {
  const auto threads = settings_.threads;
  server_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server_.set_payload_max_length(settings_.max_body);
  // Headers and body go out in separate writes: without TCP_NODELAY each answer
  // waits for the peer's delayed ACK (about 40 ms).
  server_.set_tcp_nodelay(true);
  server_.set_keep_alive_max_count(1000);
  server_.set_read_timeout(10, 0);
  server_.set_write_timeout(10, 0);
  routes();
}

void api_server::routes() {
  server_.Post("/v1/login", [this](const auto& req, auto& res) { login(req, res); });
  server_.Post("/v1/sessions/validate", [this](const auto& req, auto& res) { validate(req, res); });
  server_.Delete(R"(/v1/sessions/([A-Za-z0-9_-]{1,256}))", [this](const auto& req, auto& res) { logout(req, res); });
  server_.Post(R"(/v1/sessions/([A-Za-z0-9_-]{1,256})/refresh)", [this](const auto& req, auto& res) { refresh(req, res); });
  server_.Get("/healthz", [this](const auto& req, auto& res) { health(req, res); });
  server_.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413) return error(res, 413, "body_too_large");
    if (res.status == 404) return error(res, 404, "not_found");
    if (res.status == 405) return error(res, 405, "method_not_allowed");
    error(res, res.status, "http_error");
  });
  server_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("request failed: {}", ex.what());
    }
    error(res, 500, "internal_error");
  });
}

void api_server::login(const httplib::Request& request, httplib::Response& response) {
  auto body = body_of(request, response);
  if (!body) return;
  auto username = string_field(*body, "username", response);
  if (!username) return;
  auto password = string_field(*body, "password", response);
  if (!password) return;

  const auto now = login_throttle::clock::now();
  const std::string user_key = "user:" + *username;
  const std::string addr_key = "addr:" + request.remote_addr;
  const auto wait = std::max(throttle_.retry_after(user_key, now), throttle_.retry_after(addr_key, now));
  if (wait.count() > 0) {
    response.set_header("Retry-After", std::to_string(wait.count()));
    spdlog::warn("login throttled user={} addr={}", *username, request.remote_addr);
    return error(response, 429, "too_many_attempts");
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
    throttle_.record_failure(user_key, now);
    throttle_.record_failure(addr_key, now);
    spdlog::info("login failed user={} addr={}", *username, request.remote_addr);
    return error(response, 401, "invalid_credentials");
  }
  throttle_.clear(user_key);
  const auto token = new_session_token();
  const auto issued = unix_now();
  store_.create_session(token_digest(token), user->id, issued, issued + settings_.session_ttl);
  spdlog::info("login ok user={} addr={}", user->name, request.remote_addr);
  reply(response, 200, {{"session", token}, {"user", user->name}, {"expires_in", settings_.session_ttl}});
}

void api_server::validate(const httplib::Request& request, httplib::Response& response) {
  auto body = body_of(request, response);
  if (!body) return;
  auto token = string_field(*body, "session", response);
  if (!token) return;
  const auto now = unix_now();
  auto session = store_.live_session(token_digest(*token), now);
  if (!session) return error(response, 401, "invalid_session");
  reply(response, 200,
        {{"user", session->user.name},
         {"groups", session->user.groups},
         {"acl", acl_of(session->user)},
         {"expires_in", session->expires_at - now}});
}

void api_server::logout(const httplib::Request& request, httplib::Response& response) {
  if (!store_.revoke_session(token_digest(request.matches[1].str()), unix_now()))
    return error(response, 401, "invalid_session");
  response.status = 204;
}

void api_server::refresh(const httplib::Request& request, httplib::Response& response) {
  const auto now = unix_now();
  if (!store_.extend_session(token_digest(request.matches[1].str()), now, now + settings_.session_ttl))
    return error(response, 401, "invalid_session");
  reply(response, 200, {{"expires_in", settings_.session_ttl}});
}

void api_server::health(const httplib::Request&, httplib::Response& response) {
  if (store_.healthy()) return reply(response, 200, {{"status", "ok"}});
  error(response, 503, "database_unavailable");
}

bool api_server::listen(const std::string& host, int port) { return server_.listen(host, port); }
bool api_server::bind(const std::string& host, int port) { return server_.bind_to_port(host, port); }
bool api_server::listen_after_bind() { return server_.listen_after_bind(); }
void api_server::stop() { server_.stop(); }

}  // namespace auth
