#include "store/auth_store.hpp"

#include <thread>

namespace auth {
namespace {

// Each entry moves the schema one version up; never edit one that shipped.
const char* const migrations[] = {
    R"(CREATE TABLE users(
         id INTEGER PRIMARY KEY,
         name TEXT NOT NULL UNIQUE,
         password_hash TEXT NOT NULL,
         created_at INTEGER NOT NULL DEFAULT (strftime('%s','now')));
       CREATE TABLE user_groups(
         user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
         group_name TEXT NOT NULL,
         PRIMARY KEY(user_id, group_name));
       CREATE TABLE user_filters(
         user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
         kind TEXT NOT NULL CHECK(kind IN ('publish', 'subscribe')),
         filter TEXT NOT NULL);
       CREATE TABLE sessions(
         token_sha256 TEXT PRIMARY KEY,
         user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
         created_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL,
         revoked_at INTEGER);
       CREATE INDEX sessions_by_user ON sessions(user_id);
       CREATE INDEX sessions_by_expiry ON sessions(expires_at);)",
    // 2: user ids are never reused (AUTOINCREMENT needs a table rebuild: the
    // SQLite "other kinds of table schema changes" procedure, run with
    // foreign keys off so dropping the old table cascades nowhere), and the
    // event stream. Ids given out before this migration by a deleted user
    // with the highest id cannot be known; from here on none is reused.
    R"(CREATE TABLE users_v2(
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         name TEXT NOT NULL UNIQUE,
         password_hash TEXT NOT NULL,
         created_at INTEGER NOT NULL DEFAULT (strftime('%s','now')));
       INSERT INTO users_v2(id, name, password_hash, created_at) SELECT id, name, password_hash, created_at FROM users;
       DROP TABLE users;
       ALTER TABLE users_v2 RENAME TO users;
       CREATE TABLE events(
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         type TEXT NOT NULL,
         user_id INTEGER NOT NULL,
         user_name TEXT NOT NULL,
         session_sha256 TEXT,
         acl TEXT,
         created_at INTEGER NOT NULL);
       CREATE INDEX events_by_time ON events(created_at);)",
};

std::int64_t newest_seq(connection& c) {
  auto stmt = c.prepare("SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)");
  stmt.step();
  return stmt.integer(0);
}

void replace_list(connection& c, std::int64_t id, const char* kind, const std::vector<std::string>& filters) {
  c.prepare("DELETE FROM user_filters WHERE user_id = ? AND kind = ?").bind(1, id).bind(2, std::string(kind)).step();
  for (const auto& f : filters)
    c.prepare("INSERT INTO user_filters(user_id, kind, filter) VALUES (?, ?, ?)")
        .bind(1, id)
        .bind(2, std::string(kind))
        .bind(3, f)
        .step();
}

}  // namespace

auth_store::auth_store(const std::string& path, std::size_t connections, acl_writer acl,
                       std::chrono::milliseconds acquire_timeout)
    : pool_(path, connections, acquire_timeout), acl_(std::move(acl)) {
  migrate();
}

void auth_store::migrate() {
  auto c = pool_.acquire();
  // Foreign keys can only be switched outside a transaction; migration 2
  // rebuilds a parent table, which must not cascade.
  c->exec("PRAGMA foreign_keys=OFF");
  try {
    transaction tx(*c);
    c->exec("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)");
    // The statement is reset (out of scope) before the migrations run: a
    // pending statement would keep DROP TABLE from running ("table is locked").
    const auto current = [&] {
      auto stmt = c->prepare("SELECT COALESCE(MAX(version), 0) FROM schema_version");
      stmt.step();
      return stmt.integer(0);
    }();
    if (current > schema_version) throw sqlite_error("database schema is newer than this auth-server");
    for (auto v = current; v < schema_version; ++v) {
      c->exec(migrations[v]);
      c->prepare("INSERT INTO schema_version(version) VALUES (?)").bind(1, v + 1).step();
    }
    if (c->prepare("PRAGMA foreign_key_check").step()) throw sqlite_error("foreign key check failed after migration");
    tx.commit();
  } catch (...) {
    c->exec("PRAGMA foreign_keys=ON");
    throw;
  }
  c->exec("PRAGMA foreign_keys=ON");
}

void auth_store::append_event(connection& c, const std::string& type, const user_record& user, std::int64_t now,
                              const std::string& session, const std::string& acl) {
  auto stmt = c.prepare(
      "INSERT INTO events(type, user_id, user_name, session_sha256, acl, created_at) "
      "VALUES (?, ?, ?, NULLIF(?, ''), NULLIF(?, ''), ?)");
  stmt.bind(1, type).bind(2, user.id).bind(3, user.name).bind(4, session).bind(5, acl).bind(6, now).step();
}

