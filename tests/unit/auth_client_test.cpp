// The proxy's side of the API server: answers, Cache-Control, the validation
// cache, the circuit breaker, the event stream's batches, token screening,
// the [auth] configuration keys, and cancellation of a call nobody waits for.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "auth/auth_event_feed.hpp"
#include "auth/circuit_breaker.hpp"
#include "auth/http_auth_client.hpp"
#include "auth/validation_cache.hpp"
#include "auth_answers.hpp"
#include "mqtt/utf8.hpp"
#include "command_line_helpers.hpp"
#include "config/config.hpp"

using namespace proxy;
using namespace std::chrono_literals;

namespace {

using time_point = validation_cache::time_point;
const time_point t0 = time_point{} + 1000h;

using test::event_of;
using test::refused;
using test::valid_for;

using found = validation_cache::found::kind;

using test::error_of;
using test::parse;
using test::write_file;

}  // namespace

TEST_SUITE("auth client: answers") {
  TEST_CASE("user_id is taken from the answer, as a string or a number, else the user name") {
    auto with_id = parse_validation_response(200, R"({"user":"alice","user_id":"7","acl":{},"expires_in":60})");
    CHECK(with_id.user_id == "7");
    auto numeric = parse_validation_response(200, R"({"user":"alice","user_id":42})");
    CHECK(numeric.user_id == "42");
    auto without = parse_validation_response(200, R"({"user":"alice"})");
    CHECK(without.user_id == "alice");
    auto empty = parse_validation_response(200, R"({"user":"alice","user_id":""})");
    CHECK(empty.user_id == "alice");
    CHECK(parse_validation_response(403, "").outcome == auth_result::verdict::invalid);
    CHECK(parse_validation_response(503, "{}").outcome == auth_result::verdict::unavailable);
  }

  TEST_CASE("Cache-Control: max-age, and what forbids caching") {
    CHECK(parse_max_age("private, max-age=60") == 60s);
    CHECK(parse_max_age("max-age=5") == 5s);
    CHECK(parse_max_age("  Max-Age = 7 ,private") == 7s);
    CHECK(parse_max_age("max-age=\"9\"") == 9s);
    CHECK(parse_max_age("max-age=0") == 0s);
    CHECK(parse_max_age("max-age=99999999") == 86400s);  // capped at a day
    CHECK_FALSE(parse_max_age(""));
    CHECK_FALSE(parse_max_age("private"));
    CHECK_FALSE(parse_max_age("no-store"));
    CHECK_FALSE(parse_max_age("max-age=60, no-store"));
    CHECK_FALSE(parse_max_age("no-cache, max-age=60"));
    CHECK_FALSE(parse_max_age("max-age=-1"));
    CHECK_FALSE(parse_max_age("max-age=1e3"));
    CHECK_FALSE(parse_max_age("max-age="));
  }

  TEST_CASE("token screening: what cannot be a session is refused without asking") {
    CHECK(plausible_token("Yz3t2v0Qx-_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456"));
    CHECK(plausible_token("j\xC3\xBCrgen"));  // UTF-8 is fine
    CHECK_FALSE(plausible_token(""));
    CHECK_FALSE(plausible_token(std::string(4097, 'a')));
    CHECK(plausible_token(std::string(4096, 'a')));
    CHECK_FALSE(plausible_token(std::string("a\0b", 3)));
    CHECK_FALSE(plausible_token("a\nb"));
    CHECK_FALSE(plausible_token("a\x1b[2Jb"));
    CHECK_FALSE(plausible_token("a\x7f"));
    CHECK_FALSE(plausible_token("\xC2\x85"));      // NEL, a C1 control
    CHECK_FALSE(plausible_token("\xff\xfe\x00x"));  // binary
    CHECK_FALSE(plausible_token("\xC3"));          // truncated UTF-8
    CHECK_FALSE(plausible_token("\xED\xA0\x80"));  // a surrogate
  }

  TEST_CASE("token screening: the printable-ASCII shortcut agrees with the byte-wise checks") {
    // The byte-wise rules plausible_token applies after its eight-bytes-a-step
    // shortcut for printable ASCII: every byte value at every position of
    // tokens 1 to 20 bytes long (the word and the tail loop) must get the same
    // verdict from both.
    const auto byte_wise = [](std::string_view token) {
      if (token.empty() || token.size() > 4096 || mqtt::check_utf8(token)) return false;
      for (std::size_t i = 0; i < token.size(); ++i) {
        const auto c = static_cast<unsigned char>(token[i]);
        if (c < 0x20 || c == 0x7F) return false;
        if (c == 0xC2 && i + 1 < token.size() && static_cast<unsigned char>(token[i + 1]) <= 0x9F) return false;
      }
      return true;
    };
    int refused = 0;
    for (std::size_t size = 1; size <= 20; ++size) {
      for (std::size_t at = 0; at < size; ++at) {
        for (int value = 0; value < 256; ++value) {
          std::string token(size, 'k');
          token[at] = static_cast<char>(value);
          const bool expected = byte_wise(token);
          refused += expected ? 0 : 1;
          CHECK_MESSAGE(plausible_token(token) == expected, "size ", size, " byte ", value, " at ", at);
        }
      }
    }
    CHECK(refused > 0);
    // Neighbours of the borders the word test draws (0x1F/0x20, 0x7E/0x7F, 0x80) in every lane at once.
    for (const char fill : {'\x1F', ' ', '~', '\x7F', '\x80', '\xC2'}) {
      const std::string token(16, fill);
      CHECK_MESSAGE(plausible_token(token) == byte_wise(token), static_cast<int>(static_cast<unsigned char>(fill)));
    }
  }

  TEST_CASE("session_digest: lowercase hex SHA-256, the same again and on another thread") {
    // FIPS 180-2 test vectors.
    CHECK(session_digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(session_digest("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const auto long_input = session_digest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq");
    CHECK(long_input == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(session_digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    std::string other_thread;
    std::thread([&] { other_thread = session_digest("abc"); }).join();
    CHECK(other_thread == session_digest("abc"));
  }

  TEST_CASE("auth URLs: http and https, default ports, bad ports") {
    auto plain = parse_http_url("http://api.example:8080/base/");
    REQUIRE(plain);
    CHECK_FALSE(plain->tls);
    CHECK(plain->host == "api.example");
    CHECK(plain->port == "8080");
    CHECK(plain->base_path == "/base");
    auto secure = parse_http_url("https://api.example");
    REQUIRE(secure);
    CHECK(secure->tls);
    CHECK(secure->port == "443");
    CHECK(parse_http_url("http://api.example")->port == "80");
    auto v6 = parse_http_url("http://[::1]:9000");
    REQUIRE(v6);
    CHECK(v6->host == "::1");
    CHECK_FALSE(parse_http_url("ftp://x"));
    CHECK_FALSE(parse_http_url("http://:80"));
    CHECK_FALSE(parse_http_url("http://x:99999"));
    CHECK_FALSE(parse_http_url("http://x:8a"));
  }
}

TEST_SUITE("auth client: validation cache") {
  TEST_CASE("a 200 is kept for its max-age, with expires_in counted down") {
    validation_cache cache({100, 2000ms, 0ms});
    cache.store("d1", valid_for("alice", "7", 3600s), 60s, t0);
    auto hit = cache.find("d1", t0 + 10s);
    CHECK(hit.what == found::hit);
    CHECK(hit.result.user == "alice");
    CHECK(hit.result.expires_in == 3590s);
    CHECK_FALSE(hit.result.stale);
    CHECK(cache.find("d1", t0 + 60s).what == found::miss);
    CHECK(cache.size() == 0);  // expired and no stale window: gone
  }

  TEST_CASE("no max-age, or an unavailable answer: not kept") {
    validation_cache cache({100, 2000ms, 60'000ms});
    cache.store("d1", valid_for("alice", "7"), 0s, t0);
    auth_result down;
    cache.store("d2", down, 60s, t0);
    CHECK(cache.size() == 0);
  }

  TEST_CASE("a 401 is kept for the negative TTL only, and never used stale") {
    validation_cache cache({100, 2000ms, 60'000ms});
    cache.store("bad", refused(), 0s, t0);
    CHECK(cache.find("bad", t0 + 1999ms).what == found::negative_hit);
    CHECK(cache.find("bad", t0 + 2000ms).what == found::miss);
    CHECK_FALSE(cache.find_stale("bad", t0 + 2001ms));
    validation_cache off({100, 0ms, 0ms});
    off.store("bad", refused(), 0s, t0);
    CHECK(off.find("bad", t0).what == found::miss);
  }

  TEST_CASE("the stale window: within stale_if_error after max-age, never past the session's expiry") {
    validation_cache cache({100, 2000ms, 30'000ms});
    cache.store("d1", valid_for("alice", "7", 3600s), 60s, t0);
    CHECK(cache.find("d1", t0 + 70s).what == found::miss);  // not fresh any more
    auto stale = cache.find_stale("d1", t0 + 70s);
    REQUIRE(stale);
    CHECK(stale->stale);
    CHECK(stale->user == "alice");
    auto fresh = cache.find_stale("d1", t0 + 30s);
    REQUIRE(fresh);
    CHECK_FALSE(fresh->stale);
    CHECK_FALSE(cache.find_stale("d1", t0 + 90s));  // 60 s + 30 s: gone

    cache.store("short", valid_for("bob", "8", 65s), 60s, t0);
    CHECK(cache.find_stale("short", t0 + 64s));
    CHECK_FALSE(cache.find_stale("short", t0 + 65s));  // the session itself has expired

    validation_cache off({100, 2000ms, 0ms});
    off.store("d1", valid_for("alice", "7"), 60s, t0);
    CHECK_FALSE(off.find_stale("d1", t0 + 61s));
  }

  TEST_CASE("bounded: the least recently used entry goes first") {
    validation_cache cache({3, 2000ms, 0ms});
    cache.store("a", valid_for("a", "1"), 60s, t0);
    cache.store("b", valid_for("b", "2"), 60s, t0);
    cache.store("c", valid_for("c", "3"), 60s, t0);
    CHECK(cache.find("a", t0).what == found::hit);  // a is now the most recent
    cache.store("d", valid_for("d", "4"), 60s, t0);
    CHECK(cache.size() == 3);
    CHECK(cache.find("b", t0).what == found::miss);
    CHECK(cache.find("a", t0).what == found::hit);
    for (int i = 0; i < 1000; ++i) cache.store("flood" + std::to_string(i), refused(), 0s, t0);
    CHECK(cache.size() == 3);
    validation_cache none({0, 2000ms, 0ms});
    none.store("a", valid_for("a", "1"), 60s, t0);
    CHECK(none.size() == 0);
  }

  TEST_CASE("events evict at once, each by what it names") {
    auto filled = [] {
      validation_cache cache({100, 2000ms, 60'000ms});
      cache.store("s1", valid_for("alice", "7"), 60s, t0);
      cache.store("s2", valid_for("alice", "7"), 60s, t0);
      cache.store("s3", valid_for("bob", "8"), 60s, t0);
      return cache;
    };
    using k = auth_event::kind;
    {
      auto cache = filled();
      cache.apply(event_of(k::session_revoked, "7", "s1"));
      CHECK(cache.find("s1", t0).what == found::miss);
      CHECK_FALSE(cache.find_stale("s1", t0 + 61s));  // not even in degraded mode
      CHECK(cache.find("s2", t0).what == found::hit);
      CHECK(cache.find("s3", t0).what == found::hit);
    }
    for (auto kind : {k::user_deleted, k::user_sessions_revoked, k::acl_changed}) {
      auto cache = filled();
      cache.apply(event_of(kind, "7"));
      CHECK(cache.find("s1", t0).what == found::miss);
      CHECK(cache.find("s2", t0).what == found::miss);
      CHECK(cache.find("s3", t0).what == found::hit);
    }
    {
      auto cache = filled();
      cache.apply(event_of(k::resync));
      CHECK(cache.size() == 0);
    }
  }
}

TEST_SUITE("auth client: circuit breaker") {
  TEST_CASE("opens after N consecutive failures, probes once after the cool-down, closes on success") {
    circuit_breaker breaker({3, 5000ms});
    CHECK(breaker.allow(t0));
    breaker.on_failure(t0);
    breaker.on_failure(t0);
    breaker.on_success();  // not consecutive any more
    breaker.on_failure(t0);
    breaker.on_failure(t0);
    CHECK(breaker.current() == circuit_breaker::state::closed);
    breaker.on_failure(t0);
    CHECK(breaker.current() == circuit_breaker::state::open);
    CHECK(breaker.opens() == 1);
    CHECK_FALSE(breaker.allow(t0 + 4999ms));
    CHECK(breaker.allow(t0 + 5000ms));  // the probe
    CHECK(breaker.current() == circuit_breaker::state::half_open);
    CHECK_FALSE(breaker.allow(t0 + 5001ms));  // only one
    breaker.on_success();
    CHECK(breaker.current() == circuit_breaker::state::closed);
    CHECK(breaker.allow(t0 + 5002ms));
  }

  TEST_CASE("a failed probe opens it again for another cool-down; an abandoned probe lets the next one through") {
    circuit_breaker breaker({1, 1000ms});
    breaker.on_failure(t0);
    CHECK(breaker.current() == circuit_breaker::state::open);
    CHECK(breaker.allow(t0 + 1000ms));
    breaker.on_failure(t0 + 1100ms);
    CHECK(breaker.current() == circuit_breaker::state::open);
    CHECK(breaker.opens() == 2);
    CHECK_FALSE(breaker.allow(t0 + 2000ms));
    CHECK(breaker.allow(t0 + 2100ms));
    breaker.on_abandoned();
    CHECK(breaker.allow(t0 + 2101ms));
    CHECK_FALSE(breaker.allow(t0 + 2102ms));
  }

  TEST_CASE("threshold 0: never opens") {
    circuit_breaker breaker({0, 1000ms});
    for (int i = 0; i < 100; ++i) breaker.on_failure(t0);
    CHECK(breaker.current() == circuit_breaker::state::closed);
    CHECK(breaker.allow(t0));
  }
}

TEST_SUITE("auth client: event batches") {
  const std::string digest(64, 'a');

  TEST_CASE("a normal batch, in order, every kind") {
    const std::string body = R"({"events":[
      {"seq":12,"type":"session_revoked","user_id":"7","user":"alice","session":")" + digest + R"("},
      {"seq":13,"type":"user_deleted","user_id":"7","user":"alice"},
      {"seq":14,"type":"user_sessions_revoked","user_id":"7","user":"alice"},
      {"seq":15,"type":"acl_changed","user_id":"7","user":"alice","acl":{"publish":["a/#","bad/#/x"],"subscribe":["s/+"]}}],
      "next":15,"reset":false})";
    auto batch = parse_event_batch(200, body);
    REQUIRE(batch.what == event_batch::status::ok);
    CHECK_FALSE(batch.reset);
    CHECK_FALSE(batch.damaged);
    CHECK(batch.next == 15);
    REQUIRE(batch.events.size() == 4);
    CHECK(batch.events[0].type == auth_event::kind::session_revoked);
    CHECK(batch.events[0].session_digest == digest);
    CHECK(batch.events[0].seq == 12);
    CHECK(batch.events[1].type == auth_event::kind::user_deleted);
    CHECK(batch.events[2].type == auth_event::kind::user_sessions_revoked);
    CHECK(batch.events[3].type == auth_event::kind::acl_changed);
    CHECK(batch.events[3].permissions.publish == std::vector<std::string>{"a/#"});
    CHECK(batch.events[3].permissions.subscribe == std::vector<std::string>{"s/+"});
    CHECK(batch.events[3].user == "alice");
  }

  TEST_CASE("reset, empty long-poll answers, unknown types") {
    auto reset = parse_event_batch(200, R"({"events":[],"next":40,"reset":true})");
    CHECK(reset.what == event_batch::status::ok);
    CHECK(reset.reset);
    CHECK(reset.next == 40);
    auto empty = parse_event_batch(200, R"({"events":[],"next":40})");
    CHECK(empty.what == event_batch::status::ok);
    CHECK_FALSE(empty.reset);
    auto unknown = parse_event_batch(200, R"({"events":[{"seq":5,"type":"user_renamed","user_id":"7"},
                                                        {"seq":6,"type":"user_deleted","user_id":"7"}],"next":6})");
    CHECK(unknown.what == event_batch::status::ok);
    CHECK_FALSE(unknown.damaged);
    REQUIRE(unknown.events.size() == 1);
    CHECK(unknown.events[0].seq == 6);
  }

  TEST_CASE("malformed answers and events") {
    CHECK(parse_event_batch(200, "not json").what == event_batch::status::error);
    CHECK(parse_event_batch(200, R"({"events":[]})").what == event_batch::status::error);
    CHECK(parse_event_batch(200, R"({"next":3})").what == event_batch::status::error);
    CHECK(parse_event_batch(200, R"({"events":{},"next":3})").what == event_batch::status::error);
    CHECK(parse_event_batch(200, R"({"events":[],"next":-3})").what == event_batch::status::error);
    CHECK(parse_event_batch(404, "").what == event_batch::status::not_found);
    CHECK(parse_event_batch(401, R"({"error":"unauthorized"})").what == event_batch::status::unauthorized);
    CHECK(parse_event_batch(500, "").what == event_batch::status::error);
    // A known kind that is malformed must not be skipped silently: the batch is damaged (resync).
    for (const char* body : {R"({"events":[{"seq":5,"type":"session_revoked","user_id":"7","session":"short"}],"next":5})",
                             R"({"events":[{"seq":5,"type":"user_deleted"}],"next":5})",
                             R"({"events":[{"seq":5,"type":"acl_changed","user_id":"7"}],"next":5})",
                             R"({"events":[{"seq":5,"type":"acl_changed","user_id":"7","acl":{"publish":"a"}}],"next":5})",
                             R"({"events":[{"type":"user_deleted","user_id":"7"}],"next":5})",
                             R"({"events":[{"seq":5}],"next":5})",
                             R"({"events":[7],"next":5})",
                             R"({"events":[{"seq":6,"type":"user_deleted","user_id":"7"},{"seq":5,"type":"user_deleted","user_id":"8"}],"next":6})"}) {
      CAPTURE(body);
      auto batch = parse_event_batch(200, body);
      CHECK(batch.what == event_batch::status::ok);
      CHECK(batch.damaged);
    }
  }
}

TEST_SUITE("auth client: event sequencer") {
  event_batch batch(std::uint64_t next, std::vector<std::uint64_t> seqs, bool reset = false, bool damaged = false) {
    event_batch b;
    b.what = event_batch::status::ok;
    b.next = next;
    b.reset = reset;
    b.damaged = damaged;
    for (auto seq : seqs) b.events.push_back(event_of(auth_event::kind::user_deleted, std::to_string(seq)));
    for (std::size_t i = 0; i < seqs.size(); ++i) b.events[i].seq = seqs[i];
    return b;
  }
  std::vector<std::uint64_t> seqs_of(const std::vector<auth_event>& events) {
    std::vector<std::uint64_t> out;
    for (const auto& e : events) out.push_back(e.type == auth_event::kind::resync ? 0 : e.seq);
    return out;
  }

  TEST_CASE("starts from now, delivers in order once, follows next") {
    event_sequencer s;
    CHECK(s.accept(batch(40, {38, 39, 40})).empty());  // the first answer only places the feed
    CHECK(s.after() == 40u);
    CHECK(seqs_of(s.accept(batch(42, {41, 42}))) == std::vector<std::uint64_t>{41, 42});
    CHECK(seqs_of(s.accept(batch(45, {42, 45}))) == std::vector<std::uint64_t>{45});  // 42 again: skipped; 43, 44 absent is fine
    CHECK(s.accept(batch(45, {})).empty());  // a long-poll that timed out
    CHECK(s.after() == 45u);
  }

  TEST_CASE("reset, damage, or a stream that goes backwards: one resync") {
    event_sequencer s;
    s.accept(batch(10, {}));
    auto reset = s.accept(batch(500, {}, true));
    REQUIRE(reset.size() == 1);
    CHECK(reset[0].type == auth_event::kind::resync);
    CHECK(s.after() == 500u);
    auto damaged = s.accept(batch(502, {501, 502}, false, true));
    CHECK(seqs_of(damaged) == std::vector<std::uint64_t>{0, 501, 502});
    auto backwards = s.accept(batch(7, {}));
    REQUIRE(backwards.size() == 1);
    CHECK(backwards[0].type == auth_event::kind::resync);
    CHECK(s.after() == 7u);
  }
}

TEST_SUITE("auth client: configuration") {
  TEST_CASE("defaults") {
    auto config = parse({}).config;
    CHECK(config.auth.idle_timeout == 4000ms);
    CHECK(config.auth.negative_cache == 2000ms);
    CHECK(config.auth.stale_if_error == 0ms);
    CHECK(config.auth.breaker_failures == 5);
    CHECK(config.auth.events);
    CHECK(config.auth.cache_max_entries == 10000);
    CHECK(config.auth.max_connections == 16);
  }

  TEST_CASE("[auth] keys and flags") {
    auto file = write_file("mqtt-proxy-authclient.toml",
                           "[auth]\nurl = \"https://api.example/base\"\nca_file = \"/etc/ca.pem\"\nidle_timeout_ms = 2500\n"
                           "negative_cache_ms = 0\nstale_if_error_ms = 30000\nbreaker_failures = 3\n"
                           "breaker_cooldown_ms = 1000\nevents = false\nservice_token_file = \"/etc/token\"\n"
                           "cache_max_entries = 50\nmax_idle_connections = 2\nevents_wait_s = 10\nmax_connections = 5\n");
    auto config = parse({"--config", file}).config;
    CHECK(config.auth_url == "https://api.example/base");
    CHECK(config.auth.ca_file == "/etc/ca.pem");
    CHECK(config.auth.idle_timeout == 2500ms);
    CHECK(config.auth.negative_cache == 0ms);
    CHECK(config.auth.stale_if_error == 30000ms);
    CHECK(config.auth.breaker_failures == 3);
    CHECK(config.auth.breaker_cooldown == 1000ms);
    CHECK_FALSE(config.auth.events);
    CHECK(config.auth.service_token_file == "/etc/token");
    CHECK(config.auth.cache_max_entries == 50);
    CHECK(config.auth.max_idle_connections == 2);
    CHECK(config.auth.events_wait == 10s);
    CHECK(config.auth.max_connections == 5);
    auto flags = parse({"--config", file, "--auth-events", "true", "--auth-stale-if-error-ms", "0",
                        "--auth-breaker-failures", "0", "--auth-max-connections", "7"})
                     .config;
    CHECK(flags.auth.max_connections == 7);
    CHECK(flags.auth.events);
    CHECK(flags.auth.stale_if_error == 0ms);
    CHECK(flags.auth.breaker_failures == 0);
  }

  TEST_CASE("bad values name the key") {
    auto range = write_file("mqtt-proxy-authclient-range.toml", "[auth]\nidle_timeout_ms = 0\n");
    CHECK(error_of({"--config", range}).find("auth.idle_timeout_ms") != std::string::npos);
    auto wait = write_file("mqtt-proxy-authclient-wait.toml", "[auth]\nevents_wait_s = 56\n");
    CHECK(error_of({"--config", wait}).find("auth.events_wait_s") != std::string::npos);
    auto negative = write_file("mqtt-proxy-authclient-neg.toml", "[auth]\nstale_if_error_ms = -1\n");
    CHECK(error_of({"--config", negative}).find("auth.stale_if_error_ms") != std::string::npos);
    auto none = write_file("mqtt-proxy-authclient-none.toml", "[auth]\nmax_connections = 0\n");
    CHECK(error_of({"--config", none}).find("auth.max_connections") != std::string::npos);
    auto type = write_file("mqtt-proxy-authclient-type.toml", "[auth]\nevents = \"yes\"\n");
    CHECK(error_of({"--config", type}).find("auth.events") != std::string::npos);
    CHECK(error_of({"--auth-negative-cache-ms", "-5"}).find("--auth-negative-cache-ms") != std::string::npos);
    CHECK(error_of({"--auth-breaker-failures", "99999999999999999999"}).find("--auth-breaker-failures") !=
          std::string::npos);
    CHECK(error_of({"--auth-events", "1"}).find("--auth-events") != std::string::npos);
    CHECK(error_of({"--auth-url", "https://"}).find("auth.url") != std::string::npos);
  }
}

TEST_SUITE("auth client: over a socket") {
  namespace asio = boost::asio;
  using asio::ip::tcp;

  struct silent_server {
    asio::io_context& io;
    tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
    tcp::socket peer{io};
    bool accepted = false;
    explicit silent_server(asio::io_context& io_) : io(io_) {
      acceptor.async_accept(peer, [this](boost::system::error_code ec) { accepted = !ec; });
    }
    http_auth_settings settings() {
      http_auth_settings s;
      s.endpoint = {"127.0.0.1", std::to_string(acceptor.local_endpoint().port()), ""};
      s.timeout = 30000ms;  // far beyond run_until: only cancellation can close it in time
      return s;
    }
  };

  template <class Pred>
  void run_until(asio::io_context& io, Pred done) {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      io.run_for(10ms);
      io.restart();
    }
  }

  TEST_CASE("dropping the handle withdraws the waiter and closes the HTTP call nobody waits for") {
    asio::io_context io;
    silent_server server(io);
    metrics counters;
    http_auth_client client(io, server.settings(), &counters);
    bool called = false;
    auto handle = client.validate("some-token-value", "10.0.0.1:1", [&](const auth_result&) { called = true; });
    run_until(io, [&] { return server.accepted; });
    REQUIRE(server.accepted);
    handle.reset();
    // The server sees the request, then EOF: the call was cancelled, not left to time out.
    std::array<char, 4096> buf{};
    bool eof = false;
    std::function<void()> read_more = [&] {
      server.peer.async_read_some(asio::buffer(buf), [&](boost::system::error_code ec, std::size_t) {
        if (ec) eof = true;
        else read_more();
      });
    };
    read_more();
    run_until(io, [&] { return eof; });
    CHECK(eof);
    io.run_for(50ms);
    CHECK_FALSE(called);
  }

  TEST_CASE("two waiters on one token share one call; one leaving does not cancel it for the other") {
    asio::io_context io;
    silent_server server(io);
    metrics counters;
    http_auth_client client(io, server.settings(), &counters);
    int first_calls = 0;
    std::optional<auth_result> second;
    auto a = client.validate("shared-token-1", "", [&](const auth_result&) { ++first_calls; });
    auto b = client.validate("shared-token-1", "", [&](const auth_result& r) { second = r; });
    run_until(io, [&] { return server.accepted; });
    REQUIRE(server.accepted);
    a.reset();  // the first client leaves
    std::array<char, 4096> buf{};
    std::size_t got = 0;
    server.peer.async_read_some(asio::buffer(buf), [&](boost::system::error_code ec, std::size_t n) {
      if (!ec) got = n;
    });
    run_until(io, [&] { return got > 0; });
    REQUIRE(got > 0);
    CHECK(std::string_view(buf.data(), got).find("POST /v1/sessions/validate") == 0);
    const std::string answer =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: private, max-age=30\r\n"
        "Content-Length: 39\r\n\r\n{\"user\":\"alice\",\"user_id\":\"7\",\"acl\":{}}";
    asio::write(server.peer, asio::buffer(answer));
    run_until(io, [&] { return second.has_value(); });
    REQUIRE(second);
    CHECK(second->outcome == auth_result::verdict::valid);
    CHECK(second->user_id == "7");
    CHECK(first_calls == 0);
    CHECK(client.idle_connections() == 1);  // kept alive for the next call
    // Cached for max-age: the next validation needs no call.
    std::optional<auth_result> third;
    auto c = client.validate("shared-token-1", "", [&](const auth_result& r) { third = r; });
    run_until(io, [&] { return third.has_value(); });
    REQUIRE(third);
    CHECK(third->outcome == auth_result::verdict::valid);
    CHECK(counters.auth_cache_hit == 1);
    CHECK(counters.auth_cache_miss == 2);
  }

  // One HTTP request as the server sees it (headers and body), read whole.
  std::string read_request(asio::io_context& io, tcp::socket& peer) {
    std::string got;
    std::array<char, 4096> buf{};
    bool failed = false;
    const auto complete = [&] {
      const auto end = got.find("\r\n\r\n");
      if (end == std::string::npos) return false;
      const auto length_at = got.find("Content-Length: ");
      const auto length = length_at == std::string::npos ? 0 : std::stoul(got.substr(length_at + 16));
      return got.size() >= end + 4 + length;
    };
    while (!complete() && !failed) {
      bool done = false;
      peer.async_read_some(asio::buffer(buf), [&](boost::system::error_code ec, std::size_t n) {
        if (ec) failed = true;
        else got.append(buf.data(), n);
        done = true;
      });
      run_until(io, [&] { return done; });
      if (!done) break;
    }
    return got;
  }

  std::string answer_for(const std::string& user_id, const std::string& publish_filter) {
    const std::string body = R"({"user":"alice","user_id":")" + user_id + R"(","acl":{"publish":[")" +
                             publish_filter + R"("]}})";
    return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: private, max-age=30\r\n"
           "Content-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
  }

  auth_event event_about(auth_event::kind type, std::string user_id, std::string digest = {}) {
    auth_event e;
    e.type = type;
    e.user_id = std::move(user_id);
    e.session_digest = std::move(digest);
    return e;
  }

  // A client of a silent_server whose answers the test writes by hand.
  struct hand_answered {
    asio::io_context io;
    silent_server server{io};
    metrics counters;
    http_auth_client client{io, server.settings(), &counters};

    auth_client::pending_call ask(const std::string& token, std::optional<auth_result>& into,
                                  const std::string& remote_address = "") {
      return client.validate(token, remote_address, [&into](const auth_result& r) { into = r; });
    }
    std::string next_request() {
      run_until(io, [&] { return server.accepted; });
      REQUIRE(server.accepted);
      return read_request(io, server.peer);
    }
    void answer(const std::string& user_id, const std::string& publish_filter) {
      asio::write(server.peer, asio::buffer(answer_for(user_id, publish_filter)));
    }
    const auth_result& wait(std::optional<auth_result>& result) {
      run_until(io, [&] { return result.has_value(); });
      REQUIRE(result);
      return *result;
    }
  };

  // The event stream and the answers travel apart: a logout applied while a
  // "valid" answer from before it is on its way must not admit the session.
  TEST_CASE("a valid answer overtaken by its session's revocation is refused, and kept as a refusal") {
    hand_answered h;
    std::optional<auth_result> got;
    auto handle = h.ask("overtaken-token-1", got);
    CHECK(h.next_request().find("overtaken-token-1") != std::string::npos);
    h.client.apply(event_about(auth_event::kind::user_deleted, "someone-else"));  // not this session: no effect
    h.client.apply(event_about(auth_event::kind::session_revoked, "7", session_digest("overtaken-token-1")));
    h.answer("7", "a/#");
    CHECK(h.wait(got).outcome == auth_result::verdict::invalid);
    CHECK(h.counters.auth_overtaken_refused == 1);
    // The valid answer is not kept; the refusal is, as a 401 would be.
    std::optional<auth_result> again;
    auto second = h.ask("overtaken-token-1", again);
    CHECK(h.wait(again).outcome == auth_result::verdict::invalid);
    CHECK(h.counters.auth_cache_negative_hit == 1);
    CHECK(h.counters.auth_cache_miss == 1);
  }

  // An ACL change may be older or newer than the answer: the answer after it is the one to use.
  TEST_CASE("a valid answer overtaken by its user's ACL change is asked for again; the second answer is used") {
    hand_answered h;
    std::optional<auth_result> got;
    auto handle = h.ask("overtaken-token-2", got, "10.0.0.1:1");
    h.next_request();
    h.client.apply(event_about(auth_event::kind::acl_changed, "7"));
    h.answer("7", "old/#");
    const auto second_request = h.next_request();  // on the same kept-alive connection
    CHECK(second_request.find("overtaken-token-2") != std::string::npos);
    CHECK(second_request.find("10.0.0.1:1") != std::string::npos);
    CHECK_FALSE(got.has_value());
    h.answer("7", "new/#");
    const auto& used = h.wait(got);
    CHECK(used.outcome == auth_result::verdict::valid);
    REQUIRE(used.permissions->publish.size() == 1);
    CHECK(used.permissions->publish.front() == "new/#");
    CHECK(h.counters.auth_overtaken_asked_again == 1);
  }

  TEST_CASE("an event about someone else: the answer is used and kept; overtaken every time: unavailable, not a failure") {
    hand_answered h;
    std::optional<auth_result> got;
    auto handle = h.ask("overtaken-token-5", got);
    h.next_request();
    h.client.apply(event_about(auth_event::kind::acl_changed, "8"));
    h.client.apply(event_about(auth_event::kind::session_revoked, "7", session_digest("another-token")));
    h.answer("7", "a/#");
    CHECK(h.wait(got).outcome == auth_result::verdict::valid);
    std::optional<auth_result> cached;
    auto hit = h.ask("overtaken-token-5", cached);
    h.wait(cached);
    CHECK(h.counters.auth_cache_hit == 1);

    // Each answer overtaken by another change of the user: asked 3 times more, then unavailable.
    std::optional<auth_result> last;
    auto busy = h.ask("overtaken-token-6", last);
    for (int answer = 0; answer < 4; ++answer) {
      CHECK(h.next_request().find("overtaken-token-6") != std::string::npos);
      h.client.apply(event_about(auth_event::kind::user_sessions_revoked, "7"));
      h.answer("7", "a/#");
    }
    CHECK(h.wait(last).outcome == auth_result::verdict::unavailable);
    CHECK(h.counters.auth_overtaken_asked_again == 3);
    CHECK(h.counters.auth_breaker_opens == 0);
  }

  // A cached answer is posted, not handed over inline: an event can come between.
  TEST_CASE("a cached answer overtaken before it is handed over: refused for a revocation, asked again for a resync") {
    hand_answered h;
    std::optional<auth_result> first;
    auto warm = h.ask("overtaken-token-3", first);
    h.next_request();
    h.answer("7", "a/#");
    REQUIRE(h.wait(first).outcome == auth_result::verdict::valid);

    std::optional<auth_result> revoked;
    auto hit = h.ask("overtaken-token-3", revoked);
    CHECK(h.counters.auth_cache_hit == 1);  // found in the cache, not yet handed over
    h.client.apply(event_about(auth_event::kind::session_revoked, "7", session_digest("overtaken-token-3")));
    CHECK(h.wait(revoked).outcome == auth_result::verdict::invalid);

    // Another token of the same user, cached, then a resync before the hand-over: asked again.
    std::optional<auth_result> warm2;
    auto w2 = h.ask("overtaken-token-4", warm2);
    h.next_request();
    h.answer("7", "a/#");
    h.wait(warm2);
    std::optional<auth_result> resynced;
    auto hit2 = h.ask("overtaken-token-4", resynced);
    h.client.apply(event_about(auth_event::kind::resync, ""));
    CHECK(h.next_request().find("overtaken-token-4") != std::string::npos);
    CHECK_FALSE(resynced.has_value());
    h.answer("7", "b/#");
    const auto& used = h.wait(resynced);
    CHECK(used.outcome == auth_result::verdict::valid);
    CHECK(used.permissions->publish.front() == "b/#");
  }

  // What a connection asks first for every new session: an answer that needs
  // no wait, or nothing (then it validates). Its use comes within the same
  // handler, so no event can come between: only the cache's state counts.
  TEST_CASE("answer_at_once: the cache's answer now, counted; nothing on a miss or once an event forgot it") {
    hand_answered h;
    CHECK_FALSE(h.client.answer_at_once("at-once-token-1").has_value());
    CHECK(h.counters.auth_cache_miss == 0);  // counted by the validate() that follows a miss
    std::optional<auth_result> first;
    auto warm = h.ask("at-once-token-1", first);
    h.next_request();
    h.answer("7", "a/#");
    REQUIRE(h.wait(first).outcome == auth_result::verdict::valid);

    const auto latency_before = h.counters.auth_latency.count();
    const auto now = h.client.answer_at_once("at-once-token-1");
    REQUIRE(now.has_value());
    CHECK(now->outcome == auth_result::verdict::valid);
    CHECK(now->user_id == "7");
    CHECK(now->permissions->publish.front() == "a/#");
    CHECK(now->detail == "cached answer");
    CHECK(h.counters.auth_cache_hit == 1);
    CHECK(h.counters.auth_latency.count() == latency_before + 1);
    CHECK_FALSE(h.client.answer_at_once("at-once-token-2").has_value());  // another session: not this one's answer

    // A logout forgets it at once: the next session of this token is asked for.
    h.client.apply(event_about(auth_event::kind::session_revoked, "7", session_digest("at-once-token-1")));
    CHECK_FALSE(h.client.answer_at_once("at-once-token-1").has_value());
    // A user whose ACL changed: every cached answer of theirs goes.
    std::optional<auth_result> second;
    auto warm2 = h.ask("at-once-token-3", second);
    h.next_request();
    h.answer("7", "b/#");
    REQUIRE(h.wait(second).outcome == auth_result::verdict::valid);
    REQUIRE(h.client.answer_at_once("at-once-token-3").has_value());
    h.client.apply(event_about(auth_event::kind::acl_changed, "7"));
    CHECK_FALSE(h.client.answer_at_once("at-once-token-3").has_value());
  }

  TEST_CASE("answer_at_once: a token that cannot be a session is refused at once, without a connection") {
    asio::io_context io;
    silent_server server(io);
    http_auth_client client(io, server.settings());
    const auto refused = client.answer_at_once(std::string("\x00\xff\x01", 3));
    REQUIRE(refused.has_value());
    CHECK(refused->outcome == auth_result::verdict::invalid);
    CHECK(client.answer_at_once(std::string(5000, 'a'))->outcome == auth_result::verdict::invalid);
    io.run_for(50ms);
    CHECK_FALSE(server.accepted);
  }

  TEST_CASE("an implausible token is invalid without a connection; a live handle gets exactly one answer") {
    asio::io_context io;
    silent_server server(io);
    http_auth_client client(io, server.settings());
    int calls = 0;
    auth_result got;
    auto handle = client.validate(std::string("\x00\xff\x01", 3), "", [&](const auth_result& r) {
      ++calls;
      got = r;
    });
    run_until(io, [&] { return calls > 0; });
    io.run_for(100ms);
    CHECK(calls == 1);
    CHECK(got.outcome == auth_result::verdict::invalid);
    CHECK_FALSE(server.accepted);
  }

  TEST_CASE("the deadline covers a server that accepts and never answers") {
    asio::io_context io;
    silent_server server(io);
    auto settings = server.settings();
    settings.timeout = 200ms;
    http_auth_client client(io, settings);
    std::optional<auth_result> got;
    auto handle = client.validate("some-token-value", "", [&](const auth_result& r) { got = r; });
    run_until(io, [&] { return got.has_value(); });
    REQUIRE(got);
    CHECK(got->outcome == auth_result::verdict::unavailable);
    CHECK(got->detail.find("timed out") != std::string::npos);
  }
}
