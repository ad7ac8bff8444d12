#include "http/cors.hpp"

#include <algorithm>
#include <cctype>

namespace auth {
namespace {

std::string lowercase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

void set(httplib::Response& response, const char* name, const std::string& value) {
  response.headers.erase(name);
  response.set_header(name, value);
}

// What the API answers to pages: the session endpoints (POST) and
// GET /healthz. The operator endpoints (PATCH, DELETE) are not offered to pages.
constexpr const char* allowed_methods = "GET, POST";
constexpr const char* allowed_headers = "Authorization, Content-Type";
constexpr const char* preflight_max_age = "600";  // seconds a browser may cache the preflight

}  // namespace

cors_policy::cors_policy(std::vector<std::string> origins) {
  for (auto& origin : origins) origins_.push_back(lowercase(std::move(origin)));
}

bool cors_policy::allows(const std::string& origin) const {
  return !origin.empty() && std::find(origins_.begin(), origins_.end(), lowercase(origin)) != origins_.end();
}

void cors_policy::decorate(const httplib::Request& request, httplib::Response& response) const {
  if (!enabled()) return;
  set(response, "Vary", "Origin");
  const auto origin = request.get_header_value("Origin");
  if (!allows(origin)) return;
  set(response, "Access-Control-Allow-Origin", origin);
  // So a page can say when to retry a throttled login (429) or a busy server (503).
  set(response, "Access-Control-Expose-Headers", "Retry-After");
}

void cors_policy::preflight(const httplib::Request& request, httplib::Response& response) const {
  const auto origin = request.get_header_value("Origin");
  if (origin.empty() || !request.has_header("Access-Control-Request-Method")) {
    response.status = 204;
    response.set_header("Allow", "GET, POST, PATCH, DELETE, OPTIONS");
    return;
  }
  if (!allows(origin)) {
    response.status = 403;
    response.set_content(R"({"error":"origin_not_allowed"})", "application/json");
    return;
  }
  response.status = 204;
  response.set_header("Access-Control-Allow-Methods", allowed_methods);
  response.set_header("Access-Control-Allow-Headers", allowed_headers);
  response.set_header("Access-Control-Max-Age", preflight_max_age);
}

bool cors_policy::is_valid_origin(const std::string& origin) {
  std::string rest;
  if (origin.starts_with("http://")) rest = origin.substr(7);
  else if (origin.starts_with("https://")) rest = origin.substr(8);
  else return false;
  if (rest.empty() || rest.front() == ':') return false;
  // A host name, an IPv4 address or a bracketed IPv6 address, then an optional port.
  return std::all_of(rest.begin(), rest.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']';
  });
}

}  // namespace auth
