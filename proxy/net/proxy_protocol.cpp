#include "net/proxy_protocol.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <string_view>
#include <vector>

namespace proxy::proxy_protocol {
namespace {

constexpr std::array<std::uint8_t, 12> v2_signature{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                    0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr std::string_view v1_prefix = "PROXY ";
constexpr std::size_t v1_max_line = 107;

parse_result invalid(std::string why) { return {status::invalid, {}, std::move(why)}; }

bool valid_port(std::string_view text, unsigned& port) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  return ec == std::errc{} && end == text.data() + text.size() && port <= 65535 && !text.empty();
}

bool valid_address(std::string_view text, int family) {
  std::array<unsigned char, 16> buffer{};
  return inet_pton(family, std::string(text).c_str(), buffer.data()) == 1;
}

parse_result parse_v1(std::span<const std::uint8_t> bytes) {
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), std::min(bytes.size(), v1_max_line));
  const auto end = text.find("\r\n");
  if (end == std::string_view::npos) {
    if (bytes.size() >= v1_max_line) return invalid("PROXY v1 line longer than 107 bytes");
    return {};
  }
  std::vector<std::string_view> fields;
  std::string_view line = text.substr(0, end);
  for (std::size_t start = 0; start <= line.size();) {
    const auto space = line.find(' ', start);
    fields.push_back(line.substr(start, space == std::string_view::npos ? std::string_view::npos : space - start));
    if (space == std::string_view::npos) break;
    start = space + 1;
  }
  parse_result result{status::complete, {"", end + 2}, ""};
  if (fields.size() == 2 && fields[1] == "UNKNOWN") return result;
  if (fields.size() >= 2 && fields[1] == "UNKNOWN") return result;  // the spec lets the rest be ignored
  if (fields.size() != 6 || (fields[1] != "TCP4" && fields[1] != "TCP6")) return invalid("malformed PROXY v1 line");
  const int family = fields[1] == "TCP4" ? AF_INET : AF_INET6;
  unsigned source_port = 0, destination_port = 0;
  if (!valid_address(fields[2], family) || !valid_address(fields[3], family) || !valid_port(fields[4], source_port) ||
      !valid_port(fields[5], destination_port))
    return invalid("malformed address or port in PROXY v1 line");
  result.value.source = family == AF_INET ? std::string(fields[2]) + ":" + std::string(fields[4])
                                          : "[" + std::string(fields[2]) + "]:" + std::string(fields[4]);
  return result;
}

parse_result parse_v2(std::span<const std::uint8_t> bytes) {
  if (bytes.size() < 16) return {};
  const std::uint8_t version_command = bytes[12];
  if ((version_command & 0xF0) != 0x20) return invalid("PROXY v2 with an unknown version");
  const std::uint8_t command = version_command & 0x0F;
  if (command > 1) return invalid("PROXY v2 with an unknown command");
  const std::size_t length = static_cast<std::size_t>(bytes[14]) << 8 | bytes[15];
  const std::size_t total = 16 + length;
  if (total > max_header_size) return invalid("PROXY v2 header larger than " + std::to_string(max_header_size) + " bytes");
  if (bytes.size() < total) return {};
  parse_result result{status::complete, {"", total}, ""};
  if (command == 0) return result;  // LOCAL: the balancer's own connection (health checks)
  const std::uint8_t family = bytes[13];
  const auto* address = bytes.data() + 16;
  char text[INET6_ADDRSTRLEN] = {};
  if (family == 0x11) {  // TCP over IPv4: src, dst, src port, dst port
    if (length < 12) return invalid("PROXY v2 IPv4 block too short");
    inet_ntop(AF_INET, address, text, sizeof text);
    result.value.source = std::string(text) + ":" + std::to_string(address[8] << 8 | address[9]);
  } else if (family == 0x21) {  // TCP over IPv6
    if (length < 36) return invalid("PROXY v2 IPv6 block too short");
    inet_ntop(AF_INET6, address, text, sizeof text);
    result.value.source = "[" + std::string(text) + "]:" + std::to_string(address[32] << 8 | address[33]);
  }
  // UNSPEC, UDP and UNIX families: the connection is accepted, its address unknown.
  return result;
}

}  // namespace

parse_result parse(std::span<const std::uint8_t> bytes) {
  const std::size_t signature = std::min(bytes.size(), v2_signature.size());
  if (std::equal(bytes.begin(), bytes.begin() + static_cast<long>(signature), v2_signature.begin())) {
    return signature < v2_signature.size() ? parse_result{} : parse_v2(bytes);
  }
  const std::size_t prefix = std::min(bytes.size(), v1_prefix.size());
  if (std::string_view(reinterpret_cast<const char*>(bytes.data()), prefix) == v1_prefix.substr(0, prefix)) {
    return prefix < v1_prefix.size() ? parse_result{} : parse_v1(bytes);
  }
  return invalid("connection does not start with a PROXY protocol header");
}

}  // namespace proxy::proxy_protocol
