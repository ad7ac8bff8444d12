// cpp-httplib's Server with the limits an Internet-facing API needs, which the
// packaged cpp-httplib 0.11.4 does not give:
//  - every request may read at most `max_request_bytes` from the socket
//    (request line, headers, body, chunk framing), within twice the read
//    timeout: the library applies its payload limit to Content-Length bodies
//    only and buffers chunked ones whole;
//  - a handler can ask for the connection to be closed after its answer
//    (close_after_reply), which then lingers briefly so the answer is not
//    lost to a reset;
//  - explicit keep-alive: an idle connection waits `keep_alive_timeout` for
//    its next request and serves at most `keep_alive_max` requests;
//  - the listen backlog is the system's somaxconn, not the library's 5;
//  - no SO_REUSEPORT: a second server on the same port fails to start.
#pragma once

#include <httplib.h>

#include <chrono>
#include <string>

namespace auth {

class bounded_server : public httplib::Server {
 public:
  struct limits {
    std::size_t max_request_bytes = 64 * 1024;
    std::chrono::seconds keep_alive_timeout{5};
    std::size_t keep_alive_max = 1000;
    std::chrono::seconds read_timeout{10};
    std::chrono::seconds write_timeout{10};
  };
  explicit bounded_server(limits limits);

  // Binds, then listens with the system's backlog (net.core.somaxconn).
  bool bind_with_backlog(const std::string& host, int port);
  int backlog() const { return backlog_; }

  // For handlers (they run on the connection's thread): close the connection
  // once the current answer is written.
  static void close_after_reply();
  // Whether the current request tried to read past max_request_bytes.
  static bool over_budget();

 private:
  bool process_and_close_socket(socket_t sock) override;
  bool wait_readable(int fd, std::chrono::milliseconds timeout) const;

  limits limits_;
  int backlog_ = 0;
};

// The system's listen backlog limit (/proc/sys/net/core/somaxconn), or SOMAXCONN.
int system_somaxconn();

}  // namespace auth
