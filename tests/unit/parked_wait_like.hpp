// The shape of client_connection::parked_wait, for tests of where a parked
// socket wait's operation lives: a shared_ptr to its owner, a side, and an
// allocator made from the owner's memory.
#pragma once

#include <memory>

#include <boost/system/error_code.hpp>

#include "net/handler_memory.hpp"

namespace test {

struct wait_owner {
  proxy::handler_memory<152> memory;  // client_connection::parked_wait_size
  int woken = 0;
};

struct parked_wait_like {
  std::shared_ptr<wait_owner> self;
  int side;
  using allocator_type = proxy::handler_allocator<void, 152>;
  allocator_type get_allocator() const noexcept { return allocator_type(self->memory); }
  void operator()(boost::system::error_code) const { self->woken++; }
};

}  // namespace test
