#!/usr/bin/python3
"""MQTT 5.0 clients on a 3.1.1 broker (version bridging), with real peers: the
real auth-server, mqtt-proxy speaking 3.1.1 upstream to (a) Mosquitto, forced
with `protocol = "3.1.1"`, and (b) a RabbitMQ 3.10 node started here, found
by `protocol = "auto"` (it closes the connection on a 5.0 CONNECT). A paho
5.0 client completes the app flow: login, CONNECT, auth PUBLISH, subscribe
at QoS 1, publish, receive, will on an abrupt close and none after a clean
DISCONNECT. What the bridge drops is counted in /metrics; 5.0-only
subscription options get their SUBACK reason codes; a topic alias or a
subscription identifier in a PUBLISH ends the connection.
Usage: bridge_test.py PATH/TO/mqtt-proxy PATH/TO/auth-server"""
import json
import os
import queue
import re
import socket
import struct
import sys
import threading
import time
import unittest
import urllib.request

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from mosquitto import PASSWORD, USERNAME  # noqa: E402
from netutil import LoopbackServer, free_port, wait_for_port  # noqa: E402
from processes import AuthServer, ProcessGroup  # noqa: E402
from rabbitmq_node import RabbitNode  # noqa: E402
from wire import (connack_properties, connect_packet, mqtt_packet, mqtt_string, packet_body, read_packet,  # noqa: E402
                  subscribe_packet, varint)

PROXY = AUTH_SERVER = None
USER_PASSWORD = "pw-" + "x" * 12


def http(url, body=None):
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


