// How many clients an open-file limit holds (the listener refuses the rest
// at accept, before their broker dial would fail with EMFILE).
#include <doctest/doctest.h>

#include "net/listener.hpp"

TEST_CASE("descriptor_capacity: two descriptors a client, less a reserve for the process itself") {
  CHECK(proxy::descriptor_capacity(20'000) == (20'000 - 64 - 78) / 2);  // 9,929 at this machine's hard limit
  CHECK(proxy::descriptor_capacity(1'024) == (1'024 - 64 - 4) / 2);
  CHECK(proxy::descriptor_capacity(2'100'000) == (2'100'000 - 64 - 8'203) / 2);  // a million clients
  // Tiny limits keep half for clients rather than none.
  CHECK(proxy::descriptor_capacity(64) == 16);
  CHECK(proxy::descriptor_capacity(0) == 0);
  // Never more clients than their descriptors.
  for (std::size_t limit : {1, 2, 3, 100, 128, 129, 5'000, 65'536, 1'048'576})
    CHECK(2 * proxy::descriptor_capacity(limit) <= limit);
}

TEST_CASE("descriptors_needed: the smallest open-file limit that holds so many clients") {
  for (std::size_t clients : {0, 1, 16, 500, 9'929, 10'000, 100'000, 1'000'000}) {
    const auto limit = proxy::descriptors_needed(clients);
    CHECK(proxy::descriptor_capacity(limit) >= clients);
    if (limit > 0) CHECK(proxy::descriptor_capacity(limit - 1) < clients);
  }
  CHECK(proxy::descriptors_needed(9'929) <= 20'000);  // what this machine's hard limit holds
}

TEST_CASE("a larger process reserve (more workers, listeners, API server connections) leaves fewer clients") {
  // 16 workers, one listener, 16 + 4 API server connections each: 32 + 16 * 25.
  const std::size_t reserve = 432;
  CHECK(proxy::descriptor_capacity(20'000, reserve) == (20'000 - 432 - 78) / 2);
  CHECK(proxy::descriptor_capacity(64, reserve) == 16);  // still half of a tiny limit
  for (std::size_t clients : {1, 9'000, 1'000'000}) {
    const auto limit = proxy::descriptors_needed(clients, reserve);
    CHECK(proxy::descriptor_capacity(limit, reserve) >= clients);
    CHECK(proxy::descriptor_capacity(limit - 1, reserve) < clients);
    if (clients > 1'000) CHECK(limit >= proxy::descriptors_needed(clients) + (432 - 64));
  }
}
