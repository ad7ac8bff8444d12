// The bytes waiting to be written to one peer. One writer takes buffers from
// the front; everything else appends at the back. Small packets (the proxy's
// own PINGRESP, PUBACK, SUBACK, and small relayed packets) are appended into
// the tail buffer while that buffer is not being written, so a flood of
// 2-byte packets costs one allocation per few KiB, not one per packet.
// `bytes()` counts what is queued; the connection stops reading its peers
// while it is over the high-water mark, so the queue stays bounded.
// An empty queue holds no heap memory: a std::deque allocates ~600 bytes
// even empty (two per connection: ~1.2 KiB of every idle connection), so the
// buffers sit in a vector read from `head_`, freed whenever it drains.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <boost/asio/buffer.hpp>

namespace proxy {

class outbound_queue {
 public:
  using bytes = std::vector<std::uint8_t>;
  // Packets up to this size are coalesced into a tail buffer of up to tail_capacity.
  static constexpr std::size_t small_packet = 1024;
  static constexpr std::size_t tail_capacity = 16 * 1024;
  // A new tail starts small and grows (doubling) in a flood: most queues only
  // ever see a CONNACK or a PUBACK, and 16 KiB reserved for each of those
  // during a fleet's reconnect fragments the heap of the idle connections.
  static constexpr std::size_t first_tail_capacity = 256;
  static constexpr std::size_t max_buffers_per_write = 64;

  void push(std::span<const std::uint8_t> data) {
    if (data.empty()) return;
    bytes_ += data.size();
    if (data.size() <= small_packet) {
      if (buffer_count() > in_flight_ && queue_.back().size() + data.size() <= tail_capacity) {
        queue_.back().insert(queue_.back().end(), data.begin(), data.end());
        return;
      }
      bytes tail = take_spare_tail();
      tail.reserve(std::max(first_tail_capacity, data.size()));
      tail.assign(data.begin(), data.end());
      if (queue_.capacity() == 0) queue_.swap(spare().queue);
      queue_.push_back(std::move(tail));
      return;
    }
    queue_.emplace_back(data.begin(), data.end());
  }
  void push(bytes&& data) {
    if (data.size() <= small_packet) return push(std::span<const std::uint8_t>(data));
    bytes_ += data.size();
    queue_.push_back(std::move(data));
  }

  bool empty() const { return head_ == queue_.size(); }
  std::size_t bytes_queued() const { return bytes_; }
  std::size_t buffer_count() const { return queue_.size() - head_; }

  // The buffers of the next write; they stay untouched until commit_write().
  const std::vector<boost::asio::const_buffer>& begin_write() {
    in_flight_ = static_cast<std::uint32_t>(std::min(buffer_count(), max_buffers_per_write));
    write_buffers_.clear();
    if (write_buffers_.capacity() == 0) write_buffers_.swap(spare().buffers);
    for (std::size_t i = 0; i < in_flight_; ++i) write_buffers_.push_back(boost::asio::buffer(queue_[head_ + i]));
    return write_buffers_;
  }
  void commit_write() {
    for (; in_flight_ > 0; --in_flight_) {
      bytes_ -= queue_[head_].size();
      give_spare_tail(queue_[head_++]);
    }
    if (empty()) return clear();
    // Under steady load the queue never drains: drop the written front now and then.
    if (head_ >= 64 && head_ * 2 >= queue_.size()) {
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }
  // After a write that may have taken only part of begin_write()'s buffers
  // (a non-blocking send, outbound_queue's caller writing through): drops
  // the `written` bytes from the front, keeps the rest in order, and lets
  // push() append to the tail again.
  void commit_written(std::size_t written) {
    std::uint32_t whole = 0;
    while (whole < in_flight_ && queue_[head_ + whole].size() <= written) written -= queue_[head_ + whole++].size();
    in_flight_ = whole;
    commit_write();
    if (written == 0) return;
    auto& front = queue_[head_];  // partly written: not empty, so commit_write() kept it
    front.erase(front.begin(), front.begin() + static_cast<std::ptrdiff_t>(written));
    bytes_ -= written;
  }
  // What begin_write() handed out, in bytes.
  std::size_t bytes_in_flight() const {
    std::size_t total = 0;
    for (std::size_t i = 0; i < in_flight_; ++i) total += queue_[head_ + i].size();
    return total;
  }
  // Drops everything (the peer is gone) and gives the memory back.
  void clear() {
    // Already cleared (a closing connection clears both queues, which its
    // last write has mostly emptied): nothing to hand to the spares.
    if (queue_.capacity() == 0 && write_buffers_.capacity() == 0) return;
    // A relay that writes through drains its queue at every packet: one spare
    // of each kind per thread spares it two allocations per burst, and an
    // idle connection still holds nothing.
    for (std::size_t i = head_; i < queue_.size(); ++i) give_spare_tail(queue_[i]);
    queue_.clear();
    if (spare().queue.capacity() == 0 && queue_.capacity() <= max_buffers_per_write) queue_.swap(spare().queue);
    std::vector<bytes>().swap(queue_);
    write_buffers_.clear();
    if (spare().buffers.capacity() == 0 && write_buffers_.capacity() <= max_buffers_per_write)
      write_buffers_.swap(spare().buffers);
    std::vector<boost::asio::const_buffer>().swap(write_buffers_);
    head_ = 0;
    bytes_ = 0;
    in_flight_ = 0;
  }

 private:
  // Two tails: a new session has both of its queues' first packets (the
  // CONNACK held for the auth answer, the broker's CONNECT) queued at once.
  static constexpr std::size_t kept_tails = 2;
  struct spares {
    std::vector<bytes> queue;                   // empty, with capacity
    std::array<bytes, kept_tails> tails;        // empty, with capacity (or none)
    std::vector<boost::asio::const_buffer> buffers;  // empty, with capacity: 3 allocations per session (issue 14)
  };
  static spares& spare() {
    thread_local spares kept;
    return kept;
  }
  static bytes take_spare_tail() {
    bytes tail;
    for (auto& kept : spare().tails) {
      if (kept.capacity() == 0) continue;
      tail.swap(kept);
      break;
    }
    return tail;
  }
  // Keeps a written small buffer as one of the thread's spare tails, or frees it.
  static void give_spare_tail(bytes& written) {
    if (written.capacity() <= tail_capacity) {
      for (auto& kept : spare().tails) {
        if (kept.capacity() != 0) continue;
        written.clear();
        kept.swap(written);
        return;
      }
    }
    bytes().swap(written);
  }

  std::vector<bytes> queue_;  // [head_, size()) waits; before head_: written, already freed
  std::size_t head_ = 0;
  std::vector<boost::asio::const_buffer> write_buffers_;
  std::size_t bytes_ = 0;
  // At most max_buffers_per_write: beside `writing`, in one word (the queue
  // is 72 B instead of 80, two per connection: issue 14).
  std::uint32_t in_flight_ = 0;

 public:
  bool writing = false;  // a writer coroutine owns the front
};

}  // namespace proxy
