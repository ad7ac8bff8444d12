// What the session does for the operator: report-only ACL and kick.
#include <nlohmann/json.hpp>

#include "session/client_session.hpp"

namespace proxy {

// The one place a connection asks its ACL. Enforce: the answer stands.
// Report: the answer is always yes; a would-be "no" is counted every time and
// reported (an action the driver logs) once per (action, name) per
// connection, up to max_acl_reports, so a client retrying one topic cannot
// flood the log. The user is fixed for the life of a connection (a
// re-authentication as someone else is refused), so it is not in the key.
bool client_session::acl_allows(acl_action action, std::string_view name) {
  if (permissions().allows(action, name)) return true;
  if (acl_mode_ == acl_mode::enforce) return false;
  report_acl(action, name, permissions().decide(action, name));
  return true;
}

void client_session::report_acl(acl_action action, std::string_view name, const acl_decision& decision) {
  switch (action) {
    case acl_action::publish: metrics_.acl_report_publish++; break;
    case acl_action::subscribe: metrics_.acl_report_subscribe++; break;
    case acl_action::receive: metrics_.acl_report_deliver++; break;
  }
  if (extra().acl_reported_.size() >= config_.max_acl_reports) return;
  // A topic may be 64 KiB: the report keeps (and the log shows) at most 256
  // bytes of it, so a report-mode connection costs at most max_acl_reports
  // short lines and short keys, however long the names it sends.
  constexpr std::size_t reported_name_limit = 256;
  std::string shown(name.substr(0, reported_name_limit));
  if (name.size() > reported_name_limit) shown += "...(" + std::to_string(name.size()) + " bytes)";
  if (!extra().acl_reported_.emplace(action, shown).second) return;
  emit(action::acl_report{action, std::move(shown), user_, decision.why,
                          extra().acl_reported_.size() == config_.max_acl_reports});
}

// 0x98 Administrative action [MQTT-3.14.2.1]: the operator, not the client's
// credentials, ended it; a reconnect with the same session is admitted. The
// broker gets a normal DISCONNECT first, so no will is published: a will is
// for a connection lost unexpectedly, and an operator removing a client is
// deliberate (as a revocation is; a drain can be told to fire wills, a kick
// cannot). The auth topic gets the reason for 3.1.1 clients, as a revocation's.
client_session::actions client_session::on_kick() {
  begin();
  if (state_ == state::closed) return take();
  if (state_ == state::relaying || state_ == state::connecting_upstream)
    send_upstream(mqtt::disconnect{mqtt::reason_code::success, {}});
  if (!connack_sent_) {
    close("kicked by an operator");
    return take();
  }
  send_auth_message(nlohmann::json{{"result", "denied"}, {"reason", "kicked"}}.dump());
  if (version_ == mqtt::protocol_version::v5)
    send_to_client(mqtt::disconnect{mqtt::reason_code::administrative_action, {}});
  close("kicked by an operator");
  return take();
}

}  // namespace proxy
