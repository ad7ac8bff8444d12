#!/usr/bin/python3
"""Several upstreams (net/upstream_pool): the real proxy in front of in-tree
test-broker nodes, a port that refuses and a listener that never accepts
(its SYNs are dropped: a black-holed node), paho clients, a stub API server.
Usage: failover_test.py MQTT_PROXY TEST_BROKER"""
import json
import os
import queue
import socket
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request

import paho.mqtt.client as mqtt

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
from netutil import LoopbackServer, free_port  # noqa: E402
from processes import ProcessGroup  # noqa: E402
from stub_auth import StubAuthServer  # noqa: E402
from wire import read_packet  # noqa: E402

PROXY, BROKER = None, None
ACL = {"publish": ["a/#"], "subscribe": ["a/#"]}


def refusing_port():
    return free_port()  # nobody listens there


class BlackHole:
    """A listener whose accept queue is full: the kernel drops further SYNs,
    so a connect to it neither succeeds nor fails until its deadline."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.fillers = []
        for _ in range(3):  # fill the accept queue (backlog 0 still takes one or two)
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(s)

    def close(self):
        for s in self.fillers + [self.listener]:
            s.close()


class SilentNode(LoopbackServer):
    """A node that accepts TCP connections, reads what comes and never
    answers: a broker still starting, a hung MQTT listener."""

    def __init__(self):
        self.received, self.ended = [], set()
        super().__init__(backlog=16)

    def serve(self, conn):
        stream = bytearray()
        self.received.append(stream)
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                self.ended.add(id(stream))
                return
            stream += data

    def got_connect_of(self, client_id):
        return any(client_id.encode() in data for data in self.received)

    def stream_of(self, client_id):
        return next(data for data in self.received if client_id.encode() in data)

    def wait_for_end_of(self, client_id, timeout=5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if id(self.stream_of(client_id)) in self.ended:
                return True
            time.sleep(0.05)
        return False


class LateNode(LoopbackServer):
    """A node that answers the CONNECT too late: its CONNACK goes out right
    after the proxy's DISCONNECT (the proxy has given up on it, and has yet to
    close), then it reads on to the proxy's end of the stream, waits for the
    proxy to close its socket, closes its own side and waits for the end.
    Records, with each CONNECT that was followed by a DISCONNECT, how the
    connection ended: "eof" (FIN both ways, no RST), or what went wrong."""

    TCP_CLOSE = 7  # tcp_info.tcpi_state of a connection that is over

    def __init__(self):
        self.endings = []  # (CONNECT bytes, how it ended)
        super().__init__(backlog=16)

    def serve(self, conn):
        buffer, connect = b"", b""
        try:
            ends = conn.getpeername(), conn.getsockname()
            while True:
                packet, buffer = read_packet(conn, buffer)
                if packet[0] >> 4 == 1:
                    connect = packet
                elif packet[0] == 0xE0:
                    break
            conn.sendall(b"\x20\x02\x00\x00")  # the late CONNACK
        except (EOFError, OSError):
            return  # a probe that gave up without DISCONNECT
        self.endings.append((connect, self._ending(conn, ends)))

    def _ending(self, conn, ends):
        try:
            while conn.recv(4096):
                pass
            # Only once the proxy has closed its socket (else the FIN below
            # could end the connection before the close, RST or not).
            if not self._wait_until_proxy_closed(ends):
                return "the proxy never closed its socket"
            conn.shutdown(socket.SHUT_WR)
        except OSError as e:
            return f"reset: {e}"
        deadline = time.monotonic() + 5
        while conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] != self.TCP_CLOSE:
            if time.monotonic() > deadline:
                return "the connection never ended"
            time.sleep(0.01)
        error = conn.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # an RST leaves EPIPE or ECONNRESET
        return "eof" if error == 0 else f"reset: {os.strerror(error)}"

    @staticmethod
    def _wait_until_proxy_closed(ends, timeout=5):
        """The proxy's end of this connection in /proc/net/tcp: a socket its
        process has closed has inode 0 (orphaned, or TIME_WAIT); after an RST
        it is gone."""
        (proxy_host, proxy_port), (node_host, node_port) = ends
        local, remote = f"0100007F:{proxy_port:04X}", f"0100007F:{node_port:04X}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open("/proc/net/tcp") as f:
                entries = [line.split() for line in f.readlines()[1:]]
            inodes = [fields[9] for fields in entries if fields[1] == local and fields[2] == remote]
            if not inodes or inodes == ["0"]:
                return True
            time.sleep(0.01)
        return False

    def ending_of(self, client_id, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for connect, ending in self.endings:
                if client_id.encode() in connect:
                    return ending
            time.sleep(0.05)
        return None


class UnavailableNode(LoopbackServer):
    """A node that answers every CONNECT with "server unavailable" (3.1.1
    return code 3, 5.0 reason 0x88) and closes: a broker shedding load."""

    def __init__(self):
        self.connects = []  # the CONNECTs received (the proxy's readiness probe sends some too)
        super().__init__(backlog=16)

    def serve(self, conn):
        with conn:
            connect = conn.recv(4096)
            if not connect:
                return
            self.connects.append(connect)
            level = connect[connect.index(b"MQTT") + 4]
            conn.sendall(b"\x20\x03\x00\x88\x00" if level == 5 else b"\x20\x02\x00\x03")

    def connects_of(self, client_id):
        return sum(client_id.encode() in connect for connect in self.connects)


class System(ProcessGroup):
    def __init__(self, nodes, extra_config="", brokers=()):
        """nodes: the proxy's upstream ports; those also in `brokers` get a test-broker."""
        super().__init__("failover-", must_stop=True)
        try:
            for port in brokers:
                self.spawn(f"test-broker-{port}", [BROKER, "--listen", f"127.0.0.1:{port}"], ports=[port])
            self.auth = StubAuthServer({"token": {"user": "carol", "acl": ACL}})
            self.at_close(self.auth.close)
            self.port, self.admin_port = free_port(), free_port()
            self.nodes = nodes
            addresses = ", ".join(f'"127.0.0.1:{p}"' for p in nodes)
            conf = self.write("proxy.toml",
                              f"[upstream]\naddresses = [{addresses}]\nconnect_timeout_ms = 4000\n{extra_config}\n")
            self.proxy = self.spawn(
                "proxy", [PROXY, "--config", conf, "--listen", f"127.0.0.1:{self.port}",
                          "--admin", f"127.0.0.1:{self.admin_port}", "--auth-url", self.auth.url, "--auth-events",
                          "false", "--threads", "2"], ports=[self.port, self.admin_port])
        except BaseException:
            self.close()
            raise

    def metrics(self):
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5).read().decode()
        return {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
                if line and not line.startswith("#")}

    def node_metric(self, name, port):
        return self.metrics()[f'mqtt_proxy_upstream_node_{name}{{node="127.0.0.1:{port}"}}']

    def readyz(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/readyz", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


class Client:
    """A paho 3.1.1 client of the proxy: CONNECT, auth PUBLISH, the answer."""

    def __init__(self, system, client_id, protocol=mqtt.MQTTv311):
        self.messages, self.granted = queue.Queue(), queue.Queue()
        self.client = mqtt.Client(client_id=client_id, protocol=protocol)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload.decode()))
        self.client.on_subscribe = lambda c, u, mid, granted: self.granted.put(granted)
        self.client.reconnect_delay_set(60, 60)
        self.client.connect("127.0.0.1", system.port, 30)
        self.client.loop_start()
        self.client.publish("service/auth/token", b"", qos=1)
        self.answer = None
        try:
            while self.answer is None:
                topic, payload = self.messages.get(timeout=10)
                if topic.startswith("service/auth/"):
                    self.answer = json.loads(payload)
        except queue.Empty:
            pass  # closed without an answer

    def subscribe(self, topic):
        self.client.subscribe(topic, qos=1)
        return self.granted.get(timeout=5)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


