#!/usr/bin/python3
"""mqtt-proxy's side of the API server, over real sockets: raw MQTT clients
(3.1.1 and 5.0, session token as the CONNECT password) through the real proxy
to a real Mosquitto, against the real auth-server (cpp-httplib, 5 s
keep-alive) and a stub API server that counts calls and serves the event
stream. Usage: auth_client_test.py PATH/TO/mqtt-proxy PATH/TO/auth-server"""
import hashlib
import http.server
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from netutil import free_port, wait_for_port  # noqa: E402
from processes import AuthServer, ProcessGroup, proxy_argv  # noqa: E402
from wire import mqtt_packet, mqtt_string  # noqa: E402
import certs  # noqa: E402

PROXY = AUTH_SERVER = None
ACL = {"publish": ["private/alice/#"], "subscribe": ["private/alice/#"]}


# ------------------------------------------------------------------ MQTT

def connack_code(port, token, version=4, client_id="c"):
    """CONNECT with the token as password; the CONNACK's return/reason code (None: closed without one)."""
    flags = 0x02 | 0x40 | (0x80 if version == 4 else 0)
    payload = mqtt_string(client_id) + (mqtt_string("u") if version == 4 else b"")
    token_bytes = token if isinstance(token, bytes) else token.encode()
    payload += struct.pack(">H", len(token_bytes)) + token_bytes
    props = b"\x00" if version == 5 else b""
    packet = mqtt_packet(0x10, mqtt_string("MQTT") + bytes([version, flags]) + struct.pack(">H", 30) + props + payload)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(packet)
        data = b""
        while len(data) < 4:
            chunk = s.recv(64)
            if not chunk:
                return None
            data += chunk
    assert data[0] == 0x20, data
    return data[3]


def parallel_connacks(port, tokens):
    results = [None] * len(tokens)

    def one(i):
        results[i] = connack_code(port, tokens[i], client_id=f"p{i}")
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(tokens))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# ------------------------------------------------------------------ the stub API server

