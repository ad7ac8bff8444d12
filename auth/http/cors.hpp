// CORS for the browser pages an operator names (auth-server serve
// --cors-origin ORIGIN, repeatable), so a web app on another origin can log in
// and validate its session [Fetch standard, "CORS protocol"].
//
// Only listed origins are echoed in Access-Control-Allow-Origin, never `*`,
// and never with Access-Control-Allow-Credentials: the API uses no cookies
// (the session travels in the body or an Authorization header set by the
// page), so a page must not get credentialed access either. Every answer
// carries `Vary: Origin` while CORS is configured, so a cache never serves one
// origin's answer to another.
//
// CORS is not access control: a refused origin's request is still answered
// (browsers only hide the answer from the page); logins from anywhere remain
// bounded by the login throttle.
#pragma once

#include <httplib.h>

#include <optional>
#include <string>
#include <vector>

namespace auth {

class cors_policy {
 public:
  explicit cors_policy(std::vector<std::string> origins = {});

  bool enabled() const { return !origins_.empty(); }
  // Whether a browser's Origin header names an allowed origin (ASCII case-insensitively).
  bool allows(const std::string& origin) const;
  // For every answer: Vary: Origin, and the request's own Origin echoed when allowed.
  void decorate(const httplib::Request& request, httplib::Response& response) const;
  // An OPTIONS request. A preflight (Origin + Access-Control-Request-Method)
  // from an allowed origin: 204 with the methods and headers the API takes;
  // from any other origin: 403 origin_not_allowed, without CORS headers.
  // Not a preflight: 204 with Allow.
  void preflight(const httplib::Request& request, httplib::Response& response) const;

  // scheme://host[:port] with scheme http or https, nothing after the
  // authority: what a browser sends in Origin. `*` and `null` are refused.
  static bool is_valid_origin(const std::string& origin);

 private:
  std::vector<std::string> origins_;  // lowercase
};

}  // namespace auth
