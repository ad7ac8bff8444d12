// auth-server over real HTTP on a loopback port: the binary, its database,
// its command line.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <latch>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "../support/auth_server_process.hpp"
#include "crypto/secrets.hpp"
#include "store/sqlite.hpp"

using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

httplib::Result post(httplib::Client& c, const std::string& path, const json& body) {
  return c.Post(path.c_str(), body.dump(), "application/json");
}

std::string login(test::auth_server_process& server, const std::string& user, const std::string& password) {
  auto c = server.client();
  auto r = post(c, "/v1/login", {{"username", user}, {"password", password}});
  REQUIRE(r);
  REQUIRE(r->status == 200);
  return json::parse(r->body)["session"];
}

int validate_status(test::auth_server_process& server, const std::string& token) {
  auto c = server.client();
  auto r = post(c, "/v1/sessions/validate", {{"session", token}});
  REQUIRE(r);
  return r->status;
}

json validate_answer(test::auth_server_process& server, const std::string& token) {
  auto c = server.client();
  auto r = post(c, "/v1/sessions/validate", {{"session", token}});
  REQUIRE(r);
  REQUIRE(r->status == 200);
  return json::parse(r->body);
}

std::int64_t count(const std::string& db, const std::string& table) {
  auth::connection c(db);
  auto stmt = c.prepare("SELECT COUNT(*) FROM " + table);
  stmt.step();
  return stmt.integer(0);
}

}  // namespace

TEST_CASE("adduser and deluser: exit codes and clear refusals") {
  test::auth_server_process server;
  CHECK(server.add_user("alice", "pw1") == 0);
  CHECK(server.add_user("alice", "pw2") == 1);  // duplicate
  CHECK(server.add_user("bad/name", "pw") == 2);
  CHECK(server.add_user("bob", "pw", {"--allow-publish", "a/#/b"}) == 2);  // invalid filter
  CHECK(server.add_user("bob", "pw", {"--group", "g+"}) == 2);
  CHECK(test::auth_server_command({"adduser", "--db", server.db(), "--user", "carol"}) == 2);  // no password
  CHECK(test::auth_server_command({"deluser", "--db", server.db(), "--user", "alice"}) == 0);
  CHECK(test::auth_server_command({"deluser", "--db", server.db(), "--user", "alice"}) == 1);
  CHECK(test::auth_server_command({"frobnicate"}) == 2);
  CHECK(count(server.db(), "users") == 0);
  // moduser: unknown user, nothing to change, bad values.
  CHECK(test::auth_server_command({"moduser", "--db", server.db(), "--user", "alice", "--group", "x"}) == 1);
  REQUIRE(server.add_user("dave", "pw") == 0);
  CHECK(test::auth_server_command({"moduser", "--db", server.db(), "--user", "dave"}) == 2);
  CHECK(test::auth_server_command({"moduser", "--db", server.db(), "--user", "dave", "--group", "a.b"}) == 2);
  CHECK(test::auth_server_command({"moduser", "--db", server.db(), "--user", "dave", "--allow-publish", "a/#/b"}) == 2);
}

TEST_CASE("names that could merge topic trees are refused: . * / + # controls, empty") {
  test::auth_server_process server;
  for (const char* bad : {"bob.smith", "ops*", "a/b", "+", "#", "", "tab\tname", "line\nbreak"})
    CHECK_MESSAGE(server.add_user(bad, "pw") == 2, bad);
  for (const char* bad : {"ops.secret", "team*", "a/b"}) CHECK_MESSAGE(server.add_user("bob", "pw", {"--group", bad}) == 2, bad);
  CHECK(count(server.db(), "users") == 0);
  CHECK(server.add_user("bob", "pw", {"--group", "ops"}) == 0);
}

TEST_CASE("login, validate, refresh, logout") {
  test::auth_server_process server;
  REQUIRE(server.add_user("alice", "s3cret", {"--group", "ops", "--group", "team", "--allow-publish",
                                              "telemetry/alice/#", "--allow-subscribe", "broadcast/+"}) == 0);
  auto c = server.client();

  auto bad = post(c, "/v1/login", {{"username", "alice"}, {"password", "wrong"}});
  REQUIRE(bad);
  CHECK(bad->status == 401);
  CHECK(json::parse(bad->body) == json{{"error", "invalid_credentials"}});
  auto nobody = post(c, "/v1/login", {{"username", "nobody"}, {"password", "x"}});
  CHECK(nobody->status == 401);

  auto ok = post(c, "/v1/login", {{"username", "alice"}, {"password", "s3cret"}});
  REQUIRE(ok);
  REQUIRE(ok->status == 200);
  const auto login_body = json::parse(ok->body);
  const std::string token = login_body["session"];
  CHECK(login_body["user"] == "alice");
  CHECK(login_body["expires_in"] == 3600);
  CHECK(token.size() == 43);

  auto v = post(c, "/v1/sessions/validate", {{"session", token}});
  REQUIRE(v->status == 200);
  const auto answer = json::parse(v->body);
  CHECK(answer["user"] == "alice");
  CHECK(answer["groups"] == json::array({"ops", "team"}));
  CHECK(answer["acl"]["publish"] == json::array({"private/alice/#", "group/ops/#", "group/team/#", "telemetry/alice/#"}));
  CHECK(answer["acl"]["subscribe"] == json::array({"private/alice/#", "group/ops/#", "group/team/#", "broadcast/+"}));
  CHECK(answer["expires_in"] <= 3600);

  // Only the SHA-256 of the token is stored.
  {
    auth::connection db(server.db());
    auto stmt = db.prepare("SELECT token_sha256 FROM sessions");
    REQUIRE(stmt.step());
    CHECK(stmt.text(0) == auth::token_digest(token));
    CHECK(stmt.text(0) != token);
  }

  // Refresh and logout name the session in the body or an Authorization header, never in the URL.
  auto r = post(c, "/v1/sessions/refresh", {{"session", token}});
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(json::parse(r->body)["expires_in"] == 3600);
  httplib::Headers bearer{{"Authorization", "Bearer " + token}};
  auto r2 = c.Post("/v1/sessions/refresh", bearer, "", "application/json");
  REQUIRE(r2);
  CHECK(r2->status == 200);

  // The old paths that carried the token are gone and change nothing.
  auto old_logout = c.Delete(("/v1/sessions/" + token).c_str());
  REQUIRE(old_logout);
  CHECK(old_logout->status == 410);
  CHECK(json::parse(old_logout->body)["error"] == "gone");
  auto old_refresh = c.Post(("/v1/sessions/" + token + "/refresh").c_str(), "", "application/json");
  REQUIRE(old_refresh);
  CHECK(old_refresh->status == 410);
  CHECK(validate_status(server, token) == 200);

  auto out = c.Post("/v1/sessions/revoke", bearer, "", "application/json");
  REQUIRE(out);
  CHECK(out->status == 204);
  CHECK(validate_status(server, token) == 401);  // revoked
  CHECK(post(c, "/v1/sessions/revoke", {{"session", token}})->status == 401);
  CHECK(post(c, "/v1/sessions/refresh", {{"session", token}})->status == 401);
  CHECK(post(c, "/v1/sessions/revoke", {{"token", token}})->status == 400);
  CHECK(validate_status(server, "unknown-token") == 401);

  auto health = c.Get("/healthz");
  REQUIRE(health);
  CHECK(health->status == 200);
}

