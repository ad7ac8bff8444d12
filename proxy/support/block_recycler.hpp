// Blocks of one size, handed back to the next request instead of to malloc.
//
// Made for the connection objects of one worker (issue 14): a connection and
// its shared_ptr count are 1.26 KB, more than glibc's per-thread cache serves
// (1032 B), so every new session took malloc's arena path: a large-bin search,
// and before it a malloc_consolidate of every small chunk freed since the
// last one. perf put those two at ~1 % of the whole machine's samples in the
// sessions bench, a tenth of the proxy's user time.
//
// One thread only: no lock. The owner must use it from a single thread and
// outlive every block it handed out. A request of another size, or a free
// beyond `keep` kept blocks, goes to the heap: a wrong size costs speed,
// never correctness, and an idle worker holds at most keep x size bytes.
#pragma once

#include <cstddef>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SUPPORT_RECYCLER_POISON(block, size) ASAN_POISON_MEMORY_REGION(block, size)
#define SUPPORT_RECYCLER_UNPOISON(block, size) ASAN_UNPOISON_MEMORY_REGION(block, size)
#else
#define SUPPORT_RECYCLER_POISON(block, size) ((void)(block), (void)(size))
#define SUPPORT_RECYCLER_UNPOISON(block, size) ((void)(block), (void)(size))
#endif

namespace support {

class block_recycler {
 public:
  explicit block_recycler(std::size_t keep = 128) : keep_(keep) {}
  block_recycler(const block_recycler&) = delete;
  block_recycler& operator=(const block_recycler&) = delete;
  ~block_recycler() {
    while (free_) ::operator delete(pop());
  }

  void* allocate(std::size_t size) {
    if (size_ == 0) size_ = size;  // the first request sets the size recycled
    if (size == size_ && free_) {
      --kept_;
      return pop();
    }
    return ::operator new(size);
  }

  void deallocate(void* block, std::size_t size) noexcept {
    if (size != size_ || size < sizeof(free_block) || kept_ == keep_) return ::operator delete(block);
    free_ = new (block) free_block{free_};
    ++kept_;
    // Under ASan a kept block stays poisoned but for its link, so a use of a
    // connection after its end is still caught.
    SUPPORT_RECYCLER_POISON(static_cast<std::byte*>(block) + sizeof(free_block), size_ - sizeof(free_block));
  }

  std::size_t kept() const { return kept_; }

 private:
  struct free_block {
    free_block* next;
  };
  void* pop() noexcept {
    free_block* block = free_;
    free_ = block->next;
    block->~free_block();
    SUPPORT_RECYCLER_UNPOISON(block, size_);
    return block;
  }
  std::size_t keep_;
  std::size_t size_ = 0;
  std::size_t kept_ = 0;
  free_block* free_ = nullptr;
};

// The standard allocator over a block_recycler, for std::allocate_shared.
template <typename T>
class recycled_allocator {
 public:
  using value_type = T;
  static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__, "blocks come from plain operator new");

  explicit recycled_allocator(block_recycler& recycler) noexcept : recycler_(&recycler) {}
  template <typename U>
  recycled_allocator(const recycled_allocator<U>& other) noexcept : recycler_(other.recycler_) {}

  T* allocate(std::size_t n) { return static_cast<T*>(recycler_->allocate(n * sizeof(T))); }
  void deallocate(T* block, std::size_t n) noexcept { recycler_->deallocate(block, n * sizeof(T)); }

  template <typename U>
  bool operator==(const recycled_allocator<U>& other) const noexcept {
    return recycler_ == other.recycler_;
  }

 private:
  template <typename>
  friend class recycled_allocator;
  block_recycler* recycler_;
};

}  // namespace support
