// How a connection asks whether a session is valid. An interface so that the
// session logic does not care whether the answer comes over HTTP or a test.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "auth/auth_event.hpp"
#include "auth/auth_result.hpp"

namespace proxy {

class auth_client {
 public:
  using completion = std::function<void(const auth_result&)>;
  // Held by the caller while it waits. Dropping it withdraws the request:
  // `done` is not called, and an HTTP call nobody else waits for is cancelled
  // (a client that leaves does not keep the API server busy).
  using pending_call = std::shared_ptr<void>;

  virtual ~auth_client() = default;
  // Calls `done` exactly once, on the caller's io_context, unless the
  // returned handle is dropped first. Never from within validate(): always
  // from a handler of its own (posted), so the caller may act on the answer
  // at once. `done` may drop the handle. The token is taken by value: the
  // session's action hands its copy over instead of a fourth one (issue 14).
  [[nodiscard]] virtual pending_call validate(std::string token, const std::string& remote_address,
                                              completion done) = 0;
  // The answer when it needs no wait (a cached one, or a token that cannot
  // be a session), else nothing: then validate() asks. It calls nothing
  // back; the caller applies the answer where it chooses, within the
  // handler it asked from, so no event can come between the look-up and its
  // use. Saves the post, its turn of the event loop and the pending call of
  // validate() for every new session the cache answers (issue 14).
  virtual std::optional<auth_result> answer_at_once(std::string_view token) {
    (void)token;
    return std::nullopt;
  }
  // An event from the API server's stream: cached answers it makes wrong are
  // forgotten at once (a revoked session is never admitted from the cache).
  virtual void apply(const auth_event& event) { (void)event; }
};

// "abcd...wxyz": enough of a token to correlate logs, never enough to use it.
std::string redact(std::string_view secret);

// Lowercase hex SHA-256 of a session token: the form in which revocation
// events name a session, and the validation cache's key as text.
std::string session_digest(std::string_view token);
// The same SHA-256 as its 32 bytes, which is what the validation cache keys
// on: a cached answer needs no hex string made and parsed back (issue 14).
using session_key = std::array<std::uint8_t, 32>;
session_key session_key_of(std::string_view token);
std::string hex_of(const session_key& key);  // session_digest() of the same token

}  // namespace proxy
