// Memory for one asynchronous operation at a time, inside the object that
// starts it (asio's "handler allocation" pattern). An idle connection keeps
// one socket wait pending per side for as long as it lives; left to asio,
// each wait takes a block from the thread's recycling cache, which holds
// blocks sized for the last (larger) operation, or a fresh heap block with
// its malloc header: ~400 B per side, profiled (issue 14). Here the
// operation is built in place: exactly its size, no heap block.
//
// An operation larger than the slot, or a second one while the slot is
// taken, falls back to the heap, so a wrong size costs memory, never
// correctness. The owner must outlive the operation: hand the slot only to
// handlers that keep the owner alive (asio frees an operation's memory
// before it invokes or destroys the handler).
#pragma once

#include <cstddef>
#include <new>

namespace proxy {

template <std::size_t Size>
class handler_memory {
 public:
  handler_memory() = default;
  handler_memory(const handler_memory&) = delete;
  handler_memory& operator=(const handler_memory&) = delete;

  void* allocate(std::size_t size, std::size_t alignment) {
    if (!in_use_ && size <= Size && alignment <= slot_alignment) {
      in_use_ = true;
      return storage_;
    }
    return ::operator new(size);  // asio's operations need no more than the default alignment
  }
  void deallocate(void* pointer) noexcept {
    if (pointer == storage_) {
      in_use_ = false;
      return;
    }
    ::operator delete(pointer);
  }
  bool in_use() const { return in_use_; }
  static constexpr std::size_t size() { return Size; }

 private:
  // Asio's operations hold pointers and integers: 8-byte alignment, so the
  // slot wastes no padding before the flag.
  static constexpr std::size_t slot_alignment = alignof(void*);
  alignas(slot_alignment) std::byte storage_[Size];
  bool in_use_ = false;
};

// The allocator a handler names as its allocator_type (get_allocator()),
// drawing from one handler_memory. Holding the handler's own pointer to the
// owner keeps the handler small: asio stores the handler in the operation.
template <typename T, std::size_t Size>
class handler_allocator {
 public:
  using value_type = T;
  template <typename U>
  struct rebind {  // std::allocator_traits cannot rebind past the size parameter
    using other = handler_allocator<U, Size>;
  };

  explicit handler_allocator(handler_memory<Size>& memory) noexcept : memory_(&memory) {}
  template <typename U>
  handler_allocator(const handler_allocator<U, Size>& other) noexcept : memory_(other.memory_) {}

  T* allocate(std::size_t n) { return static_cast<T*>(memory_->allocate(sizeof(T) * n, alignof(T))); }
  void deallocate(T* pointer, std::size_t) noexcept { memory_->deallocate(pointer); }

  template <typename U>
  bool operator==(const handler_allocator<U, Size>& other) const noexcept {
    return memory_ == other.memory_;
  }

 private:
  template <typename, std::size_t>
  friend class handler_allocator;
  handler_memory<Size>* memory_;
};

}  // namespace proxy
