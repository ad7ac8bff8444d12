// One load generator for every path of bench/side_by_side.py (Mosquitto
// direct, HAProxy -> Mosquitto, mqtt-proxy -> Mosquitto): raw non-blocking
// sockets, one epoll loop, MQTT 3.1.1 written by hand, so no path gets a
// different client. Not a test. Modes:
//
//   idle     N INFLIGHT            open N sessions, print "ready ...", stay idle until stdin closes
//   sessions SECONDS INFLIGHT      open, authenticate, DISCONNECT, close; again; for SECONDS
//   relay    SECONDS QOS SIZE PUBS PUBS publishers -> 1 subscriber, flow-controlled, msgs/s at the subscriber
//   latency  SECONDS RATE          1 publisher paced at RATE/s, QoS 1, 256 B: p50/p99 publish-to-delivery
//   fill     N INFLIGHT            open N sessions, each subscribed to its own topic, print "filled ...", then
//                                  obey stdin lines (bench/fd_ceiling.py): "round K" (K clients publish once to
//                                  their own topic, count what comes back), "extra M INFLIGHT" (open M more,
//                                  report how each ended: accepted, refused, still pending), "alive", "quit"
//
// Common options (before the mode): --port P, --user U --pass P (CONNECT credentials: direct / HAProxy),
// --tokens FILE (one session token a line: after CONNECT, PUBLISH service/auth/<token> and wait for the
// answer, as mqtt-proxy's clients do; a line "TOKEN PREFIX" gives fill's sessions of that token the topics
// PREFIX/<connection index>),
// --topic T (relay / latency topic).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
using bytes = std::vector<std::uint8_t>;

double now_seconds() { return std::chrono::duration<double>(clock_type::now().time_since_epoch()).count(); }
std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch()).count());
}

// ------------------------------------------------------------------ MQTT 3.1.1 by hand

void put_u16(bytes& b, std::size_t v) {
  b.push_back(static_cast<std::uint8_t>(v >> 8));
  b.push_back(static_cast<std::uint8_t>(v & 0xff));
}
void put_str(bytes& b, const std::string& s) {
  put_u16(b, s.size());
  b.insert(b.end(), s.begin(), s.end());
}
bytes frame(std::uint8_t first, const bytes& body) {
  bytes out{first};
  std::size_t n = body.size();
  do {
    std::uint8_t d = n % 128;
    n /= 128;
    if (n) d |= 0x80;
    out.push_back(d);
  } while (n);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}
bytes connect_packet(const std::string& id, const std::string& user, const std::string& pass) {
  bytes b;
  put_str(b, "MQTT");
  b.push_back(4);
  std::uint8_t flags = 0x02;  // clean session
  if (!user.empty()) flags |= 0x80;
  if (!pass.empty()) flags |= 0x40;
  b.push_back(flags);
  put_u16(b, 0);  // no keep-alive: idle clients stay without pinging
  put_str(b, id);
  if (!user.empty()) put_str(b, user);
  if (!pass.empty()) put_str(b, pass);
  return frame(0x10, b);
}
bytes publish_packet(const std::string& topic, const bytes& payload, int qos, std::uint16_t id) {
  bytes b;
  put_str(b, topic);
  if (qos > 0) put_u16(b, id);
  b.insert(b.end(), payload.begin(), payload.end());
  return frame(static_cast<std::uint8_t>(0x30 | (qos << 1)), b);
}
bytes subscribe_packet(const std::string& filter, int qos) {
  bytes b;
  put_u16(b, 1);
  put_str(b, filter);
  b.push_back(static_cast<std::uint8_t>(qos));
  return frame(0x82, b);
}
bytes puback_packet(std::uint16_t id) { return {0x40, 2, static_cast<std::uint8_t>(id >> 8), static_cast<std::uint8_t>(id)}; }
const bytes disconnect_packet{0xE0, 0};

struct packet_view {
  std::uint8_t first;
  const std::uint8_t* body;
  std::size_t size;
};

// ------------------------------------------------------------------ connections