bool auth_store::add_user(const new_user& user) {
  auto c = pool_.acquire();
  transaction tx(*c);
  auto exists = c->prepare("SELECT 1 FROM users WHERE name = ?");
  if (exists.bind(1, user.name).step()) return false;
  c->prepare("INSERT INTO users(name, password_hash) VALUES (?, ?)").bind(1, user.name).bind(2, user.password_hash).step();
  auto id_stmt = c->prepare("SELECT id FROM users WHERE name = ?");
  id_stmt.bind(1, user.name).step();
  const auto id = id_stmt.integer(0);
  for (const auto& g : user.groups)
    c->prepare("INSERT OR IGNORE INTO user_groups(user_id, group_name) VALUES (?, ?)").bind(1, id).bind(2, g).step();
  for (const auto& f : user.publish)
    c->prepare("INSERT INTO user_filters(user_id, kind, filter) VALUES (?, 'publish', ?)").bind(1, id).bind(2, f).step();
  for (const auto& f : user.subscribe)
    c->prepare("INSERT INTO user_filters(user_id, kind, filter) VALUES (?, 'subscribe', ?)").bind(1, id).bind(2, f).step();
  tx.commit();
  return true;
}

bool auth_store::delete_user(const std::string& name, std::int64_t now) {
  auto c = pool_.acquire();
  transaction tx(*c);
  auto found = c->prepare("SELECT id FROM users WHERE name = ?");
  if (!found.bind(1, name).step()) return false;
  const user_record user{found.integer(0), name, {}, {}, {}, {}};
  append_event(*c, "user_deleted", user, now);
  // Sessions, groups and filters go with the user (ON DELETE CASCADE).
  c->prepare("DELETE FROM users WHERE id = ?").bind(1, user.id).step();
  tx.commit();
  return true;
}

std::optional<user_record> auth_store::modify_user(const std::string& name, const user_changes& changes,
                                                   std::int64_t now) {
  auto c = pool_.acquire();
  transaction tx(*c);
  auto found = c->prepare("SELECT id, name, password_hash FROM users WHERE name = ?");
  if (!found.bind(1, name).step()) return std::nullopt;
  user_record before{found.integer(0), found.text(1), found.text(2), {}, {}, {}};
  load_details(*c, before);
  const auto id = before.id;
  if (changes.password_hash) {
    c->prepare("UPDATE users SET password_hash = ? WHERE id = ?").bind(1, *changes.password_hash).bind(2, id).step();
    c->prepare("UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL")
        .bind(1, now)
        .bind(2, id)
        .step();
    append_event(*c, "user_sessions_revoked", before, now);
  }
  if (changes.groups) {
    c->prepare("DELETE FROM user_groups WHERE user_id = ?").bind(1, id).step();
    for (const auto& g : *changes.groups)
      c->prepare("INSERT OR IGNORE INTO user_groups(user_id, group_name) VALUES (?, ?)").bind(1, id).bind(2, g).step();
  }
  if (changes.publish) replace_list(*c, id, "publish", *changes.publish);
  if (changes.subscribe) replace_list(*c, id, "subscribe", *changes.subscribe);
  user_record after{id, before.name, changes.password_hash.value_or(before.password_hash), {}, {}, {}};
  load_details(*c, after);
  const auto old_acl = acl_(before);
  const auto new_acl = acl_(after);
  if (old_acl != new_acl) append_event(*c, "acl_changed", after, now, "", new_acl);
  tx.commit();
  return after;
}

void auth_store::load_details(connection& c, user_record& user) {
  auto groups = c.prepare("SELECT group_name FROM user_groups WHERE user_id = ? ORDER BY group_name");
  groups.bind(1, user.id);
  while (groups.step()) user.groups.push_back(groups.text(0));
  auto filters = c.prepare("SELECT kind, filter FROM user_filters WHERE user_id = ? ORDER BY rowid");
  filters.bind(1, user.id);
  while (filters.step()) (filters.text(0) == "publish" ? user.publish : user.subscribe).push_back(filters.text(1));
}

std::optional<user_record> auth_store::find_user(const std::string& name) {
  auto c = pool_.acquire();
  auto stmt = c->prepare("SELECT id, name, password_hash FROM users WHERE name = ?");
  if (!stmt.bind(1, name).step()) return std::nullopt;
  user_record user{stmt.integer(0), stmt.text(1), stmt.text(2), {}, {}, {}};
  load_details(*c, user);
  return user;
}

void auth_store::create_session(const std::string& digest, std::int64_t user_id, std::int64_t now,
                                std::int64_t expires_at) {
  auto c = pool_.acquire();
  c->prepare("INSERT INTO sessions(token_sha256, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)")
      .bind(1, digest)
      .bind(2, user_id)
      .bind(3, now)
      .bind(4, expires_at)
      .step();
}