class Proxy:
    """One mqtt-proxy in front of a broker, configured by a file like deploy/mqtt-proxy.toml."""

    def __init__(self, group, name, broker_port, kind, protocol, auth_url):
        self.group, self.name = group, name
        self.port, self.admin = free_port(), free_port()
        config = group.write(name + ".toml", f'[upstream]\naddress = "127.0.0.1:{broker_port}"\nusername = "{USERNAME}"\n'
                                             f'password = "{PASSWORD}"\nkind = "{kind}"\nprotocol = "{protocol}"\n')
        self.process = group.spawn(name, [PROXY, "--config", config, "--listen", f"127.0.0.1:{self.port}",
                                          "--admin", f"127.0.0.1:{self.admin}", "--auth-url", auth_url,
                                          "--auth-events", "false"])
        wait_for_port(self.port, timeout=30)

    def rss_kib(self):
        with open(f"/proc/{self.process.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    def metrics(self):
        text = http(f"http://127.0.0.1:{self.admin}/metrics")
        return {name: float(value) for name, value in re.findall(r"^(\S+) (\S+)$", text, re.M)}

    def log_text(self):
        return self.group.log_of(self.name)


class App:
    """A paho 5.0 app: CONNECT (optionally with a will), auth PUBLISH, answer."""

    def __init__(self, proxy, session, client_id, will=None):
        self.messages, self.auth_answers, self.subacks = queue.Queue(), queue.Queue(), queue.Queue()
        self.connected, self.disconnected = threading.Event(), threading.Event()
        self.client = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, flags, rc, props=None: self._connected(rc, props)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.subacks.put([code.value for code in codes])
        self.client.on_disconnect = self._on_disconnect
        self.client.reconnect_delay_set(60, 60)
        if will:
            self.client.will_set(will, b"gone", qos=1)
        self.client.connect("127.0.0.1", proxy.port, 30, clean_start=True)
        self.client.loop_start()
        assert self.connected.wait(10), "no CONNACK"
        self.client.publish("service/auth/" + session, b"", qos=1)
        answer = json.loads(self.auth_answers.get(timeout=10))
        assert answer["result"] == "ok", answer

    def _connected(self, rc, props):
        self.connack_properties = props
        self.connected.set()

    def _on_message(self, client, userdata, m):
        if m.topic.startswith("service/auth"):
            self.auth_answers.put(m.payload.decode())
        else:
            self.messages.put((m.topic, m.payload.decode(), m.properties))

    def _on_disconnect(self, client, userdata, rc, props=None):
        self.disconnected.set()

    def subscribe(self, topic, options=None, properties=None):
        self.client.subscribe(topic, options=options or SubscribeOptions(qos=1), properties=properties)
        return self.subacks.get(timeout=10)

    def abort(self):
        """Ends the connection without DISCONNECT, as a phone losing its network."""
        self.client.loop_stop()
        self.client.socket().shutdown(socket.SHUT_RDWR)
        self.client.socket().close()

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()


def publish_id_and_payload(first, body):
    """A 5.0 PUBLISH body: (packet id or None, payload)."""
    (length,) = struct.unpack(">H", body[:2])
    at = 2 + length
    packet_id = None
    if first & 0x06:
        (packet_id,) = struct.unpack(">H", body[at:at + 2])
        at += 2
    props, at = read_varint(body, at)
    return packet_id, body[at + props:]


def read_varint(data, at):
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


class Raw5:
    """A hand-rolled 5.0 client, for what paho 1.6 cannot show: it does not read
    the reason code of a DISCONNECT that carries no properties."""

    def __init__(self, port, session, client_id="raw", props=b""):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.sock.sendall(connect_packet(client_id, version=5, props=props))
        assert self.read()[0] == 0x20
        self.publish("service/auth/" + session, b"")
        first, body = self.read()
        assert first >> 4 == 3 and b'"ok"' in body, body

    def publish(self, topic, payload, props=b""):
        self.sock.sendall(mqtt_packet(0x30, mqtt_string(topic) + varint(len(props)) + props + payload))

    def read(self):
        """(first byte, body) of the next packet; (None, b"") when the connection ends."""
        try:
            packet, self.buffer = read_packet(self.sock, self.buffer)
        except EOFError:
            return None, b""
        return packet[0], packet_body(packet)

    def publishes(self, count, timeout):
        """The (packet id, payload) of the PUBLISHes that arrive within `timeout`, at most `count`."""
        got = []
        self.sock.settimeout(timeout)
        try:
            while len(got) < count:
                first, body = self.read()
                if first is None:
                    break
                if first >> 4 == 3:
                    got.append(publish_id_and_payload(first, body))
        except socket.timeout:
            pass
        finally:
            self.sock.settimeout(10)
        return got

    def disconnect_reason(self):
        """The reason code of the server's DISCONNECT (0x00 when it has none)."""
        while True:
            first, body = self.read()
            if first is None:
                return None
            if first == 0xE0:
                return body[0] if body else 0


class BridgeFlow:
    """The checks, run against each broker (subclasses set up `cls.proxy`)."""
    system = None

    @classmethod
    def start_auth(cls):
        cls.auth = AuthServer(cls.group, AUTH_SERVER)
        cls.auth_url = cls.auth.url

    @classmethod
    def tearDownClass(cls):
        cls.group.close()

    def login(self, user):
        self.auth.add_user(user, USER_PASSWORD, timeout=60)
        return self.auth.login(user, USER_PASSWORD)

    def app(self, user, client_id, **kwargs):
        if user not in self.sessions:
            self.sessions[user] = self.login(user)
        app = App(self.proxy, self.sessions[user], client_id, **kwargs)
        self.apps.append(app)
        return app

    def setUp(self):
        self.apps = []
        if not hasattr(type(self), "sessions"):
            type(self).sessions = {}

    def tearDown(self):
        for app in self.apps:
            app.client.loop_stop()
            try:
                app.client.disconnect()
            except Exception:  # noqa: BLE001 (already closed)
                pass

    def user(self, name):
        return self.prefix + name

    def test_app_flow_subscribe_publish_receive_with_properties_dropped_and_counted(self):
        u = self.user("flow")
        app = self.app(u, "phone")
        props = app.connack_properties
        self.assertEqual(props.SubscriptionIdentifierAvailable, 0)
        self.assertFalse(hasattr(props, "TopicAliasMaximum") and props.TopicAliasMaximum)
        before = self.proxy.metrics()
        self.assertEqual(app.subscribe(f"private/{u}/#"), [1])
        out = Properties(PacketTypes.PUBLISH)
        out.UserProperty = ("trace", "42")
        out.MessageExpiryInterval = 60
        out.ContentType = "text/plain"
        out.ResponseTopic = f"private/{u}/reply"
        out.CorrelationData = b"req-1"
        out.PayloadFormatIndicator = 1
        app.client.publish(f"private/{u}/note", b"hello", qos=1, properties=out).wait_for_publish(10)
        topic, payload, received = app.messages.get(timeout=10)
        self.assertEqual((topic, payload), (f"private/{u}/note", "hello"))
        # The broker speaks 3.1.1: none of the properties came through, and each is counted.
        self.assertFalse(hasattr(received, "UserProperty"))
        self.assertFalse(hasattr(received, "CorrelationData"))
        after = self.proxy.metrics()
        for name in ("user_property", "message_expiry_interval", "content_type", "response_topic", "correlation_data",
                     "payload_format_indicator"):
            key = f'mqtt_proxy_bridge_dropped_total{{property="{name}"}}'
            self.assertGreaterEqual(after[key] - before[key], 1, name)
        self.assertGreaterEqual(after["mqtt_proxy_bridged_connections_total"], 1)
        # UNSUBSCRIBE: the 5.0 UNSUBACK the proxy builds; nothing arrives afterwards.
        done = threading.Event()
        app.client.on_unsubscribe = lambda c, u_, mid, props, codes: done.set()
        app.client.unsubscribe(f"private/{u}/#")
        self.assertTrue(done.wait(10))
        app.client.publish(f"private/{u}/note", b"unheard", qos=1).wait_for_publish(10)
        with self.assertRaises(queue.Empty):
            app.messages.get(timeout=1.5)

    def test_will_on_abrupt_close_and_none_after_a_clean_disconnect(self):
        u = self.user("will")
        watcher = self.app(u, "watcher")
        self.assertEqual(watcher.subscribe(f"private/{u}/status"), [1])
        dropper = self.app(u, "dropper", will=f"private/{u}/status")
        dropper.abort()
        self.assertEqual(watcher.messages.get(timeout=15)[:2], (f"private/{u}/status", "gone"))
        polite = self.app(u, "polite", will=f"private/{u}/status")
        polite.stop()
        with self.assertRaises(queue.Empty):
            watcher.messages.get(timeout=3)

    def test_unbridgeable_subscription_options_get_their_reason_codes(self):
        u = self.user("opts")
        app = self.app(u, "phone")
        before = self.proxy.metrics()["mqtt_proxy_bridge_refused_subscriptions_total"]
        self.assertEqual(app.subscribe(f"private/{u}/a", SubscribeOptions(qos=1, noLocal=True)), [0x83])
        self.assertEqual(app.subscribe(f"private/{u}/b", SubscribeOptions(qos=1, retainAsPublished=True)), [0x83])
        self.assertEqual(app.subscribe(f"private/{u}/c", SubscribeOptions(qos=1, retainHandling=1)), [0x83])
        with_id = Properties(PacketTypes.SUBSCRIBE)
        with_id.SubscriptionIdentifier = 7
        self.assertEqual(app.subscribe(f"private/{u}/d", properties=with_id), [0xA1])
        self.assertEqual(self.proxy.metrics()["mqtt_proxy_bridge_refused_subscriptions_total"] - before, 4)
        # Still connected and working: a plain subscription is granted and delivers.
        self.assertEqual(app.subscribe(f"private/{u}/e"), [1])
        app.client.publish(f"private/{u}/e", b"fine", qos=1).wait_for_publish(10)
        self.assertEqual(app.messages.get(timeout=10)[:2], (f"private/{u}/e", "fine"))
        self.assertEqual(app.subscribe(f"$share/g/private/{u}/e"), [self.shared_code])

    def raw(self, user):
        if user not in self.sessions:
            self.sessions[user] = self.login(user)
        client = Raw5(self.proxy.port, self.sessions[user])
        self.addCleanup(client.sock.close)
        return client

    def test_hostile_topic_alias_is_0x94(self):
        u = self.user("alias")
        client = self.raw(u)
        client.publish(f"private/{u}/x", b"aliased", props=b"\x23\x00\x01")  # Topic Alias 1
        self.assertEqual(client.disconnect_reason(), 0x94)

    def test_hostile_subscription_identifier_in_publish_is_0x82(self):
        u = self.user("subid")
        client = self.raw(u)
        client.publish(f"private/{u}/x", b"bad", props=b"\x0b\x03")  # Subscription Identifier 3
        self.assertEqual(client.disconnect_reason(), 0x82)

    def test_the_clients_receive_maximum_holds_deliveries_the_3_1_1_broker_would_send(self):
        """A 5.0 client with Receive Maximum 2 that does not acknowledge gets 2
        QoS 1 deliveries, not the broker's own window (Mosquitto 20, RabbitMQ's
        prefetch 10): the proxy holds the rest, in order, until it does."""
        u = self.user("rmax")
        if u not in self.sessions:
            self.sessions[u] = self.login(u)
        slow = Raw5(self.proxy.port, self.sessions[u], client_id="slow", props=b"\x21\x00\x02")  # Receive Maximum 2
        self.addCleanup(slow.sock.close)
        slow.sock.sendall(subscribe_packet(1, f"private/{u}/rm", 1, version=5))
        first, body = slow.read()
        self.assertEqual((first, body[-1:]), (0x90, b"\x01"), "SUBACK, QoS 1 granted")
        sender = self.app(u, "sender")
        for i in range(6):
            sender.client.publish(f"private/{u}/rm", f"m{i}".encode(), qos=1).wait_for_publish(10)
        got = slow.publishes(6, timeout=2)
        self.assertEqual([payload for _, payload in got], [b"m0", b"m1"], "two in flight, no more")
        slow.sock.sendall(mqtt_packet(0x40, struct.pack(">H", got[0][0])))  # PUBACK the first
        more = slow.publishes(6, timeout=2)
        self.assertEqual([payload for _, payload in more], [b"m2"], "one acknowledged, one more")
        got += more
        for packet_id, _ in got[1:3]:
            slow.sock.sendall(mqtt_packet(0x40, struct.pack(">H", packet_id)))
        got += slow.publishes(2, timeout=10)
        for packet_id, _ in got[3:5]:
            slow.sock.sendall(mqtt_packet(0x40, struct.pack(">H", packet_id)))
        got += slow.publishes(1, timeout=10)
        self.assertEqual([payload for _, payload in got], [f"m{i}".encode() for i in range(6)], "in order")

    def test_hostile_client_that_never_acknowledges_costs_bounded_memory(self):
        """Receive Maximum 1 and no PUBACK, then a flood of 16 MiB of QoS 0
        behind the held delivery: the proxy holds at most about its write
        high-water mark (1 MiB) and stops reading the broker side; the client is
        served again once it acknowledges."""
        u = self.user("hoard")
        if u not in self.sessions:
            self.sessions[u] = self.login(u)
        hoarder = Raw5(self.proxy.port, self.sessions[u], client_id="hoarder", props=b"\x21\x00\x01")
        self.addCleanup(hoarder.sock.close)
        hoarder.sock.sendall(subscribe_packet(1, f"private/{u}/h", 1, version=5))
        self.assertEqual(hoarder.read()[0], 0x90)
        flooder = self.app(u, "flooder")
        for payload in (b"first", b"second"):
            flooder.client.publish(f"private/{u}/h", payload, qos=1).wait_for_publish(10)
        first = hoarder.publishes(2, timeout=2)
        self.assertEqual([p for _, p in first], [b"first"], "the second waits for the first's PUBACK")
        before, peak, stop = self.proxy.rss_kib(), [0], threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], self.proxy.rss_kib())
                time.sleep(0.01)
        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            for _ in range(256):
                flooder.client.publish(f"private/{u}/h", b"x" * 65536, qos=0)
            flooder.client.publish(f"private/{u}/h", b"flushed", qos=1).wait_for_publish(30)
            time.sleep(1)
        finally:
            stop.set()
            sampler.join()
        grew = peak[0] - before
        print(f"\nproxy VmRSS {before} KiB, peak +{grew} KiB while 16 MiB waited for an acknowledgement", file=sys.stderr)
        if os.environ.get("MQTT_PROXY_SANITIZED") != "1":  # ASan's shadow memory and quarantine make RSS meaningless
            self.assertLess(grew, 4 * 1024, "held deliveries stop at the high-water mark")
        hoarder.sock.sendall(mqtt_packet(0x40, struct.pack(">H", first[0][0])))
        self.assertEqual([p for _, p in hoarder.publishes(1, timeout=10)], [b"second"], "served again, in order")

    def test_polite_raw_client_stays_connected(self):
        """The same raw client without the hostile property: its PUBLISH goes through."""
        u = self.user("polite")
        watcher = self.app(u, "watcher")
        self.assertEqual(watcher.subscribe(f"private/{u}/x"), [1])
        client = self.raw(u)
        client.publish(f"private/{u}/x", b"plain")
        self.assertEqual(watcher.messages.get(timeout=10)[:2], (f"private/{u}/x", "plain"))
        client.sock.sendall(b"\xe0\x00")


