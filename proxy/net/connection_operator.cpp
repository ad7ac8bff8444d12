// What the operator sees of and does to a connection (admin/operator_api):
// a snapshot for GET /v1/connections, a kick, and report-only ACL log lines.
#include <spdlog/spdlog.h>

#include "net/client_connection.hpp"
#include "net/log_field.hpp"

namespace proxy {
namespace {

const char* to_string(client_session::state state) {
  switch (state) {
    case client_session::state::awaiting_connect: return "awaiting_connect";
    case client_session::state::awaiting_auth: return "awaiting_auth";
    case client_session::state::authenticating: return "authenticating";
    case client_session::state::connecting_upstream: return "connecting_upstream";
    case client_session::state::relaying: return "relaying";
    case client_session::state::closed: return "closed";
  }
  return "?";
}

}  // namespace

connection_snapshot client_connection::snapshot() const {
  connection_snapshot s;
  s.id = membership_.id();
  s.user = session_.user();
  s.user_id = session_.user_id();
  s.client_id = session_.client_id();
  if (!s.user_id.empty()) s.upstream_client_id = upstream_client_id(s.user_id, s.client_id);
  s.remote_address = remote_address_;
  s.transport = proxy::to_string(listener_.kind);
  s.state = to_string(session_.current_state());
  s.acl_mode = proxy::to_string(session_.current_acl_mode());
  s.since = since_;
  constexpr std::size_t listed_filters = 32, filter_bytes = 256;
  s.subscription_count = session_.subscriptions().size();
  for (const auto& filter : session_.subscriptions()) {
    if (s.subscriptions.size() == listed_filters) break;
    s.subscriptions.push_back(filter.size() <= filter_bytes ? filter : filter.substr(0, filter_bytes) + "...");
  }
  s.bytes_from_client = bytes_from_client_;
  s.bytes_to_client = bytes_to_client_;
  return s;
}

void client_connection::kick() {
  if (state_ >= lifecycle::closing) return;
  if (state_ == lifecycle::running) apply(session_.on_kick());
  // Not yet through its transport handshake: nothing to say, close all the same.
  begin_close("kicked by an operator");
}

// Once per (action, name) per connection, from the session (report mode).
void client_connection::log_acl_report(const action::acl_report& r) const {
  spdlog::warn("acl report: would deny {} remote={} client_id={} user={} topic=\"{}\" why=\"{}\"{}", to_string(r.what),
               remote_address_, log_field(session_.client_id()), r.user.empty() ? "-" : log_field(r.user),
               log_field(r.name, true), log_field(r.why, true),
               r.last ? " (report limit reached: later ones on this connection are only counted)" : "");
}

}  // namespace proxy
