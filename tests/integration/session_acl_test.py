#!/usr/bin/python3
"""The session's guarantees over real sockets: mqtt-proxy between paho / raw
clients and a real Mosquitto (max_keepalive 10, max_inflight_messages 10),
with a stub API server whose answers the tests change as they go.

- the delivery ACL: a narrowed re-authentication unsubscribes upstream and
  stops delivery at once; a resumed persistent session cannot deliver what
  the new ACL does not allow, retained or queued; refused QoS 1 / QoS 2
  deliveries are completed with the broker, so its in-flight window stays open;
- held packets: CONNECT + auth PUBLISH + PUBLISH + DISCONNECT in one write
  delivers the PUBLISH and no will; with a bad token nothing passes;
- the broker's limits: a client with keep-alive 60 stays connected behind a
  broker that allows 10 (the proxy pings it);
- protocol: a Subscription Identifier in a client PUBLISH ends it with 0x82.

Usage: session_acl_test.py PATH/TO/mqtt-proxy"""
import json
import os
import queue
import socket
import struct
import sys
import threading
import time
import unittest
import urllib.request

import paho.mqtt.client as mqtt

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from netutil import free_port  # noqa: E402
from paho_app import granted_codes  # noqa: E402
from processes import OneSystemPerClass, ProcessGroup, proxy_argv  # noqa: E402
from stub_auth import StubAuthServer  # noqa: E402
from wire import connect_packet, mqtt_packet, mqtt_string, publish_packet, read_packet, varint  # noqa: E402

PROXY = None
WIDE = {"publish": ["a/#", "b/#"], "subscribe": ["a/#", "b/#"]}
NARROW = {"publish": ["a/#", "b/#"], "subscribe": ["b/#"]}
# The stub answers from this dict at each call: tests point tokens at other ACLs.
SESSIONS = {
    "wide-token": {"user": "carol", "acl": WIDE},
    "narrow-token": {"user": "carol", "acl": NARROW},
}
BROKER_KEEPALIVE = 10  # Mosquitto's max_keepalive; direct clients must stay within it


class System(ProcessGroup):
    def __init__(self):
        super().__init__("session-acl-", must_stop=True)
        self.port, self.admin_port = free_port(), free_port()
        # Line-buffered, so the tests can read what the broker received as it happens.
        _, self.broker_port = self.mosquitto(
            [f"max_keepalive {BROKER_KEEPALIVE}", "max_inflight_messages 10", "log_dest stdout", "log_type all"],
            file_mode=0o644, line_buffered=True)
        self.auth = StubAuthServer(SESSIONS)
        self.at_close(self.auth.close)
        proxy_conf = self.write("proxy.toml", f'[upstream]\nkind = "mosquitto"\nmax_keep_alive = {BROKER_KEEPALIVE}\n')
        self.spawn("proxy", proxy_argv(PROXY, self.port, self.broker_port, self.auth.url, "--config", proxy_conf,
                                       admin_port=self.admin_port), ports=[self.port, self.admin_port])

    def metric(self, name_and_labels):
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5).read().decode()
        for line in text.splitlines():
            if line.startswith(name_and_labels + " "):
                return int(float(line.split()[-1]))
        raise AssertionError(f"no metric {name_and_labels}")

    def deliver_denials(self):
        return self.metric('mqtt_proxy_acl_denials_total{packet="publish",direction="deliver"}')

    def broker_log_text(self):
        return self.log_of("mosquitto")


class Direct:
    """A paho client on the broker itself (the proxy's account): publishes and watches."""

    def __init__(self, system, client_id, watch=None):
        self.messages = queue.Queue()
        self.client = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv311)
        self.client.username_pw_set("proxy", "proxy-secret")
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload.decode()))
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", system.broker_port, BROKER_KEEPALIVE)
        self.client.loop_start()
        if watch:
            self.client.subscribe(watch, qos=1)
            assert subscribed.wait(5)

    def publish(self, topic, payload, qos=1, retain=False):
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


