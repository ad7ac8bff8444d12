// A child process owned by a test: started with posix_spawn, killed and
// reaped when the owner goes out of scope, so no test leaves a broker behind.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio.hpp>

extern char** environ;

namespace test {

class child_process {
 public:
  child_process(const std::string& program, std::vector<std::string> args, const std::string& log_file = "") {
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(program.c_str()));
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (!log_file.empty()) {
      posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    }
    const int rc = posix_spawnp(&pid_, program.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("cannot start " + program);
  }
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;
  ~child_process() { stop(); }

  void stop(int signal = SIGTERM) {
    if (pid_ <= 0) return;
    ::kill(pid_, signal);
    int status = 0;
    for (int i = 0; i < 100; ++i) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  // Waits for the child to exit and returns its exit status (-1 if killed by a signal).
  int wait() {
    if (pid_ <= 0) return -1;
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  // Reaps the child if it has exited, and then forgets its pid, so that
  // stop() never signals a pid the system may have given to someone else.
  pid_t pid() const { return pid_; }

  bool running() {
    if (pid_ <= 0) return false;
    if (::waitpid(pid_, nullptr, WNOHANG) == 0) return true;
    pid_ = -1;
    return false;
  }

 private:
  pid_t pid_ = -1;
};

// A port nobody listens on right now, kept from everyone else for a minute:
// the kernel's choice for port 0, left with one of its own connections in
// TIME_WAIT. Until that ends no other bind(0) and no outgoing connection gets
// the port (tests running in parallel used to), while a server that sets
// SO_REUSEADDR or SO_REUSEPORT (cpp-httplib sets only the latter), as every
// program the tests start does, can still listen on it.
inline unsigned short free_port() {
  namespace asio = boost::asio;
  using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, asio::ip::tcp::v4());
  // Both flags pass on to the connection left in TIME_WAIT, so a server that
  // sets either may bind over it.
  acceptor.set_option(asio::socket_base::reuse_address(true));
  acceptor.set_option(reuse_port(true));
  acceptor.bind({asio::ip::make_address("127.0.0.1"), 0});
  acceptor.listen(1);
  const auto port = acceptor.local_endpoint().port();
  asio::ip::tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  auto accepted = acceptor.accept();
  accepted.close();  // the side that closes first is the one left in TIME_WAIT
  client.close();
  return port;
}

inline bool wait_for_port(unsigned short port, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    boost::asio::io_context io;
    boost::asio::ip::tcp::socket socket(io);
    boost::system::error_code ec;
    socket.connect({boost::asio::ip::make_address("127.0.0.1"), port}, ec);
    if (!ec) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return false;
}

inline std::filesystem::path temp_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / (name + "-" + std::to_string(::getpid()) + "-" +
                                                       std::to_string(free_port()));
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace test