TEST_CASE("sessions expire, and ended sessions are purged") {
  test::auth_server_process server({"--session-ttl", "1", "--purge-interval", "1"});
  REQUIRE(server.add_user("alice", "pw") == 0);
  const auto token = login(server, "alice", "pw");
  CHECK(validate_status(server, token) == 200);
  std::this_thread::sleep_for(2100ms);
  CHECK(validate_status(server, token) == 401);
  for (int i = 0; i < 100 && count(server.db(), "sessions") > 0; ++i) std::this_thread::sleep_for(100ms);
  CHECK(count(server.db(), "sessions") == 0);
}

TEST_CASE("repeated failures lock out the (user, address) pair, not the user elsewhere nor other users") {
  test::auth_server_process server;
  REQUIRE(server.add_user("alice", "pw") == 0);
  REQUIRE(server.add_user("bob", "pw") == 0);
  auto c = server.client();
  for (int i = 0; i < 5; ++i) CHECK(post(c, "/v1/login", {{"username", "alice"}, {"password", "guess"}})->status == 401);
  auto blocked = post(c, "/v1/login", {{"username", "alice"}, {"password", "pw"}});
  CHECK(blocked->status == 429);  // even the right password, until the window passes
  CHECK(blocked->has_header("Retry-After"));
  CHECK(json::parse(blocked->body) == json{{"error", "too_many_attempts"}});
  // Another user from the same address is not locked out by these.
  CHECK(post(c, "/v1/login", {{"username", "bob"}, {"password", "pw"}})->status == 200);
}

TEST_CASE("malformed requests get 400 with a clear error and change nothing") {
  test::auth_server_process server;
  REQUIRE(server.add_user("alice", "pw") == 0);
  auto c = server.client();
  struct bad_request {
    const char* path;
    std::string body;
    const char* error;
  };
  const std::vector<bad_request> cases{
      {"/v1/login", "{not json", "malformed_json"},
      {"/v1/login", "[1,2]", "malformed_request"},
      {"/v1/login", R"({"username":"alice"})", "missing_field"},
      {"/v1/login", R"({"username":"alice","password":5})", "wrong_type"},
      {"/v1/login", R"({"username":null,"password":"pw"})", "wrong_type"},
      {"/v1/sessions/validate", "", "malformed_json"},
      {"/v1/sessions/validate", R"({"token":"x"})", "missing_field"},
      {"/v1/sessions/validate", R"({"session":["x"]})", "wrong_type"},
  };
  for (const auto& bad : cases) {
    auto r = c.Post(bad.path, bad.body, "application/json");
    REQUIRE(r);
    CHECK_MESSAGE(r->status == 400, bad.body);
    CHECK_MESSAGE(json::parse(r->body)["error"] == bad.error, bad.body);
  }
  auto huge = c.Post("/v1/login", std::string(100'000, 'x'), "application/json");
  REQUIRE(huge);
  CHECK(huge->status == 413);
  CHECK(json::parse(huge->body)["error"] == "body_too_large");
  auto c2 = server.client();
  auto huge_validate = c2.Post("/v1/sessions/validate", std::string(9000, ' '), "application/json");
  REQUIRE(huge_validate);
  CHECK(huge_validate->status == 413);
  auto c3 = server.client();
  CHECK(c3.Get("/v1/nothing")->status == 404);
  CHECK(count(server.db(), "sessions") == 0);
  CHECK(count(server.db(), "users") == 1);
}

TEST_CASE("concurrent validations from many threads, while logins run") {
  test::auth_server_process server;
  REQUIRE(server.add_user("alice", "pw") == 0);
  const auto token = login(server, "alice", "pw");
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      auto c = server.client();
      c.set_keep_alive(true);
      for (int i = 0; i < 50; ++i) {
        if (t == 0 && i % 10 == 0) post(c, "/v1/login", {{"username", "alice"}, {"password", "pw"}});
        auto r = post(c, "/v1/sessions/validate", {{"session", token}});
        if (r && r->status == 200) ok++;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(ok == 400);
}

TEST_CASE("the database survives a restart with sessions intact") {
  test::auth_server_process server;
  REQUIRE(server.add_user("alice", "pw") == 0);
  const auto token = login(server, "alice", "pw");
  server.stop();
  server.start();
  CHECK(validate_status(server, token) == 200);
}

TEST_CASE("a user created with the default work factor can log in") {
  test::auth_server_process server;
  REQUIRE(test::auth_server_command({"adduser", "--db", server.db(), "--user", "slow", "--password", "pw"}) == 0);
  {
    auth::connection db(server.db());
    auto stmt = db.prepare("SELECT password_hash FROM users");
    REQUIRE(stmt.step());
    CHECK(stmt.text(0).starts_with("pbkdf2-sha256$600000$"));
  }
  CHECK(login(server, "slow", "pw").size() == 43);
}

// ---------------------------------------------------------------------------
// Raw HTTP over a socket: a chosen source address (127.0.0.x), hostile bodies.

namespace {

struct raw_answer {
  int status = 0;
  std::string head;
  std::string body;
  bool closed = false;  // the server closed the connection after the answer
};

int connect_from(const std::string& source, unsigned short port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  timeval timeout{20, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  ::inet_pton(AF_INET, source.c_str(), &local.sin_addr);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) == 0);
  sockaddr_in remote{};
  remote.sin_family = AF_INET;
  remote.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &remote.sin_addr);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&remote), sizeof remote) == 0);
  return fd;
}

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const auto n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Reads one answer (headers and a Content-Length body), then whether the
// server closes the connection within a second.
raw_answer read_answer(int fd, bool check_closed = true) {
  raw_answer answer;
  std::string data;
  char buffer[4096];
  std::size_t header_end = std::string::npos;
  std::size_t length = 0;
  for (;;) {
    if (header_end == std::string::npos && (header_end = data.find("\r\n\r\n")) != std::string::npos) {
      answer.head = data.substr(0, header_end);
      if (answer.head.rfind("HTTP/1.1 100", 0) == 0) {  // 100 Continue: the real answer follows
        data.erase(0, header_end + 4);
        header_end = std::string::npos;
        continue;
      }
      answer.status = std::stoi(answer.head.substr(9, 3));
      std::string lower = answer.head;
      for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (auto at = lower.find("content-length:"); at != std::string::npos) length = std::stoul(lower.substr(at + 15));
    }
    if (header_end != std::string::npos && data.size() >= header_end + 4 + length) break;
    const auto n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) {
      answer.head = "no answer: recv " + std::to_string(n) + " errno " + std::to_string(errno) + " after " + std::to_string(data.size()) + ": " + data.substr(0, 200);
      return answer;
    }
    data.append(buffer, static_cast<std::size_t>(n));
  }
  answer.body = data.substr(header_end + 4, length);
  if (!check_closed) return answer;
  timeval timeout{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  answer.closed = ::recv(fd, buffer, sizeof buffer, 0) == 0;
  return answer;
}

