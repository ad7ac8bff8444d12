#include "policy/policy.hpp"

#include "mqtt/utf8.hpp"

namespace auth {

bool is_valid_name(const std::string& name) {
  if (name.empty() || name.size() > 64 || mqtt::check_utf8(name)) return false;
  for (unsigned char c : name)
    if (c == '/' || c == '+' || c == '#' || c == '.' || c == '*' || c < 0x20 || c == 0x7F) return false;
  return true;
}

nlohmann::json acl_of(const user_record& user) {
  nlohmann::json publish = nlohmann::json::array({"private/" + user.name + "/#"});
  for (const auto& g : user.groups) publish.push_back("group/" + g + "/#");
  nlohmann::json subscribe = publish;
  for (const auto& f : user.publish) publish.push_back(f);
  for (const auto& f : user.subscribe) subscribe.push_back(f);
  return {{"publish", publish}, {"subscribe", subscribe}};
}

std::string log_safe(std::string_view text) {
  constexpr std::size_t limit = 128;
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  std::size_t i = 0;
  for (; i < text.size() && out.size() < limit; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    // Bytes >= 0x80 are escaped too: a log line stays ASCII, and no terminal
    // control sequence (C1 controls, bidi overrides) reaches the reader.
    if (c < 0x20 || c >= 0x7F || c == '\\') {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xF];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (i < text.size()) out += "...";
  return out;
}

}  // namespace auth
