#include <doctest/doctest.h>

#include <string>

#include "mqtt/utf8.hpp"

using mqtt::check_utf8;
using mqtt::error;

TEST_SUITE("UTF-8 [MQTT-1.5.4]") {
  TEST_CASE("well-formed text") {
    CHECK_FALSE(check_utf8(""));
    CHECK_FALSE(check_utf8("plain ascii/topic"));
    CHECK_FALSE(check_utf8("caf\xC3\xA9"));                 // é
    CHECK_FALSE(check_utf8("\xE2\x82\xAC"));                // €
    CHECK_FALSE(check_utf8("\xF0\x9F\x98\x80"));            // emoji
    CHECK_FALSE(check_utf8("\xEF\xBB\xBF"));                // BOM is a valid character [MQTT-1.5.4-3]
    CHECK_FALSE(check_utf8("\xF4\x8F\xBF\xBF"));            // U+10FFFF
  }

  TEST_CASE("U+0000 [MQTT-1.5.4-2]") {
    CHECK(check_utf8(std::string_view("a\0b", 3)) == error::utf8_contains_null);
  }

  TEST_CASE("ill-formed sequences [MQTT-1.5.4-1]") {
    CHECK(check_utf8("\x80") == error::invalid_utf8);              // lone continuation
    CHECK(check_utf8("\xC3") == error::invalid_utf8);              // truncated
    CHECK(check_utf8("\xC3\x28") == error::invalid_utf8);          // bad continuation
    CHECK(check_utf8("\xC0\xAF") == error::invalid_utf8);          // overlong '/'
    CHECK(check_utf8("\xE0\x80\xAF") == error::invalid_utf8);      // overlong
    CHECK(check_utf8("\xED\xA0\x80") == error::invalid_utf8);      // U+D800 surrogate
    CHECK(check_utf8("\xED\xBF\xBF") == error::invalid_utf8);      // U+DFFF surrogate
    CHECK(check_utf8("\xF4\x90\x80\x80") == error::invalid_utf8);  // above U+10FFFF
    CHECK(check_utf8("\xF8\x88\x80\x80\x80") == error::invalid_utf8);
    CHECK(check_utf8("\xFF") == error::invalid_utf8);
  }

  // The ASCII fast path reads eight bytes at a time: what it must not skip,
  // at every position of a word and after whole words.
  TEST_CASE("long text: NUL and ill-formed bytes at every position") {
    const std::string ascii(40, 'a');
    CHECK_FALSE(check_utf8(ascii));
    for (std::size_t at = 0; at < ascii.size(); ++at) {
      CAPTURE(at);
      auto with_nul = ascii;
      with_nul[at] = '\0';
      CHECK(check_utf8(with_nul) == error::utf8_contains_null);
      auto with_continuation = ascii;
      with_continuation[at] = '\x80';
      CHECK(check_utf8(with_continuation) == error::invalid_utf8);
      auto with_two_bytes = ascii;  // a well-formed é straddling any word boundary
      with_two_bytes.replace(at, 1, "\xC3\xA9");
      CHECK_FALSE(check_utf8(with_two_bytes));
      auto surrogate = ascii;
      surrogate.replace(at, 1, "\xED\xA0\x80");
      CHECK(check_utf8(surrogate) == error::invalid_utf8);
    }
  }
}
