// auth-server over real HTTP on a loopback port: the binary, its database,
// its command line.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
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

  auto r = c.Post(("/v1/sessions/" + token + "/refresh").c_str(), "", "application/json");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(json::parse(r->body)["expires_in"] == 3600);

  auto out = c.Delete(("/v1/sessions/" + token).c_str());
  REQUIRE(out);
  CHECK(out->status == 204);
  CHECK(validate_status(server, token) == 401);  // revoked
  CHECK(c.Delete(("/v1/sessions/" + token).c_str())->status == 401);
  CHECK(c.Post(("/v1/sessions/" + token + "/refresh").c_str(), "", "application/json")->status == 401);
  CHECK(validate_status(server, "unknown-token") == 401);

  auto health = c.Get("/healthz");
  REQUIRE(health);
  CHECK(health->status == 200);
}

TEST_CASE("sessions expire") {
  test::auth_server_process server({"--session-ttl", "1"});
  REQUIRE(server.add_user("alice", "pw") == 0);
  const auto token = login(server, "alice", "pw");
  CHECK(validate_status(server, token) == 200);
  std::this_thread::sleep_for(2100ms);
  CHECK(validate_status(server, token) == 401);
}

TEST_CASE("repeated failures are throttled per user and per address") {
  test::auth_server_process server;
  REQUIRE(server.add_user("alice", "pw") == 0);
  REQUIRE(server.add_user("bob", "pw") == 0);
  auto c = server.client();
  for (int i = 0; i < 5; ++i) CHECK(post(c, "/v1/login", {{"username", "alice"}, {"password", "guess"}})->status == 401);
  auto blocked = post(c, "/v1/login", {{"username", "alice"}, {"password", "pw"}});
  CHECK(blocked->status == 429);  // even the right password, until the window passes
  CHECK(blocked->has_header("Retry-After"));
  CHECK(json::parse(blocked->body) == json{{"error", "too_many_attempts"}});
  // The same address is now throttled for other users too.
  CHECK(post(c, "/v1/login", {{"username", "bob"}, {"password", "pw"}})->status == 429);
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
  CHECK(c.Get("/v1/nothing")->status == 404);
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
