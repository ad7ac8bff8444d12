// The low-level SHA-256 functions are deprecated in OpenSSL 3.0 (see sha256 below).
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>

#include "auth/auth_client.hpp"

namespace proxy {

namespace {

#ifndef OPENSSL_NO_DEPRECATED_3_0
// SHA-256 through the low-level functions, whose context lives on the stack:
// EVP_DigestInit_ex2 in OpenSSL 3.0 frees and allocates the provider's
// context on every digest, reused EVP_MD_CTX or not (measured: with
// EVP_MD_CTX_copy_ex, and with EVP_DigestInit_ex2(ctx, nullptr, nullptr), the
// same), ~650 instructions and a malloc/free pair per new session on top of
// the block function (issue 14). Deprecated in 3.0, not removed; a build
// without them takes the EVP path below.
void sha256(std::string_view data, unsigned char* out) {
  SHA256_CTX context;
  SHA256_Init(&context);
  SHA256_Update(&context, data.data(), data.size());
  SHA256_Final(out, &context);
}
#else
// SHA-256 fetched once per thread: EVP_Digest(EVP_sha256()) looks the
// algorithm up in the provider tables on every call, which was most of its
// cost (8 % of the proxy's instructions per new session, issue 14).
struct sha256_engine {
  EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  EVP_MD_CTX* context = EVP_MD_CTX_new();
  sha256_engine() = default;
  sha256_engine(const sha256_engine&) = delete;
  sha256_engine& operator=(const sha256_engine&) = delete;
  ~sha256_engine() {
    EVP_MD_CTX_free(context);
    EVP_MD_free(md);
  }
  bool digest(std::string_view data, unsigned char* out, unsigned int* size) {
    return md && context && EVP_DigestInit_ex2(context, md, nullptr) == 1 &&
           EVP_DigestUpdate(context, data.data(), data.size()) == 1 && EVP_DigestFinal_ex(context, out, size) == 1;
  }
};

void sha256(std::string_view data, unsigned char* out) {
  thread_local sha256_engine engine;
  unsigned int size = 0;
  if (!engine.digest(data, out, &size)) EVP_Digest(data.data(), data.size(), out, &size, EVP_sha256(), nullptr);
}
#endif

}  // namespace

session_key session_key_of(std::string_view token) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  sha256(token, digest.data());
  session_key key{};
  std::copy_n(digest.begin(), key.size(), key.begin());
  return key;
}

std::string hex_of(const session_key& key) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out(key.size() * 2, '\0');
  for (std::size_t i = 0; i < key.size(); ++i) {
    out[2 * i] = hex[key[i] >> 4];
    out[2 * i + 1] = hex[key[i] & 0x0F];
  }
  return out;
}

std::string session_digest(std::string_view token) { return hex_of(session_key_of(token)); }

}  // namespace proxy
