#include <doctest/doctest.h>

#include <random>

#include "mqtt/codec.hpp"
#include "mqtt/framer.hpp"

using mqtt::bytes;
using mqtt::error;

namespace {

bytes publish_frame(std::size_t payload_size, const std::string& topic = "a/b") {
  mqtt::publish p;
  p.topic = topic;
  p.payload = std::string(payload_size, 'p');
  return *mqtt::encode(p, mqtt::protocol_version::v3_1_1);
}

std::vector<bytes> drain(mqtt::framer& f) {
  std::vector<bytes> frames;
  for (;;) {
    auto next = f.next();
    REQUIRE(next.has_value());
    if (!*next) return frames;
    frames.emplace_back((*next)->bytes.begin(), (*next)->bytes.end());
  }
}

}  // namespace

TEST_SUITE("framer") {
  TEST_CASE("remaining length encodings [MQTT-1.5.5]") {
    auto header = [](bytes b) { return mqtt::parse_frame_header(b, 1u << 30); };
    CHECK((*header({0x30, 0x00}))->remaining_length == 0);
    CHECK((*header({0x30, 0x7F}))->remaining_length == 127);
    CHECK((*header({0x30, 0x80, 0x01}))->remaining_length == 128);
    CHECK((*header({0x30, 0xFF, 0x7F}))->remaining_length == 16'383);
    CHECK((*header({0x30, 0x80, 0x80, 0x01}))->remaining_length == 16'384);
    CHECK((*header({0x30, 0xFF, 0xFF, 0xFF, 0x7F}))->remaining_length == 268'435'455);
    CHECK((*header({0x30, 0xFF, 0xFF, 0xFF, 0x7F}))->header_size == 5);
  }

  TEST_CASE("incomplete headers ask for more") {
    CHECK_FALSE(mqtt::parse_frame_header(bytes{}, 100)->has_value());
    CHECK_FALSE(mqtt::parse_frame_header(bytes{0x30}, 100)->has_value());
    CHECK_FALSE(mqtt::parse_frame_header(bytes{0x30, 0x80}, 100)->has_value());
    CHECK_FALSE(mqtt::parse_frame_header(bytes{0x30, 0x80, 0x80, 0x80}, 1u << 30)->has_value());
  }

  TEST_CASE("a fifth length byte is malformed") {
    auto r = mqtt::parse_frame_header(bytes{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}, 1u << 30);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == error::remaining_length_too_long);
  }

  TEST_CASE("non-minimal lengths are malformed [MQTT-1.5.5-1]") {
    auto r = mqtt::parse_frame_header(bytes{0x30, 0x80, 0x00}, 100);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == error::remaining_length_not_minimal);
  }

  TEST_CASE("the size limit applies to the whole packet, before its body arrives") {
    CHECK(mqtt::parse_frame_header(bytes{0x30, 98}, 100)->has_value());
    auto r = mqtt::parse_frame_header(bytes{0x30, 99}, 100);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == error::packet_too_large);

    mqtt::framer f(1024);
    f.feed(bytes{0x30, 0xFF, 0xFF, 0x03});  // announces 65535 bytes and sends none
    auto next = f.next();
    REQUIRE_FALSE(next.has_value());
    CHECK(next.error() == error::packet_too_large);
  }

  TEST_CASE("packets split into single bytes and packed together come out whole and in order") {
    std::vector<bytes> sent;
    bytes stream;
    for (std::size_t size : {0u, 1u, 126u, 127u, 200u, 16'400u, 3u}) {
      sent.push_back(publish_frame(size));
      stream.insert(stream.end(), sent.back().begin(), sent.back().end());
    }
    SUBCASE("one byte at a time") {
      mqtt::framer f(1 << 20);
      std::vector<bytes> received;
      for (auto byte : stream) {
        f.feed(bytes{byte});
        for (auto& frame : drain(f)) received.push_back(frame);
      }
      CHECK(received == sent);
      CHECK(f.buffered() == 0);
    }
    SUBCASE("random chunks") {
      std::mt19937 rng(42);
      for (int round = 0; round < 50; ++round) {
        mqtt::framer f(1 << 20);
        std::vector<bytes> received;
        std::size_t at = 0;
        while (at < stream.size()) {
          std::size_t n = std::min<std::size_t>(stream.size() - at, rng() % 5000 + 1);
          auto space = f.prepare(n);
          std::copy_n(stream.begin() + static_cast<long>(at), n, space.begin());
          f.commit(n);
          at += n;
          for (auto& frame : drain(f)) received.push_back(frame);
        }
        CHECK(received == sent);
      }
    }
    SUBCASE("all at once") {
      mqtt::framer f(1 << 20);
      f.feed(stream);
      CHECK(drain(f) == sent);
    }
  }

  TEST_CASE("frames decode to the packets that were encoded") {
    mqtt::framer f(1 << 20);
    f.feed(publish_frame(10, "x/y"));
    auto next = f.next();
    REQUIRE(next.has_value());
    REQUIRE(next->has_value());
    auto p = mqtt::decode((*next)->first_byte, (*next)->body, mqtt::protocol_version::v3_1_1);
    REQUIRE(p.has_value());
    CHECK(std::get<mqtt::publish>(*p).topic == "x/y");
  }

  TEST_CASE("an idle framer gives back the memory of a large packet") {
    mqtt::framer f(1 << 20);
    f.feed(publish_frame(500'000));
    CHECK(drain(f).size() == 1);
    f.prepare(16);
    CHECK(f.buffered() == 0);
    CHECK(f.capacity() < 1024);
  }

  // An idle connection parks with no read buffer: release_if_empty frees the
  // capacity, not just the contents, and keeps a partial packet.
  TEST_CASE("release_if_empty frees the buffer of a drained framer, and only of a drained one") {
    mqtt::framer f(1 << 20);
    const auto two = publish_frame(10);
    auto partial = two;
    partial.resize(5);
    f.feed(two);
    f.feed(partial);
    CHECK(drain(f).size() == 1);
    f.release_if_empty();
    CHECK(f.capacity() >= 5);  // five bytes of the next packet are still pending
    CHECK(f.buffered() == 5);
    f.feed(std::span(two).subspan(5));
    CHECK(drain(f).size() == 1);
    f.release_if_empty();
    CHECK(f.buffered() == 0);
    CHECK(f.capacity() == 0);
  }

  TEST_CASE("pending shows the buffered bytes without taking them; clear drops them") {
    mqtt::framer f(1024);
    const bytes two = [] {
      bytes b = publish_frame(3);
      const bytes second = publish_frame(4);
      b.insert(b.end(), second.begin(), second.end());
      return b;
    }();
    f.feed(two);
    CHECK(bytes(f.pending().begin(), f.pending().end()) == two);
    CHECK(drain(f).size() == 2);  // looking took nothing
    CHECK(f.pending().empty());
    f.feed(two);
    f.clear();
    CHECK(f.buffered() == 0);
    CHECK(drain(f).empty());
    f.feed(publish_frame(5));
    CHECK(drain(f) == std::vector<bytes>{publish_frame(5)});  // usable after clearing
  }
}