class ProxyClient:
    """A paho client of the proxy that authenticates with the auth topic."""

    def __init__(self, system, client_id, version=mqtt.MQTTv311, clean=True, keepalive=30):
        self.messages, self.disconnected = queue.Queue(), threading.Event()
        self.granted = queue.Queue()
        kwargs = {} if version == mqtt.MQTTv5 else {"clean_session": clean}
        self.client = mqtt.Client(client_id=client_id, protocol=version, **kwargs)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload.decode(), m.qos))
        self.client.on_disconnect = lambda c, u, *rest: self.disconnected.set()
        self.client.on_subscribe = lambda c, u, mid, granted, *rest: self.granted.put(granted_codes(granted))
        self.client.reconnect_delay_set(60, 60)
        self.client.connect("127.0.0.1", system.port, keepalive)
        self.client.loop_start()

    def authenticate(self, token):
        self.client.publish("service/auth/" + token, b"", qos=1)
        while True:
            topic, payload, _ = self.messages.get(timeout=5)
            if topic.startswith("service/auth/"):
                return json.loads(payload)

    def subscribe(self, *filters):
        self.client.subscribe([(f, 1) for f in filters])
        return self.granted.get(timeout=5)

    def received(self, wait=1.5):
        """Every message (not the proxy's auth answers) within `wait` seconds."""
        out, deadline = [], time.time() + wait
        while True:
            try:
                topic, payload, _ = self.messages.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                return out
            if not topic.startswith("service/auth/"):
                out.append((topic, payload))

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


