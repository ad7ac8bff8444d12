// One live connection as the operator sees it (GET /v1/connections): taken on
// the connection's own thread, then carried to the admin thread by value.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace proxy {

struct connection_snapshot {
  std::uint64_t id = 0;            // process-unique, increasing (connection_registry)
  std::string user;                // empty until authenticated
  std::string user_id;
  std::string client_id;           // as the client sent it (or the one the proxy assigned)
  std::string upstream_client_id;  // what the broker sees; empty until authenticated
  std::string remote_address;      // the PROXY header's when the listener takes one
  std::string transport;           // tcp, tls, ws, wss
  std::string state;               // the session's: awaiting_auth, relaying, ...
  std::string acl_mode;            // enforce or report
  std::chrono::system_clock::time_point since;
  // At most the first 32 filters, each cut to 256 bytes: a client may hold
  // 256 filters of 64 KiB, and a listing of every connection must stay small.
  std::vector<std::string> subscriptions;
  std::size_t subscription_count = 0;
  std::uint64_t bytes_from_client = 0;
  std::uint64_t bytes_to_client = 0;
};

}  // namespace proxy
