// Users, their groups and extra filters, and sessions, in SQLite. The schema
// is created and migrated on first use (schema_version table).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "store/sqlite.hpp"

namespace auth {

struct user_record {
  std::int64_t id = 0;
  std::string name;
  std::string password_hash;
  std::vector<std::string> groups;
  std::vector<std::string> publish;    // extra filters beyond the defaults
  std::vector<std::string> subscribe;
};

struct new_user {
  std::string name;
  std::string password_hash;
  std::vector<std::string> groups;
  std::vector<std::string> publish;
  std::vector<std::string> subscribe;
};

struct session_record {
  user_record user;
  std::int64_t expires_at = 0;  // unix seconds
};

class auth_store {
 public:
  static constexpr int schema_version = 1;

  auth_store(const std::string& path, std::size_t connections);

  bool add_user(const new_user& user);  // false: the name is taken
  bool delete_user(const std::string& name);
  std::optional<user_record> find_user(const std::string& name);

  void create_session(const std::string& digest, std::int64_t user_id, std::int64_t now, std::int64_t expires_at);
  // A live session: known, not revoked, not expired at `now`.
  std::optional<session_record> live_session(const std::string& digest, std::int64_t now);
  bool revoke_session(const std::string& digest, std::int64_t now);
  bool extend_session(const std::string& digest, std::int64_t now, std::int64_t expires_at);
  std::int64_t purge_expired(std::int64_t now);
  bool healthy();

 private:
  void migrate();
  void load_details(connection& c, user_record& user);

  connection_pool pool_;
};

}  // namespace auth