struct options {
  std::uint16_t port = 0;
  std::string user, pass, topic = "bench/topic";
  std::vector<std::string> tokens;
  std::vector<std::string> token_topics;  // fill: the topic of each token's session ("" when none given)
};

enum class phase { connecting, awaiting_connack, awaiting_auth, awaiting_suback, ready, closed };

struct connection {
  int fd = -1;
  phase at = phase::connecting;
  bytes in;
  bytes out;  // what the kernel did not take yet
  std::size_t out_sent = 0;
  std::string token;
  bool subscriber = false;
  int qos = 0;
  std::uint32_t inflight = 0;  // QoS 1 publishes without PUBACK
  std::uint16_t next_id = 1;
  double started = 0;
  std::string own_topic;  // fill: subscribed at ready, published to by `round`
  long echoes = 0;        // fill: own messages that came back
  std::string ended;      // why it failed, when it did
};

struct loop;
using handler = void (*)(loop&, connection&, const packet_view&);

struct loop {
  options opt;
  int ep = epoll_create1(0);
  std::vector<std::unique_ptr<connection>> all;
  std::size_t next_token = 0;
  std::map<std::string, long> failures;
  long opened = 0;       // reached `ready`
  long received = 0;     // PUBLISHes at subscribers
  long published = 0;    // PUBLISHes written by publishers
  std::vector<double> latencies_us;
  std::uint64_t worst_latency_ns = 0, worst_sent_ns = 0;  // the slowest message, and when it was sent
  handler on_ready_packet = nullptr;
  void (*on_ready)(loop&, connection&) = nullptr;

  void fail(connection& c, const std::string& why) {
    failures[why]++;
    c.ended = why;
    close(c);
  }
  void close(connection& c) {
    if (c.fd >= 0) {
      ::close(c.fd);
      c.fd = -1;
    }
    c.at = phase::closed;
  }

