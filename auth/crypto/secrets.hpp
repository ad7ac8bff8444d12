// Password hashing and session tokens, on OpenSSL.
//
// Passwords: PBKDF2-HMAC-SHA256, 16-byte random salt, 600,000 iterations by
// default, the OWASP Password Storage Cheat Sheet figure for this KDF (about
// 0.2 s on one core here: slow enough to make offline guessing expensive,
// fast enough for interactive logins). The iteration count is stored with
// each hash, so it can be raised later without invalidating old hashes.
//
// Session tokens: 32 bytes (256 bits) from the OpenSSL CSPRNG, base64url
// without padding. The database keeps only SHA-256(token): a leaked database
// does not contain a usable session.
#pragma once

#include <string>
#include <string_view>

namespace auth {

inline constexpr unsigned default_kdf_iterations = 600'000;

std::string hash_password(std::string_view password, unsigned iterations = default_kdf_iterations);
// Constant-time comparison; false for a malformed stored hash.
bool verify_password(std::string_view password, std::string_view stored_hash);

std::string new_session_token();
std::string token_digest(std::string_view token);  // SHA-256, hex

std::string base64url(std::string_view bytes);

}  // namespace auth
