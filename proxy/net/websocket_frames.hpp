// RFC 6455 data framing for the server side of MQTT over WebSocket, sans-I/O.
//
// Why not Beast's websocket::stream for the data phase: it keeps a read
// buffer, a write buffer it allocates on first write and keeps, and its
// own state per connection (about 9 KiB per idle connection here), and it
// may hold bytes it has not handed out, so an idle reader could not wait on
// the bare socket (client_connection::park). This decoder holds at most a
// partial frame header and a control frame's payload (<= 125 bytes) between
// calls, and unmasks message data in place in the caller's buffer, so an
// idle WebSocket costs what a TCP connection does. Beast still parses the
// HTTP upgrade request.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace proxy::websocket_frames {

enum class opcode : std::uint8_t { continuation = 0x0, text = 0x1, binary = 0x2, close = 0x8, ping = 0x9, pong = 0xA };

// Close codes (RFC 6455 7.4.1).
inline constexpr std::uint16_t normal_closure = 1000;
inline constexpr std::uint16_t protocol_error = 1002;
inline constexpr std::uint16_t unsupported_data = 1003;
inline constexpr std::uint16_t invalid_payload = 1007;  // a close reason that is not UTF-8 [RFC 6455 8.1]
inline constexpr std::uint16_t no_status = 1005;  // a close frame without a code; never sent

inline constexpr std::size_t max_control_payload = 125;  // RFC 6455 5.5
inline constexpr std::size_t max_header_size = 14;       // 2 + 8 (length) + 4 (mask)

// What one decode() call found besides message data.
struct decoded {
  std::size_t data = 0;    // unmasked binary message bytes now at the front of the buffer
  bool ping = false;       // a ping arrived: answer with take_ping() (only the latest needs an answer, RFC 6455 5.5.3)
  bool close = false;      // the peer's close frame arrived: nothing after it is decoded
  std::uint16_t fail = 0;  // the peer broke the protocol: close with this code; nothing more is decoded
};

// Client-to-server frames: every frame masked [RFC 6455 5.1], no extension
// negotiated (RSV bits 0), binary messages only [MQTT-6.0.0-1], possibly
// fragmented, with control frames between the fragments. Message data is not
// bounded here: it streams to the MQTT framer, which bounds packets.
class frame_decoder {
 public:
  // Decodes `bytes` in place: message data is unmasked and moved to the
  // front; headers and control frames are consumed. Stops after a close
  // frame or a violation.
  decoded decode(std::span<std::uint8_t> bytes);

  // The payload of the latest ping, to echo in the pong; leaves nothing held.
  std::string take_ping();
  // The peer's close code (no_status when its close frame had none).
  std::uint16_t peer_close_code() const { return peer_close_; }
  bool closed() const { return state_ == state::closed; }
  bool failed() const { return state_ == state::failed; }

 private:
  enum class state : std::uint8_t { header, payload, closed, failed };

  std::size_t header_needed() const;
  std::uint16_t check_first_two() const;  // 0 or the close code for a violation
  std::uint16_t start_frame();            // the header is complete
  bool end_frame(decoded& out);           // true: decoding stops (close or violation)
  bool is_control() const { return (header_[0] & 0x08) != 0; }

  std::array<std::uint8_t, max_header_size> header_{};
  std::uint8_t header_size_ = 0;
  std::uint8_t mask_index_ = 0;
  state state_ = state::header;
  bool in_message_ = false;  // a fragmented binary message has begun
  std::uint16_t peer_close_ = no_status;
  std::array<std::uint8_t, 4> mask_{};
  std::uint64_t remaining_ = 0;  // payload bytes still to come in this frame
  std::string control_;          // the current control frame's payload so far
  std::string ping_;             // the latest ping's payload, until answered
};

// A server-to-client frame header, unmasked [RFC 6455 5.1]; returns its size (2, 4 or 10).
std::size_t encode_header(std::array<std::uint8_t, 10>& out, opcode op, std::uint64_t payload_size);
// A whole control frame (payload truncated to 125 bytes).
std::string control_frame(opcode op, std::string_view payload);
std::string close_frame(std::uint16_t code);

// Sec-WebSocket-Accept for a client's Sec-WebSocket-Key [RFC 6455 4.2.2].
std::string accept_key(std::string_view key);
// The key is the base64 encoding of 16 bytes [RFC 6455 4.1]: 24 characters.
bool valid_key(std::string_view key);

}  // namespace proxy::websocket_frames
