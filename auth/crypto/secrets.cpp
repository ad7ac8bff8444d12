#include "crypto/secrets.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <array>
#include <charconv>
#include <stdexcept>
#include <vector>

namespace auth {
namespace {

constexpr std::string_view scheme = "pbkdf2-sha256";
constexpr std::size_t salt_size = 16;
constexpr std::size_t key_size = 32;

std::string random_bytes(std::size_t count) {
  std::string bytes(count, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(count)) != 1)
    throw std::runtime_error("OpenSSL CSPRNG failed");
  return bytes;
}

std::string derive(std::string_view password, std::string_view salt, unsigned iterations) {
  std::string key(key_size, '\0');
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()), static_cast<int>(salt.size()),
                        static_cast<int>(iterations), EVP_sha256(), static_cast<int>(key.size()),
                        reinterpret_cast<unsigned char*>(key.data())) != 1)
    throw std::runtime_error("PBKDF2 failed");
  return key;
}

std::string hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 0xF];
  }
  return out;
}

bool unhex(std::string_view text, std::string& out) {
  if (text.size() % 2) return false;
  out.clear();
  for (std::size_t i = 0; i < text.size(); i += 2) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(text.data() + i, text.data() + i + 2, value, 16);
    if (ec != std::errc{} || end != text.data() + i + 2) return false;
    out += static_cast<char>(value);
  }
  return true;
}

}  // namespace

std::string base64url(std::string_view bytes) {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const unsigned n = static_cast<unsigned char>(bytes[i]) << 16 | static_cast<unsigned char>(bytes[i + 1]) << 8 |
                       static_cast<unsigned char>(bytes[i + 2]);
    out += alphabet[n >> 18 & 63];
    out += alphabet[n >> 12 & 63];
    out += alphabet[n >> 6 & 63];
    out += alphabet[n & 63];
  }
  if (i + 1 == bytes.size()) {
    const unsigned n = static_cast<unsigned char>(bytes[i]) << 16;
    out += alphabet[n >> 18 & 63];
    out += alphabet[n >> 12 & 63];
  } else if (i + 2 == bytes.size()) {
    const unsigned n = static_cast<unsigned char>(bytes[i]) << 16 | static_cast<unsigned char>(bytes[i + 1]) << 8;
    out += alphabet[n >> 18 & 63];
    out += alphabet[n >> 12 & 63];
    out += alphabet[n >> 6 & 63];
  }
  return out;
}

std::string hash_password(std::string_view password, unsigned iterations) {
  const auto salt = random_bytes(salt_size);
  return std::string(scheme) + "$" + std::to_string(iterations) + "$" + hex(salt) + "$" +
         hex(derive(password, salt, iterations));
}

bool verify_password(std::string_view password, std::string_view stored) {
  // scheme$iterations$salt$key
  std::array<std::string_view, 4> parts;
  for (auto& part : parts) {
    const auto dollar = stored.find('$');
    part = stored.substr(0, dollar);
    stored = dollar == std::string_view::npos ? std::string_view{} : stored.substr(dollar + 1);
  }
  unsigned iterations = 0;
  auto [end, ec] = std::from_chars(parts[1].data(), parts[1].data() + parts[1].size(), iterations);
  std::string salt, expected;
  if (parts[0] != scheme || ec != std::errc{} || iterations == 0 || !unhex(parts[2], salt) ||
      !unhex(parts[3], expected) || expected.size() != key_size)
    return false;
  const auto actual = derive(password, salt, iterations);
  return CRYPTO_memcmp(actual.data(), expected.data(), key_size) == 0;
}

std::string new_session_token() { return base64url(random_bytes(32)); }

std::string token_digest(std::string_view token) {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest.data());
  return hex({reinterpret_cast<const char*>(digest.data()), digest.size()});
}

}  // namespace auth
