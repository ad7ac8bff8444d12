#include <doctest/doctest.h>

#include <random>
#include <set>

#include "mqtt/packet_id_set.hpp"

namespace {

// Every answer of the set against std::set's, after each operation.
void check_same(const mqtt::packet_id_set& ids, const std::set<std::uint16_t>& expected, std::uint16_t probe) {
  REQUIRE(ids.size() == expected.size());
  REQUIRE(ids.empty() == expected.empty());
  REQUIRE(ids.contains(probe) == expected.contains(probe));
}

}  // namespace

TEST_SUITE("packet_id_set") {
  TEST_CASE("inline: insert, erase, duplicates and absent ids answer as a set does") {
    mqtt::packet_id_set ids;
    CHECK(ids.empty());
    CHECK(ids.insert(7));
    CHECK_FALSE(ids.insert(7));  // a client reusing an id in flight: held once
    CHECK(ids.insert(0));
    CHECK(ids.insert(65535));
    CHECK(ids.size() == 3);
    CHECK(ids.contains(0));
    CHECK(ids.contains(65535));
    CHECK_FALSE(ids.contains(8));
    CHECK_FALSE(ids.erase(8));
    CHECK(ids.erase(7));
    CHECK_FALSE(ids.erase(7));
    CHECK_FALSE(ids.contains(7));
    CHECK(ids.contains(65535));  // the last entry swapped into the erased place
    CHECK(ids.size() == 2);
    CHECK_FALSE(ids.spilled());
  }

  TEST_CASE("the inline room is used before any allocation, and the ids survive the spill") {
    mqtt::packet_id_set ids;
    for (std::uint16_t id = 1; id <= mqtt::packet_id_set::inline_capacity; ++id) REQUIRE(ids.insert(id * 1000));
    CHECK_FALSE(ids.spilled());
    CHECK_FALSE(ids.insert(1000));  // a duplicate at capacity does not spill
    CHECK_FALSE(ids.spilled());
    CHECK(ids.insert(3));
    CHECK(ids.spilled());
    CHECK(ids.size() == mqtt::packet_id_set::inline_capacity + 1);
    for (std::uint16_t id = 1; id <= mqtt::packet_id_set::inline_capacity; ++id) CHECK(ids.contains(id * 1000));
    CHECK(ids.contains(3));
    CHECK_FALSE(ids.contains(4));
  }

  TEST_CASE("all 65536 ids held at once, then released") {
    mqtt::packet_id_set ids;
    for (std::uint32_t id = 0; id <= 65535; ++id) REQUIRE(ids.insert(static_cast<std::uint16_t>(id)));
    CHECK(ids.size() == 65536);
    for (std::uint32_t id = 0; id <= 65535; ++id) REQUIRE_FALSE(ids.insert(static_cast<std::uint16_t>(id)));
    for (std::uint32_t id = 0; id <= 65535; id += 2) REQUIRE(ids.erase(static_cast<std::uint16_t>(id)));
    CHECK(ids.size() == 32768);
    CHECK_FALSE(ids.contains(65534));
    CHECK(ids.contains(65535));
    for (std::uint32_t id = 1; id <= 65535; id += 2) REQUIRE(ids.erase(static_cast<std::uint16_t>(id)));
    CHECK(ids.empty());
  }

  TEST_CASE("random operations agree with std::set in both forms") {
    // Ids drawn from a small range keep the set inline part of the time and
    // make duplicates and misses common; a wide range spills it.
    for (const std::uint32_t range : {8u, 20u, 200u, 65536u}) {
      CAPTURE(range);
      std::mt19937 random(range);
      std::uniform_int_distribution<std::uint32_t> id_of(0, range - 1);
      std::bernoulli_distribution insert_more(0.6);
      mqtt::packet_id_set ids;
      std::set<std::uint16_t> expected;
      for (int step = 0; step < 20000; ++step) {
        const auto id = static_cast<std::uint16_t>(id_of(random));
        if (insert_more(random)) {
          REQUIRE(ids.insert(id) == expected.insert(id).second);
        } else {
          REQUIRE(ids.erase(id) == (expected.erase(id) == 1));
        }
        check_same(ids, expected, static_cast<std::uint16_t>(id_of(random)));
      }
      for (std::uint32_t id = 0; id < range; ++id)
        REQUIRE(ids.contains(static_cast<std::uint16_t>(id)) == expected.contains(static_cast<std::uint16_t>(id)));
    }
  }
}