std::string request_text(const std::string& method, const std::string& path, const std::string& body,
                         const std::string& extra_headers = "") {
  return method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n" + extra_headers + "\r\n" + body;
}

raw_answer exchange(unsigned short port, const std::string& request, const std::string& source = "127.0.0.1") {
  const int fd = connect_from(source, port);
  REQUIRE(send_all(fd, request));
  auto answer = read_answer(fd);
  ::close(fd);
  return answer;
}

int login_from(test::auth_server_process& server, const std::string& source, const std::string& user,
               const std::string& password) {
  const json body{{"username", user}, {"password", password}};
  auto answer = exchange(server.port(), request_text("POST", "/v1/login", body.dump(), "Connection: close\r\n"), source);
  if (answer.status == 0) MESSAGE(answer.head);
  return answer.status;
}

long proc_status_kb(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  return -1;
}

long listen_overflows() {
  std::ifstream in("/proc/net/netstat");
  std::string names, values;
  while (std::getline(in, names) && std::getline(in, values)) {
    if (names.rfind("TcpExt:", 0) != 0) continue;
    std::istringstream n(names), v(values);
    std::string name, value;
    while (n >> name && v >> value)
      if (name == "ListenOverflows") return std::stol(value);
  }
  return -1;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string write_token_file(const test::auth_server_process& server, const std::string& token) {
  const auto path = (server.dir() / "service.token").string();
  std::ofstream(path) << token << "\n";
  return path;
}

}  // namespace

TEST_CASE("a 50 MB chunked body is refused with 413 after 8 KiB, the connection closed, RSS flat") {
  test::auth_server_process server;
  const std::string headers =
      "POST /v1/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
      "Transfer-Encoding: chunked\r\n\r\n";
  const std::string piece(64 * 1024, 'x');
  auto send_chunked = [&](std::size_t total) {
    const int fd = connect_from("127.0.0.1", server.port());
    bool ok = send_all(fd, headers);
    char size_line[32];
    std::snprintf(size_line, sizeof size_line, "%zx\r\n", piece.size());
    for (std::size_t sent = 0; ok && sent < total; sent += piece.size())
      ok = send_all(fd, size_line) && send_all(fd, piece) && send_all(fd, "\r\n");
    if (ok) send_all(fd, "0\r\n\r\n");
    auto answer = read_answer(fd);
    ::close(fd);
    return answer;
  };
  auto warm = send_chunked(1024 * 1024);  // touch the code path once before measuring
  CHECK(warm.status == 413);
  const auto before = proc_status_kb(server.pid(), "VmHWM");
  auto answer = send_chunked(50 * 1024 * 1024);
  const auto after = proc_status_kb(server.pid(), "VmHWM");
  CHECK(answer.status == 413);
  CHECK(json::parse(answer.body)["error"] == "body_too_large");
  CHECK(answer.closed);
  MESSAGE("peak RSS before " << before << " kB, after " << after << " kB");
  REQUIRE(before > 0);
  CHECK(after - before < 1024);

  // A declared length over the limit is refused before any of it is sent.
  const int fd = connect_from("127.0.0.1", server.port());
  REQUIRE(send_all(fd, "POST /v1/sessions/validate HTTP/1.1\r\nHost: x\r\nContent-Length: 52428800\r\n\r\n"));
  auto early = read_answer(fd);
  ::close(fd);
  CHECK(early.status == 413);
  CHECK(early.closed);
  // Unknown paths are bounded too.
  auto unknown = exchange(server.port(), "POST /v1/nothing HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
                                             std::string("100000\r\n") + std::string(0x100000, 'y') + "\r\n0\r\n\r\n");
  CHECK(unknown.status == 413);
  CHECK(server.client().Get("/healthz")->status == 200);
}

