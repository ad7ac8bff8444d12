#include "net/websocket_frames.hpp"

#include <algorithm>
#include <string_view>

#include <openssl/evp.h>

namespace proxy::websocket_frames {

namespace {

bool known_data(std::uint8_t op) { return op <= 0x2; }
bool known_control(std::uint8_t op) { return op >= 0x8 && op <= 0xA; }

// Codes a peer may send [RFC 6455 7.4.1, 7.4.2]: 1004-1006 and 1015 are
// reserved for reporting, never put on the wire.
bool valid_close_code(std::uint16_t code) {
  if (code >= 3000 && code <= 4999) return true;
  return code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006;
}

// Well-formed UTF-8 [RFC 3629]: no overlong forms, no surrogates, nothing
// above U+10FFFF. Unlike MQTT strings, U+0000 is allowed here.
bool valid_utf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<std::uint8_t>(text[i]);
    std::size_t length = 0;
    std::uint32_t min = 0;
    std::uint32_t point = 0;
    if (lead < 0x80) {
      ++i;
      continue;
    } else if ((lead & 0xE0) == 0xC0) {
      length = 2, min = 0x80, point = lead & 0x1F;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3, min = 0x800, point = lead & 0x0F;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4, min = 0x10000, point = lead & 0x07;
    } else {
      return false;
    }
    if (text.size() - i < length) return false;
    for (std::size_t k = 1; k < length; ++k) {
      const auto next = static_cast<std::uint8_t>(text[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      point = point << 6 | (next & 0x3F);
    }
    if (point < min || point > 0x10FFFF || (point >= 0xD800 && point <= 0xDFFF)) return false;
    i += length;
  }
  return true;
}

}  // namespace

std::size_t frame_decoder::header_needed() const {
  if (header_size_ < 2) return 2;
  const std::uint8_t length7 = header_[1] & 0x7F;
  const std::size_t extended = length7 == 126 ? 2 : length7 == 127 ? 8 : 0;
  return 2 + extended + ((header_[1] & 0x80) != 0 ? 4 : 0);
}

// Checked as soon as the first two bytes are in, so a bad frame fails
// without waiting for the rest of its header.
std::uint16_t frame_decoder::check_first_two() const {
  const std::uint8_t op = header_[0] & 0x0F;
  if ((header_[0] & 0x70) != 0) return protocol_error;  // RSV1-3: no extension was negotiated (5.2)
  if ((header_[1] & 0x80) == 0) return protocol_error;  // a client's frames are masked (5.1)
  if (is_control()) {
    if (!known_control(op)) return protocol_error;
    if ((header_[0] & 0x80) == 0) return protocol_error;           // control frames are not fragmented (5.5)
    if ((header_[1] & 0x7F) > max_control_payload) return protocol_error;
    return 0;
  }
  if (!known_data(op)) return protocol_error;
  if (op == static_cast<std::uint8_t>(opcode::text)) return unsupported_data;  // [MQTT-6.0.0-1]
  const bool continuation = op == static_cast<std::uint8_t>(opcode::continuation);
  if (continuation != in_message_) return protocol_error;  // a continuation needs a message, a new one needs none (5.4)
  return 0;
}

std::uint16_t frame_decoder::start_frame() {
  const std::uint8_t length7 = header_[1] & 0x7F;
  std::size_t at = 2;
  if (length7 == 126) {
    remaining_ = (std::uint64_t{header_[2]} << 8) | header_[3];
    at = 4;
    if (remaining_ < 126) return protocol_error;  // the minimal length encoding is required (5.2)
  } else if (length7 == 127) {
    remaining_ = 0;
    for (std::size_t i = 2; i < 10; ++i) remaining_ = (remaining_ << 8) | header_[i];
    at = 10;
    if ((remaining_ >> 63) != 0 || remaining_ <= 0xFFFF) return protocol_error;
  } else {
    remaining_ = length7;
  }
  std::copy_n(header_.begin() + static_cast<std::ptrdiff_t>(at), 4, mask_.begin());
  mask_index_ = 0;
  if (!is_control()) in_message_ = (header_[0] & 0x80) == 0;
  state_ = state::payload;
  return 0;
}

bool frame_decoder::end_frame(decoded& out) {
  header_size_ = 0;
  state_ = state::header;
  if (!is_control()) return false;
  switch (static_cast<opcode>(header_[0] & 0x0F)) {
    case opcode::ping:
      ping_.swap(control_);
      out.ping = true;
      break;
    case opcode::close: {
      if (control_.size() == 1) {
        out.fail = protocol_error;
        state_ = state::failed;
        return true;
      }
      if (control_.size() >= 2) {
        peer_close_ = static_cast<std::uint16_t>((static_cast<std::uint8_t>(control_[0]) << 8) |
                                                 static_cast<std::uint8_t>(control_[1]));
        if (!valid_close_code(peer_close_)) {
          out.fail = protocol_error;
          state_ = state::failed;
          return true;
        }
        if (!valid_utf8(std::string_view(control_).substr(2))) {
          out.fail = invalid_payload;
          state_ = state::failed;
          return true;
        }
      }
      out.close = true;
      state_ = state::closed;
      std::string().swap(control_);
      return true;
    }
    default:  // pong: unsolicited ones are allowed and ignored (5.5.3)
      break;
  }
  std::string().swap(control_);
  return false;
}

decoded frame_decoder::decode(std::span<std::uint8_t> bytes) {
  decoded out;
  std::size_t in = 0;
  while (in < bytes.size() && (state_ == state::header || state_ == state::payload)) {
    if (state_ == state::header) {
      header_[header_size_++] = bytes[in++];
      std::uint16_t violation = header_size_ == 2 ? check_first_two() : 0;
      if (violation == 0 && header_size_ >= 2 && header_size_ == header_needed()) violation = start_frame();
      if (violation != 0) {
        out.fail = violation;
        state_ = state::failed;
        return out;
      }
      if (state_ == state::payload && remaining_ == 0 && end_frame(out)) return out;
      continue;
    }
    const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, bytes.size() - in));
    if (is_control()) {
      for (std::size_t i = 0; i < take; ++i)
        control_.push_back(static_cast<char>(bytes[in + i] ^ mask_[mask_index_++ & 3]));
    } else {
      // In place: data never overtakes the bytes it is read from (out.data <= in).
      for (std::size_t i = 0; i < take; ++i) bytes[out.data++] = bytes[in + i] ^ mask_[mask_index_++ & 3];
    }
    in += take;
    remaining_ -= take;
    if (remaining_ == 0 && end_frame(out)) return out;
  }
  return out;
}