  connection& open(bool subscriber = false, int qos = 0) {
    all.push_back(std::make_unique<connection>());
    auto& c = *all.back();
    c.subscriber = subscriber;
    c.qos = qos;
    c.started = now_seconds();
    c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) {
      fail(c, std::string("socket: ") + std::strerror(errno));
      return c;
    }
    int one = 1;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(opt.port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS) {
      fail(c, std::string("connect: ") + std::strerror(errno));
      return c;
    }
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP;
    ev.data.ptr = &c;
    epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
    if (!opt.tokens.empty()) {
      const std::size_t k = next_token++ % opt.tokens.size();
      c.token = opt.tokens[k];
      // Tokens are reused: the connection's index keeps its topic its own.
      if (k < opt.token_topics.size() && !opt.token_topics[k].empty())
        c.own_topic = opt.token_topics[k] + "/" + std::to_string(all.size());
    }
    // CONNECT and the auth PUBLISH go together, in one send(), as a mobile client on a slow link sends them
    // (two sends cost this generator a syscall and the proxy a TCP segment per session that no such client makes).
    static long ids = 0;
    auto hello = connect_packet("load-" + std::to_string(::getpid()) + "-" + std::to_string(ids++), opt.user, opt.pass);
    // Before sending: a send that fails (a peer that reset at once) marks the connection closed, and stays so.
    c.at = phase::awaiting_connack;
    queue(c, hello);
    if (!c.token.empty()) queue(c, publish_packet("service/auth/" + c.token, {}, 0, 0));
    flush(c);
    return c;
  }

  void send(connection& c, const bytes& b) {
    queue(c, b);
    flush(c);
  }
  // Appends without writing: a burst goes out in one send().
  void queue(connection& c, const bytes& b) {
    if (c.fd < 0) return;
    if (c.out.size() == c.out_sent) {
      c.out.clear();
      c.out_sent = 0;
    }
    c.out.insert(c.out.end(), b.begin(), b.end());
  }
  void flush(connection& c) {
    while (c.fd >= 0 && c.out_sent < c.out.size()) {
      const auto n = ::send(c.fd, c.out.data() + c.out_sent, c.out.size() - c.out_sent, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == ENOTCONN) return;
        return fail(c, std::string("send: ") + std::strerror(errno));
      }
      c.out_sent += static_cast<std::size_t>(n);
    }
    if (c.out_sent == c.out.size()) {
      c.out.clear();
      c.out_sent = 0;
    }
  }
  bool writable(const connection& c) const { return c.fd >= 0 && c.out.size() - c.out_sent < 64 * 1024; }

  void readable(connection& c) {
    std::uint8_t chunk[65536];
    for (;;) {
      const auto n = ::recv(c.fd, chunk, sizeof chunk, 0);
      if (n == 0) return fail(c, c.at == phase::ready ? "closed by peer" : "closed during handshake");
      if (n < 0) {
        if (errno == EAGAIN) break;
        return fail(c, std::string("recv: ") + std::strerror(errno));
      }
      c.in.insert(c.in.end(), chunk, chunk + n);
      if (static_cast<std::size_t>(n) < sizeof chunk) break;
    }
    std::size_t at = 0;
    while (c.fd >= 0) {
      if (c.in.size() - at < 2) break;
      std::size_t length = 0, shift = 0, i = at + 1;
      bool complete = false;
      for (; i < c.in.size() && i < at + 5; ++i) {
        length |= static_cast<std::size_t>(c.in[i] & 0x7f) << shift;
        shift += 7;
        if (!(c.in[i] & 0x80)) {
          complete = true;
          ++i;
          break;
        }
      }
      if (!complete || c.in.size() - i < length) break;
      packet(c, {c.in[at], c.in.data() + i, length});
      at = i + length;
    }
    if (c.fd >= 0) c.in.erase(c.in.begin(), c.in.begin() + static_cast<long>(at));
    flush(c);
  }

  void packet(connection& c, const packet_view& p) {
    const int type = p.first >> 4;
    switch (c.at) {
      case phase::awaiting_connack:
        if (type != 2) return fail(c, "no CONNACK");
        if (p.size < 2 || p.body[1] != 0) return fail(c, "CONNACK refused");
        if (!c.token.empty()) {
          c.at = phase::awaiting_auth;
          return;
        }
        return enter_ready(c);
      case phase::awaiting_auth: {
        if (type != 3) return;
        const std::string body(reinterpret_cast<const char*>(p.body), p.size);
        if (body.find("\"ok\"") != std::string::npos) return enter_ready(c);
        const auto r = body.find("\"reason\":\"");
        return fail(c, r == std::string::npos ? "denied" : body.substr(r + 10, body.find('"', r + 10) - r - 10));
      }
      case phase::awaiting_suback:
        if (type != 9) return;
        c.at = phase::ready;
        opened++;
        if (on_ready) on_ready(*this, c);
        return;
      case phase::ready:
        if (on_ready_packet) on_ready_packet(*this, c, p);
        return;
      default: return;
    }
  }

  void enter_ready(connection& c) {
    if (c.subscriber) {
      send(c, subscribe_packet(c.own_topic.empty() ? opt.topic : c.own_topic, c.qos));
      c.at = phase::awaiting_suback;
      return;
    }
    c.at = phase::ready;
    opened++;
    if (on_ready) on_ready(*this, c);
  }

  // Runs the loop for up to `ms` milliseconds.
  void poll(int ms) {
    epoll_event events[256];
    const int n = epoll_wait(ep, events, 256, ms);
    for (int i = 0; i < n; ++i) {
      auto& c = *static_cast<connection*>(events[i].data.ptr);
      if (c.fd < 0) continue;
      if (events[i].events & EPOLLOUT) flush(c);
      if (c.fd >= 0 && (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) readable(c);
    }
  }
  long failed() const {
    long n = 0;
    for (auto& [k, v] : failures) n += v;
    return n;
  }
  std::string failure_text() const {
    std::string s;
    for (const auto& [k, v] : failures) {
      std::string key = k;
      std::replace(key.begin(), key.end(), ' ', '_');
      s += " fail[" + key + "]=" + std::to_string(v);
    }
    return s;
  }
  // Drops finished connections so a long sessions run does not grow.
  void sweep() {
    std::erase_if(all, [](const auto& c) { return c->at == phase::closed; });
  }
};