TEST_CASE("hostile requests: 100-continue with a large length, endless headers, chunk framing") {
  test::auth_server_process server;
  // Expect: 100-continue with a length over the limit: 413 instead of 100, nothing read.
  auto expect = exchange(server.port(),
                         "POST /v1/login HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n");
  CHECK(expect.status == 413);
  CHECK(expect.head.find("100 Continue") == std::string::npos);
  CHECK(expect.closed);
  // Headers without end: cut off at the per-request cap, the connection closed.
  const int fd = connect_from("127.0.0.1", server.port());
  bool sending = send_all(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
  for (int i = 0; sending && i < 2000; ++i) sending = send_all(fd, "X-Filler-" + std::to_string(i) + ": " + std::string(100, 'z') + "\r\n");
  auto headers = read_answer(fd);
  ::close(fd);
  CHECK(headers.status == 413);
  CHECK(headers.closed);
  // A chunk of 8 KiB + 1 in small pieces: 413; exactly 8 KiB of bad JSON: 400.
  std::string chunked = "POST /v1/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 8; ++i) chunked += "400\r\n" + std::string(1024, 'a') + "\r\n";
  auto exact = exchange(server.port(), chunked + "0\r\n\r\n");
  CHECK(exact.status == 400);
  CHECK(json::parse(exact.body)["error"] == "malformed_json");
  auto over = exchange(server.port(), chunked + "1\r\na\r\n0\r\n\r\n");
  CHECK(over.status == 413);
  CHECK(server.client().Get("/healthz")->status == 200);
}

TEST_CASE("the listen backlog is somaxconn, and 200 simultaneous new connections all get answers") {
  test::auth_server_process server;
  REQUIRE(server.add_user("alice", "pw") == 0);
  const auto token = login(server, "alice", "pw");
  // The backlog of a listening socket is Send-Q in ss.
  std::string ss;
  {
    const auto command = "ss -ltnH 'sport = :" + std::to_string(server.port()) + "'";
    FILE* pipe = ::popen(command.c_str(), "r");
    REQUIRE(pipe);
    char line[512];
    while (std::fgets(line, sizeof line, pipe)) ss += line;
    ::pclose(pipe);
  }
  std::istringstream fields(ss);
  std::string state, recv_q, send_q;
  fields >> state >> recv_q >> send_q;
  CHECK(send_q == std::to_string(std::stoi(read_file("/proc/sys/net/core/somaxconn"))));

  const auto overflows_before = listen_overflows();
  constexpr int clients = 200;
  std::latch start(clients);
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  const auto request =
      request_text("POST", "/v1/sessions/validate", json{{"session", token}}.dump(), "Connection: close\r\n");
  for (int i = 0; i < clients; ++i)
    threads.emplace_back([&] {
      start.arrive_and_wait();
      if (exchange(server.port(), request).status == 200) ++ok;
    });
  for (auto& t : threads) t.join();
  CHECK(ok == clients);
  const auto overflows_after = listen_overflows();
  MESSAGE("TcpExtListenOverflows before " << overflows_before << ", after " << overflows_after);
  CHECK(overflows_after - overflows_before == 0);
}

TEST_CASE("40 parallel guesses from one address: at most the limit are checked") {
  test::auth_server_process server;
  REQUIRE(server.add_user("alice", "pw") == 0);
  constexpr int guesses = 40;
  std::latch start(guesses);
  std::atomic<int> checked{0}, throttled{0}, other{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < guesses; ++i)
    threads.emplace_back([&] {
      start.arrive_and_wait();
      const auto status = login_from(server, "127.0.0.1", "alice", "guess");
      (status == 401 ? checked : status == 429 ? throttled : other)++;
      if (status != 401 && status != 429) MESSAGE("unexpected status " << status);
    });
  for (auto& t : threads) t.join();
  MESSAGE("checked " << checked.load() << ", throttled " << throttled.load() << ", other " << other.load());
  CHECK(checked <= 5);
  CHECK(checked >= 1);
  CHECK(checked + throttled == guesses);
}

TEST_CASE("an attacker elsewhere cannot lock a user out; one address spraying users is locked out") {
  test::auth_server_process server({"--login-max-failures-per-address", "8", "--login-slow-after", "50"});
  REQUIRE(server.add_user("alice", "pw") == 0);
  REQUIRE(server.add_user("bob", "pw") == 0);
  // The attacker, from 127.0.0.2, guesses alice's password until refused.
  int refused = 0;
  for (int i = 0; i < 8; ++i) refused += login_from(server, "127.0.0.2", "alice", "guess" + std::to_string(i)) == 429;
  CHECK(refused == 3);  // 5 checked, then the pair is locked
  CHECK(login_from(server, "127.0.0.2", "alice", "pw") == 429);
  // Alice, from her own address, is not locked out.
  CHECK(login_from(server, "127.0.0.1", "alice", "pw") == 200);
  // 127.0.0.3 sprays many user names: after 8 failures the address is locked for everyone.
  for (int i = 0; i < 8; ++i) CHECK(login_from(server, "127.0.0.3", "user" + std::to_string(i), "x") == 401);
  CHECK(login_from(server, "127.0.0.3", "bob", "pw") == 429);
  CHECK(login_from(server, "127.0.0.1", "bob", "pw") == 200);
}

TEST_CASE("past the per-user limit from anywhere, logins are delayed, not refused") {
  test::auth_server_process server({"--login-slow-after", "2", "--login-max-delay", "1"});
  REQUIRE(server.add_user("alice", "pw") == 0);
  CHECK(login_from(server, "127.0.0.4", "alice", "x") == 401);
  CHECK(login_from(server, "127.0.0.5", "alice", "x") == 401);
  const auto begin = std::chrono::steady_clock::now();
  CHECK(login_from(server, "127.0.0.1", "alice", "pw") == 200);
  CHECK(std::chrono::steady_clock::now() - begin >= 400ms);  // the delay happened (500 ms step)
}

TEST_CASE("control characters in client-chosen strings are escaped in the log") {
  test::auth_server_process server;
  auto c = server.client();
  CHECK(post(c, "/v1/login", {{"username", "eve\n[info] login ok user=root"}, {"password", "x"}})->status == 401);
  server.stop();
  const auto log = read_file(server.log_path());
  CHECK(log.find("eve\\x0a[info] login ok user=root") != std::string::npos);
  CHECK(log.find("\n[info] login ok user=root") == std::string::npos);
}

TEST_CASE("user ids are immutable and never reused, also across a deluser and adduser of the same name") {
  test::auth_server_process server;
  REQUIRE(server.add_user("alice", "pw") == 0);
  REQUIRE(server.add_user("bob", "pw") == 0);
  const auto first = validate_answer(server, login(server, "bob", "pw"))["user_id"].get<std::string>();
  REQUIRE(test::auth_server_command({"deluser", "--db", server.db(), "--user", "bob"}) == 0);
  REQUIRE(server.add_user("bob", "pw") == 0);
  const auto second = validate_answer(server, login(server, "bob", "pw"))["user_id"].get<std::string>();
  CHECK(first == "2");
  CHECK(second == "3");
}

TEST_CASE("a database of schema 1 is migrated: ids, groups and sessions kept, ids not reused") {
  const auto dir = test::temp_dir("auth-v1");
  const auto db = (dir / "auth.db").string();
  {
    auth::connection c(db);
    c.exec(R"(CREATE TABLE schema_version(version INTEGER NOT NULL); INSERT INTO schema_version VALUES (1);
       CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,
         created_at INTEGER NOT NULL DEFAULT (strftime('%s','now')));
       CREATE TABLE user_groups(user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
         group_name TEXT NOT NULL, PRIMARY KEY(user_id, group_name));
       CREATE TABLE user_filters(user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
         kind TEXT NOT NULL CHECK(kind IN ('publish', 'subscribe')), filter TEXT NOT NULL);
       CREATE TABLE sessions(token_sha256 TEXT PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
         created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, revoked_at INTEGER);
       CREATE INDEX sessions_by_user ON sessions(user_id);
       CREATE INDEX sessions_by_expiry ON sessions(expires_at);)");
    c.prepare("INSERT INTO users(id, name, password_hash) VALUES (7, 'carol', ?)").bind(1, auth::hash_password("pw", 1000)).step();
    c.exec("INSERT INTO user_groups VALUES (7, 'ops')");
    c.prepare("INSERT INTO sessions VALUES (?, 7, 0, 4000000000, NULL)").bind(1, auth::token_digest("old-token")).step();
  }
  CHECK(test::auth_server_command({"adduser", "--db", db, "--user", "dan", "--password", "pw", "--kdf-iterations", "1000"}) == 0);
  CHECK(test::auth_server_command({"deluser", "--db", db, "--user", "dan"}) == 0);
  CHECK(test::auth_server_command({"adduser", "--db", db, "--user", "erin", "--password", "pw", "--kdf-iterations", "1000"}) == 0);
  auth::connection c(db);
  auto sessions = c.prepare("SELECT COUNT(*) FROM sessions WHERE user_id = 7");
  sessions.step();
  CHECK(sessions.integer(0) == 1);  // the rebuild cascaded nothing
  auto groups = c.prepare("SELECT COUNT(*) FROM user_groups WHERE user_id = 7");
  groups.step();
  CHECK(groups.integer(0) == 1);
  auto erin = c.prepare("SELECT id FROM users WHERE name = 'erin'");
  REQUIRE(erin.step());
  CHECK(erin.integer(0) == 9);  // dan had 8
  std::filesystem::remove_all(dir);
}

