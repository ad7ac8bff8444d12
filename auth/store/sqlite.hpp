// A thin RAII layer over SQLite: connections with cached prepared statements,
// and a small pool so request threads never share a connection. WAL mode lets
// validations (readers) run while a login (writer) commits.
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace auth {

struct sqlite_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// No connection became free within the pool's acquire timeout (the server
// answers 503 instead of queueing without bound).
struct pool_exhausted : sqlite_error {
  using sqlite_error::sqlite_error;
};

// A cached prepared statement in use. It is reset when it goes out of scope:
// a statement left mid-result keeps its read transaction open, which pins an
// old WAL snapshot and hides every later write from this connection.
class statement {
 public:
  explicit statement(sqlite3_stmt* stmt) : stmt_(stmt) {}
  statement(statement&& other) noexcept : stmt_(std::exchange(other.stmt_, nullptr)) {}
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;
  statement& operator=(statement&&) = delete;
  ~statement() {
    if (stmt_) sqlite3_reset(stmt_);
  }
  statement& bind(int index, const std::string& value);
  statement& bind(int index, std::int64_t value);
  bool step();  // true while a row is available
  std::string text(int column) const;
  std::int64_t integer(int column) const;
  int changes() const { return sqlite3_changes(sqlite3_db_handle(stmt_)); }

 private:
  sqlite3_stmt* stmt_;
};

class connection {
 public:
  explicit connection(const std::string& path);
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  void exec(const std::string& sql);
  // A prepared statement, reset and cleared, cached for the connection's life.
  statement prepare(const std::string& sql);

 private:
  sqlite3* db_ = nullptr;
  std::map<std::string, sqlite3_stmt*> cache_;
};

class connection_pool {
 public:
  connection_pool(const std::string& path, std::size_t size,
                  std::chrono::milliseconds acquire_timeout = std::chrono::seconds(2));

  class lease {
   public:
    lease(connection_pool& pool, std::unique_ptr<connection> c) : pool_(pool), c_(std::move(c)) {}
    ~lease() { pool_.give_back(std::move(c_)); }
    connection& operator*() { return *c_; }
    connection* operator->() { return c_.get(); }

   private:
    connection_pool& pool_;
    std::unique_ptr<connection> c_;
  };
  lease acquire();  // throws pool_exhausted after the acquire timeout

 private:
  void give_back(std::unique_ptr<connection> c);
  std::chrono::milliseconds acquire_timeout_;
  std::mutex mutex_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<connection>> idle_;
};

// A transaction that rolls back unless committed.
class transaction {
 public:
  explicit transaction(connection& c) : c_(c) { c_.exec("BEGIN IMMEDIATE"); }
  ~transaction() {
    if (!done_) try {
        c_.exec("ROLLBACK");
      } catch (...) {
      }
  }
  void commit() {
    c_.exec("COMMIT");
    done_ = true;
  }

 private:
  connection& c_;
  bool done_ = false;
};

}  // namespace auth
