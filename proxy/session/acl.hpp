// What one authenticated user may publish to and subscribe to.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace proxy {

struct acl {
  std::vector<std::string> publish;    // topic filters the user may publish to
  std::vector<std::string> subscribe;  // topic filters the user may subscribe within

  // Whether a PUBLISH to `topic` is allowed: some publish filter matches it.
  bool may_publish(std::string_view topic) const;

  // Whether SUBSCRIBE `filter` is allowed: every topic it could match is
  // matched by one allowed filter (a subset), so no wildcard widens access.
  // Shared subscriptions are judged by their inner filter.
  bool may_subscribe(std::string_view filter) const;

  // Whether a PUBLISH to `topic` may be delivered: the user may subscribe to
  // exactly that topic, i.e. some allowed subscribe filter matches it (a
  // "$share/<group>/" prefix is seen through, as a shared subscription
  // delivers plain topic names). Topics starting with '$' are matched only
  // by filters that name them [MQTT-4.7.2-1].
  bool may_receive(std::string_view topic) const;
};

// Expands deployment-wide ACL templates (`%u` user, `%c` client id) and adds
// them to `base`. A template whose substitute contains '/', '+' or '#', or is
// empty, is dropped: a client id of "+" must not turn "private/%c/#" into
// "private/+/#".
acl with_templates(acl base, const acl& templates, std::string_view user, std::string_view client_id);

}  // namespace proxy