class SessionAcl(OneSystemPerClass, unittest.TestCase):
    make_system = System

    def setUp(self):
        SESSIONS["wide-token"] = {"user": "carol", "acl": WIDE}
        SESSIONS["narrow-token"] = {"user": "carol", "acl": NARROW}

    def test_narrowed_reauthentication_unsubscribes_upstream_and_stops_delivery(self):
        publisher = Direct(self.system, "pub-narrow")
        c = ProxyClient(self.system, "narrowed")
        self.assertEqual(c.authenticate("wide-token")["result"], "ok")
        self.assertEqual(c.subscribe("a/#", "b/#"), [1, 1])
        publisher.publish("a/x", "before")
        self.assertEqual(c.received(), [("a/x", "before")])

        self.assertEqual(c.authenticate("narrow-token")["result"], "ok")
        denials = self.system.deliver_denials()
        publisher.publish("a/x", "after")
        publisher.publish("b/y", "allowed")
        self.assertEqual(c.received(), [("b/y", "allowed")])
        self.assertFalse(c.disconnected.is_set())
        # The broker itself dropped the subscription: a/x no longer even reaches the proxy.
        self.assertEqual(self.system.deliver_denials(), denials)
        self.assertRegex(self.system.broker_log_text(), r"Received UNSUBSCRIBE from 5:carol:narrowed")
        # And the client keeps working on what it still may do.
        c.client.publish("b/self", "mine", qos=1)
        self.assertEqual(c.received(), [("b/self", "mine")])
        c.close()
        publisher.close()

    def resumed_session(self, client_id):
        """A persistent session subscribed to a/# and b/# under the wide ACL, now offline."""
        c = ProxyClient(self.system, client_id, clean=False)
        self.assertEqual(c.authenticate("wide-token")["result"], "ok")
        self.assertEqual(c.subscribe("a/#", "b/#"), [1, 1])
        c.close()
        time.sleep(0.3)

    def test_resumed_persistent_session_delivers_nothing_outside_the_new_acl(self):
        self.resumed_session("resumer")
        publisher = Direct(self.system, "pub-resume")
        publisher.publish("a/retained", "secret", retain=True)  # queued for the offline session, and retained
        publisher.publish("a/queued", "secret")
        publisher.publish("b/queued", "fine")
        denials = self.system.deliver_denials()
        c = ProxyClient(self.system, "resumer", clean=False)
        self.assertEqual(c.authenticate("narrow-token")["result"], "ok")
        self.assertEqual(c.received(), [("b/queued", "fine")])
        # The broker did send them (its session kept a/#): the proxy refused them.
        self.assertGreaterEqual(self.system.deliver_denials() - denials, 2)
        publisher.publish("a/retained", "", retain=True)  # clear the retained message
        c.close()
        publisher.close()

    def test_refused_qos1_and_qos2_deliveries_do_not_clog_the_broker(self):
        self.resumed_session("clogger")
        c = ProxyClient(self.system, "clogger", clean=False)
        self.assertEqual(c.authenticate("narrow-token")["result"], "ok")
        publisher = Direct(self.system, "pub-clog")
        # Far more than max_inflight_messages (10): if the proxy did not
        # complete them with the broker, the window would stay full.
        for i in range(30):
            publisher.publish("a/x", f"q1-{i}", qos=1)
        for i in range(30):
            publisher.publish("a/y", f"q2-{i}", qos=2)
        publisher.publish("b/ok", "still flowing", qos=1)
        publisher.publish("b/ok2", "still flowing", qos=2)
        self.assertEqual(c.received(wait=3), [("b/ok", "still flowing"), ("b/ok2", "still flowing")])
        self.assertFalse(c.disconnected.is_set())
        c.close()
        publisher.close()

    def pipelined(self, token, client_id):
        watcher = Direct(self.system, "watch-" + client_id, watch="a/#")
        will_topic, will_payload = b"a/will", b"died"
        flags = 0x02 | 0x04 | 0x08  # clean session, will, will QoS 1
        connect = mqtt_packet(0x10, mqtt_string("MQTT") + bytes([4, flags]) + struct.pack(">H", 30) +
                              mqtt_string(client_id) + struct.pack(">H", len(will_topic)) + will_topic +
                              struct.pack(">H", len(will_payload)) + will_payload)
        data = (connect + publish_packet("service/auth/" + token, b"") + publish_packet("a/piped", b"hello") +
                mqtt_packet(0xE0, b""))
        sock = socket.create_connection(("127.0.0.1", self.system.port), timeout=10)
        sock.sendall(data)  # one write
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(4096):
            pass
        sock.close()
        got = []
        deadline = time.time() + 2
        while time.time() < deadline:
            try:
                got.append(watcher.messages.get(timeout=0.2))
            except queue.Empty:
                pass
        watcher.close()
        return got

    def test_pipelined_connect_auth_publish_disconnect_delivers_and_fires_no_will(self):
        self.assertEqual(self.pipelined("wide-token", "piped"), [("a/piped", "hello")])

    def test_pipelined_with_a_bad_token_delivers_nothing_and_counts_the_dropped_packets(self):
        dropped = self.system.metric("mqtt_proxy_held_packets_dropped_total")
        self.assertEqual(self.pipelined("forged-token", "piped-bad"), [])
        self.assertEqual(self.system.metric("mqtt_proxy_held_packets_dropped_total") - dropped, 2)

    def test_idle_clients_stay_connected_behind_a_shorter_broker_keep_alive(self):
        clients = {version: ProxyClient(self.system, f"idle-{version}", version=version, keepalive=60)
                   for version in (mqtt.MQTTv311, mqtt.MQTTv5)}
        for c in clients.values():
            self.assertEqual(c.authenticate("wide-token")["result"], "ok")
            self.assertEqual(c.subscribe("b/#"), [1])
        time.sleep(62)  # a minute: six times the broker's keep-alive; the clients ping only at 60 s
        publisher = Direct(self.system, "pub-idle")
        publisher.publish("b/wake", "still here")
        for version, c in clients.items():
            self.assertFalse(c.disconnected.is_set(), version)
            self.assertEqual(c.received(), [("b/wake", "still here")], version)
            c.close()
        publisher.close()
        # The broker would have dropped them at 15 s: it saw no keep-alive timeout.
        self.assertNotRegex(self.system.broker_log_text(), r"Client 5:carol:idle-\d+ has exceeded timeout")

    def test_subscription_identifier_in_a_client_publish_is_a_protocol_error(self):
        sock = socket.create_connection(("127.0.0.1", self.system.port), timeout=10)
        auth = mqtt_packet(0x30, mqtt_string("service/auth/wide-token") + b"\x00")
        sock.sendall(connect_packet("subid", version=5) + auth)
        connack, buffer = read_packet(sock, b"")
        self.assertEqual(connack[0], 0x20)  # CONNACK
        ok, buffer = read_packet(sock, buffer)
        self.assertEqual(ok[0] & 0xF0, 0x30)
        self.assertIn(b'"ok"', ok)
        props = b"\x0b" + varint(7)  # Subscription Identifier 7
        sock.sendall(mqtt_packet(0x30, mqtt_string("a/x") + varint(len(props)) + props + b"payload"))
        disconnect, buffer = read_packet(sock, buffer)
        self.assertEqual(disconnect[0], 0xE0)
        self.assertEqual(disconnect[2], 0x82)  # Protocol Error [MQTT-3.3.4-6]
        sock.close()
        # The same PUBLISH without it is relayed (the polite client beside the hostile one).
        watcher = Direct(self.system, "watch-subid", watch="a/x")
        c = ProxyClient(self.system, "polite-subid", version=mqtt.MQTTv5)
        self.assertEqual(c.authenticate("wide-token")["result"], "ok")
        c.client.publish("a/x", "plain", qos=1)
        self.assertEqual(watcher.messages.get(timeout=5), ("a/x", "plain"))
        c.close()
        watcher.close()


if __name__ == "__main__":
    PROXY = sys.argv.pop(1)
    unittest.main(verbosity=2)