TEST_CASE("validate answers carry Cache-Control: private, max-age on 200 and no-store on 401") {
  test::auth_server_process server({"--validate-max-age", "30"});
  REQUIRE(server.add_user("alice", "pw") == 0);
  const auto token = login(server, "alice", "pw");
  auto c = server.client();
  auto ok = post(c, "/v1/sessions/validate", {{"session", token}});
  REQUIRE(ok->status == 200);
  CHECK(ok->get_header_value("Cache-Control") == "private, max-age=30");
  CHECK(ok->get_header_value_count("Cache-Control") == 1);
  auto bad = post(c, "/v1/sessions/validate", {{"session", "nope"}});
  REQUIRE(bad->status == 401);
  CHECK(bad->get_header_value("Cache-Control") == "no-store");
  auto login_answer = post(c, "/v1/login", {{"username", "alice"}, {"password", "pw"}});
  CHECK(login_answer->get_header_value("Cache-Control") == "no-store");
  // max-age never outlives the session.
  test::auth_server_process short_lived({"--session-ttl", "10"});
  REQUIRE(short_lived.add_user("alice", "pw") == 0);
  auto c2 = short_lived.client();
  auto v = post(c2, "/v1/sessions/validate", {{"session", login(short_lived, "alice", "pw")}});
  const auto header = v->get_header_value("Cache-Control");
  CHECK((header == "private, max-age=10" || header == "private, max-age=9"));
}

