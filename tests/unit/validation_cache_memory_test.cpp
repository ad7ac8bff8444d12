// The validation cache's compact entries (issue 14): binary keys, and one
// identity (user, user id, ACL) shared by the cached tokens of a user, with
// every behaviour of auth_client_test's cache cases kept.
#include <doctest/doctest.h>

#include "auth/auth_client.hpp"
#include "auth/validation_cache.hpp"
#include "auth_answers.hpp"

using namespace proxy;
using namespace std::chrono_literals;

namespace {

using time_point = validation_cache::time_point;
using found = validation_cache::found::kind;
const time_point t0 = time_point{} + 1000h;

acl acl_of(const std::string& user) { return acl{{"private/" + user + "/#"}, {"private/" + user + "/#", "group/tv/#"}}; }

using test::event_of;
using test::refused;
using test::valid_for;

std::string token(int i) { return "token-" + std::to_string(i); }

}  // namespace

TEST_SUITE("validation cache: compact entries") {
  TEST_CASE("a digest's key is its 32 bytes; other strings stay distinct keys") {
    const auto digest = session_digest("abc");
    const auto k = validation_cache::key_of(digest);
    CHECK(k[0] == 0xba);
    CHECK(k[1] == 0x78);
    CHECK(k[31] == 0xad);
    CHECK(validation_cache::key_of("d1") != validation_cache::key_of("d2"));
    CHECK(validation_cache::key_of("d1") == validation_cache::key_of("d1"));
    // Upper case is another string, not the same digest.
    std::string upper = digest;
    for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    CHECK(validation_cache::key_of(upper) != k);
    // A 64-character string that is not hex is not decoded.
    CHECK(validation_cache::key_of(std::string(64, 'z')) != validation_cache::key_of(std::string(64, 'y')));
  }

  TEST_CASE("a hit gives back the user, the user id, the ACL and the aged expiry, not the stored detail") {
    validation_cache cache({100, 2000ms, 60'000ms});
    const auto digest = session_digest(token(1));
    cache.store(digest, valid_for("alice", "7", acl_of("alice"), 3600s), 60s, t0);
    auto hit = cache.find(digest, t0 + 10s);
    REQUIRE(hit.what == found::hit);
    CHECK(hit.result.outcome == auth_result::verdict::valid);
    CHECK(hit.result.user == "alice");
    CHECK(hit.result.user_id == "7");
    CHECK(hit.result.permissions->publish == acl_of("alice").publish);
    CHECK(hit.result.permissions->subscribe == acl_of("alice").subscribe);
    CHECK(hit.result.expires_in == 3590s);
    CHECK_FALSE(hit.result.stale);
    CHECK(hit.result.detail.empty());
    auto stale = cache.find_stale(digest, t0 + 70s);
    REQUIRE(stale);
    CHECK(stale->stale);
    CHECK(stale->user == "alice");
    CHECK(stale->permissions->subscribe == acl_of("alice").subscribe);
    CHECK(stale->expires_in == 3530s);
  }

  // Issue 14: a hit hands out the stored ACL, not a copy, and is looked up by the digest's bytes.
  TEST_CASE("hits share the stored answer's ACL; a token's key is its digest's bytes") {
    validation_cache cache({100, 2000ms, 0ms});
    const auto answer = valid_for("alice", "7", acl_of("alice"), 3600s);
    cache.store(session_digest(token(1)), answer, 60s, t0);
    cache.store(session_digest(token(2)), valid_for("alice", "7", acl_of("alice"), 3600s), 60s, t0);
    const auto one = cache.find(session_digest(token(1)), t0 + 1s);
    const auto two = cache.find(session_key_of(token(2)), t0 + 1s);
    REQUIRE(one.what == found::hit);
    REQUIRE(two.what == found::hit);
    CHECK(one.result.permissions.shared() == answer.permissions.shared());
    CHECK(two.result.permissions.shared() == answer.permissions.shared());  // the user's identity: the first answer's
    for (int i = 0; i < 3; ++i) {
      CHECK(validation_cache::key_of(session_digest(token(i))) == session_key_of(token(i)));
      CHECK(hex_of(session_key_of(token(i))) == session_digest(token(i)));
    }
    CHECK(cache.find(session_key_of(token(3)), t0 + 1s).what == found::miss);
  }

  TEST_CASE("the tokens of one user share one identity, which leaves with the last of them") {
    validation_cache cache({1000, 2000ms, 0ms});
    for (int i = 0; i < 50; ++i) cache.store(session_digest(token(i)), valid_for("alice", "7", acl_of("alice")), 60s, t0);
    cache.store(session_digest("bob's"), valid_for("bob", "8", acl_of("bob")), 60s, t0);
    cache.store(session_digest("refused"), refused(), 0s, t0);
    CHECK(cache.size() == 52);
    CHECK(cache.identities() == 2);
    for (int i = 0; i < 49; ++i)
      cache.apply(event_of(auth_event::kind::session_revoked, "7", session_digest(token(i))));
    CHECK(cache.identities() == 2);
    CHECK(cache.find(session_digest(token(49)), t0).result.user == "alice");
    cache.apply(event_of(auth_event::kind::session_revoked, "7", session_digest(token(49))));
    CHECK(cache.identities() == 1);
    CHECK(cache.find(session_digest("bob's"), t0).result.permissions->publish == acl_of("bob").publish);
    CHECK(cache.find(session_digest("refused"), t0).what == found::negative_hit);
    cache.clear();
    CHECK(cache.identities() == 0);
  }

  TEST_CASE("a newer answer with another ACL or name is a new identity; older tokens keep theirs until an event") {
    validation_cache cache({100, 2000ms, 0ms});
    cache.store("old", valid_for("alice", "7", acl_of("alice")), 60s, t0);
    cache.store("new", valid_for("alice", "7", acl_of("alice-v2")), 60s, t0);
    cache.store("renamed", valid_for("alicia", "7", acl_of("alice-v2")), 60s, t0);
    CHECK(cache.find("old", t0).result.permissions->publish == acl_of("alice").publish);
    CHECK(cache.find("new", t0).result.permissions->publish == acl_of("alice-v2").publish);
    CHECK(cache.find("new", t0).result.user == "alice");
    CHECK(cache.find("renamed", t0).result.user == "alicia");
    // Same user id, same name, ACL empty: not the same as an ACL with entries.
    cache.store("empty", valid_for("alicia", "7", acl{}), 60s, t0);
    CHECK(cache.find("empty", t0).result.permissions->publish.empty());
    CHECK(cache.find("renamed", t0).result.permissions->publish == acl_of("alice-v2").publish);
    // The user's event reaches every token, whichever identity it holds.
    cache.apply(event_of(auth_event::kind::acl_changed, "7"));
    CHECK(cache.size() == 0);
    CHECK(cache.identities() == 0);
  }

  TEST_CASE("storing a token again replaces its entry and keeps the identity count right") {
    validation_cache cache({100, 2000ms, 0ms});
    cache.store("t", valid_for("alice", "7", acl_of("alice")), 60s, t0);
    cache.store("t", valid_for("alice", "7", acl_of("alice")), 60s, t0 + 1s);
    CHECK(cache.size() == 1);
    CHECK(cache.identities() == 1);
    cache.store("t", refused(), 0s, t0 + 2s);
    CHECK(cache.find("t", t0 + 2s).what == found::negative_hit);
    CHECK(cache.identities() == 0);
  }

  TEST_CASE("hostile: a client cycling distinct tokens keeps the cache at max_entries and one identity") {
    validation_cache cache({64, 2000ms, 60'000ms});
    for (int i = 0; i < 20'000; ++i) {
      cache.store(session_digest(token(i)), valid_for("mallory", "66", acl_of("mallory")), 60s, t0);
      CHECK(cache.size() <= 64);
    }
    CHECK(cache.size() == 64);
    CHECK(cache.identities() == 1);
    CHECK(cache.find(session_digest(token(19'999)), t0).what == found::hit);
    CHECK(cache.find(session_digest(token(0)), t0).what == found::miss);
    // Many users, each once: identities leave with their evicted entries.
    for (int i = 0; i < 5'000; ++i) {
      const auto id = std::to_string(i);
      cache.store(session_digest("user-token-" + id), valid_for("u" + id, id, acl_of("u" + id)), 60s, t0);
    }
    CHECK(cache.size() == 64);
    CHECK(cache.identities() == 64);
    for (int i = 0; i < 1'000; ++i) cache.store(session_digest("bad-" + std::to_string(i)), refused(), 0s, t0);
    CHECK(cache.size() == 64);
    CHECK(cache.identities() == 0);
  }

  TEST_CASE("expired entries let their identity go when found expired") {
    validation_cache cache({100, 2000ms, 0ms});
    cache.store("a", valid_for("alice", "7", acl_of("alice"), 30s), 60s, t0);
    CHECK(cache.identities() == 1);
    CHECK(cache.find("a", t0 + 31s).what == found::miss);  // past the session's own expiry
    CHECK(cache.size() == 0);
    CHECK(cache.identities() == 0);
  }
}