class StubApi:
    """POST /v1/sessions/validate and GET /v1/events, with knobs: max-age,
    a status to force (503), calls counted, events appended by the test."""

    def __init__(self, sessions, max_age=None, events=True, service_token=None, tls=None):
        self.sessions = dict(sessions)
        self.max_age, self.force_status, self.events_enabled = max_age, None, events
        self.service_token = service_token
        self.validate_calls, self.event_polls, self.auth_headers = 0, 0, []
        self.events, self.seq, self.reset_next, self.dead, self.feed_down = [], 100, False, False, False
        # Keep-alive, seen from the server: the client ports validations came
        # from, and how many requests on a reused connection to drop unanswered.
        self.validate_peers, self.drop_on_reused = set(), 0
        # Concurrency, seen from the server: each validation takes `delay` s.
        self.delay, self.in_progress, self.most_in_progress = 0.0, 0, 0
        self.cond = threading.Condition()
        self.port = free_port()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def answer(self, status, body, headers=()):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                if owner.dead:  # killed: kept-alive connections end too, without an answer
                    self.close_connection = True
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self.served = getattr(self, "served", 0) + 1  # requests on this connection
                with owner.cond:
                    if self.served > 1 and owner.drop_on_reused > 0:
                        owner.drop_on_reused -= 1  # a server closing a kept-alive connection as a request comes
                        self.close_connection = True
                        return
                    owner.validate_calls += 1
                    owner.validate_peers.add(self.client_address)
                    owner.in_progress += 1
                    owner.most_in_progress = max(owner.most_in_progress, owner.in_progress)
                try:
                    time.sleep(owner.delay)
                    self.validate(body)
                finally:
                    with owner.cond:
                        owner.in_progress -= 1

            def validate(self, body):
                if owner.force_status:
                    return self.answer(owner.force_status, {"error": "down"})
                session = owner.sessions.get(body.get("session"))
                if not session:
                    return self.answer(401, {"error": "invalid_session"}, [("Cache-Control", "no-store")])
                headers = [("Cache-Control", f"private, max-age={owner.max_age}")] if owner.max_age else []
                self.answer(200, dict(session, expires_in=3600), headers)

            def do_GET(self):
                if not self.path.startswith("/v1/events") or not owner.events_enabled:
                    return self.answer(404, {"error": "not_found"})
                with owner.cond:
                    owner.event_polls += 1
                    owner.auth_headers.append(self.headers.get("Authorization"))
                if owner.feed_down:
                    return self.answer(503, {"error": "down"})
                if owner.service_token and self.headers.get("Authorization") != "Bearer " + owner.service_token:
                    return self.answer(401, {"error": "unauthorized"})
                query = dict(p.split("=", 1) for p in self.path.partition("?")[2].split("&") if "=" in p)
                with owner.cond:
                    if "after" not in query:
                        return self.answer(200, {"events": [], "next": owner.seq, "reset": False})
                    after = int(query["after"])
                    deadline = time.time() + min(int(query.get("wait", 25)), 3)
                    while time.time() < deadline and not owner.reset_next and not owner.feed_down and not [
                            e for e in owner.events if e["seq"] > after]:
                        owner.cond.wait(deadline - time.time())
                    if owner.feed_down:
                        return self.answer(503, {"error": "down"})
                    if owner.reset_next:
                        owner.reset_next = False
                        return self.answer(200, {"events": [], "next": owner.seq, "reset": True})
                    new = [e for e in owner.events if e["seq"] > after]
                    self.answer(200, {"events": new, "next": new[-1]["seq"] if new else after, "reset": False},
                                [("Cache-Control", "no-store")])

            def log_message(self, *args):
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.http.daemon_threads = True
        self.http.handle_error = lambda *args: None  # a proxy stopped mid long-poll: a broken pipe, expected
        if tls:  # (cert, key): https
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.http.socket = context.wrap_socket(self.http.socket, server_side=True)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def append(self, event):
        with self.cond:
            self.seq += 1
            self.events.append(dict(event, seq=self.seq))
            self.cond.notify_all()

    def set_feed_down(self, down):
        with self.cond:
            self.feed_down = down
            self.cond.notify_all()

    def reset(self):
        with self.cond:
            self.reset_next = True
            self.cond.notify_all()

    def kill(self):
        self.dead = True
        self.close()

    def close(self):
        self.http.shutdown()
        self.http.server_close()


# ------------------------------------------------------------------ processes

class Proxy:
    def __init__(self, group, name, broker_port, auth_url, *flags):
        self.group, self.name = group, name
        self.port, self.admin = free_port(), free_port()
        self.log_path = group.log_path(name)
        group.spawn(name, proxy_argv(PROXY, self.port, broker_port, auth_url, "--threads", "1", "--log-level", "debug",
                                     *flags, admin_port=self.admin), ports=[self.port, self.admin])

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=5) as r:
            body = r.read().decode()
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                if line and not line.startswith("#")}

    def metric(self, name):
        return self.metrics().get(name, 0)

    def logs(self):
        return self.group.log_of(self.name)


