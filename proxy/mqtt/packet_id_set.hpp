// The packet ids a connection has in flight in one direction [MQTT-2.2.1].
// No I/O; the session keeps several of these.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace mqtt {

// A set of 16-bit packet ids. A connection holds a few at a time, and those
// live inline: inserting and erasing allocates nothing (a std::set node per
// QoS 1 PUBLISH and its PUBACK did, issue 14). Past the inline room the set
// becomes a bitmap of every id (8 KiB), kept for the set's life so that a
// window hovering around the limit does not allocate per message: every
// operation stays O(1), and the most a client can make one set hold is 8 KiB
// (a std::set of 65,535 ids held ~2.6 MB).
class packet_id_set {
 public:
  bool contains(std::uint16_t id) const noexcept {
    if (bits_) return word_of(id) & bit_of(id);
    return std::find(few_.begin(), few_.begin() + size_, id) != few_.begin() + size_;
  }

  // False when the id was already held.
  bool insert(std::uint16_t id) {
    if (!bits_) {
      if (contains(id)) return false;
      if (size_ < inline_capacity) {
        few_[size_++] = id;
        return true;
      }
      spill();
    }
    if (word_of(id) & bit_of(id)) return false;
    word_of(id) |= bit_of(id);
    ++size_;
    return true;
  }

  // False when the id was not held.
  bool erase(std::uint16_t id) noexcept {
    if (bits_) {
      if (!(word_of(id) & bit_of(id))) return false;
      word_of(id) &= ~bit_of(id);
      --size_;
      return true;
    }
    const auto end = few_.begin() + size_;
    const auto found = std::find(few_.begin(), end, id);
    if (found == end) return false;
    *found = few_[--size_];  // order does not matter: swap the last in
    return true;
  }

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  bool spilled() const noexcept { return bits_ != nullptr; }  // for tests

  static constexpr std::size_t inline_capacity = 16;

 private:
  using bitmap = std::array<std::uint64_t, 65536 / 64>;

  // The word of the bitmap that holds id, and id's bit in it (spilled only).
  std::uint64_t& word_of(std::uint16_t id) noexcept { return (*bits_)[id / 64]; }
  std::uint64_t word_of(std::uint16_t id) const noexcept { return (*bits_)[id / 64]; }
  static std::uint64_t bit_of(std::uint16_t id) noexcept { return std::uint64_t{1} << (id % 64); }

  void spill() {
    bits_ = std::make_unique<bitmap>();  // zeroed
    for (std::uint32_t i = 0; i < size_; ++i) word_of(few_[i]) |= bit_of(few_[i]);
  }

  std::array<std::uint16_t, inline_capacity> few_{};  // the first size_ are held, while not spilled
  std::uint32_t size_ = 0;
  std::unique_ptr<bitmap> bits_;
};

}  // namespace mqtt
