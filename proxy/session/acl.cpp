#include "session/acl.hpp"

#include <algorithm>

#include "mqtt/topic.hpp"

namespace proxy {
namespace {

bool safe_substitute(std::string_view value) {
  return !value.empty() && value.find_first_of("/+#") == std::string_view::npos;
}

// The filter a template expands to, or why it does not expand.
struct expansion {
  std::optional<std::string> filter;
  std::string why_not;
};

expansion expand(std::string_view pattern, std::string_view user, std::string_view client_id) {
  std::string out;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '%' && i + 1 < pattern.size() && (pattern[i + 1] == 'u' || pattern[i + 1] == 'c')) {
      const bool is_user = pattern[i + 1] == 'u';
      const auto value = is_user ? user : client_id;
      if (!safe_substitute(value))
        return {std::nullopt, std::string(is_user ? "%u" : "%c") +
                                  (value.empty() ? " is empty" : " contains '/', '+' or '#'")};
      out += value;
      ++i;
    } else {
      out += pattern[i];
    }
  }
  if (!mqtt::topic::is_valid_filter(out)) return {std::nullopt, "expands to an invalid topic filter"};
  return {std::move(out), {}};
}

// Appends the expansions of `patterns` to `to`; `origins` (when given) gets
// the pattern of each appended filter, `dropped` the ones that did not expand.
void add_expanded(std::vector<std::string>& to, const std::vector<std::string>& patterns, std::string_view user,
                  std::string_view client_id, std::vector<std::string>* origins = nullptr,
                  std::vector<std::string>* dropped = nullptr) {
  for (const auto& pattern : patterns) {
    auto e = expand(pattern, user, client_id);
    if (e.filter) {
      to.push_back(std::move(*e.filter));
      if (origins) origins->push_back(pattern);
    } else if (dropped) {
      dropped->push_back(pattern + ": " + e.why_not);
    }
  }
}

acl_decision allowed_by(std::size_t index, const std::string& filter, const char* how) {
  return {true, index, std::string(how) + " '" + filter + "'"};
}

// The first entry that allows it: decide() and allows() both ask these, so
// they cannot disagree; allows() builds no explanation (per relayed message).
std::optional<std::size_t> publish_match(const std::vector<std::string>& filters, std::string_view topic) {
  for (std::size_t i = 0; i < filters.size(); ++i)
    if (mqtt::topic::matches(topic, filters[i])) return i;
  return std::nullopt;
}

std::optional<std::size_t> receive_match(const std::vector<std::string>& filters, std::string_view topic) {
  for (std::size_t i = 0; i < filters.size(); ++i)
    if (mqtt::topic::is_valid_filter(filters[i]) && mqtt::topic::matches(topic, mqtt::topic::effective_filter(filters[i])))
      return i;
  return std::nullopt;
}

acl_decision decide_publish(const std::vector<std::string>& filters, std::string_view topic) {
  if (const auto i = publish_match(filters, topic)) return allowed_by(*i, filters[*i], "matched by publish entry");
  return {false, std::nullopt, "no publish entry matches (" + std::to_string(filters.size()) + " entries)"};
}

acl_decision decide_subscribe(const std::vector<std::string>& filters, std::string_view filter) {
  if (!mqtt::topic::is_valid_filter(filter)) return {false, std::nullopt, "not a valid topic filter"};
  const auto requested = mqtt::topic::effective_filter(filter);
  for (std::size_t i = 0; i < filters.size(); ++i)
    if (mqtt::topic::is_subset(requested, mqtt::topic::effective_filter(filters[i])))
      return allowed_by(i, filters[i], "within subscribe entry");
  return {false, std::nullopt,
          "no subscribe entry covers every topic the filter can match (" + std::to_string(filters.size()) +
              " entries)"};
}

acl_decision decide_receive(const std::vector<std::string>& filters, std::string_view topic) {
  if (const auto i = receive_match(filters, topic)) return allowed_by(*i, filters[*i], "matched by subscribe entry");
  return {false, std::nullopt, "no subscribe entry matches (" + std::to_string(filters.size()) + " entries)"};
}

}  // namespace

std::optional<acl_mode> parse_acl_mode(std::string_view text) {
  if (text == "enforce") return acl_mode::enforce;
  if (text == "report") return acl_mode::report;
  return std::nullopt;
}

const char* to_string(acl_mode mode) { return mode == acl_mode::report ? "report" : "enforce"; }

std::optional<acl_action> parse_acl_action(std::string_view text) {
  if (text == "publish") return acl_action::publish;
  if (text == "subscribe") return acl_action::subscribe;
  if (text == "receive") return acl_action::receive;
  return std::nullopt;
}

const char* to_string(acl_action action) {
  switch (action) {
    case acl_action::publish: return "publish";
    case acl_action::subscribe: return "subscribe";
    case acl_action::receive: return "receive";
  }
  return "?";
}

acl_decision acl::decide(acl_action action, std::string_view name) const {
  switch (action) {
    case acl_action::publish: return decide_publish(publish, name);
    case acl_action::subscribe: return decide_subscribe(subscribe, name);
    case acl_action::receive: return decide_receive(subscribe, name);
  }
  return {};
}

bool acl::allows(acl_action action, std::string_view name) const {
  switch (action) {
    case acl_action::publish: return publish_match(publish, name).has_value();
    case acl_action::subscribe: return decide_subscribe(subscribe, name).allowed;
    case acl_action::receive: return receive_match(subscribe, name).has_value();
  }
  return false;
}

bool acl::subscribe_entries_valid() const {
  return std::all_of(subscribe.begin(), subscribe.end(),
                     [](const std::string& filter) { return mqtt::topic::is_valid_filter(filter); });
}

bool acl::allows_receive_of_valid(std::string_view topic) const {
  return std::any_of(subscribe.begin(), subscribe.end(), [&](const std::string& filter) {
    return mqtt::topic::matches(topic, mqtt::topic::effective_filter(filter));
  });
}

acl with_templates(acl base, const acl& templates, std::string_view user, std::string_view client_id) {
  add_expanded(base.publish, templates.publish, user, client_id);
  add_expanded(base.subscribe, templates.subscribe, user, client_id);
  return base;
}

acl_explanation explain(const acl& user_acl, const acl& templates, std::string_view user, std::string_view client_id,
                        acl_action action, std::string_view name) {
  acl_explanation out;
  // Built as with_templates builds it: the user's entries, then the templates'.
  acl merged = user_acl;
  std::vector<std::string> publish_origins, subscribe_origins;
  add_expanded(merged.publish, templates.publish, user, client_id, &publish_origins, &out.dropped_templates);
  add_expanded(merged.subscribe, templates.subscribe, user, client_id, &subscribe_origins, &out.dropped_templates);
  out.decision = merged.decide(action, name);
  if (!out.decision.rule) return out;
  const bool on_publish = action == acl_action::publish;
  const auto& entries = on_publish ? merged.publish : merged.subscribe;
  const auto own = on_publish ? user_acl.publish.size() : user_acl.subscribe.size();
  const auto index = *out.decision.rule;
  out.rule = entries[index];
  if (index < own) {
    out.origin = "user";
  } else {
    out.origin = "template";
    out.pattern = (on_publish ? publish_origins : subscribe_origins)[index - own];
  }
  return out;
}

}  // namespace proxy