// ------------------------------------------------------------------ modes

int run_idle(loop& l, long count, long inflight) {
  const double t0 = now_seconds();
  long started = 0;
  while (started < count || std::any_of(l.all.begin(), l.all.end(), [](auto& c) {
           return c->at != phase::ready && c->at != phase::closed;
         })) {
    long pending = 0;
    for (auto& c : l.all)
      if (c->at != phase::ready && c->at != phase::closed) ++pending;
    while (started < count && pending < inflight) {
      l.open();
      ++started;
      ++pending;
    }
    l.poll(5);
  }
  std::printf("ready opened=%ld failed=%ld seconds=%.3f%s\n", l.opened, l.failed(), now_seconds() - t0,
              l.failure_text().c_str());
  std::fflush(stdout);
  // Idle until the driver closes stdin (it measures memory meanwhile); keep
  // answering nothing, but notice peers that close.
  for (;;) {
    l.poll(200);
    char b;
    fd_set fds;
    FD_ZERO(&fds);
    FD_SET(0, &fds);
    timeval tv{0, 0};
    if (::select(1, &fds, nullptr, nullptr, &tv) > 0 && ::read(0, &b, 1) <= 0) break;
  }
  long alive = 0;
  for (auto& c : l.all)
    if (c->at == phase::ready) ++alive;
  std::printf("done alive=%ld\n", alive);
  return 0;
}

int run_sessions(loop& l, double seconds, long inflight) {
  l.on_ready = [](loop& l, connection& c) {
    l.send(c, disconnect_packet);
    l.close(c);
  };
  const double t0 = now_seconds();
  long started = 0;
  std::vector<double> times;
  while (now_seconds() - t0 < seconds) {
    long pending = 0;
    for (auto& c : l.all)
      if (c->at != phase::closed) ++pending;
    while (pending < inflight) {
      l.open();
      ++started;
      ++pending;
    }
    l.poll(2);
    l.sweep();
  }
  const double elapsed = now_seconds() - t0;
  std::printf("sessions=%ld seconds=%.3f per_second=%.0f failed=%ld%s\n", l.opened, elapsed, l.opened / elapsed,
              l.failed(), l.failure_text().c_str());
  return 0;
}

struct relay_state {
  int qos = 0;
  bytes message;
  std::uint32_t window = 0;  // QoS 1: PUBLISHes in flight per publisher
  long outstanding_limit = 0;  // QoS 0: published - received
};
relay_state relay;

void publish_more(loop& l, connection& c) {
  while (l.writable(c) && c.at == phase::ready) {
    if (relay.qos == 0 && l.published - l.received >= relay.outstanding_limit) break;
    if (relay.qos == 1 && c.inflight >= relay.window) break;
    if (relay.qos == 1) {
      c.inflight++;
      if (++c.next_id == 0) c.next_id = 1;
      // The id goes into the pre-built packet (after the topic).
      const std::size_t at = relay.message.size() - 256 /*payload*/ - 2;
      relay.message[at] = static_cast<std::uint8_t>(c.next_id >> 8);
      relay.message[at + 1] = static_cast<std::uint8_t>(c.next_id);
    }
    l.queue(c, relay.message);
    l.published++;
  }
  l.flush(c);
}

