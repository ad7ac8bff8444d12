// How a connection asks whether a session is valid. An interface so that the
// session logic does not care whether the answer comes over HTTP or a test.
#pragma once

#include <functional>
#include <string>

#include "auth/auth_result.hpp"

namespace proxy {

class auth_client {
 public:
  using completion = std::function<void(const auth_result&)>;
  virtual ~auth_client() = default;
  // Calls `done` exactly once, on the caller's io_context, whatever happens.
  virtual void validate(const std::string& token, const std::string& remote_address, completion done) = 0;
};

// "abcd...wxyz": enough of a token to correlate logs, never enough to use it.
std::string redact(std::string_view secret);

}  // namespace proxy
