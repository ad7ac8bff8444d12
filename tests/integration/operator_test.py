#!/usr/bin/python3
"""The operator endpoints of the admin port, report-only ACL and the Grafana
dashboard, against the real thing: mqtt-proxy (two of them), the real
auth-server, a real Mosquitto and paho clients.

Proxy A: ACL enforced on its TCP listener, report-only on its WebSocket
listener, operator token configured, two worker threads (listings and kicks
gather from both). Proxy B: report-only everywhere, no operator token.
Usage: operator_test.py PATH/TO/mqtt-proxy PATH/TO/auth-server"""
import http.client
import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse

import paho.mqtt.client as mqtt

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from netutil import free_port, wait_for_port  # noqa: E402
from paho_app import AuthAnswers, granted_codes  # noqa: E402
from processes import AuthServer, OneSystemPerClass, ProcessGroup, upstream_args  # noqa: E402

PROXY = AUTH_SERVER = None
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "mqtt-proxy.json")
ADMIN_TOKEN = "operator-secret-0123456789"
SERVICE_TOKEN = "events-secret-0123456789"
PASSWORD = "pw-" + "x" * 12


def request(port, method, target, token=None, headers=None, body=None):
    """(status, headers, body text) of one request to 127.0.0.1:port."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = "Bearer " + token
        connection.request(method, target, body=body, headers=all_headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        connection.close()


class System(ProcessGroup):
    def __init__(self):
        super().__init__("operator-")
        self.service_token_file = self.write("service-token", SERVICE_TOKEN + "\n")
        self.admin_token_file = self.write("admin-token", ADMIN_TOKEN + "\n")
        _, self.broker_port = self.mosquitto()
        self.auth = AuthServer(self, AUTH_SERVER, "--service-token-file", self.service_token_file)
        self.auth_port, self.auth_url = self.auth.port, self.auth.url
        common = [*upstream_args(self.broker_port), "--auth-url", self.auth_url,
                  "--auth-service-token-file", self.service_token_file]
        # A: from a config file (the [admin] table, a listener's acl_mode, a template).
        self.a_port, self.a_ws_port, self.a_admin = free_port(), free_port(), free_port()
        config = self.write("proxy-a.toml", f"""