int run_relay(loop& l, double seconds, int qos, std::size_t size, int publishers) {
  relay.qos = qos;
  if (qos == 1 && size != 256) size = 256;  // publish_more patches the id assuming 256 B
  relay.message = publish_packet(l.opt.topic, bytes(size, 'x'), qos, 1);
  relay.window = 64;
  relay.outstanding_limit = 20000;
  std::vector<connection*> pubs;
  l.on_ready_packet = [](loop& l, connection& c, const packet_view& p) {
    const int type = p.first >> 4;
    if (c.subscriber && type == 3) {
      l.received++;
      if (((p.first >> 1) & 3) == 1) {
        const std::size_t topic = (p.body[0] << 8) | p.body[1];
        l.queue(c, puback_packet(static_cast<std::uint16_t>((p.body[2 + topic] << 8) | p.body[3 + topic])));
      }
    } else if (!c.subscriber && type == 4 && c.inflight > 0) {
      c.inflight--;
    }
  };
  l.open(true, qos);
  while (l.opened < 1 && l.failed() == 0) l.poll(5);
  for (int i = 0; i < publishers; ++i) pubs.push_back(&l.open());
  while (l.opened < 1 + publishers && l.failed() == 0) l.poll(5);
  if (l.failed()) {
    std::printf("relay failed to set up:%s\n", l.failure_text().c_str());
    return 1;
  }
  // A short warm-up, then the measured interval.
  double t0 = now_seconds(), start = 0;
  long base = 0;
  while (now_seconds() - t0 < seconds + 1) {
    if (start == 0 && now_seconds() - t0 >= 1) {
      start = now_seconds();
      base = l.received;
    }
    for (auto* p : pubs) publish_more(l, *p);
    l.poll(1);
    if (l.failed()) break;
  }
  const double elapsed = now_seconds() - start;
  std::printf("messages=%ld published=%ld seconds=%.3f per_second=%.0f failed=%ld%s\n", l.received - base, l.published, elapsed,
              (l.received - base) / elapsed, l.failed(), l.failure_text().c_str());
  return l.failed() ? 1 : 0;
}

int run_latency(loop& l, double seconds, double rate) {
  l.on_ready_packet = [](loop& l, connection& c, const packet_view& p) {
    const int type = p.first >> 4;
    if (!c.subscriber || type != 3) return;
    const std::size_t topic = (p.body[0] << 8) | p.body[1];
    const std::uint8_t* payload = p.body + 2 + topic + 2;
    // Only this run's messages: a proxy may still flush an earlier test's into the topic.
    if (((p.first >> 1) & 3) != 1 || p.size != 2 + topic + 2 + 256 || std::memcmp(payload + 8, "latency!", 8) != 0)
      return;
    std::uint64_t sent = 0;
    std::memcpy(&sent, payload, sizeof sent);
    const std::uint64_t took = now_ns() - sent;
    l.latencies_us.push_back(static_cast<double>(took) / 1000.0);
    if (took > l.worst_latency_ns) {
      l.worst_latency_ns = took;
      l.worst_sent_ns = sent;
    }
    l.queue(c, puback_packet(static_cast<std::uint16_t>((p.body[2 + topic] << 8) | p.body[3 + topic])));
  };
  l.open(true, 1);
  while (l.opened < 1 && l.failed() == 0) l.poll(5);
  auto& pub = l.open();
  while (l.opened < 2 && l.failed() == 0) l.poll(5);
  if (l.failed()) {
    std::printf("latency failed to set up:%s\n", l.failure_text().c_str());
    return 1;
  }
  const double t0 = now_seconds();
  const std::uint64_t t0_ns = now_ns();
  long sent = 0;
  bytes payload(256, 'x');
  std::memcpy(payload.data() + 8, "latency!", 8);
  while (now_seconds() - t0 < seconds) {
    const long due = static_cast<long>((now_seconds() - t0) * rate);
    for (; sent < due; ++sent) {
      const auto ns = now_ns();
      std::memcpy(payload.data(), &ns, sizeof ns);
      if (++pub.next_id == 0) pub.next_id = 1;
      l.send(pub, publish_packet(l.opt.topic, payload, 1, pub.next_id));
    }
    l.poll(1);  // not a busy loop: the machine is shared with the processes measured
  }
  const double drain = now_seconds();
  while (static_cast<long>(l.latencies_us.size()) < sent && now_seconds() - drain < 2) l.poll(5);
  auto& v = l.latencies_us;
  std::sort(v.begin(), v.end());
  auto pct = [&](double q) { return v.empty() ? 0.0 : v[std::min(v.size() - 1, static_cast<std::size_t>(q * v.size()))]; };
  // The worst message and when it was sent (seconds into the run): a stall shows as one.
  std::printf("sent=%ld received=%zu p50_us=%.1f p99_us=%.1f max_us=%.0f max_sent_at_s=%.3f failed=%ld%s\n", sent,
              v.size(), pct(0.5), pct(0.99), l.worst_latency_ns / 1000.0,
              l.worst_sent_ns > t0_ns ? (l.worst_sent_ns - t0_ns) / 1e9 : 0.0, l.failed(), l.failure_text().c_str());
  return 0;
}


