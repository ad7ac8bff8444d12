#include <doctest/doctest.h>

#include <set>
#include <string>
#include <vector>

#include "mqtt/topic.hpp"

using namespace mqtt::topic;

TEST_SUITE("topic names and filters [MQTT-4.7]") {
  TEST_CASE("valid and invalid names") {
    for (auto name : {"a", "/", "a/b", "a//b", "/a", "a/", "$SYS/x", " ", "sport/tennis/player1"})
      CHECK_MESSAGE(is_valid_name(name), name);
    for (auto name : {"", "a/+", "#", "a+b", "a/#"}) CHECK_MESSAGE(!is_valid_name(name), name);
  }

  TEST_CASE("has_wildcard finds '+' and '#' at every position, eight bytes a step or one") {
    // Sizes 1 to 20 reach every lane of the word test and the tail loop; the
    // bytes next to '+' (0x2B) and '#' (0x23), and 0x80 and 0xFF, must not count.
    for (std::size_t size = 1; size <= 20; ++size) {
      CHECK_FALSE(has_wildcard(std::string(size, 'a')));
      for (std::size_t at = 0; at < size; ++at) {
        for (const char c : {'+', '#'}) {
          std::string text(size, 'a');
          text[at] = c;
          CHECK_MESSAGE(has_wildcard(text), text);
          CHECK_MESSAGE(!is_valid_name(text), text);
        }
        for (const char c : {'\x22', '\x24', '\x2A', '\x2C', '\x80', '\xFF', '\0'}) {
          std::string text(size, 'a');
          text[at] = c;
          CHECK_FALSE_MESSAGE(has_wildcard(text), size, " ", at, " ", static_cast<int>(static_cast<unsigned char>(c)));
        }
      }
    }
  }

  TEST_CASE("valid and invalid filters [MQTT-4.7.1-2] [MQTT-4.7.1-3]") {
    for (auto filter : {"#", "+", "+/+", "/+", "a/#", "a/+/b", "+/#", "a//b", "$SYS/#", "$share/g/a/#",
                        "$share/g/#", "$share", "$sharex/y", "a/$share/b"})
      CHECK_MESSAGE(is_valid_filter(filter), filter);
    for (auto filter : {"", "a#", "a/#/b", "a+", "+a", "a/b#", "#/a", "$share/", "$share/g", "$share//a",
                        "$share/g+/a", "$share/g#/a", "$share/g/", "$share/g/a#"})
      CHECK_MESSAGE(!is_valid_filter(filter), filter);
  }

  TEST_CASE("shared subscriptions [MQTT-4.8.2]") {
    auto s = parse_shared("$share/group/a/+/b");
    REQUIRE(s);
    CHECK(s->group == "group");
    CHECK(s->filter == "a/+/b");
    CHECK_FALSE(parse_shared("a/b"));
    CHECK_FALSE(parse_shared("$share"));
    CHECK(effective_filter("$share/g/x/#") == "x/#");
    CHECK(effective_filter("x/#") == "x/#");
  }

  TEST_CASE("matching, the examples of section 4.7") {
    CHECK(matches("sport/tennis/player1", "sport/tennis/player1/#"));
    CHECK(matches("sport/tennis/player1/ranking", "sport/tennis/player1/#"));
    CHECK(matches("sport/tennis/player1/score/wimbledon", "sport/tennis/player1/#"));
    CHECK(matches("sport", "sport/#"));  // '#' includes the parent level
    CHECK(matches("sport/tennis/player1", "sport/tennis/+"));
    CHECK_FALSE(matches("sport/tennis/player1/ranking", "sport/tennis/+"));
    CHECK_FALSE(matches("sport", "sport/+"));
    CHECK(matches("sport/", "sport/+"));
    CHECK(matches("/finance", "+/+"));
    CHECK(matches("/finance", "/+"));
    CHECK_FALSE(matches("/finance", "+"));
    CHECK(matches("a//b", "a/+/b"));
    CHECK(matches("anything/at/all", "#"));
    CHECK_FALSE(matches("a/b", "a"));
    CHECK_FALSE(matches("a", "a/b"));
  }

  TEST_CASE("leading wildcards do not match $ topics [MQTT-4.7.2-1]") {
    CHECK_FALSE(matches("$SYS/monitor/Clients", "#"));
    CHECK_FALSE(matches("$SYS/monitor/Clients", "+/monitor/Clients"));
    CHECK(matches("$SYS/monitor/Clients", "$SYS/#"));
    CHECK(matches("$SYS/monitor/Clients", "$SYS/monitor/+"));
    CHECK(matches("a/$SYS", "a/+"));
  }

  TEST_CASE("subset: hand-picked ACL cases") {
    CHECK(is_subset("private/alice/x", "private/alice/#"));
    CHECK(is_subset("private/alice/#", "private/alice/#"));
    CHECK(is_subset("private/alice", "private/alice/#"));
    CHECK(is_subset("private/alice/+/y", "private/alice/#"));
    CHECK_FALSE(is_subset("private/#", "private/alice/#"));
    CHECK_FALSE(is_subset("private/+/x", "private/alice/#"));
    CHECK_FALSE(is_subset("#", "private/alice/#"));
    CHECK_FALSE(is_subset("+/alice/#", "private/alice/#"));
    CHECK_FALSE(is_subset("private/alice/#", "private/alice/+"));
    CHECK(is_subset("a/+", "a/+/#"));
    CHECK_FALSE(is_subset("a/#", "a/+/#"));  // "a/#" matches "a", "a/+/#" does not
    CHECK(is_subset("#", "+/#"));
    CHECK(is_subset("/#", "/+/#"));  // the parent of "/#" would be the empty name
    CHECK_FALSE(is_subset("a/#", "a/+/#"));
    CHECK(is_subset("+/#", "#"));
    CHECK(is_subset("+", "#"));
    CHECK_FALSE(is_subset("$SYS/#", "#"));
    CHECK_FALSE(is_subset("$SYS/x", "+/x"));
    CHECK(is_subset("$SYS/x", "$SYS/+"));
    CHECK(is_subset("a//b", "a/+/b"));
    CHECK_FALSE(is_subset("a/+/b", "a//b"));
  }
}

