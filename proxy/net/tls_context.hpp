// OpenSSL contexts built from PEM files, swappable at run time: on SIGHUP the
// files are read again and new connections use the new context, while open
// connections keep the one they began with (each holds a reference).
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "net/proxy_context.hpp"
#include "net/transport.hpp"

namespace proxy {

// TLS 1.2 minimum, forward-secret AEAD ciphers only (Mozilla "intermediate").
// Throws config_error naming `key_prefix` + the file key that failed.
ssl_context_ptr make_server_tls_context(const tls_files& files, const std::string& key_prefix);
// Verifies the broker against `ca_file` (or the system store); presents a client certificate when given.
ssl_context_ptr make_upstream_tls_context(const upstream_settings& upstream);

class reloadable_tls_context {
 public:
  using builder = std::function<ssl_context_ptr()>;
  explicit reloadable_tls_context(builder build) : build_(std::move(build)), current_(build_()) {}

  ssl_context_ptr current() const {
    std::lock_guard lock(mutex_);
    return current_;
  }

  // Keeps the old context when the files are broken; returns the error then.
  std::string reload() {
    try {
      auto fresh = build_();
      std::lock_guard lock(mutex_);
      current_ = std::move(fresh);
      return {};
    } catch (const std::exception& e) {
      return e.what();
    }
  }

 private:
  builder build_;
  mutable std::mutex mutex_;
  ssl_context_ptr current_;
};

}  // namespace proxy
