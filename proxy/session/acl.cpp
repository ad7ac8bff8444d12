#include "session/acl.hpp"

#include <algorithm>
#include <optional>

#include "mqtt/topic.hpp"

namespace proxy {
namespace {

bool safe_substitute(std::string_view value) {
  return !value.empty() && value.find_first_of("/+#") == std::string_view::npos;
}

std::optional<std::string> expand(std::string_view pattern, std::string_view user, std::string_view client_id) {
  std::string out;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '%' && i + 1 < pattern.size() && (pattern[i + 1] == 'u' || pattern[i + 1] == 'c')) {
      const auto value = pattern[i + 1] == 'u' ? user : client_id;
      if (!safe_substitute(value)) return std::nullopt;
      out += value;
      ++i;
    } else {
      out += pattern[i];
    }
  }
  if (!mqtt::topic::is_valid_filter(out)) return std::nullopt;
  return out;
}

void add_expanded(std::vector<std::string>& to, const std::vector<std::string>& patterns, std::string_view user,
                  std::string_view client_id) {
  for (const auto& pattern : patterns)
    if (auto filter = expand(pattern, user, client_id)) to.push_back(std::move(*filter));
}

}  // namespace

bool acl::may_publish(std::string_view topic) const {
  return std::any_of(publish.begin(), publish.end(),
                     [topic](const std::string& filter) { return mqtt::topic::matches(topic, filter); });
}

bool acl::may_subscribe(std::string_view filter) const {
  if (!mqtt::topic::is_valid_filter(filter)) return false;
  const auto requested = mqtt::topic::effective_filter(filter);
  return std::any_of(subscribe.begin(), subscribe.end(), [requested](const std::string& allowed) {
    return mqtt::topic::is_subset(requested, mqtt::topic::effective_filter(allowed));
  });
}

bool acl::may_receive(std::string_view topic) const {
  return std::any_of(subscribe.begin(), subscribe.end(), [topic](const std::string& allowed) {
    return mqtt::topic::is_valid_filter(allowed) && mqtt::topic::matches(topic, mqtt::topic::effective_filter(allowed));
  });
}

acl with_templates(acl base, const acl& templates, std::string_view user, std::string_view client_id) {
  add_expanded(base.publish, templates.publish, user, client_id);
  add_expanded(base.subscribe, templates.subscribe, user, client_id);
  return base;
}

}  // namespace proxy
