#include "mqtt/framer.hpp"

#include <algorithm>
#include <cstring>

namespace mqtt {

namespace {
constexpr std::size_t retained_capacity = 64 * 1024;

// A released buffer kept for the thread's next framer that needs one: a
// session's reads took and freed a buffer about three times (issue 14).
// One per thread and at most spare_capacity, so idle connections still hold
// no read memory.
constexpr std::size_t spare_capacity = 16 * 1024;

std::vector<std::uint8_t>& spare_buffer() {
  thread_local std::vector<std::uint8_t> spare;
  return spare;
}
}  // namespace

result<std::optional<frame_header>> parse_frame_header(std::span<const std::uint8_t> buffered,
                                                        std::size_t max_packet_size) {
  if (buffered.size() < 2) return std::optional<frame_header>{};
  frame_header header;
  header.first_byte = buffered[0];
  std::uint32_t length = 0;
  for (std::size_t i = 0; i < 4; ++i) {
    if (1 + i >= buffered.size()) return std::optional<frame_header>{};
    const std::uint8_t byte = buffered[1 + i];
    length |= static_cast<std::uint32_t>(byte & 0x7F) << (7 * i);
    if ((byte & 0x80) == 0) {
      if (i > 0 && byte == 0) return error::remaining_length_not_minimal;  // [MQTT-1.5.5-1]
      header.remaining_length = length;
      header.header_size = 2 + i;
      if (header.total_size() > max_packet_size) return error::packet_too_large;
      return std::optional<frame_header>{header};
    }
  }
  return error::remaining_length_too_long;  // at most four bytes [MQTT-1.5.5]
}

std::span<std::uint8_t> framer::prepare(std::size_t size) {
  compact();
  if (buffer_.capacity() == 0) buffer_.swap(spare_buffer());
  if (buffer_.size() < end_ + size) buffer_.resize(end_ + size);
  return {buffer_.data() + end_, size};
}

void framer::commit(std::size_t size) { end_ = std::min(end_ + size, buffer_.size()); }

void framer::feed(std::span<const std::uint8_t> chunk) {
  auto space = prepare(chunk.size());
  if (!chunk.empty()) std::memcpy(space.data(), chunk.data(), chunk.size());
  commit(chunk.size());
}

result<std::optional<frame>> framer::next() {
  const std::span<const std::uint8_t> pending(buffer_.data() + begin_, end_ - begin_);
  auto header = parse_frame_header(pending, max_packet_size_);
  if (!header) return header.error();
  if (!*header || pending.size() < (*header)->total_size()) return std::optional<frame>{};
  const frame_header& h = **header;
  frame f{h.first_byte, pending.subspan(h.header_size, h.remaining_length), pending.first(h.total_size())};
  begin_ += h.total_size();
  return std::optional<frame>{f};
}

void framer::release_if_empty() {
  if (begin_ != end_) return;
  // Not `buffer_ = {}`: that is assign(initializer_list), which keeps the
  // capacity (heaptrack: every idle connection still held two 512 B buffers).
  auto& spare = spare_buffer();
  if (spare.capacity() == 0 && buffer_.capacity() <= spare_capacity) {
    buffer_.clear();
    spare.swap(buffer_);
  }
  std::vector<std::uint8_t>().swap(buffer_);
  begin_ = end_ = 0;
}

void framer::compact() {
  // Frames handed out point into the buffer, so bytes move only when the
  // caller asks for room, which ends the life of those frames.
  if (begin_ == end_ && buffer_.size() > retained_capacity) {
    // An idle connection should not keep the memory of its largest packet.
    std::vector<std::uint8_t>().swap(buffer_);
    begin_ = end_ = 0;
    return;
  }
  if (begin_ == 0) return;
  std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
  end_ -= begin_;
  begin_ = 0;
}

}  // namespace mqtt
