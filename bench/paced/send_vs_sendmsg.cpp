// ns per call of sendmsg (1 iovec) vs send, 282 B over a loopback TCP pair,
// the reader drained in the same thread (no wake-ups): alternating blocks.
// Not built by CMake: g++ -O2 -o /tmp/send_vs_sendmsg bench/paced/send_vs_sendmsg.cpp (round 6).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>
static long now() { return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
int main() {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{}; a.sin_family = AF_INET; a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(l, (sockaddr*)&a, sizeof a); listen(l, 1); socklen_t n = sizeof a; getsockname(l, (sockaddr*)&a, &n);
  int c = socket(AF_INET, SOCK_STREAM, 0); connect(c, (sockaddr*)&a, sizeof a);
  int s = accept(l, nullptr, nullptr); int one = 1;
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  char buf[282] = {}, in[4096];
  const int iters = 20000;
  std::vector<double> r[2];
  for (int round = 0; round < 20; ++round) {
    for (int mode = 0; mode < 2; ++mode) {
      long spent = 0;
      for (int i = 0; i < iters; ++i) {
        long t0 = now();
        if (mode == 0) {
          iovec iov{buf, sizeof buf}; msghdr m{}; m.msg_iov = &iov; m.msg_iovlen = 1;
          sendmsg(c, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
        } else {
          send(c, buf, sizeof buf, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        spent += now() - t0;
        recv(s, in, sizeof in, MSG_DONTWAIT);
      }
      r[mode].push_back(double(spent) / iters);
    }
  }
  for (int mode = 0; mode < 2; ++mode) {
    auto v = r[mode]; std::sort(v.begin(), v.end());
    std::printf("%-8s ns per call: min %.0f  median %.0f\n", mode ? "send" : "sendmsg", v[0], v[v.size() / 2]);
  }
}
