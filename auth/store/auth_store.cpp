#include "store/auth_store.hpp"

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
};

}  // namespace

auth_store::auth_store(const std::string& path, std::size_t connections) : pool_(path, connections) { migrate(); }

void auth_store::migrate() {
  auto c = pool_.acquire();
  transaction tx(*c);
  c->exec("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)");
  auto current_stmt = c->prepare("SELECT COALESCE(MAX(version), 0) FROM schema_version");
  current_stmt.step();
  const auto current = current_stmt.integer(0);
  if (current > schema_version) throw sqlite_error("database schema is newer than this auth-server");
  for (auto v = current; v < schema_version; ++v) {
    c->exec(migrations[v]);
    c->prepare("INSERT INTO schema_version(version) VALUES (?)").bind(1, v + 1).step();
  }
  tx.commit();
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

bool auth_store::delete_user(const std::string& name) {
  auto c = pool_.acquire();
  auto stmt = c->prepare("DELETE FROM users WHERE name = ?");
  stmt.bind(1, name).step();
  return stmt.changes() > 0;
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
  auto stmt = c->prepare(
      "UPDATE sessions SET revoked_at = ? WHERE token_sha256 = ? AND revoked_at IS NULL AND expires_at > ?");
  stmt.bind(1, now).bind(2, digest).bind(3, now).step();
  return stmt.changes() > 0;
}

bool auth_store::extend_session(const std::string& digest, std::int64_t now, std::int64_t expires_at) {
  auto c = pool_.acquire();
  auto stmt = c->prepare(
      "UPDATE sessions SET expires_at = ? WHERE token_sha256 = ? AND revoked_at IS NULL AND expires_at > ?");
  stmt.bind(1, expires_at).bind(2, digest).bind(3, now).step();
  return stmt.changes() > 0;
}

std::int64_t auth_store::purge_expired(std::int64_t now) {
  auto c = pool_.acquire();
  auto stmt = c->prepare("DELETE FROM sessions WHERE expires_at <= ? OR revoked_at IS NOT NULL");
  stmt.bind(1, now).step();
  return stmt.changes();
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
