#include "mqtt/properties.hpp"

#include <algorithm>
#include <array>

namespace mqtt {
namespace {

enum class wire_form : std::uint8_t { none, byte, two_byte, four_byte, variable, utf8, binary, pair };

using scope_mask = std::uint16_t;
constexpr scope_mask operator|(property_scope a, property_scope b) {
  return static_cast<scope_mask>(static_cast<scope_mask>(a) | static_cast<scope_mask>(b));
}
constexpr scope_mask operator|(scope_mask a, property_scope b) { return static_cast<scope_mask>(a | static_cast<scope_mask>(b)); }
constexpr scope_mask mask(property_scope s) { return static_cast<scope_mask>(s); }

struct property_rule {
  wire_form form = wire_form::none;
  scope_mask scopes = 0;
  bool repeatable = false;  // user property, and subscription identifier in PUBLISH
  bool boolean = false;     // value must be 0 or 1
  bool non_zero = false;    // value 0 is a protocol error
};

using S = property_scope;
constexpr scope_mask all_acks = S::puback | S::connack | S::suback | S::unsuback | S::disconnect | S::auth;

// The table of [MQTT-2.2.2.2], with the value rules of the sections that define each property.
constexpr std::array<property_rule, 0x2B> make_rules() {
  std::array<property_rule, 0x2B> r{};
  r[0x01] = {wire_form::byte, S::publish | S::will, false, true};
  r[0x02] = {wire_form::four_byte, S::publish | S::will};
  r[0x03] = {wire_form::utf8, S::publish | S::will};
  r[0x08] = {wire_form::utf8, S::publish | S::will};
  r[0x09] = {wire_form::binary, S::publish | S::will};
  r[0x0B] = {wire_form::variable, S::publish | S::subscribe, true, false, true};
  r[0x11] = {wire_form::four_byte, S::connect | S::connack | S::disconnect};
  r[0x12] = {wire_form::utf8, mask(S::connack)};
  r[0x13] = {wire_form::two_byte, mask(S::connack)};
  r[0x15] = {wire_form::utf8, S::connect | S::connack | S::auth};
  r[0x16] = {wire_form::binary, S::connect | S::connack | S::auth};
  r[0x17] = {wire_form::byte, mask(S::connect), false, true};
  r[0x18] = {wire_form::four_byte, mask(S::will)};
  r[0x19] = {wire_form::byte, mask(S::connect), false, true};
  r[0x1A] = {wire_form::utf8, mask(S::connack)};
  r[0x1C] = {wire_form::utf8, S::connack | S::disconnect};
  r[0x1F] = {wire_form::utf8, all_acks};
  r[0x21] = {wire_form::two_byte, S::connect | S::connack, false, false, true};
  r[0x22] = {wire_form::two_byte, S::connect | S::connack};
  r[0x23] = {wire_form::two_byte, mask(S::publish), false, false, true};
  r[0x24] = {wire_form::byte, mask(S::connack), false, true};
  r[0x25] = {wire_form::byte, mask(S::connack), false, true};
  r[0x26] = {wire_form::pair, static_cast<scope_mask>(0x7FF), true};
  r[0x27] = {wire_form::four_byte, S::connect | S::connack, false, false, true};
  r[0x28] = {wire_form::byte, mask(S::connack), false, true};
  r[0x29] = {wire_form::byte, mask(S::connack), false, true};
  r[0x2A] = {wire_form::byte, mask(S::connack), false, true};
  return r;
}
constexpr auto rules = make_rules();

const property_rule* rule_for(std::uint32_t id) {
  if (id >= rules.size() || rules[id].form == wire_form::none) return nullptr;
  return &rules[id];
}

property_value read_value(byte_reader& reader, wire_form form) {
  switch (form) {
    case wire_form::byte: return std::uint32_t{reader.u8()};
    case wire_form::two_byte: return std::uint32_t{reader.u16()};
    case wire_form::four_byte: return reader.u32();
    case wire_form::variable: return reader.variable_int();
    case wire_form::utf8: return reader.utf8_string();
    case wire_form::binary: return reader.binary();
    case wire_form::pair: {
      string_pair pair;
      pair.name = reader.utf8_string();
      pair.value = reader.utf8_string();
      return pair;
    }
    case wire_form::none: break;
  }
  return std::uint32_t{0};
}

bool value_in_range(const property_rule& rule, const property_value& value) {
  const auto* number = std::get_if<std::uint32_t>(&value);
  if (!number) return true;
  if (rule.boolean && *number > 1) return false;
  if (rule.non_zero && *number == 0) return false;
  return true;
}

void write_value(byte_writer& writer, wire_form form, const property_value& value) {
  const auto* number = std::get_if<std::uint32_t>(&value);
  const auto* text = std::get_if<std::string>(&value);
  const auto* pair = std::get_if<string_pair>(&value);
  switch (form) {
    case wire_form::byte: return writer.u8(number ? static_cast<std::uint8_t>(*number) : 0);
    case wire_form::two_byte: return writer.u16(number ? static_cast<std::uint16_t>(*number) : 0);
    case wire_form::four_byte: return writer.u32(number ? *number : 0);
    case wire_form::variable: return writer.variable_int(number ? *number : 0);
    case wire_form::utf8:
    case wire_form::binary: return writer.string(text ? *text : std::string_view{});
    case wire_form::pair:
      writer.string(pair ? pair->name : std::string_view{});
      writer.string(pair ? pair->value : std::string_view{});
      return;
    case wire_form::none: return;
  }
}

std::size_t value_size(wire_form form, const property_value& value) {
  const auto* number = std::get_if<std::uint32_t>(&value);
  const auto* text = std::get_if<std::string>(&value);
  const auto* pair = std::get_if<string_pair>(&value);
  switch (form) {
    case wire_form::byte: return 1;
    case wire_form::two_byte: return 2;
    case wire_form::four_byte: return 4;
    case wire_form::variable: return variable_int_size(number ? *number : 0);
    case wire_form::utf8:
    case wire_form::binary: return 2 + (text ? text->size() : 0);
    case wire_form::pair: return 4 + (pair ? pair->name.size() + pair->value.size() : 0);
    case wire_form::none: break;
  }
  return 0;
}

}  // namespace

std::optional<std::uint32_t> properties::find_number(property_id id) const {
  for (const auto& p : items_)
    if (p.id == id)
      if (const auto* n = std::get_if<std::uint32_t>(&p.value)) return *n;
  return std::nullopt;
}

std::optional<std::string_view> properties::text(property_id id) const {
  for (const auto& p : items_)
    if (p.id == id)
      if (const auto* s = std::get_if<std::string>(&p.value)) return std::string_view{*s};
  return std::nullopt;
}

std::vector<string_pair> properties::user_properties() const {
  std::vector<string_pair> pairs;
  for (const auto& p : items_)
    if (const auto* pair = std::get_if<string_pair>(&p.value)) pairs.push_back(*pair);
  return pairs;
}

std::vector<std::uint32_t> properties::find_numbers(property_id id) const {
  std::vector<std::uint32_t> values;
  for (const auto& p : items_)
    if (p.id == id)
      if (const auto* n = std::get_if<std::uint32_t>(&p.value)) values.push_back(*n);
  return values;
}

void properties::set(property_id id, property_value value) {
  for (auto& p : items_) {
    if (p.id == id) {
      p.value = std::move(value);
      return;
    }
  }
  add(id, std::move(value));
}

void properties::remove(property_id id) {
  std::erase_if(items_, [id](const property& p) { return p.id == id; });
}

properties read_properties(byte_reader& reader, property_scope scope) {
  properties props;
  const std::uint32_t length = reader.variable_int();
  byte_reader block = reader.take(length);
  std::array<bool, rules.size()> seen{};
  while (!block.empty() && !block.failed()) {
    const std::uint32_t id = block.variable_int();
    const property_rule* rule = rule_for(id);
    if (block.failed()) break;
    if (!rule) {
      block.fail(error::unknown_property);
      break;
    }
    if ((rule->scopes & static_cast<scope_mask>(scope)) == 0) {
      block.fail(error::property_not_allowed);
      break;
    }
    // Subscription identifier repeats only in PUBLISH [MQTT-3.8.2.1.2].
    const bool repeatable = rule->repeatable && !(id == 0x0B && scope == property_scope::subscribe);
    if (seen[id] && !repeatable) {
      block.fail(error::duplicate_property);
      break;
    }
    seen[id] = true;
    property_value value = read_value(block, rule->form);
    if (!block.failed() && !value_in_range(*rule, value)) block.fail(error::invalid_property_value);
    if (!block.failed()) props.add(static_cast<property_id>(id), std::move(value));
  }
  if (block.failed()) reader.fail(static_cast<error>(block.error_code().value()));
  return props;
}

std::size_t properties_size(const properties& props) {
  std::size_t size = 0;
  for (const auto& p : props.items()) {
    const property_rule* rule = rule_for(static_cast<std::uint32_t>(p.id));
    if (rule) size += 1 + value_size(rule->form, p.value);
  }
  return size;
}

void write_properties(byte_writer& writer, const properties& props) {
  writer.variable_int(static_cast<std::uint32_t>(properties_size(props)));
  for (const auto& p : props.items()) {
    const property_rule* rule = rule_for(static_cast<std::uint32_t>(p.id));
    if (!rule) continue;
    writer.u8(static_cast<std::uint8_t>(p.id));  // every defined identifier fits in one byte
    write_value(writer, rule->form, p.value);
  }
}

}  // namespace mqtt