std::optional<session_record> auth_store::live_session(const std::string& digest, std::int64_t now) {
  auto c = pool_.acquire();
  auto stmt = c->prepare(
      "SELECT u.id, u.name, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id "
      "WHERE s.token_sha256 = ? AND s.revoked_at IS NULL AND s.expires_at > ?");
  if (!stmt.bind(1, digest).bind(2, now).step()) return std::nullopt;
  session_record session{{stmt.integer(0), stmt.text(1), {}, {}, {}, {}}, stmt.integer(2)};
  load_details(*c, session.user);
  return session;
}

bool auth_store::revoke_session(const std::string& digest, std::int64_t now) {
  auto c = pool_.acquire();
  transaction tx(*c);
  auto stmt = c->prepare(
      "UPDATE sessions SET revoked_at = ? WHERE token_sha256 = ? AND revoked_at IS NULL AND expires_at > ? "
      "RETURNING user_id");
  if (!stmt.bind(1, now).bind(2, digest).bind(3, now).step()) return false;
  const auto user_id = stmt.integer(0);
  while (stmt.step()) {
  }
  auto name = c->prepare("SELECT name FROM users WHERE id = ?");
  name.bind(1, user_id).step();
  append_event(*c, "session_revoked", {user_id, name.text(0), {}, {}, {}, {}}, now, digest);
  tx.commit();
  return true;
}

bool auth_store::extend_session(const std::string& digest, std::int64_t now, std::int64_t expires_at) {
  auto c = pool_.acquire();
  auto stmt = c->prepare(
      "UPDATE sessions SET expires_at = ? WHERE token_sha256 = ? AND revoked_at IS NULL AND expires_at > ?");
  stmt.bind(1, expires_at).bind(2, digest).bind(3, now).step();
  return stmt.changes() > 0;
}

event_page auth_store::events_after(std::optional<std::int64_t> after, std::size_t limit) {
  auto c = pool_.acquire();
  // One read transaction: the newest seq, the oldest kept and the rows come
  // from the same snapshot, so a purge in between cannot hide a gap.
  c->exec("BEGIN");
  event_page page;
  try {
    page.newest = newest_seq(*c);
    if (after && *after != page.newest) {
      auto oldest_stmt = c->prepare("SELECT MIN(seq) FROM events");
      oldest_stmt.step();
      // With no rows kept, the oldest event still kept would be the next one.
      const auto oldest = oldest_stmt.integer(0) > 0 ? oldest_stmt.integer(0) : page.newest + 1;
      if (*after > page.newest || *after < oldest - 1) {
        page.reset = true;
      } else {
        auto rows = c->prepare(
            "SELECT seq, type, user_id, user_name, COALESCE(session_sha256, ''), COALESCE(acl, '') "
            "FROM events WHERE seq > ? ORDER BY seq LIMIT ?");
        rows.bind(1, *after).bind(2, static_cast<std::int64_t>(limit));
        while (rows.step())
          page.events.push_back(
              {rows.integer(0), rows.text(1), rows.integer(2), rows.text(3), rows.text(4), rows.text(5)});
      }
    }
    c->exec("COMMIT");
  } catch (...) {
    c->exec("ROLLBACK");
    throw;
  }
  return page;
}

std::int64_t auth_store::newest_event() {
  auto c = pool_.acquire();
  return newest_seq(*c);
}

std::int64_t auth_store::purge_expired(std::int64_t now, std::size_t batch) {
  return delete_in_batches(
      "DELETE FROM sessions WHERE rowid IN (SELECT rowid FROM sessions "
      "WHERE expires_at <= ? OR revoked_at IS NOT NULL LIMIT ?)",
      now, batch);
}

std::int64_t auth_store::purge_events(std::int64_t created_before, std::size_t batch) {
  return delete_in_batches(
      "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE created_at < ? ORDER BY seq LIMIT ?)",
      created_before, batch);
}

// One small DELETE at a time (`sql` takes the bound, then the batch size), so
// housekeeping never holds the writer lock for long.
std::int64_t auth_store::delete_in_batches(const char* sql, std::int64_t bound, std::size_t batch) {
  std::int64_t total = 0;
  for (;;) {
    int changed = 0;
    {
      auto c = pool_.acquire();
      auto stmt = c->prepare(sql);
      stmt.bind(1, bound).bind(2, static_cast<std::int64_t>(batch)).step();
      changed = stmt.changes();
    }
    total += changed;
    if (static_cast<std::size_t>(changed) < batch) return total;
    // Let waiting writers (logins, logouts) in between batches.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

bool auth_store::healthy() {
  try {
    auto c = pool_.acquire();
    auto stmt = c->prepare("SELECT COUNT(*) FROM schema_version");
    return stmt.step();
  } catch (const sqlite_error&) {
    return false;
  }
}

}  // namespace auth