// ------------------------------------------------------------------ fill (bench/fd_ceiling.py)

// Opens up to `count` subscribed sessions, `inflight` handshakes at a time,
// from connection index `first` on; returns when none is pending or after
// `limit` seconds (what is still pending then is left so). Each session's
// topic is its token line's, or fill/<pid>/<index> without tokens.
void open_subscribed(loop& l, long count, long inflight, double limit) {
  const double t0 = now_seconds();
  const std::size_t first = l.all.size();
  long started = 0;
  auto pending = [&] {
    long n = 0;
    for (std::size_t i = first; i < l.all.size(); ++i)
      if (l.all[i]->at != phase::ready && l.all[i]->at != phase::closed) ++n;
    return n;
  };
  for (long waiting = 0; (started < count || (waiting = pending()) > 0) && now_seconds() - t0 < limit;) {
    waiting = pending();
    while (started < count && waiting < inflight) {
      auto& c = l.open(true, 0);
      if (c.own_topic.empty()) c.own_topic = "fill/" + std::to_string(::getpid()) + "/" + std::to_string(l.all.size());
      ++started;
      ++waiting;
    }
    l.poll(5);
  }
}

struct fill_outcome {
  long ready = 0, pending = 0;
  long pending_unsent = 0;  // of the pending: CONNECT not yet taken by the kernel (not connected)
  std::map<std::string, long> ended;  // why the others closed, "closed_during_handshake", "recv: ...", ...
};

fill_outcome outcome_of(const loop& l, std::size_t first) {
  fill_outcome o;
  for (std::size_t i = first; i < l.all.size(); ++i) {
    const auto* c = l.all[i].get();
    if (c->at == phase::ready) o.ready++;
    else if (c->at != phase::closed) {
      o.pending++;
      if (c->out.size() > c->out_sent) o.pending_unsent++;
      tcp_info info{};
      socklen_t size = sizeof info;
      int error = 0;
      socklen_t esize = sizeof error;
      ::getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &info, &size);
      ::getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &esize);
      o.ended["pending_tcp_state_" + std::to_string(info.tcpi_state) + "_so_error_" + std::to_string(error)]++;
    }
    else o.ended[c->ended.empty() ? "closed" : c->ended]++;
  }
  return o;
}

std::string text_of(const fill_outcome& o) {
  std::string s = "ready=" + std::to_string(o.ready) + " pending=" + std::to_string(o.pending) +
                  " pending_unsent=" + std::to_string(o.pending_unsent);
  for (const auto& [k, v] : o.ended) {
    std::string key = k;
    std::replace(key.begin(), key.end(), ' ', '_');
    s += " ended[" + key + "]=" + std::to_string(v);
  }
  return s;
}

// `round K`: the first K ready sessions (every one when K is 0 or more than
// there are) publish one QoS 0 message to their own topic; the broker sends
// it back through the proxy. Waits up to 20 s for every echo.
void fill_round(loop& l, long k) {
  std::vector<connection*> chosen;
  for (auto& c : l.all)
    if (c->at == phase::ready && (k <= 0 || static_cast<long>(chosen.size()) < k)) chosen.push_back(c.get());
  for (auto* c : chosen) c->echoes = 0;
  const double t0 = now_seconds();
  for (auto* c : chosen) l.send(*c, publish_packet(c->own_topic, bytes(16, 'e'), 0, 0));
  auto back = [&] {
    long n = 0;
    for (auto* c : chosen) n += c->echoes > 0;
    return n;
  };
  long got = 0;
  while ((got = back()) < static_cast<long>(chosen.size()) && now_seconds() - t0 < 20) l.poll(20);
  long lost_session = 0;
  for (auto* c : chosen) lost_session += c->at != phase::ready;
  std::printf("round sent=%zu echoed=%ld closed_meanwhile=%ld seconds=%.3f\n", chosen.size(), got, lost_session,
              now_seconds() - t0);
}