class FakeBroker(LoopbackServer):
    """Reads packets until EOF and hands each to answer(sock, kind, packet),
    which returns False to end the connection."""

    def serve(self, sock):
        buffer = b""
        with sock:
            try:
                while True:
                    packet, buffer = read_packet(sock, buffer)
                    if not self.answer(sock, packet[0] >> 4, packet):
                        return
            except (EOFError, OSError):
                return

    @staticmethod
    def protocol_level(connect):
        return connect[connect.index(b"MQTT") + 4]


class OldBroker(FakeBroker):
    """A broker that speaks only 3.1.1, as RabbitMQ 3.10 does: it closes the
    connection on a 5.0 CONNECT, accepts a 3.1.1 one and answers PINGREQ and
    SUBSCRIBE. Records (protocol level, CONNECT bytes) of each CONNECT."""

    def __init__(self, port):
        self.connects = []
        super().__init__(port=port)

    def answer(self, sock, kind, packet):
        if kind == 1:
            level = self.protocol_level(packet)
            self.connects.append((level, packet))
            if level != 4:
                return False
            sock.sendall(b"\x20\x02\x00\x00")
        elif kind == 8:
            body = packet_body(packet)
            sock.sendall(b"\x90\x03" + body[:2] + bytes([body[-1]]))
        elif kind == 12:
            sock.sendall(b"\xd0\x00")
        return kind != 14


