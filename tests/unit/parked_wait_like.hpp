// The shape of client_connection::parked_wait, for tests of where a parked
// socket wait's operation lives: a shared_ptr to its owner, a side, and an
// allocator made from the owner's memory (of the connection's size, or
// another to show that size is tight).
#pragma once

#include <cstddef>
#include <memory>

#include <boost/system/error_code.hpp>

#include "net/client_connection.hpp"
#include "net/handler_memory.hpp"

namespace test {

template <std::size_t Size>
struct basic_wait_owner {
  proxy::handler_memory<Size> memory;
  int woken = 0;
};

template <std::size_t Size>
struct basic_parked_wait_like {
  std::shared_ptr<basic_wait_owner<Size>> self;
  int side;
  using allocator_type = proxy::handler_allocator<void, Size>;
  allocator_type get_allocator() const noexcept { return allocator_type(self->memory); }
  void operator()(boost::system::error_code) const { self->woken++; }
};

constexpr std::size_t parked_wait_size = proxy::client_connection::parked_wait_size;
using wait_owner = basic_wait_owner<parked_wait_size>;
using parked_wait_like = basic_parked_wait_like<parked_wait_size>;

}  // namespace test