int run_fill(loop& l, long count, long inflight) {
  l.on_ready_packet = [](loop&, connection& c, const packet_view& p) {
    if ((p.first >> 4) == 3) c.echoes++;
  };
  const double t0 = now_seconds();
  open_subscribed(l, count, inflight, 600);
  const auto filled = outcome_of(l, 0);
  std::printf("filled %s seconds=%.3f failed=%ld%s\n", text_of(filled).c_str(), now_seconds() - t0, l.failed(),
              l.failure_text().c_str());
  std::fflush(stdout);
  for (std::string line; std::getline(std::cin, line);) {
    std::vector<std::string> w;
    for (std::size_t at = 0; at < line.size();) {
      const auto end = std::min(line.find(' ', at), line.size());
      if (end > at) w.push_back(line.substr(at, end - at));
      at = end + 1;
    }
    if (w.empty()) continue;
    if (w[0] == "quit") break;
    if (w[0] == "round") fill_round(l, w.size() > 1 ? std::stol(w[1]) : 0);
    else if (w[0] == "extra" && w.size() == 3) {
      const std::size_t first = l.all.size();
      const double t1 = now_seconds();
      open_subscribed(l, std::stol(w[1]), std::stol(w[2]), 15);
      std::printf("extra %s seconds=%.3f\n", text_of(outcome_of(l, first)).c_str(), now_seconds() - t1);
    } else if (w[0] == "alive") {
      for (int i = 0; i < 20; ++i) l.poll(10);  // notice closes first
      std::printf("alive %s\n", text_of(outcome_of(l, 0)).c_str());
    } else {
      std::printf("unknown command %s\n", w[0].c_str());
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  loop l;
  int i = 1;
  for (; i + 1 < argc && std::strncmp(argv[i], "--", 2) == 0; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--port") l.opt.port = static_cast<std::uint16_t>(std::stoi(value));
    else if (flag == "--user") l.opt.user = value;
    else if (flag == "--pass") l.opt.pass = value;
    else if (flag == "--topic") l.opt.topic = value;
    else if (flag == "--tokens") {
      std::ifstream f(value);
      for (std::string t; std::getline(f, t);) {
        if (t.empty()) continue;
        const auto space = t.find(' ');
        l.opt.tokens.push_back(t.substr(0, space));
        l.opt.token_topics.push_back(space == std::string::npos ? "" : t.substr(space + 1));
      }
    } else {
      std::cerr << "unknown option " << flag << "\n";
      return 2;
    }
  }
  const std::vector<std::string> args(argv + i, argv + argc);
  auto usage = [] {
    std::cerr << "usage: mqtt_load [--port P] [--user U --pass P] [--tokens FILE] [--topic T]\n"
                 "  idle N INFLIGHT | sessions SECONDS INFLIGHT | relay SECONDS QOS SIZE PUBS | latency SECONDS RATE\n"
                 "  fill N INFLIGHT\n";
    return 2;
  };
  if (args.empty() || l.opt.port == 0) return usage();
  if (args[0] == "idle" && args.size() == 3) return run_idle(l, std::stol(args[1]), std::stol(args[2]));
  if (args[0] == "sessions" && args.size() == 3) return run_sessions(l, std::stod(args[1]), std::stol(args[2]));
  if (args[0] == "relay" && args.size() == 5)
    return run_relay(l, std::stod(args[1]), std::stoi(args[2]), std::stoul(args[3]), std::stoi(args[4]));
  if (args[0] == "latency" && args.size() == 3) return run_latency(l, std::stod(args[1]), std::stod(args[2]));
  if (args[0] == "fill" && args.size() == 3) return run_fill(l, std::stol(args[1]), std::stol(args[2]));
  return usage();
}
