#include <doctest/doctest.h>

#include <set>

#include "crypto/secrets.hpp"
#include "http/api_server.hpp"
#include "http/login_throttle.hpp"
#include "store/sqlite.hpp"

#include <filesystem>
#include <unistd.h>

using namespace auth;

TEST_SUITE("auth: secrets") {
  TEST_CASE("password hashes verify, are salted, and reject the wrong password") {
    const auto a = hash_password("correct horse", 1000);
    const auto b = hash_password("correct horse", 1000);
    CHECK(a != b);  // a fresh salt each time
    CHECK(a.starts_with("pbkdf2-sha256$1000$"));
    CHECK(verify_password("correct horse", a));
    CHECK(verify_password("correct horse", b));
    CHECK_FALSE(verify_password("correct horsE", a));
    CHECK_FALSE(verify_password("", a));
  }

  TEST_CASE("malformed stored hashes never verify") {
    for (const char* stored : {"", "plain", "pbkdf2-sha256$0$00$00", "md5$1000$00$00", "pbkdf2-sha256$1000$zz$00",
                               "pbkdf2-sha256$1000$00$0011"})
      CHECK_FALSE(verify_password("x", stored));
  }

  TEST_CASE("the default work factor is the OWASP figure for PBKDF2-HMAC-SHA256") {
    CHECK(default_kdf_iterations == 600'000);
  }

  TEST_CASE("session tokens: 256 bits, URL-safe, unique") {
    std::set<std::string> seen;
    for (int i = 0; i < 1000; ++i) {
      const auto token = new_session_token();
      CHECK(token.size() == 43);  // 32 bytes in unpadded base64url
      CHECK(token.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == std::string::npos);
      seen.insert(token);
    }
    CHECK(seen.size() == 1000);
  }

  TEST_CASE("digests and base64url match known vectors") {
    CHECK(token_digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(base64url("") == "");
    CHECK(base64url("f") == "Zg");
    CHECK(base64url("fo") == "Zm8");
    CHECK(base64url("foo") == "Zm9v");
    CHECK(base64url("\xfb\xff") == "-_8");
  }
}

TEST_SUITE("auth: policy") {
  TEST_CASE("the ACL: private/<user>/#, group/<g>/#, then the user's extras") {
    user_record u{1, "alice", "", {"ops", "team"}, {"telemetry/alice/#"}, {"broadcast/+"}};
    auto acl = acl_of(u);
    CHECK(acl["publish"] == nlohmann::json::array({"private/alice/#", "group/ops/#", "group/team/#", "telemetry/alice/#"}));
    CHECK(acl["subscribe"] == nlohmann::json::array({"private/alice/#", "group/ops/#", "group/team/#", "broadcast/+"}));
  }

  TEST_CASE("names that become topic levels") {
    CHECK(is_valid_name("alice"));
    CHECK(is_valid_name("j\xC3\xBCrgen"));
    for (const char* bad : {"", "a/b", "+", "#", "a\tb", "\xC3", "bob.smith", "ops*", ".", "a\x7f"}) CHECK_FALSE(is_valid_name(bad));
    CHECK_FALSE(is_valid_name(std::string(65, 'a')));
  }

  TEST_CASE("login throttle: attempts are reserved before they are checked") {
    login_throttle::limits limits;
    limits.per_pair = 3;
    limits.per_address = 5;
    limits.slow_after = 4;
    limits.window = std::chrono::seconds(60);
    login_throttle throttle(limits);
    const auto t0 = login_throttle::clock::now();
    // Three attempts in flight at once: the fourth is refused before any has failed.
    std::vector<login_throttle::ticket> in_flight;
    for (int i = 0; i < 3; ++i) {
      auto d = throttle.reserve("a", "10.0.0.1", t0);
      REQUIRE(d.admitted);
      in_flight.push_back(std::move(d.admitted));
    }
    CHECK_FALSE(throttle.reserve("a", "10.0.0.1", t0).admitted);
    for (auto& t : in_flight) t.failed(t0);
    auto locked = throttle.reserve("a", "10.0.0.1", t0 + std::chrono::seconds(1));
    CHECK_FALSE(locked.admitted);
    CHECK(locked.retry_after.count() == 59);
    // The same user from another address is not locked out...
    auto elsewhere = throttle.reserve("a", "10.0.0.2", t0);
    REQUIRE(elsewhere.admitted);
    CHECK(elsewhere.delay.count() == 0);
    elsewhere.admitted.failed(t0);
    // ...but past slow_after failures from anywhere, it is delayed.
    auto slowed = throttle.reserve("a", "10.0.0.3", t0);
    REQUIRE(slowed.admitted);
    CHECK(slowed.delay == limits.delay_step);
    slowed.admitted.succeeded();
    // The window passes.
    CHECK(throttle.reserve("a", "10.0.0.1", t0 + std::chrono::seconds(61)).admitted);
  }

  TEST_CASE("login throttle: one address guessing many users is locked out") {
    login_throttle::limits limits;
    limits.per_pair = 3;
    limits.per_address = 5;
    login_throttle throttle(limits);
    const auto t0 = login_throttle::clock::now();
    for (int i = 0; i < 5; ++i) {
      auto d = throttle.reserve("user" + std::to_string(i), "10.0.0.9", t0);
      REQUIRE(d.admitted);
      d.admitted.failed(t0);
    }
    CHECK_FALSE(throttle.reserve("someone", "10.0.0.9", t0).admitted);
    CHECK(throttle.reserve("someone", "10.0.0.8", t0).admitted);
  }

  TEST_CASE("login throttle: an attempt abandoned without an outcome counts for nothing") {
    login_throttle::limits limits;
    limits.per_pair = 1;
    login_throttle throttle(limits);
    const auto t0 = login_throttle::clock::now();
    { auto d = throttle.reserve("a", "x", t0); REQUIRE(d.admitted); }
    CHECK(throttle.reserve("a", "x", t0).admitted);
  }

  TEST_CASE("log_safe escapes what a client chose") {
    CHECK(log_safe("alice") == "alice");
    CHECK(log_safe("a\nlogin ok user=root") == "a\\x0alogin ok user=root");
    CHECK(log_safe("a\\b") == "a\\x5cb");
    CHECK(log_safe(std::string(200, 'x')).size() == 131);
  }

  TEST_CASE("connection pool: acquiring waits at most the timeout, then pool_exhausted") {
    const auto path = std::filesystem::temp_directory_path() / ("pool-test-" + std::to_string(::getpid()) + ".db");
    {
      connection_pool pool(path.string(), 1, std::chrono::milliseconds(50));
      auto held = pool.acquire();
      const auto begin = std::chrono::steady_clock::now();
      CHECK_THROWS_AS(pool.acquire(), pool_exhausted);
      CHECK(std::chrono::steady_clock::now() - begin >= std::chrono::milliseconds(50));
    }
    {
      connection_pool pool(path.string(), 1, std::chrono::milliseconds(50));
      { auto first = pool.acquire(); }
      CHECK_NOTHROW(pool.acquire());  // given back: available again
    }
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path.string() + suffix);
  }
}
