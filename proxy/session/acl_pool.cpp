#include "session/acl_pool.hpp"

#include <functional>
#include <unordered_set>

namespace proxy {

namespace {

std::size_t combine(std::size_t seed, std::size_t value) {
  return seed ^ (value + 0x9e3779b97f4a7c15ULL + (seed << 6) + (seed >> 2));
}

struct entry {
  const acl* rules;
  std::weak_ptr<const acl> holder;
};

struct by_content_hash {
  std::size_t operator()(const entry& e) const {
    std::size_t seed = e.rules->publish.size();
    for (const auto& filter : e.rules->publish) seed = combine(seed, std::hash<std::string>{}(filter));
    seed = combine(seed, e.rules->subscribe.size());
    for (const auto& filter : e.rules->subscribe) seed = combine(seed, std::hash<std::string>{}(filter));
    return seed;
  }
};

struct by_content_equal {
  bool operator()(const entry& a, const entry& b) const {
    return a.rules->publish == b.rules->publish && a.rules->subscribe == b.rules->subscribe;
  }
};

}  // namespace

struct acl_pool::table {
  std::unordered_set<entry, by_content_hash, by_content_equal> entries;
};

acl_pool::acl_pool() : table_(std::make_shared<table>()) {}
acl_pool::~acl_pool() = default;

std::shared_ptr<const acl> acl_pool::intern(acl permissions) {
  if (auto found = held(permissions)) return found;
  return add(std::move(permissions));
}

std::shared_ptr<const acl> acl_pool::intern_copy_of(const acl& permissions) {
  if (auto found = held(permissions)) return found;
  return add(permissions);
}

// An equal ACL some session holds, or null.
std::shared_ptr<const acl> acl_pool::held(const acl& permissions) {
  auto& entries = table_->entries;
  const auto found = entries.find(entry{&permissions, {}});
  if (found == entries.end()) return nullptr;
  if (auto holder = found->holder.lock()) return holder;
  entries.erase(found);  // its last holder is going: its deleter finds no entry of its own to erase
  return nullptr;
}

std::shared_ptr<const acl> acl_pool::add(acl permissions) {
  auto& entries = table_->entries;
  std::weak_ptr<table> owner = table_;
  auto deleter = [owner](const acl* rules) {
    if (auto t = owner.lock()) {
      auto found = t->entries.find(entry{rules, {}});
      if (found != t->entries.end() && found->rules == rules) t->entries.erase(found);
    }
    delete rules;
  };
  std::shared_ptr<const acl> shared(new acl(std::move(permissions)), std::move(deleter));
  entries.insert(entry{shared.get(), shared});
  return shared;
}

std::size_t acl_pool::size() const { return table_->entries.size(); }

}  // namespace proxy
