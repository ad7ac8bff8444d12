// Cuts an MQTT byte stream, arriving in chunks of any size, into whole
// packets. Knows only the fixed header (section 2.2); the codec decodes the
// rest. The size limit is checked as soon as the remaining length is known,
// so an oversized packet is refused before its body is buffered.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "mqtt/error.hpp"

namespace mqtt {

struct frame_header {
  std::uint8_t first_byte = 0;
  std::uint32_t remaining_length = 0;
  std::size_t header_size = 0;  // 2 to 5 bytes
  std::size_t total_size() const { return header_size + remaining_length; }
};

// Looks at the start of `buffered`: a complete fixed header, std::nullopt when
// more bytes are needed, or an error (remaining length malformed, packet larger
// than `max_packet_size` bytes in total).
result<std::optional<frame_header>> parse_frame_header(std::span<const std::uint8_t> buffered,
                                                        std::size_t max_packet_size);

// A complete packet inside the framer's buffer; valid until the next call to
// the framer that adds or takes bytes.
struct frame {
  std::uint8_t first_byte = 0;
  std::span<const std::uint8_t> body;   // variable header and payload
  std::span<const std::uint8_t> bytes;  // the whole packet, for relaying unchanged
};

class framer {
 public:
  explicit framer(std::size_t max_packet_size) : max_packet_size_(max_packet_size) {}

  // Space for the next read from a socket, then how much of it was filled.
  std::span<std::uint8_t> prepare(std::size_t size);
  void commit(std::size_t size);
  void feed(std::span<const std::uint8_t> chunk);

  // The next whole packet, std::nullopt until one is complete, or the framing
  // error. After an error the stream cannot be resynchronised: close it.
  result<std::optional<frame>> next();

  std::size_t buffered() const { return end_ - begin_; }
  // The bytes buffered and not yet handed out, to look at without taking them.
  std::span<const std::uint8_t> pending() const { return {buffer_.data() + begin_, end_ - begin_}; }
  // Drops every buffered byte (a stream being abandoned).
  void clear() { begin_ = end_ = 0; }
  // Frees the buffer when no bytes are pending, so an idle connection holds
  // no read memory. Frames handed out before become invalid.
  void release_if_empty();
  // Heap bytes the framer holds (what an idle connection keeps for reading).
  std::size_t capacity() const { return buffer_.capacity(); }
  std::size_t max_packet_size() const { return max_packet_size_; }

 private:
  void compact();

  std::size_t max_packet_size_;
  std::vector<std::uint8_t> buffer_;
  std::size_t begin_ = 0;  // first byte not yet handed out
  std::size_t end_ = 0;    // one past the last byte received
};

}  // namespace mqtt