// Checks is_subset against its definition by brute force: for every pair of
// filters over a small alphabet, "a within b" must equal "every topic a matches,
// b matches" over a universe of topics. The universe includes a level that no
// filter names ("z") and is one level deeper than any filter, which makes the
// finite check equivalent to the unbounded one.
TEST_SUITE("topic subset, exhaustive") {
  std::vector<std::string> all_strings(const std::vector<std::string>& alphabet, std::size_t max_levels) {
    std::vector<std::string> out;
    std::vector<std::string> frontier{""};
    for (std::size_t depth = 1; depth <= max_levels; ++depth) {
      std::vector<std::string> next;
      for (const auto& prefix : frontier)
        for (const auto& level : alphabet) next.push_back(depth == 1 ? level : prefix + "/" + level);
      out.insert(out.end(), next.begin(), next.end());
      frontier = std::move(next);
    }
    return out;
  }

  TEST_CASE("is_subset agrees with the definition") {
    std::vector<std::string> filters;
    for (auto& f : all_strings({"a", "", "$s", "+", "#"}, 3))
      if (is_valid_filter(f)) filters.push_back(f);
    std::vector<std::string> topics;
    for (auto& t : all_strings({"a", "", "$s", "z"}, 4))
      if (is_valid_name(t)) topics.push_back(t);
    REQUIRE(filters.size() > 100);
    REQUIRE(topics.size() > 300);

    std::size_t subsets = 0;
    for (const auto& a : filters) {
      for (const auto& b : filters) {
        bool expected = true;
        for (const auto& t : topics) {
          if (matches(t, a) && !matches(t, b)) {
            expected = false;
            break;
          }
        }
        if (is_subset(a, b) != expected) FAIL_CHECK("is_subset(" << a << ", " << b << ") should be " << expected);
        subsets += expected;
      }
    }
    CHECK(subsets > filters.size());  // reflexive pairs and more
  }
}
