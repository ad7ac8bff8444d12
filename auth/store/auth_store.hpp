// Users, their groups and extra filters, sessions, and the event stream, in
// SQLite. The schema is created and migrated on first use (schema_version
// table). Every change that a proxy must hear about writes its event row in
// the same transaction as the change itself.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "store/sqlite.hpp"

namespace auth {

struct user_record {
  std::int64_t id = 0;  // immutable, never reused (AUTOINCREMENT)
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

// A change to an existing user; each field that is set replaces what was there.
struct user_changes {
  std::optional<std::string> password_hash;  // also revokes every session of the user
  std::optional<std::vector<std::string>> groups;
  std::optional<std::vector<std::string>> publish;
  std::optional<std::vector<std::string>> subscribe;
};

struct session_record {
  user_record user;
  std::int64_t expires_at = 0;  // unix seconds
};

// One row of the events table (see auth/API.md, GET /v1/events).
struct event_record {
  std::int64_t seq = 0;
  std::string type;  // session_revoked, user_deleted, user_sessions_revoked, acl_changed
  std::int64_t user_id = 0;
  std::string user;
  std::string session;  // session_revoked: SHA-256 of the token, lowercase hex
  std::string acl;      // acl_changed: the new ACL as JSON text
};

struct event_page {
  std::vector<event_record> events;  // oldest first
  std::int64_t newest = 0;           // the newest seq ever assigned (0: none yet)
  bool reset = false;                // `after` is older than the oldest kept event, or newer than `newest`
};

class auth_store {
 public:
  static constexpr int schema_version = 2;
  // Computes the ACL JSON text of a user, for acl_changed events.
  using acl_writer = std::function<std::string(const user_record&)>;

  auth_store(const std::string& path, std::size_t connections, acl_writer acl,
             std::chrono::milliseconds acquire_timeout = std::chrono::seconds(2));

  bool add_user(const new_user& user);  // false: the name is taken
  // Deletes the user and their sessions; event user_deleted. False: no such user.
  bool delete_user(const std::string& name, std::int64_t now);
  // Applies the changes; events user_sessions_revoked (password) and
  // acl_changed (when the ACL differs). nullopt: no such user.
  std::optional<user_record> modify_user(const std::string& name, const user_changes& changes, std::int64_t now);
  std::optional<user_record> find_user(const std::string& name);

  void create_session(const std::string& digest, std::int64_t user_id, std::int64_t now, std::int64_t expires_at);
  // A live session: known, not revoked, not expired at `now`.
  std::optional<session_record> live_session(const std::string& digest, std::int64_t now);
  // Logout; event session_revoked. False: the session was not live.
  bool revoke_session(const std::string& digest, std::int64_t now);
  bool extend_session(const std::string& digest, std::int64_t now, std::int64_t expires_at);

  // At most `limit` events with seq > after, or only `newest` when after is unset.
  event_page events_after(std::optional<std::int64_t> after, std::size_t limit);
  std::int64_t newest_event();

  // Housekeeping in batches of `batch` rows, each its own short transaction,
  // so logins and logouts never wait long for the writer lock.
  std::int64_t purge_expired(std::int64_t now, std::size_t batch = 500);
  std::int64_t purge_events(std::int64_t created_before, std::size_t batch = 500);
  bool healthy();

 private:
  std::int64_t delete_in_batches(const char* sql, std::int64_t bound, std::size_t batch);
  void migrate();
  void load_details(connection& c, user_record& user);
  static void append_event(connection& c, const std::string& type, const user_record& user, std::int64_t now,
                           const std::string& session = "", const std::string& acl = "");

  connection_pool pool_;
  acl_writer acl_;
};

}  // namespace auth