TEST_CASE("keep-alive: announced, and an idle connection is closed after the timeout") {
  test::auth_server_process server({"--keep-alive-timeout", "1", "--keep-alive-max", "3"});
  const int fd = connect_from("127.0.0.1", server.port());
  for (int i = 0; i < 3; ++i) {
    REQUIRE(send_all(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    const auto answer = read_answer(fd, false);
    CHECK(answer.status == 200);
    if (i < 2) CHECK(answer.head.find("Keep-Alive: timeout=1, max=3") != std::string::npos);
    else CHECK(answer.head.find("Connection: close") != std::string::npos);  // the last one allowed
  }
  char byte;
  CHECK(::recv(fd, &byte, 1, 0) == 0);
  ::close(fd);
  // Idle past the timeout: closed.
  const int idle = connect_from("127.0.0.1", server.port());
  REQUIRE(send_all(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  CHECK(read_answer(idle, false).status == 200);
  const auto begin = std::chrono::steady_clock::now();
  CHECK(::recv(idle, &byte, 1, 0) == 0);
  CHECK(std::chrono::steady_clock::now() - begin < 3s);
  ::close(idle);
}

// ---------------------------------------------------------------------------
// The event stream.

namespace {

struct event_client {
  test::auth_server_process& server;
  std::string token;
  json get(const std::string& query, int expected_status = 200) {
    auto c = server.client();
    c.set_read_timeout(70, 0);
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    auto r = c.Get(("/v1/events" + query).c_str(), headers);
    REQUIRE(r);
    CHECK(r->status == expected_status);
    if (expected_status == 200) CHECK(r->get_header_value("Cache-Control") == "no-store");
    return json::parse(r->body);
  }
  std::int64_t newest() { return get("")["next"]; }
};

}  // namespace

TEST_CASE("events: a long-poll wakes on logout at once, with the session digest and the user id") {
  test::auth_server_process server;
  REQUIRE(server.add_user("alice", "pw") == 0);
  const auto token = login(server, "alice", "pw");
  const auto user_id = validate_answer(server, token)["user_id"].get<std::string>();
  event_client events{server, ""};
  const auto start = events.newest();
  CHECK(start == 0);
  json answer;
  std::chrono::steady_clock::duration waited{};
  std::thread poller([&] {
    const auto begin = std::chrono::steady_clock::now();
    answer = events.get("?after=" + std::to_string(start) + "&wait=20");
    waited = std::chrono::steady_clock::now() - begin;
  });
  std::this_thread::sleep_for(300ms);
  auto c = server.client();
  REQUIRE(post(c, "/v1/sessions/revoke", {{"session", token}})->status == 204);
  poller.join();
  CHECK(waited < 5s);  // woken by the logout, not by the 20 s wait
  REQUIRE(answer["events"].size() == 1);
  const auto& e = answer["events"][0];
  CHECK(e["seq"] == start + 1);
  CHECK(e["type"] == "session_revoked");
  CHECK(e["user_id"] == user_id);
  CHECK(e["user"] == "alice");
  CHECK(e["session"] == auth::token_digest(token));
  CHECK(answer["next"] == start + 1);
  CHECK(answer["reset"] == false);
  // Nothing new: the wait runs out with no events and next unchanged.
  auto empty = events.get("?after=" + std::to_string(start + 1) + "&wait=1");
  CHECK(empty["events"].empty());
  CHECK(empty["next"] == start + 1);
}

TEST_CASE("events: written by CLI commands in another process, seen by waiting long-polls") {
  test::auth_server_process server;
  REQUIRE(server.add_user("alice", "pw", {"--group", "ops"}) == 0);
  const auto token = login(server, "alice", "pw");
  event_client events{server, ""};
  auto after = events.newest();

  auto wait_for_cli = [&](std::vector<std::string> command, const std::string& stdin_text = "") {
    json answer;
    std::thread poller([&] { answer = events.get("?after=" + std::to_string(after) + "&wait=20"); });
    std::this_thread::sleep_for(300ms);
    if (stdin_text.empty()) {
      CHECK(test::auth_server_command(command) == 0);
    } else {
      const auto input = (server.dir() / "stdin.txt").string();
      std::ofstream(input) << stdin_text << "\n";
      std::string line = std::string(AUTH_SERVER_BINARY);
      for (const auto& a : command) line += " '" + a + "'";
      CHECK(std::system((line + " < " + input + " > /dev/null").c_str()) == 0);
    }
    poller.join();
    REQUIRE(!answer["events"].empty());
    after = answer["next"];
    return answer["events"];
  };

  // Group change: acl_changed with the ACL exactly as validate would return it.
  auto acl = wait_for_cli({"moduser", "--db", server.db(), "--user", "alice", "--group", "team"});
  REQUIRE(acl.size() == 1);
  CHECK(acl[0]["type"] == "acl_changed");
  CHECK(acl[0]["acl"] == validate_answer(server, token)["acl"]);
  CHECK(acl[0]["acl"]["subscribe"] == json::array({"private/alice/#", "group/team/#"}));

  // Password change: every session revoked, in the database too.
  auto password = wait_for_cli({"moduser", "--db", server.db(), "--user", "alice", "--password-stdin",
                                "--kdf-iterations", "1000"}, "n3w");
  REQUIRE(password.size() == 1);
  CHECK(password[0]["type"] == "user_sessions_revoked");
  CHECK(validate_status(server, token) == 401);
  const auto second = login(server, "alice", "n3w");

  // Filters only: acl_changed; clearing them again: another one.
  auto filters = wait_for_cli({"moduser", "--db", server.db(), "--user", "alice", "--allow-subscribe", "news/+"});
  CHECK(filters[0]["acl"]["subscribe"].back() == "news/+");
  auto cleared = wait_for_cli({"moduser", "--db", server.db(), "--user", "alice", "--clear-filters", "--clear-groups"});
  CHECK(cleared[0]["acl"]["subscribe"] == json::array({"private/alice/#"}));

  // Deletion: user_deleted, and the sessions go with the user.
  auto deleted = wait_for_cli({"deluser", "--db", server.db(), "--user", "alice"});
  REQUIRE(deleted.size() == 1);
  CHECK(deleted[0]["type"] == "user_deleted");
  CHECK(deleted[0]["user"] == "alice");
  CHECK(validate_status(server, second) == 401);
}

TEST_CASE("events: reset when after is newer than the newest or older than the oldest kept") {
  test::auth_server_process server({"--event-retention", "1", "--purge-interval", "1"});
  REQUIRE(server.add_user("alice", "pw") == 0);
  event_client events{server, ""};
  auto too_new = events.get("?after=99&wait=0");
  CHECK(too_new["reset"] == true);
  CHECK(too_new["next"] == 0);
  CHECK(too_new["events"].empty());
  for (int i = 0; i < 3; ++i) {
    auto c = server.client();
    REQUIRE(post(c, "/v1/sessions/revoke", {{"session", login(server, "alice", "pw")}})->status == 204);
  }
  auto all = events.get("?after=0&wait=0");
  CHECK(all["events"].size() == 3);
  CHECK(all["reset"] == false);
  // Retention is 1 s: the janitor purges them; a proxy still at 0 must resync.
  for (int i = 0; i < 100 && count(server.db(), "events") > 0; ++i) std::this_thread::sleep_for(100ms);
  REQUIRE(count(server.db(), "events") == 0);
  auto purged = events.get("?after=0&wait=0");
  CHECK(purged["reset"] == true);
  CHECK(purged["next"] == 3);
  CHECK(purged["events"].empty());
  auto current = events.get("?after=3&wait=0");  // up to date: no reset, even with nothing kept
  CHECK(current["reset"] == false);
  CHECK(current["next"] == 3);
  events.get("?after=x", 400);
  events.get("?after=1&wait=56", 400);
}

TEST_CASE("events: the sequence survives a restart and continues") {
  test::auth_server_process server;
  REQUIRE(server.add_user("alice", "pw") == 0);
  auto c = server.client();
  REQUIRE(post(c, "/v1/sessions/revoke", {{"session", login(server, "alice", "pw")}})->status == 204);
  REQUIRE(post(c, "/v1/sessions/revoke", {{"session", login(server, "alice", "pw")}})->status == 204);
  server.stop();
  server.start();
  event_client events{server, ""};
  CHECK(events.newest() == 2);
  auto c2 = server.client();
  REQUIRE(post(c2, "/v1/sessions/revoke", {{"session", login(server, "alice", "pw")}})->status == 204);
  auto answer = events.get("?after=1&wait=0");
  REQUIRE(answer["events"].size() == 2);
  CHECK(answer["events"][0]["seq"] == 2);
  CHECK(answer["events"][1]["seq"] == 3);
}

TEST_CASE("events and operator endpoints: the service token is required when configured") {
  test::auth_server_process open_server;
  REQUIRE(open_server.add_user("alice", "pw") == 0);
  // Without a token the operator endpoints do not exist.
  auto c0 = open_server.client();
  CHECK(c0.Patch("/v1/users/alice", R"({"groups":["x"]})", "application/json")->status == 404);
  CHECK(c0.Delete("/v1/users/alice")->status == 404);
  open_server.stop();

  test::auth_server_process server;
  const std::string token = "0123456789abcdef0123456789abcdef";
  server.stop();
  server.start({"--service-token-file", write_token_file(server, token)});
  REQUIRE(server.add_user("alice", "pw") == 0);
  REQUIRE(server.add_user("bob", "pw") == 0);
  const auto alice_session = login(server, "alice", "pw");
  event_client anonymous{server, ""};
  CHECK(anonymous.get("", 401) == json{{"error", "unauthorized"}});
  event_client wrong{server, "0123456789abcdef0123456789abcdeX"};
  wrong.get("?after=0", 401);
  event_client events{server, token};
  const auto start = events.newest();

  auto c = server.client();
  httplib::Headers auth{{"Authorization", "Bearer " + token}};
  CHECK(c.Patch("/v1/users/alice", R"({"groups":["x"]})", "application/json")->status == 401);
  CHECK(c.Patch("/v1/users/alice", auth, R"({"groups":["a.b"]})", "application/json")->status == 400);
  CHECK(c.Patch("/v1/users/alice", auth, R"({"colour":"red"})", "application/json")->status == 400);
  CHECK(c.Patch("/v1/users/nobody", auth, R"({"groups":["x"]})", "application/json")->status == 404);
  auto patched = c.Patch("/v1/users/alice", auth, R"({"groups":["ops"],"publish":["telemetry/alice/#"]})", "application/json");
  REQUIRE(patched);
  CHECK(patched->status == 200);
  CHECK(json::parse(patched->body)["acl"]["publish"] ==
        json::array({"private/alice/#", "group/ops/#", "telemetry/alice/#"}));
  auto password = c.Patch("/v1/users/alice", auth, R"({"password":"n3w"})", "application/json");
  REQUIRE(password);
  CHECK(password->status == 200);
  CHECK(validate_status(server, alice_session) == 401);
  CHECK(c.Delete("/v1/users/bob")->status == 401);
  CHECK(c.Delete("/v1/users/bob", auth)->status == 204);
  CHECK(c.Delete("/v1/users/bob", auth)->status == 404);

  auto answer = events.get("?after=" + std::to_string(start) + "&wait=0");
  std::vector<std::string> types;
  for (const auto& e : answer["events"]) types.push_back(e["type"]);
  CHECK(types == std::vector<std::string>{"acl_changed", "user_sessions_revoked", "user_deleted"});
}

TEST_CASE("events: long-polls are capped so they cannot take every thread") {
  test::auth_server_process server({"--threads", "4"});  // one long-poll allowed
  event_client events{server, ""};
  const auto path = "/v1/events?after=" + std::to_string(events.newest()) + "&wait=3";
  // Two long-polls at once: one waits its 3 s, the other is refused at once, whichever comes first.
  std::latch start(2);
  std::vector<int> statuses(2);
  std::vector<std::string> retry_after(2);
  std::vector<std::thread> polls;
  for (int i = 0; i < 2; ++i)
    polls.emplace_back([&, i] {
      auto c = server.client();
      c.set_read_timeout(20, 0);
      start.arrive_and_wait();
      auto r = c.Get(path.c_str());
      statuses[i] = r ? r->status : 0;
      retry_after[i] = r ? r->get_header_value("Retry-After") : "";
    });
  // Other requests still run meanwhile.
  std::this_thread::sleep_for(500ms);
  CHECK(server.client().Get("/healthz")->status == 200);
  for (auto& t : polls) t.join();
  std::sort(statuses.begin(), statuses.end());
  CHECK(statuses == std::vector<int>{200, 503});
  CHECK((retry_after[0] == "5" || retry_after[1] == "5"));
}

TEST_CASE("a second server on the same port fails to start instead of sharing it") {
  test::auth_server_process server;
  test::child_process second(AUTH_SERVER_BINARY,
                             {"serve", "--db", server.db(), "--listen", "127.0.0.1:" + std::to_string(server.port())},
                             "/dev/null");
  bool exited = false;
  for (int i = 0; i < 100 && !exited; ++i) {
    exited = !second.running();
    if (!exited) std::this_thread::sleep_for(50ms);
  }
  CHECK(exited);
  CHECK(server.client().Get("/healthz")->status == 200);
}

// ---------------------------------------------------------------------------
// CORS (--cors-origin) and the web console's files (--console-dir).

namespace {

httplib::Headers preflight_from(const std::string& origin) {
  return {{"Origin", origin}, {"Access-Control-Request-Method", "POST"},
          {"Access-Control-Request-Headers", "content-type"}};
}

// GET `target` exactly as written (no client-side normalisation of `..` or %-escapes).
raw_answer raw_get(unsigned short port, const std::string& target) {
  return ::exchange(port, "GET " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
}

}  // namespace

TEST_CASE("CORS: preflights and Access-Control-Allow-Origin for the configured origins only") {
  test::auth_server_process server({"--cors-origin", "https://app.example", "--cors-origin", "http://127.0.0.1:3000"});
  REQUIRE(server.add_user("alice", "pw") == 0);
  auto c = server.client();

  // An allowed origin's preflight: 204 with its origin echoed, never `*`, no credentials.
  auto allowed = c.Options("/v1/login", preflight_from("https://app.example"));
  REQUIRE(allowed);
  CHECK(allowed->status == 204);
  CHECK(allowed->get_header_value("Access-Control-Allow-Origin") == "https://app.example");
  CHECK(allowed->get_header_value("Access-Control-Allow-Methods") == "GET, POST");
  CHECK(allowed->get_header_value("Access-Control-Allow-Headers") == "Authorization, Content-Type");
  CHECK(allowed->get_header_value("Vary") == "Origin");
  CHECK_FALSE(allowed->has_header("Access-Control-Allow-Credentials"));
  auto second = c.Options("/v1/sessions/revoke", preflight_from("http://127.0.0.1:3000"));
  CHECK(second->get_header_value("Access-Control-Allow-Origin") == "http://127.0.0.1:3000");
  // Origins compare case-insensitively; the browser's own spelling is echoed.
  CHECK(c.Options("/v1/login", preflight_from("HTTPS://App.Example"))->get_header_value("Access-Control-Allow-Origin") ==
        "HTTPS://App.Example");

  // Hostile: another origin, a look-alike, another port or scheme, `null`: 403, nothing echoed.
  for (const char* origin : {"https://evil.example", "https://app.example.evil.example", "http://app.example",
                             "https://app.example:8443", "http://127.0.0.1:3001", "null"}) {
    auto refused = c.Options("/v1/login", preflight_from(origin));
    REQUIRE(refused);
    CHECK_MESSAGE(refused->status == 403, origin);
    CHECK_MESSAGE(!refused->has_header("Access-Control-Allow-Origin"), origin);
    CHECK(refused->get_header_value("Vary") == "Origin");
    CHECK(json::parse(refused->body) == json{{"error", "origin_not_allowed"}});
  }
  // OPTIONS that is not a preflight: just what the API takes.
  auto plain = c.Options("/v1/login");
  CHECK(plain->status == 204);
  CHECK(plain->get_header_value("Allow") == "GET, POST, PATCH, DELETE, OPTIONS");

  // Actual requests: the allowed origin is echoed on success and on errors, so the
  // page can read why; any other origin is answered (CORS is not access control)
  // but without the header, so the browser hides the answer from the page.
  httplib::Headers from_app{{"Origin", "https://app.example"}};
  const std::string credentials = json{{"username", "alice"}, {"password", "pw"}}.dump();
  auto ok = c.Post("/v1/login", from_app, credentials, "application/json");
  REQUIRE(ok);
  CHECK(ok->status == 200);
  CHECK(ok->get_header_value("Access-Control-Allow-Origin") == "https://app.example");
  CHECK(ok->get_header_value("Access-Control-Expose-Headers") == "Retry-After");
  CHECK(ok->get_header_value("Vary") == "Origin");
  const std::string wrong = json{{"username", "alice"}, {"password", "nope"}}.dump();
  auto refused_login = c.Post("/v1/login", from_app, wrong, "application/json");
  CHECK(refused_login->status == 401);
  CHECK(refused_login->get_header_value("Access-Control-Allow-Origin") == "https://app.example");
  auto unknown = c.Get("/v1/nothing", from_app);
  CHECK(unknown->status == 404);
  CHECK(unknown->get_header_value("Access-Control-Allow-Origin") == "https://app.example");
  auto evil = c.Post("/v1/login", {{"Origin", "https://evil.example"}}, credentials, "application/json");
  CHECK(evil->status == 200);
  CHECK_FALSE(evil->has_header("Access-Control-Allow-Origin"));
  CHECK(evil->get_header_value("Vary") == "Origin");
  auto none = c.Get("/healthz");
  CHECK_FALSE(none->has_header("Access-Control-Allow-Origin"));
  CHECK(none->get_header_value("Vary") == "Origin");
}

TEST_CASE("CORS: off unless configured, and only real origins are accepted") {
  test::auth_server_process server;
  auto c = server.client();
  auto preflight = c.Options("/v1/login", preflight_from("https://app.example"));
  REQUIRE(preflight);
  CHECK(preflight->status == 404);
  CHECK_FALSE(preflight->has_header("Access-Control-Allow-Origin"));
  auto health = c.Get("/healthz", {{"Origin", "https://app.example"}});
  CHECK_FALSE(health->has_header("Access-Control-Allow-Origin"));
  CHECK_FALSE(health->has_header("Vary"));
  for (const char* bad : {"*", "null", "https://app.example/", "https://app.example/path", "app.example",
                          "ftp://app.example", "https://", "https://user@app.example"})
    CHECK_MESSAGE(test::auth_server_command({"serve", "--db", server.db(), "--listen", "127.0.0.1:0", "--cors-origin", bad}) == 2,
                  bad);
}

TEST_CASE("web console: its files with their content types, nothing else, no way out of the folder") {
  const auto dir = test::temp_dir("console-files");
  const auto console = dir / "console";
  std::filesystem::create_directories(console / "node_modules" / "mqtt" / "dist");
  std::ofstream(console / "index.html") << "<!doctype html><title>console</title>";
  std::ofstream(console / "console.js") << "'use strict';";
  std::ofstream(console / "console.css") << "body {}";
  std::ofstream(console / ".hidden.html") << "TOP-SECRET hidden";
  std::ofstream(console / "notes.md") << "TOP-SECRET markdown";
  std::ofstream(console / "node_modules" / "mqtt" / "dist" / "mqtt.min.js") << "/* mqtt.js */";
  std::ofstream(console / "node_modules" / "mqtt" / "package.json") << R"({"TOP-SECRET": 1})";
  std::ofstream(dir / "secret.txt") << "TOP-SECRET outside";
  std::filesystem::create_symlink(dir / "secret.txt", console / "leak.txt");
  std::filesystem::create_directory_symlink(dir, console / "up");

  test::auth_server_process server({"--console-dir", console.string()});
  auto c = server.client();
  auto index = c.Get("/console/");
  REQUIRE(index);
  CHECK(index->status == 200);
  CHECK(index->body == "<!doctype html><title>console</title>");
  CHECK(index->get_header_value("Content-Type") == "text/html; charset=utf-8");
  CHECK(index->get_header_value("X-Content-Type-Options") == "nosniff");
  CHECK(index->get_header_value("Content-Security-Policy").find("frame-ancestors 'none'") != std::string::npos);
  auto bare = c.Get("/console");
  CHECK(bare->status == 301);
  CHECK(bare->get_header_value("Location") == "/console/");
  CHECK(c.Get("/console/index.html")->status == 200);
  CHECK(c.Get("/console/console.js")->get_header_value("Content-Type") == "text/javascript; charset=utf-8");
  CHECK(c.Get("/console/console.css")->get_header_value("Content-Type") == "text/css; charset=utf-8");
  auto vendor = c.Get("/console/vendor/mqtt.min.js");
  CHECK(vendor->status == 200);
  CHECK(vendor->body == "/* mqtt.js */");
  CHECK(vendor->get_header_value("Content-Type") == "text/javascript; charset=utf-8");
  CHECK(c.Get("/console/missing.js")->status == 404);

  // Hostile paths, sent byte for byte: dot segments plain and %-encoded, absolute
  // paths, backslashes, NUL, hidden files, other extensions, node_modules itself,
  // and symbolic links out of the folder. None may answer with a file.
  for (const char* target :
       {"/console/../secret.txt", "/console/..%2fsecret.txt", "/console/%2e%2e/secret.txt", "/console/%2e%2e%2fsecret.txt",
        "/console/%2E%2E%2Fsecret.txt", "/console/vendor/../../secret.txt", "/console/vendor/..%2f..%2fsecret.txt",
        "/console//etc/passwd", "/console/%2fetc%2fpasswd", "/console/..\\secret.txt", "/console/..%5csecret.txt",
        "/console/index.html%00.txt", "/console/.hidden.html", "/console/notes.md",
        "/console/node_modules/mqtt/package.json", "/console/vendor/../node_modules/mqtt/package.json",
        "/console/leak.txt", "/console/up/secret.txt", "/console/./leak.txt", "/console/%2e/leak.txt"}) {
    const auto answer = raw_get(server.port(), target);
    CHECK_MESSAGE((answer.status == 404 || answer.status == 400), target << " -> " << answer.status);
    CHECK_MESSAGE(answer.body.find("TOP-SECRET") == std::string::npos, target);
    CHECK_MESSAGE(answer.body.find("root:") == std::string::npos, target);
  }
  CHECK(c.Get("/healthz")->status == 200);
  server.stop();

  test::auth_server_process off({"--console-dir", "off"});
  CHECK(off.client().Get("/console/")->status == 404);
  CHECK(test::auth_server_command({"serve", "--db", off.db(), "--listen", "127.0.0.1:0", "--console-dir",
                                   (dir / "missing").string()}) == 2);
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

TEST_CASE("web console: served by default from the source tree auth-server was built from") {
  test::auth_server_process server;
  auto index = server.client().Get("/console/");
  REQUIRE(index);
  CHECK(index->status == 200);
  CHECK(index->body.find("mqtt-proxy console") != std::string::npos);
  CHECK(server.client().Get("/console/console.js")->status == 200);
}