def wait_until(predicate, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


OK, UNAVAILABLE_311, REFUSED_311, UNAVAILABLE_5, REFUSED_5 = 0, 3, 5, 0x88, 0x87
HIT = 'mqtt_proxy_auth_cache_total{result="hit"}'
MISS = 'mqtt_proxy_auth_cache_total{result="miss"}'
NEGATIVE = 'mqtt_proxy_auth_cache_total{result="negative_hit"}'
STALE = 'mqtt_proxy_auth_cache_total{result="stale"}'


class AuthClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.group = ProcessGroup("auth-client-")
        cls.dir = cls.group.dir
        _, cls.broker_port = cls.group.mosquitto()
        cls.cleanup = []

    @classmethod
    def tearDownClass(cls):
        cls.group.close()  # the proxies and the broker, then the stub API servers
        for c in reversed(cls.cleanup):
            try:
                c()
            except Exception:
                pass

    def proxy(self, name, url, *flags):
        return Proxy(self.group, name, self.broker_port, url, *flags)

    def stub(self, *args, **kwargs):
        s = StubApi(*args, **kwargs)
        self.cleanup.append(s.close)
        return s

    def test_quiet_spell_real_auth_server(self):
        """cpp-httplib closes idle keep-alive connections after 5 s; after 7 s
        of quiet the next 10 valid sessions are all accepted, whether the pool
        drops connections at its idle limit (default 4 s) or must notice the
        server's close itself (idle limit 60 s: the readability check and the
        retry on a fresh connection)."""
        server = AuthServer(self.group, AUTH_SERVER)
        server.add_user("alice", "pw-alice", extra=["--kdf-iterations", "1000"])
        # distinct sessions: concurrent validations of one token would share one call
        tokens = [server.login("alice", "pw-alice") for _ in range(4)]
        url = server.url
        # The cache off: auth-server allows caching its answers (max-age), and
        # this test is about the connections, so every validation must be an HTTP call.
        no_cache = ("--auth-events", "false", "--auth-cache-max-entries", "0")
        default = self.proxy("quiet-default", url, *no_cache)
        long_pool = self.proxy("quiet-long-pool", url, *no_cache, "--auth-idle-timeout-ms", "60000")
        for p in (default, long_pool):
            # Several at once: the pool holds several connections, as under load.
            self.assertEqual(parallel_connacks(p.port, tokens), [OK] * 4)
        time.sleep(7)
        for p in (default, long_pool):
            codes = [connack_code(p.port, tokens[i % 4], client_id=f"after-quiet-{i}") for i in range(10)]
            self.assertEqual(codes, [OK] * 10, p.log_path)
            self.assertEqual(p.metric('mqtt_proxy_authentications_total{result="unavailable"}'), 0)
        # The long pool really met connections the server had closed, and stepped over them.
        self.assertIn("dropping a pooled connection the API server has closed", long_pool.logs())
        self.assertEqual(long_pool.metric(HIT), 0)

    def test_validations_reuse_kept_alive_connections(self):
        """Seen from the API server: sequential validations, the cache off,
        come over one kept-alive TCP connection, not one each."""
        api = self.stub({"good": {"user": "alice", "acl": ACL}}, events=False)
        p = self.proxy("reuse", api.url, "--auth-cache-max-entries", "0", "--auth-events", "false")
        self.assertEqual([connack_code(p.port, "good", client_id=f"r{i}") for i in range(20)], [OK] * 20)
        self.assertEqual(api.validate_calls, 20)
        self.assertEqual(len(api.validate_peers), 1, api.validate_peers)

    def test_calls_in_progress_are_capped_and_the_rest_wait_their_turn(self):
        """30 sessions with distinct tokens at once, the cache off, one worker
        allowed 3 calls at a time: the API server never sees more than 3
        validations at once, and every session is admitted."""
        tokens = [f"herd-{i}" for i in range(30)]
        api = self.stub({t: {"user": "alice", "acl": ACL} for t in tokens}, events=False)
        api.delay = 0.05
        p = self.proxy("capped", api.url, "--auth-cache-max-entries", "0", "--auth-events", "false",
                       "--auth-max-connections", "3")
        self.assertEqual(parallel_connacks(p.port, tokens), [OK] * 30)
        self.assertEqual(api.validate_calls, 30)
        self.assertLessEqual(api.most_in_progress, 3)
        self.assertEqual(api.most_in_progress, 3, "the herd never filled the connections: the test tests nothing")
        self.assertEqual(p.metric("mqtt_proxy_auth_queue_timeouts_total"), 0)

    def test_waiting_calls_time_out_unsent_and_leavers_cost_no_call(self):
        """One call at a time, 0.6 s each, 1 s deadline, 8 sessions at once:
        the first is admitted. When it ends, the next ones have 0.4 s left,
        less than the API server's answers take: they end 'unavailable'
        unsent, and (no verdict on the API server) without opening the
        circuit breaker even at 1 failure. The call of a client that left
        while it waited is never sent."""
        tokens = [f"slow-{i}" for i in range(8)]
        api = self.stub({t: {"user": "alice", "acl": ACL} for t in tokens + ["leaver"]}, events=False)
        api.delay = 0.6
        p = self.proxy("one-at-a-time", api.url, "--auth-cache-max-entries", "0", "--auth-events", "false",
                       "--auth-max-connections", "1", "--auth-timeout-ms", "1000", "--auth-breaker-failures", "1")
        codes = parallel_connacks(p.port, tokens)
        self.assertEqual(sorted(codes), [OK] + [UNAVAILABLE_311] * 7, codes)
        self.assertEqual(api.validate_calls, 1)
        self.assertEqual(p.metric("mqtt_proxy_auth_queue_timeouts_total"), 7)
        self.assertIn("ms were left after waiting for a connection", p.logs())
        self.assertEqual(p.metric("mqtt_proxy_auth_breaker_open"), 0, "unsent calls opened the breaker")
        # A client that leaves while its call waits: the call is never sent.
        calls = api.validate_calls
        blocker = threading.Thread(target=connack_code, args=(p.port, tokens[0]), kwargs={"client_id": "blocker"})
        blocker.start()
        time.sleep(0.1)  # the blocker's call holds the one connection
        flags = 0x02 | 0x40 | 0x80
        packet = mqtt_packet(0x10, mqtt_string("MQTT") + bytes([4, flags]) + struct.pack(">H", 30) +
                             mqtt_string("leaver") + mqtt_string("u") + mqtt_string("leaver"))
        with socket.create_connection(("127.0.0.1", p.port), timeout=5) as s:
            s.sendall(packet)
            time.sleep(0.1)
        blocker.join()
        time.sleep(0.8)
        self.assertEqual(api.validate_calls, calls + 1, "the call of a client that had left was sent")
        self.assertEqual(connack_code(p.port, "leaver", client_id="leaver-back"), OK)

    def test_kept_alive_connection_closed_at_the_request_is_retried_fresh(self):
        """A server may close a kept-alive connection just as a request comes
        (its keep-alive ran out, it restarted): the session does not fail, the
        call is made again on a fresh connection, once."""
        api = self.stub({"good": {"user": "alice", "acl": ACL}}, events=False)
        p = self.proxy("flaky-keep-alive", api.url, "--auth-cache-max-entries", "0", "--auth-events", "false",
                       "--auth-idle-timeout-ms", "60000")
        self.assertEqual(connack_code(p.port, "good", client_id="first"), OK)  # the connection is now pooled
        api.drop_on_reused = 1
        self.assertEqual(connack_code(p.port, "good", client_id="second"), OK)
        self.assertEqual(api.drop_on_reused, 0)  # the pooled connection was used, and dropped by the server
        self.assertEqual(api.validate_calls, 2)
        self.assertEqual(len(api.validate_peers), 2)  # the answer came over a fresh connection
        self.assertEqual(p.metric('mqtt_proxy_authentications_total{result="unavailable"}'), 0)
        self.assertIn("retrying on a fresh one", p.logs())
        # Closed on every reuse: each session still gets one fresh retry, never a failure.
        api.drop_on_reused = 3
        self.assertEqual([connack_code(p.port, "good", client_id=f"again{i}") for i in range(3)], [OK] * 3)
        self.assertEqual(p.metric('mqtt_proxy_authentications_total{result="unavailable"}'), 0)

    def test_real_auth_server_restarted_under_kept_alive_connections(self):
        """The real auth-server killed and started again on the same port while
        the proxy pools connections to it (idle limit 60 s, so the pool holds
        them): every session after the restart is admitted, none answered
        auth_unavailable."""
        db, auth_port = os.path.join(self.dir, "restart.db"), free_port()
        subprocess.run([AUTH_SERVER, "adduser", "--db", db, "--user", "alice", "--password", "pw-alice",
                        "--kdf-iterations", "1000"], check=True, stdout=subprocess.DEVNULL)
        argv = [AUTH_SERVER, "serve", "--db", db, "--listen", f"127.0.0.1:{auth_port}"]
        server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.cleanup.append(lambda: (server.kill(), server.wait(timeout=10)))
        wait_for_port(auth_port)
        tokens = []
        for _ in range(4):
            request = urllib.request.Request(f"http://127.0.0.1:{auth_port}/v1/login",
                                             data=json.dumps({"username": "alice", "password": "pw-alice"}).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=5) as r:
                tokens.append(json.loads(r.read())["session"])
        p = self.proxy("restart", f"http://127.0.0.1:{auth_port}", "--auth-cache-max-entries", "0",
                       "--auth-events", "false", "--auth-idle-timeout-ms", "60000")
        self.assertEqual(parallel_connacks(p.port, tokens), [OK] * 4)  # several pooled connections
        server.kill()
        server.wait(timeout=10)
        restarted = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.cleanup.append(lambda: (restarted.terminate(), restarted.wait(timeout=10)))
        wait_for_port(auth_port)
        codes = [connack_code(p.port, tokens[i % 4], client_id=f"after-restart-{i}") for i in range(8)]
        self.assertEqual(codes, [OK] * 8, p.log_path)
        self.assertEqual(parallel_connacks(p.port, tokens), [OK] * 4)
        self.assertEqual(p.metric('mqtt_proxy_authentications_total{result="unavailable"}'), 0)

    def test_cache_one_call_for_many_connections_and_negative_cache(self):
        api = self.stub({"good": {"user": "alice", "user_id": "7", "acl": ACL}}, max_age=60, events=False)
        p = self.proxy("cache", api.url, "--auth-negative-cache-ms", "1500")
        self.assertEqual([connack_code(p.port, "good", client_id=f"c{i}") for i in range(5)], [OK] * 5)
        self.assertEqual(api.validate_calls, 1)
        self.assertEqual(p.metric(HIT), 4)
        # One bad token, flooded: one call until the negative TTL passes.
        calls = api.validate_calls
        self.assertEqual([connack_code(p.port, "bad-token", client_id=f"b{i}") for i in range(10)], [REFUSED_311] * 10)
        self.assertEqual(api.validate_calls, calls + 1)
        self.assertEqual(p.metric(NEGATIVE), 9)
        time.sleep(1.6)
        self.assertEqual(connack_code(p.port, "bad-token"), REFUSED_311)
        self.assertEqual(api.validate_calls, calls + 2)
        # Binary or control characters: refused without a call (5.0 lets the password be any bytes).
        calls = api.validate_calls
        self.assertEqual(connack_code(p.port, b"\x00\xffbinary", version=5), REFUSED_5)
        self.assertEqual(connack_code(p.port, "line\nbreak", version=5), REFUSED_5)
        self.assertEqual(connack_code(p.port, "x" * 5000, version=5), REFUSED_5)
        self.assertEqual(api.validate_calls, calls)
        # An API server without the event stream: one warning, and validation goes on.
        self.assertTrue(wait_until(lambda: "answered 404" in p.logs()))
        self.assertEqual(p.logs().count("answered 404"), 1)

    def test_no_max_age_no_cache(self):
        api = self.stub({"good": {"user": "alice", "acl": ACL}}, max_age=None, events=False)
        p = self.proxy("no-cache", api.url, "--auth-events", "false")
        self.assertEqual([connack_code(p.port, "good", client_id=f"c{i}") for i in range(3)], [OK] * 3)
        self.assertEqual(api.validate_calls, 3)

    def test_breaker_opens_answers_at_once_and_recovers(self):
        api = self.stub({"good": {"user": "alice", "acl": ACL}}, events=False)
        api.force_status = 503
        p = self.proxy("breaker", api.url, "--auth-events", "false", "--auth-breaker-failures", "3",
                       "--auth-breaker-cooldown-ms", "1500")
        codes = [connack_code(p.port, f"token-{i}", version=5, client_id=f"k{i}") for i in range(8)]
        self.assertEqual(codes, [UNAVAILABLE_5] * 8)
        self.assertEqual(api.validate_calls, 3)  # the rest never reached the API server
        self.assertEqual(p.metric("mqtt_proxy_auth_breaker_open"), 1)
        self.assertEqual(p.metric("mqtt_proxy_auth_breaker_opens_total"), 1)
        self.assertIn("circuit breaker open", p.logs())
        api.force_status = None
        self.assertEqual(connack_code(p.port, "good"), UNAVAILABLE_311)  # still cooling down
        self.assertEqual(api.validate_calls, 3)
        time.sleep(1.6)
        self.assertEqual(connack_code(p.port, "good"), OK)  # the probe
        self.assertEqual(api.validate_calls, 4)
        self.assertEqual(p.metric("mqtt_proxy_auth_breaker_open"), 0)
        self.assertEqual(connack_code(p.port, "token-x"), REFUSED_311)

    def test_stale_if_error_on_and_off(self):
        api = self.stub({"good": {"user": "alice", "user_id": "7", "acl": ACL}}, max_age=1, events=False)
        on = self.proxy("stale-on", api.url, "--auth-events", "false", "--auth-stale-if-error-ms", "30000")
        off = self.proxy("stale-off", api.url, "--auth-events", "false")
        for p in (on, off):
            self.assertEqual(connack_code(p.port, "good"), OK)
        api.kill()  # the API server is gone: connections refused, kept-alive ones closed
        time.sleep(1.2)  # past max-age
        self.assertEqual(connack_code(on.port, "good", client_id="s1"), OK)
        self.assertEqual(on.metric(STALE), 1)
        self.assertIn("stale answer", on.logs())
        self.assertEqual(connack_code(off.port, "good", client_id="s2"), UNAVAILABLE_311)
        self.assertEqual(off.metric(STALE), 0)
        # Degraded mode never admits a token it has not seen valid.
        self.assertEqual(connack_code(on.port, "never-seen"), UNAVAILABLE_311)

    def test_event_feed_evicts_cached_sessions(self):
        token_file = os.path.join(self.dir, "service-token")
        with open(token_file, "w") as f:
            f.write("svc-secret\n")
        api = self.stub({"t1": {"user": "alice", "user_id": "7", "acl": ACL},
                         "t2": {"user": "bob", "user_id": "8", "acl": ACL},
                         "t3": {"user": "carol", "user_id": "9", "acl": ACL}},
                        max_age=60, service_token="svc-secret")
        p = self.proxy("feed", api.url, "--auth-service-token-file", token_file)
        self.assertTrue(wait_until(lambda: p.metric("mqtt_proxy_auth_events_connected") == 1))
        self.assertEqual(api.auth_headers[0], "Bearer svc-secret")
        for token in ("t1", "t2", "t3"):
            self.assertEqual(connack_code(p.port, token), OK)
            self.assertEqual(connack_code(p.port, token), OK)
        self.assertEqual(api.validate_calls, 3)  # each once, then from the cache

        # Logout of t1: the API server now refuses it, and says so on the stream.
        del api.sessions["t1"]
        api.append({"type": "session_revoked", "user_id": "7", "user": "alice",
                    "session": hashlib.sha256(b"t1").hexdigest()})
        self.assertTrue(wait_until(lambda: p.metric("mqtt_proxy_auth_events_total") >= 1))
        self.assertEqual(connack_code(p.port, "t1"), REFUSED_311)  # asked again, not served from the cache
        self.assertEqual(api.validate_calls, 4)
        self.assertEqual(connack_code(p.port, "t2"), OK)  # others stay cached
        self.assertEqual(api.validate_calls, 4)

        # A user's ACL changed: that user's sessions are asked again.
        api.append({"type": "acl_changed", "user_id": "8", "user": "bob", "acl": ACL})
        self.assertTrue(wait_until(lambda: p.metric("mqtt_proxy_auth_events_total") >= 2))
        self.assertEqual(connack_code(p.port, "t2"), OK)
        self.assertEqual(api.validate_calls, 5)

        # The stream says events were lost: everything is asked again.
        api.reset()
        self.assertTrue(wait_until(lambda: p.metric("mqtt_proxy_auth_events_total") >= 3))
        self.assertEqual(connack_code(p.port, "t3"), OK)
        self.assertEqual(api.validate_calls, 6)
        self.assertIn("auth event stream connected", p.logs())

    def test_event_feed_reconnects_and_catches_up(self):
        api = self.stub({"t1": {"user": "alice", "user_id": "7", "acl": ACL}}, max_age=60)
        p = self.proxy("feed-reconnect", api.url)
        self.assertTrue(wait_until(lambda: p.metric("mqtt_proxy_auth_events_connected") == 1))
        self.assertEqual(connack_code(p.port, "t1"), OK)
        api.set_feed_down(True)
        self.assertTrue(wait_until(lambda: p.metric("mqtt_proxy_auth_events_connected") == 0))
        self.assertIn("auth event stream lost", p.logs())
        # Revoked while the proxy is cut off from the stream...
        del api.sessions["t1"]
        api.append({"type": "session_revoked", "user_id": "7", "user": "alice",
                    "session": hashlib.sha256(b"t1").hexdigest()})
        api.set_feed_down(False)
        # ...and delivered when it is back, from where it stood.
        self.assertTrue(wait_until(lambda: p.metric("mqtt_proxy_auth_events_total") >= 1, timeout=15))
        self.assertEqual(p.metric("mqtt_proxy_auth_events_connected"), 1)
        calls = api.validate_calls
        self.assertEqual(connack_code(p.port, "t1"), REFUSED_311)
        self.assertEqual(api.validate_calls, calls + 1)

    def test_https_with_ca_and_hostname_verification(self):
        ca = certs.make_ca(self.dir, "api-ca")
        key, cert = certs.make_leaf(self.dir, "api", "/CN=localhost", ca, san="DNS:localhost")
        api = self.stub({"good": {"user": "alice", "acl": ACL}}, events=False, tls=(cert, key))
        trusted = self.proxy("https-trusted", f"https://localhost:{api.port}", "--auth-ca-file", ca[1],
                             "--auth-events", "false")
        self.assertEqual(connack_code(trusted.port, "good"), OK)
        self.assertEqual(connack_code(trusted.port, "other"), REFUSED_311)
        self.assertEqual(api.validate_calls, 2)
        untrusted = self.proxy("https-untrusted", f"https://localhost:{api.port}", "--auth-events", "false")
        self.assertEqual(connack_code(untrusted.port, "good"), UNAVAILABLE_311)  # not signed by a system CA
        wrong_name = self.proxy("https-wrong-name", f"https://127.0.0.1:{api.port}", "--auth-ca-file", ca[1],
                                "--auth-events", "false")
        self.assertEqual(connack_code(wrong_name.port, "good"), UNAVAILABLE_311)  # the certificate names localhost
        self.assertEqual(api.validate_calls, 2)  # neither got as far as a request

    def test_event_feed_refused_without_the_service_token(self):
        api = self.stub({}, service_token="svc-secret")
        p = self.proxy("feed-no-token", api.url, "--auth-events", "true")
        self.assertTrue(wait_until(lambda: "refused the service token" in p.logs()))
        self.assertEqual(p.metric("mqtt_proxy_auth_events_connected"), 0)


if __name__ == "__main__":
    PROXY, AUTH_SERVER = sys.argv[1], sys.argv[2]
    unittest.main(argv=sys.argv[:1], verbosity=2)
