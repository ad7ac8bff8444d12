// The real auth-server binary with a fresh database on a free loopback port.
#pragma once

#include <httplib.h>

#include <optional>

#include "child_process.hpp"

#ifndef AUTH_SERVER_BINARY
#error "AUTH_SERVER_BINARY must name the auth-server executable"
#endif

namespace test {

// Runs an auth-server command to completion and returns its exit status.
inline int auth_server_command(std::vector<std::string> args) {
  child_process p(AUTH_SERVER_BINARY, std::move(args), "/dev/null");
  return p.wait();
}

class auth_server_process {
 public:
  explicit auth_server_process(std::vector<std::string> extra = {}) : dir_(temp_dir("auth-server")) { start(std::move(extra)); }
  auth_server_process(const auth_server_process&) = delete;
  auth_server_process& operator=(const auth_server_process&) = delete;
  // The server first, then its folder (database, log): tests leave nothing behind.
  ~auth_server_process() {
    process_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  void start(std::vector<std::string> extra = {}) {
    if (!port_) port_ = free_port();
    std::vector<std::string> args{"serve", "--db", db(), "--listen", "127.0.0.1:" + std::to_string(port_)};
    args.insert(args.end(), extra.begin(), extra.end());
    process_.emplace(AUTH_SERVER_BINARY, args, (dir_ / "auth-server.log").string());
    if (!wait_for_port(port_)) throw std::runtime_error("auth-server did not start");
  }
  void stop() { process_.reset(); }

  // Adds a user with a cheap KDF so tests stay fast; the default cost is tested on its own.
  int add_user(const std::string& name, const std::string& password, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"adduser", "--db", db(), "--user", name, "--password", password,
                                  "--kdf-iterations", "1000"};
    args.insert(args.end(), extra.begin(), extra.end());
    return auth_server_command(args);
  }

  std::string db() const { return (dir_ / "auth.db").string(); }
  std::string log_path() const { return (dir_ / "auth-server.log").string(); }
  std::filesystem::path dir() const { return dir_; }
  pid_t pid() const { return process_ ? process_->pid() : -1; }
  unsigned short port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  httplib::Client client() const { return httplib::Client("127.0.0.1", port_); }

 private:
  std::filesystem::path dir_;
  unsigned short port_ = 0;
  std::optional<child_process> process_;
};

}  // namespace test
