// What one authenticated user may publish to and subscribe to.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace proxy {

// Whether the ACL's "no" is carried out, or only reported (logged and
// counted) so that an operator can roll out a narrower ACL safely.
enum class acl_mode { enforce, report };
std::optional<acl_mode> parse_acl_mode(std::string_view text);  // "enforce" | "report"
const char* to_string(acl_mode mode);

// The three questions the proxy asks of an ACL.
enum class acl_action {
  publish,    // the client PUBLISHes to a topic
  subscribe,  // the client SUBSCRIBEs to a filter
  receive,    // the broker delivers a PUBLISH on a topic to the client
};
std::optional<acl_action> parse_acl_action(std::string_view text);  // "publish" | "subscribe" | "receive"
const char* to_string(acl_action action);

// The answer and what gave it: the first entry that allowed it (an index
// into acl::publish for publish, acl::subscribe otherwise), or none and why.
struct acl_decision {
  bool allowed = false;
  std::optional<std::size_t> rule;
  std::string why;  // for people: the entry that matched, or why none did
};

struct acl {
  std::vector<std::string> publish;    // topic filters the user may publish to
  std::vector<std::string> subscribe;  // topic filters the user may subscribe within

  // The one decision function: may_* below and the operator's explain
  // (acl_explain) both answer with it, so they cannot disagree.
  acl_decision decide(acl_action action, std::string_view name) const;
  // decide(action, name).allowed without the explanation: what the relay
  // path asks per message (no strings built).
  bool allows(acl_action action, std::string_view name) const;
  // Whether every subscribe entry is a valid filter. Asked once when an ACL
  // is set, so that a delivery's check (allows_receive_of_valid) need not
  // validate the entries again per message, as allows(receive) does.
  bool subscribe_entries_valid() const;
  // allows(acl_action::receive, topic), for an ACL whose subscribe entries
  // are all valid (subscribe_entries_valid() was true).
  bool allows_receive_of_valid(std::string_view topic) const;

  // Whether a PUBLISH to `topic` is allowed: some publish filter matches it.
  bool may_publish(std::string_view topic) const { return decide(acl_action::publish, topic).allowed; }

  // Whether SUBSCRIBE `filter` is allowed: every topic it could match is
  // matched by one allowed filter (a subset), so no wildcard widens access.
  // Shared subscriptions are judged by their inner filter.
  bool may_subscribe(std::string_view filter) const { return decide(acl_action::subscribe, filter).allowed; }

  // Whether a PUBLISH to `topic` may be delivered: the user may subscribe to
  // exactly that topic, i.e. some allowed subscribe filter matches it (a
  // "$share/<group>/" prefix is seen through, as a shared subscription
  // delivers plain topic names). Topics starting with '$' are matched only
  // by filters that name them [MQTT-4.7.2-1].
  bool may_receive(std::string_view topic) const { return decide(acl_action::receive, topic).allowed; }
};

// Expands deployment-wide ACL templates (`%u` user, `%c` client id) and adds
// them to `base`. A template whose substitute contains '/', '+' or '#', or is
// empty, is dropped: a client id of "+" must not turn "private/%c/#" into
// "private/+/#".
acl with_templates(acl base, const acl& templates, std::string_view user, std::string_view client_id);

// The operator's "why": the user's ACL from the API server plus the
// templates, expanded exactly as a connection expands them, then decided by
// acl::decide; the deciding entry is traced back to where it came from.
struct acl_explanation {
  acl_decision decision;
  std::string rule;         // the entry that decided (expanded), empty when none did
  std::string origin;       // "user" (the API server's ACL), "template" or empty
  std::string pattern;      // the template the entry was expanded from
  std::vector<std::string> dropped_templates;  // "pattern: why", templates that did not expand
};
acl_explanation explain(const acl& user_acl, const acl& templates, std::string_view user, std::string_view client_id,
                        acl_action action, std::string_view name);

}  // namespace proxy
