// Topic names and topic filters (section 4.7, shared subscriptions 4.8.2):
// validation, matching, and the subset relation that ACL checks rest on.
#pragma once

#include <optional>
#include <string_view>

namespace mqtt::topic {

// A name a PUBLISH may carry: non-empty, no wildcard, valid UTF-8 [MQTT-4.7.3-1] [MQTT-3.3.2-2].
bool is_valid_name(std::string_view name);

// A filter a SUBSCRIBE may carry, shared ones included: '#' only as the whole
// last level [MQTT-4.7.1-2], '+' only as a whole level [MQTT-4.7.1-3].
bool is_valid_filter(std::string_view filter);

bool has_wildcard(std::string_view filter);

// "$share/<group>/<filter>" [MQTT-4.8.2]. Parsed in every protocol version,
// because brokers such as Mosquitto honour shared subscriptions from 3.1.1
// clients too, and an ACL must see through them.
struct shared_subscription {
  std::string_view group;
  std::string_view filter;
};
std::optional<shared_subscription> parse_shared(std::string_view filter);

// The filter a subscription really matches with: the inner one if shared.
std::string_view effective_filter(std::string_view filter);

// Whether `name` matches `filter` (a valid, non-shared filter). Filters that
// start with a wildcard do not match names that start with '$' [MQTT-4.7.2-1].
bool matches(std::string_view name, std::string_view filter);

// Whether every topic name that `narrower` matches is also matched by `wider`
// (both valid, non-shared). An ACL grants a requested filter only when this
// holds for one of its allowed filters, so a wildcard cannot widen access.
bool is_subset(std::string_view narrower, std::string_view wider);

}  // namespace mqtt::topic