class Failover(unittest.TestCase):
    def test_new_connections_go_round_robin_over_healthy_nodes(self):
        ports = [free_port() for _ in range(3)]
        system = System(ports, brokers=ports)
        try:
            clients = [Client(system, f"rr{i}") for i in range(9)]
            for c in clients:
                self.assertEqual(c.answer["result"], "ok")
                self.assertEqual(c.subscribe("a/rr"), (1,))
            self.assertEqual([system.node_metric("connects_total", p) for p in ports], [3, 3, 3])
            for c in clients:
                c.close()
        finally:
            system.close()

    def test_refusing_and_black_holed_nodes_are_skipped_within_the_connect_timeout(self):
        refused, hole, good = refusing_port(), BlackHole(), free_port()
        self.addCleanup(hole.close)
        # A long backoff: the second client must not try the dead nodes again.
        system = System([refused, hole.port, good], "backoff_ms = 60000", brokers=[good])
        self.addCleanup(system.close)
        first = Client(system, "first")
        self.assertEqual(first.answer["result"], "ok")
        self.assertEqual(first.subscribe("a/x"), (1,))
        self.assertEqual(system.node_metric("failures_total", refused), 1)
        self.assertEqual(system.node_metric("failures_total", hole.port), 1)
        self.assertEqual(system.node_metric("up", refused), 0)
        self.assertEqual(system.node_metric("up", hole.port), 0)
        self.assertEqual(system.node_metric("connects_total", good), 1)
        second = Client(system, "second")
        self.assertEqual(second.answer["result"], "ok")
        self.assertEqual(system.node_metric("failures_total", refused), 1)
        self.assertEqual(system.node_metric("failures_total", hole.port), 1)
        self.assertEqual(system.node_metric("connects_total", good), 2)
        # The two clients share the one live node.
        second.subscribe("a/x")
        first.client.publish("a/x", b"through the live node", qos=1)
        self.assertEqual(second.messages.get(timeout=5), ("a/x", "through the live node"))
        # One node that accepts is enough to be ready.
        self.assertEqual(system.readyz()[0], 200)
        first.close()
        second.close()

    def test_a_node_that_accepts_but_never_answers_connect_is_skipped(self):
        silent, good = SilentNode(), free_port()
        self.addCleanup(silent.close)
        system = System([silent.port, good], "backoff_ms = 60000", brokers=[good])
        self.addCleanup(system.close)
        # The round robin starts at the first node: the silent one.
        first = Client(system, "first")
        self.assertEqual(first.answer["result"], "ok", "moved on to the node that answers")
        self.assertTrue(silent.got_connect_of("first"), "the silent node was tried first")
        self.assertEqual(system.node_metric("failures_total", silent.port), 1)
        self.assertEqual(system.node_metric("up", silent.port), 0)
        self.assertEqual(system.node_metric("connects_total", silent.port), 0)
        self.assertEqual(system.node_metric("connects_total", good), 1)
        self.assertIn("no answer to CONNECT", system.log_of("proxy"))
        # The silent node has the CONNECT and its will: it is told DISCONNECT
        # (so it would not publish the will of a client alive elsewhere) and FIN.
        self.assertTrue(silent.wait_for_end_of("first"), "the proxy ended the silent node's connection")
        self.assertTrue(silent.stream_of("first").endswith(b"\xe0\x00"), "DISCONNECT before the FIN")
        # Skipped while it backs off: the next clients go straight to the live node.
        second = Client(system, "second")
        third = Client(system, "third")
        self.assertEqual((second.answer["result"], third.answer["result"]), ("ok", "ok"))
        self.assertFalse(silent.got_connect_of("second") or silent.got_connect_of("third"))
        self.assertEqual(system.node_metric("connects_total", good), 3)
        third.subscribe("a/s")
        first.client.publish("a/s", b"past the silent node", qos=1)
        self.assertEqual(third.messages.get(timeout=5), ("a/s", "past the silent node"))
        for c in (first, second, third):
            c.close()

    def test_the_node_given_up_on_gets_fin_not_rst_when_its_connack_comes_late(self):
        """A CONNACK left unread when the proxy closes the socket would turn its FIN into an RST, and a
        broker that reads the RST first may publish the will: the proxy reads the late answer and drops it."""
        late, good = LateNode(), free_port()
        self.addCleanup(late.close)
        system = System([late.port, good], "backoff_ms = 60000", brokers=[good])
        self.addCleanup(system.close)
        first = Client(system, "first")  # the round robin starts at the late node
        self.addCleanup(first.close)
        self.assertEqual(first.answer["result"], "ok", "moved on to the node that answers")
        self.assertIn("no answer to CONNECT", system.log_of("proxy"))
        self.assertEqual(late.ending_of("first"), "eof", "DISCONNECT, then an orderly close")

    def test_a_node_that_answers_server_unavailable_is_skipped(self):
        for protocol, name in ((mqtt.MQTTv311, "3.1.1"), (mqtt.MQTTv5, "5.0")):
            with self.subTest(protocol=name):
                busy, good = UnavailableNode(), free_port()
                self.addCleanup(busy.close)
                system = System([busy.port, good], "backoff_ms = 60000", brokers=[good])
                self.addCleanup(system.close)
                # The round robin starts at the first node: the one shedding load.
                first = Client(system, "first", protocol)
                self.assertEqual(first.answer["result"], "ok", "served by the node that can")
                self.assertEqual(busy.connects_of("first"), 1, "the busy node was tried first")
                self.assertEqual(system.node_metric("failures_total", busy.port), 1)
                self.assertEqual(system.node_metric("up", busy.port), 0)
                self.assertEqual(system.node_metric("connects_total", good), 1)
                self.assertIn("server unavailable or busy", system.log_of("proxy"))
                second = Client(system, "second", protocol)
                self.assertEqual(second.answer["result"], "ok")
                self.assertEqual(busy.connects_of("second"), 0, "skipped while it backs off")
                for c in (first, second):
                    c.close()

    def test_no_node_accepts_the_client_is_refused_and_readyz_says_broker_unreachable(self):
        dead = [refusing_port(), refusing_port()]
        system = System(dead)
        try:
            client = Client(system, "stranded")
            self.assertIsNotNone(client.answer, "the proxy answers the auth PUBLISH before closing")
            self.assertNotEqual(client.answer["result"], "ok")
            self.assertEqual([system.node_metric("up", p) for p in dead], [0, 0])
            status, body = system.readyz()
            self.assertEqual(status, 503)
            self.assertIn("broker unreachable", body)
            client.client.loop_stop()
        finally:
            system.close()


if __name__ == "__main__":
    PROXY, BROKER = sys.argv[1], sys.argv[2]
    PROXY = os.environ.get("MQTT_PROXY_BINARY") or PROXY  # run.sh: the ASan+UBSan build
    del sys.argv[1:3]
    unittest.main(verbosity=2)
