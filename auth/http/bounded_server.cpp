#include "http/bounded_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>

namespace auth {
namespace {

thread_local bool close_requested = false;
thread_local bool budget_exceeded = false;

bool poll_for(int fd, short events, std::chrono::milliseconds timeout) {
  pollfd p{fd, events, 0};
  for (;;) {
    const int rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (rc < 0 && errno == EINTR) continue;
    return rc > 0;
  }
}

void address_of(const sockaddr_storage& addr, std::string& ip, int& port) {
  std::array<char, INET6_ADDRSTRLEN> text{};
  if (addr.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(addr);
    ::inet_ntop(AF_INET, &a.sin_addr, text.data(), text.size());
    port = ntohs(a.sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(addr);
    ::inet_ntop(AF_INET6, &a.sin6_addr, text.data(), text.size());
    port = ntohs(a.sin6_port);
  }
  ip = text.data();
}

// A buffered socket stream whose reads stop at a per-request byte budget.
class socket_stream final : public httplib::Stream {
 public:
  socket_stream(int fd, std::chrono::milliseconds read_timeout, std::chrono::milliseconds write_timeout)
      : fd_(fd), read_timeout_(read_timeout), write_timeout_(write_timeout) {}

  // A request may read `budget` bytes within `time` (a client dribbling a
  // byte per read timeout cannot hold a thread for longer).
  void new_request(std::size_t budget, std::chrono::milliseconds time) {
    budget_ = budget;
    budget_exceeded = false;
    deadline_ = std::chrono::steady_clock::now() + time;
  }
  bool buffered() const { return begin_ < end_; }

  bool is_readable() const override { return buffered() || poll_for(fd_, POLLIN, read_timeout_); }
  bool is_writable() const override { return poll_for(fd_, POLLOUT, write_timeout_); }

  ssize_t read(char* ptr, std::size_t size) override {
    if (budget_ == 0) {
      budget_exceeded = true;
      return -1;
    }
    if (!buffered()) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !poll_for(fd_, POLLIN, std::min(left, read_timeout_))) return -1;
      ssize_t n = 0;
      do n = ::recv(fd_, buffer_.data(), buffer_.size(), 0);
      while (n < 0 && errno == EINTR);
      if (n <= 0) return n;
      begin_ = 0;
      end_ = static_cast<std::size_t>(n);
    }
    const auto n = std::min({size, end_ - begin_, budget_});
    std::memcpy(ptr, buffer_.data() + begin_, n);
    begin_ += n;
    budget_ -= n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, std::size_t size) override {
    if (!is_writable()) return -1;
    ssize_t n = 0;
    do n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) address_of(addr, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) address_of(addr, ip, port);
  }
  socket_t socket() const override { return fd_; }

 private:
  int fd_;
  std::chrono::milliseconds read_timeout_, write_timeout_;
  std::array<char, 4096> buffer_{};
  std::size_t begin_ = 0, end_ = 0;
  std::size_t budget_ = 0;
  std::chrono::steady_clock::time_point deadline_;
};

// After refusing a request whose body was not read, stop sending and discard
// what the client still sends for a moment (at most 500 ms or 1 MiB, in a
// fixed buffer): closing with unread data would send a reset, which can make
// the client lose the answer it has not read yet.
void linger(int fd) {
  ::shutdown(fd, SHUT_WR);
  std::array<char, 4096> sink{};
  std::size_t discarded = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  while (discarded < 1024 * 1024) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || !poll_for(fd, POLLIN, left)) return;
    const auto n = ::recv(fd, sink.data(), sink.size(), 0);
    if (n <= 0) return;
    discarded += static_cast<std::size_t>(n);
  }
}

}  // namespace

int system_somaxconn() {
  std::ifstream in("/proc/sys/net/core/somaxconn");
  int value = 0;
  if (in >> value && value > 0) return value;
  return SOMAXCONN;
}

bounded_server::bounded_server(limits limits) : limits_(limits) {
  // cpp-httplib's default sets SO_REUSEPORT, which lets a second server bind
  // the same port and silently take half of the connections. SO_REUSEADDR
  // only: a restart may rebind while old connections are in TIME_WAIT.
  set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  // The Keep-Alive answer header is written from these.
  set_keep_alive_timeout(limits_.keep_alive_timeout.count());
  set_keep_alive_max_count(limits_.keep_alive_max);
  set_read_timeout(limits_.read_timeout.count(), 0);
  set_write_timeout(limits_.write_timeout.count(), 0);
}

void bounded_server::close_after_reply() { close_requested = true; }
bool bounded_server::over_budget() { return budget_exceeded; }

bool bounded_server::bind_with_backlog(const std::string& host, int port) {
  if (!bind_to_port(host, port)) return false;
  // cpp-httplib listens with a backlog of 5, which drops SYNs in bursts.
  // Linux lets a listening socket's backlog be changed by calling listen again.
  backlog_ = system_somaxconn();
  return ::listen(svr_sock_, backlog_) == 0;
}

bool bounded_server::wait_readable(int fd, std::chrono::milliseconds timeout) const {
  // In slices, so that stop() (which invalidates svr_sock_) ends idle connections promptly.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (svr_sock_ != INVALID_SOCKET) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    if (poll_for(fd, POLLIN, std::min(left, std::chrono::milliseconds(100)))) return true;
  }
  return false;
}

bool bounded_server::process_and_close_socket(socket_t sock) {
  socket_stream stream(sock, limits_.read_timeout, limits_.write_timeout);
  bool ok = true;
  bool refuse_rest = false;
  for (std::size_t served = 0; served < limits_.keep_alive_max; ++served) {
    const auto idle = served == 0 ? limits_.read_timeout : limits_.keep_alive_timeout;
    if (!stream.buffered() && !wait_readable(sock, idle)) break;
    stream.new_request(limits_.max_request_bytes, 2 * limits_.read_timeout);
    close_requested = false;
    bool connection_closed = false;
    const bool last = served + 1 == limits_.keep_alive_max || svr_sock_ == INVALID_SOCKET;
    ok = process_request(stream, last, connection_closed, [](httplib::Request&) {});
    refuse_rest = close_requested || budget_exceeded;
    if (!ok || connection_closed || refuse_rest) break;
  }
  if (refuse_rest) linger(sock);
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ok;
}

}  // namespace auth
