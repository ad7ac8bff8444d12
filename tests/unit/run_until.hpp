// Runs an io_context in short slices until `done` holds or `limit` passes:
// every wait in the socket tests is bounded, so a lost wake-up fails the test
// instead of hanging it. True when done.
#pragma once

#include <chrono>

#include <boost/asio/io_context.hpp>

namespace test {

template <class Predicate>
bool run_until(boost::asio::io_context& io, Predicate done,
               std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    io.run_for(std::chrono::milliseconds(5));
    io.restart();
  }
  return done();
}

}  // namespace test