class LimitedBroker(FakeBroker):
    """A 5.0 broker that takes QoS 1 at most and keeps no retained messages
    (Mosquitto's `max_qos 1`, `retain_available false`): its CONNACK to a
    5.0 CONNECT says so (Maximum QoS 1, Retain Available 0). Accepts 3.1.1
    too; answers PINGREQ; ends on DISCONNECT."""

    CONNACK_V5 = b"\x20\x07\x00\x00\x04\x24\x01\x25\x00"

    def answer(self, sock, kind, packet):
        if kind == 1:
            sock.sendall(self.CONNACK_V5 if self.protocol_level(packet) == 5 else b"\x20\x02\x00\x00")
        elif kind == 12:
            sock.sendall(b"\xd0\x00")
        return kind != 14


class RefusingBroker(LoopbackServer):
    """A 5.0 broker that refuses the proxy's credentials: CONNACK 0x86 to every CONNECT."""

    def serve(self, sock):
        with sock:
            try:
                read_packet(sock, b"")
                sock.sendall(b"\x20\x03\x00\x86\x00")
            except (EOFError, OSError):
                return


def proxy_connack_properties(port, client_id):
    """The properties of the CONNACK the proxy answers a 5.0 CONNECT with (auth-PUBLISH mode: its own)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(connect_packet(client_id, version=5))
        packet, _ = read_packet(sock, b"")
    return connack_properties(packet)


class BrokerDownAtStart(unittest.TestCase):
    """A broker that is down when the proxy starts: the proxy asks again
    until it answers. `protocol = "auto"` with a 3.1.1-only broker: 5.0
    clients are bridged once it is up, not refused for as long as the proxy
    runs. A 5.0 broker's limits: new clients are told them once it is up."""

    def test_auto_asks_again_until_the_broker_answers(self):
        group = ProcessGroup("bridge-late-", must_stop=True)
        self.addCleanup(group.close)
        auth = AuthServer(group, AUTH_SERVER)
        broker_port = free_port()
        proxy = Proxy(group, "mqtt-proxy", broker_port, "rabbitmq", "auto", auth.url)
        self.assertIn("not detected", proxy.log_text())
        broker = OldBroker(broker_port)
        self.addCleanup(broker.close)
        deadline = time.monotonic() + 20
        while "3.1.1 (5.0 clients bridged)" not in proxy.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertIn("3.1.1 (5.0 clients bridged)", proxy.log_text())
        auth.add_user("late", USER_PASSWORD, timeout=60)
        app = App(proxy, auth.login("late", USER_PASSWORD), "late5")  # asserts the auth answer is ok
        self.addCleanup(app.stop)
        levels = [level for level, connect in broker.connects if b"late5" in connect]
        self.assertEqual(levels, [4], "the 5.0 client reached the broker as 3.1.1")

    def test_limits_are_learned_once_the_broker_answers(self):
        """The broker's Maximum QoS and Retain Available, which the proxy states in its own CONNACK, are
        asked again until the broker answers: new 5.0 clients are then told them. Whether the version is
        found late too ("auto") or set."""
        MAXIMUM_QOS, RETAIN_AVAILABLE = 0x24, 0x25
        for protocol in ("auto", "5.0"):
            with self.subTest(protocol=protocol):
                group = ProcessGroup("limits-late-", must_stop=True)
                self.addCleanup(group.close)
                broker_port = free_port()
                no_auth = f"http://127.0.0.1:{free_port()}"  # the proxy's own CONNACK needs no auth answer
                proxy = Proxy(group, "mqtt-proxy", broker_port, "mosquitto", protocol, no_auth)
                self.assertIn("broker limits not learned", proxy.log_text())
                told = proxy_connack_properties(proxy.port, "early")
                self.assertNotIn(MAXIMUM_QOS, told, "nothing learned yet: QoS 2 (the default)")
                broker = LimitedBroker(port=broker_port)
                self.addCleanup(broker.close)
                deadline, n = time.monotonic() + 30, 0
                while MAXIMUM_QOS not in told and time.monotonic() < deadline:
                    time.sleep(0.2)
                    n += 1
                    told = proxy_connack_properties(proxy.port, f"late{n}")
                self.assertEqual(told.get(MAXIMUM_QOS), 1, "Maximum QoS learned late")
                self.assertEqual(told.get(RETAIN_AVAILABLE), 0, "Retain Available learned late")
                self.assertIn("broker limits learned from", proxy.log_text())


    def test_a_broker_that_refuses_the_probe_ends_the_asking(self):
        """Bad upstream credentials: asking again changes nothing, so the proxy stops, says so, and keeps
        advertising the configured limits (none here)."""
        group = ProcessGroup("limits-refused-", must_stop=True)
        self.addCleanup(group.close)
        broker_port = free_port()
        proxy = Proxy(group, "mqtt-proxy", broker_port, "mosquitto", "5.0", f"http://127.0.0.1:{free_port()}")
        self.assertIn("advertising the configured ones until the broker answers", proxy.log_text())
        broker = RefusingBroker(port=broker_port)
        self.addCleanup(broker.close)
        deadline = time.monotonic() + 30
        while "refused the probe" not in proxy.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertRegex(proxy.log_text(), r"broker limits not learned \(the broker refused the probe: [^)]*\); "
                                           r"advertising the configured ones\n")
        self.assertNotIn(0x24, proxy_connack_properties(proxy.port, "after"), "no Maximum QoS: none configured")


