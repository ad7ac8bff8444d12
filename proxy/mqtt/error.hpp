// Everything the codec can reject, each a distinct code whose message names
// the violated rule of the spec. Codes plug into boost::system::error_code so
// the I/O layers can carry them next to socket errors.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

namespace mqtt {

enum class error {
  // Framing (fixed header)
  reserved_packet_type = 1,
  invalid_fixed_header_flags,
  remaining_length_too_long,
  remaining_length_not_minimal,
  packet_too_large,
  // Fields
  truncated,
  trailing_bytes,
  invalid_utf8,
  utf8_contains_null,
  variable_byte_integer_malformed,
  packet_id_zero,
  // CONNECT
  invalid_protocol_name,
  unsupported_protocol_version,
  connect_reserved_flag_set,
  invalid_will_flags,
  password_without_username,
  invalid_client_id,
  // PUBLISH
  invalid_qos,
  dup_with_qos_0,
  invalid_topic_name,
  missing_topic_name,
  // SUBSCRIBE / UNSUBSCRIBE
  no_topic_filters,
  invalid_subscription_options,
  invalid_topic_filter,
  no_local_on_shared_subscription,
  // Acknowledgements
  invalid_reason_code,
  connack_reserved_flags_set,
  session_present_on_failure,
  // Properties
  unknown_property,
  property_not_allowed,
  duplicate_property,
  invalid_property_value,
  // Version
  packet_not_in_version,
  // Encoding a packet that cannot be represented
  field_too_long,
};

const boost::system::error_category& codec_category() noexcept;

inline boost::system::error_code make_error_code(error e) noexcept {
  return {static_cast<int>(e), codec_category()};
}

template <class T>
using result = boost::system::result<T>;

}  // namespace mqtt

template <>
struct boost::system::is_error_code_enum<mqtt::error> : std::true_type {};