listen = "127.0.0.1:{self.a_port}"
threads = 2
[admin]
address = "127.0.0.1:{self.a_admin}"
token_file = "{self.admin_token_file}"
[listeners.ws]
address = "127.0.0.1:{self.a_ws_port}"
acl_mode = "report"
[acl_templates]
subscribe = ["inbox/%u"]
""")
        self.spawn("proxy-a", [PROXY, "--config", config, *common])
        # B: report-only everywhere, flags only, no operator token.
        self.b_port, self.b_admin = free_port(), free_port()
        self.spawn("proxy-b", [PROXY, "--listen", f"127.0.0.1:{self.b_port}", "--admin", f"127.0.0.1:{self.b_admin}",
                               "--acl-mode", "report", *common])
        for port in (self.a_port, self.a_ws_port, self.a_admin, self.b_port, self.b_admin):
            wait_for_port(port)

    def log_of(self, name):
        return super().log_of(name, errors="replace")

    def add_user(self, name, groups=()):
        self.auth.add_user(name, PASSWORD, groups)

    def login(self, name):
        return self.auth.login(name, PASSWORD)


class App(AuthAnswers):
    """A paho client that logs in with the auth PUBLISH (the app flow)."""

    def __init__(self, port, session, client_id, version=mqtt.MQTTv5, transport="tcp", will=None):
        self.messages, self.auth_answers, self.subacks = queue.Queue(), queue.Queue(), queue.Queue()
        self.connected, self.disconnected = threading.Event(), threading.Event()
        self.disconnect_packet = None
        kwargs = {"clean_session": True} if version != mqtt.MQTTv5 else {}
        self.client = mqtt.Client(client_id=client_id, protocol=version, transport=transport, **kwargs)
        self.client.reconnect_delay_set(60, 60)  # a kicked app must not come back by itself here
        self.client.on_connect = lambda *a: self.connected.set()
        self.client.on_disconnect = lambda *a: self.disconnected.set()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda c, u, mid, granted, *rest: self.subacks.put(granted_codes(granted))
        # paho 1.6 drops a DISCONNECT's reason code when the packet is that
        # short (remaining length <= 2): keep the bytes it received.
        handle = self.client._handle_disconnect

        def keep_disconnect():
            self.disconnect_packet = bytes(self.client._in_packet["packet"])
            return handle()
        self.client._handle_disconnect = keep_disconnect
        if will:
            self.client.will_set(will, b"gone", qos=1)
        self.client.connect("127.0.0.1", port, 30)
        self.client.loop_start()
        assert self.connected.wait(5)
        self.client.publish("service/auth/" + session, b"", qos=1)
        answer = json.loads(self.auth_answers.get(timeout=10))
        assert answer["result"] == "ok", answer

    def subscribe(self, topic):
        self.client.subscribe(topic, qos=1)
        return self.subacks.get(timeout=5)[0]

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()


class BrokerWatcher:
    """A subscriber straight on Mosquitto: what really reached the broker."""

    def __init__(self, port, topic="#"):
        self.messages = queue.Queue()
        self.client = mqtt.Client(client_id=f"watcher-{time.time()}")
        self.client.username_pw_set("proxy", "proxy-secret")
        subscribed = threading.Event()
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload.decode()))
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port, 30)
        self.client.loop_start()
        assert subscribed.wait(5)

    def received(self, topic, payload, wait):
        deadline = time.time() + wait
        while time.time() < deadline:
            try:
                got = self.messages.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                return False
            if got == (topic, payload):
                return True
        return False

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()


def metric(text, name, labels=""):
    for line in text.splitlines():
        if line.startswith(name + labels + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name}{labels} not in /metrics")


class Operator(OneSystemPerClass, unittest.TestCase):
    make_system = System

    def app(self, *args, **kwargs):
        return self.keep(App(*args, **kwargs))

    def user(self, name, groups=()):
        self.system.add_user(name, groups)
        return self.system.login(name)

    def admin(self, method, target, token=ADMIN_TOKEN, port=None):
        status, headers, body = request(port or self.system.a_admin, method, target, token=token)
        return status, headers, (json.loads(body) if body.startswith("{") else body)

    def connections(self, user):
        status, _, body = self.admin("GET", "/v1/connections?user=" + urllib.parse.quote(user))
        self.assertEqual(status, 200, body)
        return body["connections"]

    def broker_publish(self, topic, payload):
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.system.broker_port), "-u", "proxy", "-P",
                        "proxy-secret", "-t", topic, "-m", payload, "-q", "1"], check=True, timeout=10)

    # ------------------------------------------------------------ the token

    def test_without_a_configured_token_the_endpoints_are_off_and_the_rest_stays_open(self):
        for target in ("/v1/connections", "/v1/explain?user=x&action=publish&topic=a"):
            status, _, body = self.admin("GET", target, port=self.system.b_admin)
            self.assertEqual(status, 403)
            self.assertEqual(body["error"], "operator_endpoints_off")
        status, _, body = self.admin("GET", "/v1/connections", token=ADMIN_TOKEN, port=self.system.b_admin)
        self.assertEqual(status, 403)  # no token is configured, so none is right
        for target in ("/healthz", "/metrics"):
            self.assertEqual(request(self.system.b_admin, "GET", target)[0], 200)
        self.assertIn("operator endpoints (/v1/connections, /v1/explain) are off", self.system.log_of("proxy-b"))

    def test_the_token_is_required_and_must_be_the_right_one(self):
        status, headers, body = self.admin("GET", "/v1/connections", token=None)
        self.assertEqual(status, 401)
        self.assertEqual(headers.get("WWW-Authenticate"), "Bearer")
        for wrong in ("nope", ADMIN_TOKEN[:-1], ADMIN_TOKEN + "x", ""):
            self.assertEqual(self.admin("GET", "/v1/connections", token=wrong)[0], 401, wrong)
        status, _, _ = request(self.system.a_admin, "GET", "/v1/connections",
                               headers={"Authorization": "Basic " + ADMIN_TOKEN})
        self.assertEqual(status, 401)
        for target in ("/v1/connections/kick?user=x", "/v1/explain?user=x&action=publish&topic=a"):
            self.assertEqual(self.admin("POST" if "kick" in target else "GET", target, token="wrong")[0], 401)
        self.assertEqual(self.admin("GET", "/v1/connections")[0], 200)
        # Health and metrics never need it.
        self.assertEqual(request(self.system.a_admin, "GET", "/healthz")[0], 200)
        self.assertEqual(request(self.system.a_admin, "GET", "/metrics")[0], 200)

    # ------------------------------------------------------------ listing

    def test_connections_lists_a_live_client_with_its_subscriptions_and_bytes(self):
        session = self.user("carol")
        carol = self.app(self.system.a_port, session, "carol-phone")
        self.assertEqual(carol.subscribe("private/carol/#"), 1)
        carol.client.publish("private/carol/note", b"x" * 100, qos=1).wait_for_publish(5)
        self.assertEqual(carol.messages.get(timeout=5)[0], "private/carol/note")  # her own, back to her
        self.broker_publish("private/carol/in", "y" * 50)
        self.assertEqual(carol.messages.get(timeout=5)[0], "private/carol/in")
        other = self.app(self.system.a_port, self.user("carl"), "carl-phone")
        listed = self.connections("carol")
        self.assertEqual(len(listed), 1, listed)
        c = listed[0]
        self.assertEqual(c["user"], "carol")
        self.assertEqual(c["client_id"], "carol-phone")
        self.assertEqual(c["upstream_client_id"], f"{len(c['user_id'])}:{c['user_id']}:carol-phone")
        self.assertEqual(c["transport"], "tcp")
        self.assertEqual(c["state"], "relaying")
        self.assertEqual(c["acl_mode"], "enforce")
        self.assertEqual(c["subscriptions"], ["private/carol/#"])
        local = carol.client.socket().getsockname()
        self.assertEqual(c["remote_address"], f"{local[0]}:{local[1]}")
        self.assertGreater(c["bytes_from_client"], 100)  # CONNECT, auth, SUBSCRIBE, the 100-byte PUBLISH
        self.assertGreater(c["bytes_to_client"], 50)     # CONNACK, auth answer, SUBACK, PUBACK, the delivery
        self.assertLess(abs(c["since_unix"] - time.time()), 60)
        # Unfiltered: both users, whichever worker thread holds them.
        status, _, body = self.admin("GET", "/v1/connections")
        users = {x["user"] for x in body["connections"]}
        self.assertTrue({"carol", "carl"} <= users, users)
        self.assertEqual(self.connections("nobody-here"), [])
        carol.stop()
        other.stop()
        deadline = time.time() + 5
        while self.connections("carol") and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.connections("carol"), [])

    def test_connections_come_in_pages(self):
        session = self.user("paula")
        apps = [self.app(self.system.a_port, session, f"paula-{i}") for i in range(5)]
        self.assertEqual(len(apps), 5)
        seen = []
        status, _, body = self.admin("GET", "/v1/connections?user=paula&limit=2")
        self.assertEqual(status, 200, body)
        self.assertEqual((body["count"], body["total"], body["offset"], body["next_offset"]), (2, 5, 0, 2))
        seen += [c["client_id"] for c in body["connections"]]
        status, _, body = self.admin("GET", "/v1/connections?user=paula&limit=2&offset=2")
        self.assertEqual((body["count"], body["next_offset"]), (2, 4))
        seen += [c["client_id"] for c in body["connections"]]
        status, _, body = self.admin("GET", "/v1/connections?user=paula&limit=2&offset=4")
        self.assertEqual((body["count"], body["total"]), (1, 5))
        self.assertNotIn("next_offset", body, "the last page")
        seen += [c["client_id"] for c in body["connections"]]
        # Whichever worker holds which client, the pages together list each once.
        self.assertEqual(sorted(seen), [f"paula-{i}" for i in range(5)])
        status, _, body = self.admin("GET", "/v1/connections?user=paula&offset=99")
        self.assertEqual((status, body["count"], body["total"]), (200, 0, 5))
        # Without a limit: one page of up to 1000.
        self.assertEqual(len(self.connections("paula")), 5)
        for bad in ("limit=0", "limit=10001", "limit=-1", "limit=x", "offset=-3", "offset=1e3", "limit="):
            status, _, body = self.admin("GET", "/v1/connections?" + bad)
            self.assertEqual(status, 400, bad)
            self.assertEqual(body["error"], "invalid_value", bad)

    def page(self, query):
        status, _, body = self.admin("GET", "/v1/connections?" + query)
        self.assertEqual(status, 200, body)
        return body

    def wait_for_total(self, user, total):
        """Until the proxy lists `total` connections of `user` (a closed
        client's connection ends a moment after its DISCONNECT)."""
        deadline = time.time() + 10
        while self.page(f"user={user}&limit=1")["total"] != total and time.time() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.page(f"user={user}&limit=1")["total"], total)

    def walk_with_churn(self, user, by_cursor):
        """Pages through `user`'s connections 3 at a time; between pages two
        clients already listed leave (before the page boundary, whichever
        order the pages follow) and a new one connects. Returns the client ids
        in the order listed and those of the clients open throughout."""
        session = self.user(user)
        apps = {f"{user}-{i}": self.app(self.system.a_port, session, f"{user}-{i}") for i in range(14)}
        initial, closed, seen, fresh = set(apps), set(), [], 0
        query = f"user={user}&limit=3" + ("&after=0" if by_cursor else "")
        while True:
            body = self.page(query)
            self.assertEqual(body["count"], len(body["connections"]))
            seen += [c["client_id"] for c in body["connections"]]
            following = body.get("next_after" if by_cursor else "next_offset")
            if following is None:
                break
            query = f"user={user}&limit=3&" + (f"after={following}" if by_cursor else f"offset={following}")
            for client_id in [c for c in dict.fromkeys(seen) if c not in closed][:2]:
                apps[client_id].stop()
                closed.add(client_id)
            fresh += 1
            apps[f"{user}-new-{fresh}"] = self.app(self.system.a_port, session, f"{user}-new-{fresh}")
            self.wait_for_total(user, len(apps) - len(closed))
        for client_id, app in apps.items():
            if client_id not in closed:
                app.stop()
        self.assertGreaterEqual(len(closed), 6, "churn happened on most pages")
        return seen, sorted(initial - closed)

    def test_cursor_pages_list_each_client_open_throughout_exactly_once_whoever_comes_and_goes(self):
        seen, stayed = self.walk_with_churn("rita", by_cursor=True)
        self.assertEqual(sorted(c for c in seen if c in stayed), stayed)

    def test_offset_pages_skip_clients_when_others_leave_before_the_boundary(self):
        # The same churn with offset paging: the race the cursor removes, so
        # the test above would catch paging that still had it.
        seen, stayed = self.walk_with_churn("rolf", by_cursor=False)
        self.assertNotEqual(sorted(c for c in seen if c in stayed), stayed)

    def test_cursor_pages_are_in_id_order_and_carry_next_after(self):
        session = self.user("ruth")
        apps = [self.app(self.system.a_port, session, f"ruth-{i}") for i in range(5)]
        first = self.page("user=ruth&limit=2&after=0")
        self.assertEqual((first["count"], first["total"], first["after"]), (2, 5, 0))
        ids = [c["id"] for c in first["connections"]]
        self.assertEqual(first["next_after"], ids[-1])
        second = self.page(f"user=ruth&limit=2&after={first['next_after']}")
        last = self.page(f"user=ruth&limit=2&after={second['next_after']}")
        self.assertNotIn("next_after", last, "the last page")
        ids += [c["id"] for c in second["connections"] + last["connections"]]
        self.assertEqual(len(ids), 5)
        self.assertEqual(ids, sorted(set(ids)))  # increasing, none twice
        self.assertEqual(self.page(f"user=ruth&after={ids[-1]}")["count"], 0)
        # The ids are the connections' own: the same in an offset listing.
        by_offset = {c["client_id"]: c["id"] for c in self.page("user=ruth")["connections"]}
        by_cursor = {c["client_id"]: c["id"] for c in
                     first["connections"] + second["connections"] + last["connections"]}
        self.assertEqual(by_offset, by_cursor)
        for app in apps:
            app.stop()

    def test_hostile_paging_parameters_are_refused(self):
        for bad in ("after=-1", "after=x", "after=", "after=1e3", "after=99999999999999999999"):
            status, _, body = self.admin("GET", "/v1/connections?" + bad)
            self.assertEqual((status, body["error"]), (400, "invalid_value"), bad)
        status, _, body = self.admin("GET", "/v1/connections?after=0&offset=0")
        self.assertEqual((status, body["error"]), (400, "conflicting_parameters"))

    # ------------------------------------------------------------ kick

    def test_kick_by_user_ends_that_users_connections_only(self):
        session = self.user("dan")
        watcher = BrokerWatcher(self.system.broker_port, "private/dan/will")
        dan5 = self.app(self.system.a_port, session, "dan-phone", version=mqtt.MQTTv5)
        dan3 = self.app(self.system.a_port, session, "dan-tablet", version=mqtt.MQTTv311, will="private/dan/will")
        erin = self.app(self.system.a_port, self.user("erin"), "erin-phone")
        self.assertEqual(erin.subscribe("private/erin/#"), 1)
        self.assertEqual(len(self.connections("dan")), 2)
        status, _, body = self.admin("POST", "/v1/connections/kick?user=dan")
        self.assertEqual((status, body), (200, {"kicked": 2}))
        for app in (dan5, dan3):
            self.assertTrue(app.disconnected.wait(5), "a kicked connection is still open")
        # 5.0: DISCONNECT with reason 0x98 Administrative action.
        self.assertIsNotNone(dan5.disconnect_packet)
        self.assertEqual(dan5.disconnect_packet[0], 0x98)
        # 3.1.1 has no reason codes: the auth topic says why.
        self.assertEqual(json.loads(dan3.auth_answers.get(timeout=2)), {"result": "denied", "reason": "kicked"})
        # The broker got a normal DISCONNECT: no will.
        self.assertFalse(watcher.received("private/dan/will", "gone", wait=1.5))
        watcher.stop()
        self.assertEqual(self.connections("dan"), [])
        # Erin is untouched and still relays.
        self.assertFalse(erin.disconnected.is_set())
        self.broker_publish("private/erin/x", "still here")
        self.assertEqual(erin.messages.get(timeout=5), ("private/erin/x", "still here"))
        # A kicked user may come straight back with the same session.
        again = self.app(self.system.a_port, session, "dan-phone")
        self.assertEqual(len(self.connections("dan")), 1)
        again.stop()
        erin.stop()
        self.assertIn("operator kick user=dan", self.system.log_of("proxy-a"))

    def test_kick_by_client_id_and_the_hostile_kicks(self):
        session = self.user("finn")
        a = self.app(self.system.a_port, session, "finn-a")
        b = self.app(self.system.a_port, session, "finn-b")
        status, _, body = self.admin("POST", "/v1/connections/kick?client_id=finn-a")
        self.assertEqual((status, body), (200, {"kicked": 1}))
        self.assertTrue(a.disconnected.wait(5))
        self.assertFalse(b.disconnected.wait(0.5))
        self.assertEqual([c["client_id"] for c in self.connections("finn")], ["finn-b"])
        # Nobody by that name: 404, and nobody else is touched.
        status, _, body = self.admin("POST", "/v1/connections/kick?user=no-such-user")
        self.assertEqual((status, body), (404, {"error": "no_connection", "kicked": 0}))
        self.assertEqual(self.admin("POST", "/v1/connections/kick")[0], 400)
        self.assertEqual(self.admin("POST", "/v1/connections/kick?user=")[0], 400)
        self.assertEqual(self.admin("GET", "/v1/connections/kick?user=finn")[0], 405)
        self.assertEqual(self.admin("POST", "/v1/connections/kick?user=finn&user=x")[0], 400)
        self.assertFalse(b.disconnected.is_set())
        b.stop()

    def test_kick_by_id_ends_that_connection_only(self):
        session = self.user("kira")
        a = self.app(self.system.a_port, session, "kira-a")
        b = self.app(self.system.a_port, session, "kira-b")
        ids = {c["client_id"]: c["id"] for c in self.connections("kira")}
        status, _, body = self.admin("POST", f"/v1/connections/kick?id={ids['kira-a']}")
        self.assertEqual((status, body), (200, {"kicked": 1}))
        self.assertTrue(a.disconnected.wait(5))
        self.assertFalse(b.disconnected.wait(0.5))
        # With a user too, both must match.
        status, _, body = self.admin("POST", f"/v1/connections/kick?id={ids['kira-b']}&user=someone-else")
        self.assertEqual((status, body["kicked"]), (404, 0))
        # A connection already gone: nothing to kick.
        status, _, body = self.admin("POST", f"/v1/connections/kick?id={ids['kira-a']}")
        self.assertEqual((status, body["kicked"]), (404, 0))
        for bad in ("id=0", "id=-1", "id=x", "id="):
            status, _, body = self.admin("POST", "/v1/connections/kick?" + bad)
            self.assertEqual((status, body["error"]), (400, "invalid_value"), bad)
        self.assertFalse(b.disconnected.is_set())
        self.assertEqual([c["client_id"] for c in self.connections("kira")], ["kira-b"])
        b.stop()

    # ------------------------------------------------------------ explain

    def explain(self, user, action, topic, client_id=None, listener=None):
        query = {"user": user, "action": action, "topic": topic}
        if client_id:
            query["client_id"] = client_id
        if listener:
            query["listener"] = listener
        status, _, body = self.admin("GET", "/v1/explain?" + urllib.parse.urlencode(query))
        self.assertEqual(status, 200, body)
        return body

    def test_explain_agrees_with_what_the_proxy_does(self):
        session = self.user("gail", groups=["ops"])
        gail = self.app(self.system.a_port, session, "gail-phone")
        # Subscriptions: explain's answer against the SUBACK the proxy sends.
        cases = {"private/gail/#": ("user", "private/gail/#"), "group/ops/+": ("user", "group/ops/#"),
                 "inbox/gail": ("template", "inbox/gail"), "private/#": None, "group/dev/x": None,
                 "inbox/other": None, "#": None}
        for topic, rule in cases.items():
            e = self.explain("gail", "subscribe", topic)
            granted = gail.subscribe(topic)
            self.assertEqual(e["allowed"], granted < 0x80, (topic, e, granted))
            self.assertEqual(e["decision"], "allow" if rule else "deny")
            if rule:
                self.assertEqual((e["rule"]["origin"], e["rule"]["filter"]), rule)
            else:
                self.assertIsNone(e["rule"])
                self.assertIn("no subscribe entry", e["why"])
        self.assertEqual(self.explain("gail", "subscribe", "inbox/gail")["rule"]["template"], "inbox/%u")
        # Publishes: explain's answer against what reaches the broker.
        watcher = BrokerWatcher(self.system.broker_port)
        for topic in ("private/gail/a", "group/ops/b", "private/hal/c", "group/dev/d"):
            e = self.explain("gail", "publish", topic)
            gail.client.publish(topic, b"probe", qos=1)
            self.assertEqual(watcher.received(topic, "probe", wait=1.0 if not e["allowed"] else 5.0), e["allowed"],
                             (topic, e))
        watcher.stop()
        # The answer carries the ACL it decided with (the API server's, now).
        e = self.explain("gail", "publish", "private/gail/a")
        self.assertIn("group/ops/#", e["acl"]["subscribe"])
        self.assertEqual(e["acl_mode"], "enforce")
        gail.stop()

    def test_explain_names_the_mode_of_the_listener_asked_about(self):
        self.user("lena")
        # Proxy A enforces globally and on TCP; its WebSocket listener only reports.
        e = self.explain("lena", "subscribe", "private/other/#")
        self.assertEqual((e["decision"], e["acl_mode"], e["enforced"]), ("deny", "enforce", True))
        self.assertEqual(e["listener_modes"], {"ws": "report"})
        e = self.explain("lena", "subscribe", "private/other/#", listener="ws")
        self.assertEqual((e["decision"], e["acl_mode"], e["enforced"], e["listener"]), ("deny", "report", False, "ws"))
        self.assertNotIn("listener_modes", e)
        e = self.explain("lena", "subscribe", "private/other/#", listener="tcp")
        self.assertEqual((e["acl_mode"], e["enforced"], e["listener"]), ("enforce", True, "tcp"))
        # What a connection on that listener gets is what explain says.
        modes = {}
        for transport, port in (("tcp", self.system.a_port), ("websockets", self.system.a_ws_port)):
            app = self.app(port, self.system.login("lena"), f"lena-{transport}", transport=transport)
            modes[transport] = app.subscribe("private/other/#")
            app.stop()
        self.assertEqual(modes, {"tcp": 0x87, "websockets": 1})

    def test_explain_refuses_a_listener_it_does_not_have(self):
        self.user("lars")
        for name in ("wss", "tls", "mqtt", "WS", ""):  # wss and tls are not enabled on proxy A
            query = urllib.parse.urlencode({"user": "lars", "action": "publish", "topic": "a", "listener": name})
            status, _, body = self.admin("GET", "/v1/explain?" + query)
            self.assertEqual((status, body["error"]), (400, "unknown_listener"), name)
            self.assertIn("enabled: tcp, ws", body["detail"])

    def test_explain_refuses_what_it_cannot_answer(self):
        status, _, body = self.admin("GET", "/v1/explain?user=nobody-at-all&action=publish&topic=a")
        self.assertEqual((status, body["error"]), (404, "unknown_user"))
        for query in ("user=x&action=delete&topic=a", "user=x&action=publish", "action=publish&topic=a",
                      "user=x&action=publish&topic=a/%2B", "user=%00&action=publish&topic=a",
                      "user=x&action=publish&topic=%ff%fe"):
            self.assertEqual(self.admin("GET", "/v1/explain?" + query)[0], 400, query)

    def test_the_api_servers_user_endpoint_returns_the_acl_validate_returns(self):
        self.system.add_user("hana", groups=["ops"])
        session = self.system.login("hana")
        status, _, validated = request(self.system.auth_port, "POST", "/v1/sessions/validate",
                                       body=json.dumps({"session": session}),
                                       headers={"Content-Type": "application/json"})
        self.assertEqual(status, 200)
        status, _, user = request(self.system.auth_port, "GET", "/v1/users/hana", token=SERVICE_TOKEN)
        self.assertEqual(status, 200, user)
        validated, user = json.loads(validated), json.loads(user)
        for key in ("user", "user_id", "groups", "acl"):
            self.assertEqual(user[key], validated[key], key)
        self.assertEqual(request(self.system.auth_port, "GET", "/v1/users/hana")[0], 401)
        self.assertEqual(request(self.system.auth_port, "GET", "/v1/users/hana", token="wrong")[0], 401)
        status, _, body = request(self.system.auth_port, "GET", "/v1/users/nobody-at-all", token=SERVICE_TOKEN)
        self.assertEqual((status, json.loads(body)["error"]), (404, "unknown_user"))

    # ------------------------------------------------------------ hostile requests

    def test_hostile_requests_are_refused_and_the_port_keeps_serving(self):
        self.assertEqual(self.admin("GET", "/v1/connections?user=%zz")[0], 400)
        self.assertEqual(self.admin("GET", "/v1/connections?user=%")[0], 400)
        self.assertEqual(self.admin("GET", "/v1/connections?" + "&".join(f"k{i}=v" for i in range(40)))[0], 400)
        self.assertEqual(self.admin("GET", "/v1/connections?user=" + "u" * 300)[0], 400)
        self.assertEqual(self.admin("GET", "/v1/connections?user=" + "u" * 5000)[0], 414)
        self.assertEqual(self.admin("GET", "/v1/nothing")[0], 404)
        # Larger than the admin port's header limit: the connection is dropped, not answered.
        with socket.create_connection(("127.0.0.1", self.system.a_admin), timeout=5) as s:
            s.sendall(b"GET /v1/connections?user=" + b"u" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                data = s.recv(100)
            except ConnectionResetError:
                data = b""
            self.assertFalse(data.startswith(b"HTTP/1.1 200"), data)
        # A request the parser cannot read at all.
        with socket.create_connection(("127.0.0.1", self.system.a_admin), timeout=5) as s:
            s.sendall(b"\x00\xff garbage\r\n\r\n")
            try:
                s.recv(100)
            except ConnectionResetError:
                pass
        self.assertEqual(self.admin("GET", "/v1/connections")[0], 200)

    # ------------------------------------------------------------ report-only ACL

    def test_report_mode_lets_a_would_be_denied_subscription_through_and_counts_it(self):
        session = self.user("ivy")
        before = request(self.system.b_admin, "GET", "/metrics")[2]
        ivy = self.app(self.system.b_port, session, "ivy-phone")
        self.assertEqual(ivy.subscribe("private/jon/#"), 1)   # outside her ACL: granted all the same
        self.assertEqual(ivy.subscribe("private/jon/#"), 1)   # again: counted, not logged again
        self.broker_publish("private/jon/x", "overheard")
        self.assertEqual(ivy.messages.get(timeout=5), ("private/jon/x", "overheard"))
        after = request(self.system.b_admin, "GET", "/metrics")[2]
        label = '{direction="subscribe"}'
        self.assertEqual(metric(after, "mqtt_proxy_acl_report_total", label) -
                         metric(before, "mqtt_proxy_acl_report_total", label), 2)
        self.assertGreaterEqual(metric(after, "mqtt_proxy_acl_report_total", '{direction="deliver"}'), 1)
        self.assertEqual(metric(after, "mqtt_proxy_acl_denials_total", '{packet="subscribe"}'), 0)
        log = self.system.log_of("proxy-b")
        self.assertEqual(log.count('would deny subscribe remote='), 1, log)
        self.assertIn('user=ivy topic="private/jon/#"', log)
        ivy.stop()

    def test_enforce_still_denies_and_a_listener_can_report_on_its_own(self):
        session = self.user("kim")
        kim = self.app(self.system.a_port, session, "kim-phone")
        self.assertEqual(kim.subscribe("private/lee/#"), 0x87)  # proxy A's TCP listener enforces
        before = request(self.system.a_admin, "GET", "/metrics")[2]
        kim_ws = self.app(self.system.a_ws_port, session, "kim-browser", transport="websockets")
        self.assertEqual(kim_ws.subscribe("private/lee/#"), 1)  # its WebSocket listener reports
        after = request(self.system.a_admin, "GET", "/metrics")[2]
        label = '{direction="subscribe"}'
        self.assertEqual(metric(after, "mqtt_proxy_acl_report_total", label) -
                         metric(before, "mqtt_proxy_acl_report_total", label), 1)
        self.assertGreaterEqual(metric(after, "mqtt_proxy_acl_denials_total", '{packet="subscribe"}'), 1)
        modes = {c["client_id"]: c["acl_mode"] for c in self.connections("kim")}
        self.assertEqual(modes, {"kim-phone": "enforce", "kim-browser": "report"})
        kim.stop()
        kim_ws.stop()

    # ------------------------------------------------------------ dashboards

    def test_auth_latency_is_a_histogram(self):
        self.app(self.system.a_port, self.user("max"), "max-phone").stop()
        text = request(self.system.a_admin, "GET", "/metrics")[2]
        self.assertIn("# TYPE mqtt_proxy_auth_latency_seconds histogram", text)
        buckets = [(m.group(1), float(m.group(2))) for m in
                   re.finditer(r'^mqtt_proxy_auth_latency_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M)]
        self.assertEqual(buckets[-1][0], "+Inf")
        counts = [c for _, c in buckets]
        self.assertEqual(counts, sorted(counts))  # cumulative
        self.assertEqual(counts[-1], metric(text, "mqtt_proxy_auth_latency_seconds_count"))
        self.assertGreaterEqual(counts[-1], 1)
        self.assertGreater(metric(text, "mqtt_proxy_auth_latency_seconds_sum"), 0)

    def test_the_grafana_dashboard_parses_and_uses_only_metrics_the_proxy_exports(self):
        with open(DASHBOARD) as f:
            dashboard = json.load(f)
        exprs = []

        def walk(node):
            if isinstance(node, dict):
                if isinstance(node.get("expr"), str):
                    exprs.append(node["expr"])
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)
        walk(dashboard)
        self.assertGreaterEqual(len(exprs), 10)
        used = {name for e in exprs for name in re.findall(r"\b(mqtt_proxy_[a-z_]+)", e)}
        text = request(self.system.a_admin, "GET", "/metrics")[2]
        exported = set(re.findall(r"^(mqtt_proxy_[a-z_]+)[{ ]", text, re.M))
        self.assertFalse(used - exported, f"the dashboard uses metrics the proxy does not export: {used - exported}")
        # Every area the issue names has a panel.
        for needed in ("mqtt_proxy_connections_open", "mqtt_proxy_authentications_total",
                       "mqtt_proxy_acl_denials_total", "mqtt_proxy_bytes_total", "mqtt_proxy_upstream_connect_failures_total",
                       "mqtt_proxy_handshake_failures_total", "mqtt_proxy_auth_cache_total", "mqtt_proxy_auth_breaker_open",
                       "mqtt_proxy_auth_latency_seconds_bucket", "mqtt_proxy_acl_report_total"):
            self.assertIn(needed, used)


if __name__ == "__main__":
    PROXY, AUTH_SERVER = sys.argv[1], sys.argv[2]
    PROXY = os.environ.get("MQTT_PROXY_BINARY") or PROXY  # run.sh: the ASan+UBSan build
    unittest.main(argv=sys.argv[:1], verbosity=2)
