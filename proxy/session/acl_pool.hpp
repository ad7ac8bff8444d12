// One copy of each distinct ACL per worker, shared by the sessions that hold
// it. A user's devices (and every session of one token) carry the same ACL,
// whose filters are heap strings: held per connection, a fleet of idle
// devices kept one copy each (~80 B a filter with its vector slot; issue 14).
// An ACL leaves the pool with the last session holding it.
//
// Not thread-safe: a pool belongs to one worker, and its sessions (which
// hold and release the ACLs) run on that worker's thread only.
#pragma once

#include <cstddef>
#include <memory>

#include "session/acl.hpp"

namespace proxy {

class acl_pool {
 public:
  acl_pool();
  acl_pool(const acl_pool&) = delete;
  acl_pool& operator=(const acl_pool&) = delete;
  ~acl_pool();

  // The pool's copy of `permissions`: the one already held by some session
  // when there is one (equal filters in the same order), else a new one.
  std::shared_ptr<const acl> intern(acl permissions);
  // The same, copying `permissions` only when the pool holds no equal ACL:
  // an answer's rules (shared with the validation cache) are not copied to
  // be looked up (issue 14).
  std::shared_ptr<const acl> intern_copy_of(const acl& permissions);
  // Distinct ACLs held now.
  std::size_t size() const;

 private:
  struct table;
  std::shared_ptr<const acl> held(const acl& permissions);
  std::shared_ptr<const acl> add(acl permissions);
  // Shared with each ACL's deleter (weakly), so that a session outliving
  // the pool still frees its ACL safely.
  std::shared_ptr<table> table_;
};

}  // namespace proxy
