#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "net/proxy_protocol.hpp"

using namespace proxy::proxy_protocol;

namespace {

std::vector<std::uint8_t> bytes(std::string_view text) { return {text.begin(), text.end()}; }

std::vector<std::uint8_t> v2(std::uint8_t command, std::uint8_t family, std::vector<std::uint8_t> block) {
  std::vector<std::uint8_t> out{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
  out.push_back(static_cast<std::uint8_t>(0x20 | command));
  out.push_back(family);
  out.push_back(static_cast<std::uint8_t>(block.size() >> 8));
  out.push_back(static_cast<std::uint8_t>(block.size()));
  out.insert(out.end(), block.begin(), block.end());
  return out;
}

}  // namespace

TEST_SUITE("PROXY protocol") {
  TEST_CASE("v1 TCP4 and TCP6, with MQTT right behind") {
    auto line = bytes("PROXY TCP4 203.0.113.7 10.0.0.1 51234 5000\r\n\x10\x0c");
    auto r = parse(line);
    REQUIRE(r.state == status::complete);
    CHECK(r.value.source == "203.0.113.7:51234");
    CHECK(r.value.size == line.size() - 2);
    auto six = parse(bytes("PROXY TCP6 2001:db8::1 ::1 443 5000\r\n"));
    REQUIRE(six.state == status::complete);
    CHECK(six.value.source == "[2001:db8::1]:443");
    auto unknown = parse(bytes("PROXY UNKNOWN\r\n"));
    CHECK(unknown.state == status::complete);
    CHECK(unknown.value.source.empty());
  }

  TEST_CASE("v1 arriving in pieces") {
    const auto full = bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
    for (std::size_t cut = 0; cut < full.size(); ++cut)
      CHECK(parse(std::span(full).first(cut)).state == status::need_more);
    CHECK(parse(full).state == status::complete);
  }

  TEST_CASE("v1 refusals") {
    CHECK(parse(bytes("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n")).state == status::invalid);
    CHECK(parse(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n")).state == status::invalid);
    CHECK(parse(bytes("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n")).state == status::invalid);
    CHECK(parse(bytes("PROXY " + std::string(200, 'x'))).state == status::invalid);  // no CRLF within 107 bytes
    CHECK(parse(bytes("\x10\x0c\x00\x04MQTT")).state == status::invalid);  // plain MQTT on a PROXY listener
    CHECK(parse(bytes("GET / HTTP/1.1\r\n")).state == status::invalid);
  }

  TEST_CASE("v2 PROXY over IPv4 and IPv6, LOCAL, and TLVs skipped") {
    auto r = parse(v2(1, 0x11, {203, 0, 113, 7, 10, 0, 0, 1, 0xC8, 0x22, 0x13, 0x88}));
    REQUIRE(r.state == status::complete);
    CHECK(r.value.source == "203.0.113.7:51234");
    CHECK(r.value.size == 28);
    std::vector<std::uint8_t> six(36, 0);
    six[0] = 0x20, six[1] = 0x01, six[2] = 0x0d, six[3] = 0xb8, six[15] = 1;  // 2001:db8::1
    six[32] = 0x01, six[33] = 0xBB;                                           // port 443
    CHECK(parse(v2(1, 0x21, six)).value.source == "[2001:db8::1]:443");
    auto local = parse(v2(0, 0x00, {}));
    CHECK(local.state == status::complete);
    CHECK(local.value.source.empty());
    auto with_tlv = parse(v2(1, 0x11, {1, 2, 3, 4, 5, 6, 7, 8, 0, 80, 0, 81, 0x04, 0x00, 0x01, 0x00}));
    CHECK(with_tlv.value.size == 16 + 16);
  }

  TEST_CASE("v2 in pieces, and refusals") {
    const auto full = v2(1, 0x11, {1, 2, 3, 4, 5, 6, 7, 8, 0, 80, 0, 81});
    for (std::size_t cut = 0; cut < full.size(); ++cut)
      CHECK(parse(std::span(full).first(cut)).state == status::need_more);
    auto bad_version = full;
    bad_version[12] = 0x31;
    CHECK(parse(bad_version).state == status::invalid);
    CHECK(parse(v2(1, 0x11, {1, 2, 3})).state == status::invalid);  // block too short for IPv4
    CHECK(parse(v2(1, 0x11, std::vector<std::uint8_t>(600, 0))).state == status::invalid);  // too large
  }
}
