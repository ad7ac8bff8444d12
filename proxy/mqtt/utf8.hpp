// UTF-8 rules of MQTT strings: well-formed, no surrogates, no U+0000.
#pragma once

#include <string_view>

#include "mqtt/error.hpp"

namespace mqtt {

// Returns the first rule the text breaks, or an empty code when it is a valid
// MQTT UTF-8 string [MQTT-1.5.3-1] [MQTT-1.5.3-2] (3.1.1), [MQTT-1.5.4-1] [MQTT-1.5.4-2] (5.0).
boost::system::error_code check_utf8(std::string_view text) noexcept;

}  // namespace mqtt