class OnMosquitto(BridgeFlow, unittest.TestCase):
    prefix = "mq"
    shared_code = 1  # Mosquitto shares subscriptions for 3.1.1 clients too

    @classmethod
    def setUpClass(cls):
        cls.group = ProcessGroup("bridge-mosquitto-", must_stop=True)
        _, port = cls.group.mosquitto()
        cls.start_auth()
        cls.proxy = Proxy(cls.group, "mqtt-proxy", port, "mosquitto", "3.1.1", cls.auth_url)


class OnRabbitMQ(BridgeFlow, unittest.TestCase):
    prefix = "rb"
    shared_code = 0x9E  # RabbitMQ 3.10 has no $share: refused, not passed on as a plain filter

    @classmethod
    def setUpClass(cls):
        cls.group = ProcessGroup("bridge-rabbitmq-", must_stop=True)
        cls.rabbit = RabbitNode(cls.group.path("rabbitmq"), USERNAME, PASSWORD)
        cls.group.at_close(cls.rabbit.stop)
        try:
            cls.rabbit.start()
            cls.start_auth()
            cls.proxy = Proxy(cls.group, "mqtt-proxy", cls.rabbit.port, "rabbitmq", "auto", cls.auth_url)
        except Exception:
            cls.group.close()
            raise

    def test_an_amqp_consumer_gets_the_payload_without_5_0_properties(self):
        """webos.topic: the bridged 5.0 publisher's message reaches AMQP as the payload it sent, and the
        properties the bridge dropped appear nowhere (not as AMQP headers either)."""
        import pika
        u = self.user("amqp")
        connection = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", self.rabbit.port + 1, "/", pika.PlainCredentials(USERNAME, PASSWORD)))
        self.addCleanup(connection.close)
        channel = connection.channel()
        queue_name = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue_name, "webos.topic", routing_key=f"private.{u}.device")
        app = self.app(u, "phone")
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = ("trace", "7")
        props.ContentType = "application/json"
        app.client.publish(f"private/{u}/device", b'{"t":21}', qos=1, properties=props).wait_for_publish(10)
        deadline = time.time() + 10
        while time.time() < deadline:
            method, header, body = channel.basic_get(queue_name, auto_ack=True)
            if method:
                break
            time.sleep(0.1)
        self.assertIsNotNone(method, "nothing reached the AMQP queue")
        self.assertEqual(body, b'{"t":21}')
        self.assertNotIn("trace", json.dumps(header.headers or {}, default=str))
        self.assertNotEqual(header.content_type, "application/json")

    def test_auto_found_that_rabbitmq_refuses_5_0(self):
        self.assertIn("upstream protocol: 3.1.1 (5.0 clients bridged)", self.proxy.log_text())
        before = self.proxy.metrics()["mqtt_proxy_bridged_connections_total"]
        self.app(self.user("auto"), "phone")
        self.assertEqual(self.proxy.metrics()["mqtt_proxy_bridged_connections_total"] - before, 1)


if __name__ == "__main__":
    PROXY, AUTH_SERVER = sys.argv[1], sys.argv[2]
    PROXY = os.environ.get("MQTT_PROXY_BINARY") or PROXY  # run.sh: the ASan+UBSan build
    del sys.argv[1:3]
    unittest.main(verbosity=2)
