#include "store/sqlite.hpp"

namespace auth {

statement& statement::bind(int index, const std::string& value) {
  sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  return *this;
}

statement& statement::bind(int index, std::int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

bool statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  throw sqlite_error(sqlite3_errmsg(sqlite3_db_handle(stmt_)));
}

std::string statement::text(int column) const {
  const auto* data = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
  return data ? std::string(data, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column))) : std::string();
}

std::int64_t statement::integer(int column) const { return sqlite3_column_int64(stmt_, column); }

connection::connection(const std::string& path) {
  if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    std::string message = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    throw sqlite_error("cannot open " + path + ": " + message);
  }
  sqlite3_busy_timeout(db_, 5000);
  exec("PRAGMA journal_mode=WAL");
  exec("PRAGMA synchronous=NORMAL");  // durable across process crashes; WAL keeps it consistent
  exec("PRAGMA foreign_keys=ON");
}

connection::~connection() {
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  sqlite3_close(db_);
}

void connection::exec(const std::string& sql) {
  char* error = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    std::string message = error ? error : "unknown error";
    sqlite3_free(error);
    throw sqlite_error(message);
  }
}

statement connection::prepare(const std::string& sql) {
  auto found = cache_.find(sql);
  if (found == cache_.end()) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) throw sqlite_error(sqlite3_errmsg(db_));
    found = cache_.emplace(sql, stmt).first;
  }
  sqlite3_reset(found->second);
  sqlite3_clear_bindings(found->second);
  return statement(found->second);
}

connection_pool::connection_pool(const std::string& path, std::size_t size, std::chrono::milliseconds acquire_timeout)
    : acquire_timeout_(acquire_timeout) {
  for (std::size_t i = 0; i < size; ++i) idle_.push_back(std::make_unique<connection>(path));
}

connection_pool::lease connection_pool::acquire() {
  std::unique_lock lock(mutex_);
  if (!available_.wait_for(lock, acquire_timeout_, [this] { return !idle_.empty(); }))
    throw pool_exhausted("no database connection free within the acquire timeout");
  auto c = std::move(idle_.back());
  idle_.pop_back();
  return lease(*this, std::move(c));
}

void connection_pool::give_back(std::unique_ptr<connection> c) {
  {
    std::lock_guard lock(mutex_);
    idle_.push_back(std::move(c));
  }
  available_.notify_one();
}

}  // namespace auth
