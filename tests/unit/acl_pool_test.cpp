// The worker's pool of ACLs: one copy per distinct ACL, freed with its last holder.
#include <doctest/doctest.h>

#include "session/acl_pool.hpp"

using proxy::acl;
using proxy::acl_pool;

TEST_SUITE("acl_pool") {
  TEST_CASE("equal ACLs are one copy; another ACL is another copy") {
    acl_pool pool;
    auto a = pool.intern({{"private/alice/#"}, {"private/alice/#", "group/tv/#"}});
    auto b = pool.intern({{"private/alice/#"}, {"private/alice/#", "group/tv/#"}});
    CHECK(a.get() == b.get());
    CHECK(pool.size() == 1);
    auto c = pool.intern({{"private/bob/#"}, {"private/bob/#", "group/tv/#"}});
    CHECK(c.get() != a.get());
    CHECK(pool.size() == 2);
    CHECK(c->publish == std::vector<std::string>{"private/bob/#"});
  }

  TEST_CASE("publish and subscribe entries are not mixed up") {
    acl_pool pool;
    auto a = pool.intern({{"x/#"}, {}});
    auto b = pool.intern({{}, {"x/#"}});
    auto c = pool.intern({{"x/#", "y"}, {}});
    auto d = pool.intern({{"x/#"}, {"y"}});
    CHECK(a.get() != b.get());
    CHECK(c.get() != d.get());
    CHECK(a->publish.size() == 1);
    CHECK(b->publish.empty());
    CHECK(pool.size() == 4);
  }

  TEST_CASE("an ACL leaves the pool with its last holder, and comes back as a new copy") {
    acl_pool pool;
    auto a = pool.intern({{"a/#"}, {"a/#"}});
    auto b = a;
    a.reset();
    CHECK(pool.size() == 1);
    b.reset();
    CHECK(pool.size() == 0);
    auto again = pool.intern({{"a/#"}, {"a/#"}});
    CHECK(pool.size() == 1);
    CHECK(again->subscribe == std::vector<std::string>{"a/#"});
  }

  TEST_CASE("a holder may outlive the pool") {
    std::shared_ptr<const acl> kept;
    {
      acl_pool pool;
      kept = pool.intern({{"a/#"}, {"a/#"}});
    }
    CHECK(kept->publish == std::vector<std::string>{"a/#"});
    kept.reset();  // its deleter finds no pool: frees the ACL alone (ASan would see a fault)
  }
}