std::string frame_decoder::take_ping() {
  std::string payload;
  payload.swap(ping_);
  return payload;
}

std::size_t encode_header(std::array<std::uint8_t, 10>& out, opcode op, std::uint64_t payload_size) {
  out[0] = static_cast<std::uint8_t>(0x80 | static_cast<std::uint8_t>(op));  // FIN: one frame per message
  if (payload_size < 126) {
    out[1] = static_cast<std::uint8_t>(payload_size);
    return 2;
  }
  if (payload_size <= 0xFFFF) {
    out[1] = 126;
    out[2] = static_cast<std::uint8_t>(payload_size >> 8);
    out[3] = static_cast<std::uint8_t>(payload_size);
    return 4;
  }
  out[1] = 127;
  for (std::size_t i = 0; i < 8; ++i) out[2 + i] = static_cast<std::uint8_t>(payload_size >> (56 - 8 * i));
  return 10;
}

std::string control_frame(opcode op, std::string_view payload) {
  payload = payload.substr(0, max_control_payload);
  std::array<std::uint8_t, 10> header{};
  const auto size = encode_header(header, op, payload.size());
  std::string frame(reinterpret_cast<const char*>(header.data()), size);
  frame.append(payload);
  return frame;
}

std::string close_frame(std::uint16_t code) {
  const char payload[2] = {static_cast<char>(code >> 8), static_cast<char>(code & 0xFF)};
  return control_frame(opcode::close, std::string_view(payload, 2));
}

std::string accept_key(std::string_view key) {
  static constexpr std::string_view guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::string input(key);
  input.append(guid);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  EVP_Digest(input.data(), input.size(), digest, &digest_size, EVP_sha1(), nullptr);
  unsigned char encoded[64] = {};
  const int n = EVP_EncodeBlock(encoded, digest, static_cast<int>(digest_size));
  return std::string(reinterpret_cast<const char*>(encoded), static_cast<std::size_t>(n));
}

bool valid_key(std::string_view key) {
  if (key.size() != 24 || key.substr(22) != "==") return false;
  return std::all_of(key.begin(), key.begin() + 22, [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
  });
}

}  // namespace proxy::websocket_frames
