#!/usr/bin/python3
"""A new session's path through the real mqtt-proxy, as the syscall savings of
issue 14 (rounds 4 and 5) change it: the peer address taken from accept() (no
getpeername), the validation's answer applied without a second post, no
shutdown() of the broker connection after a DISCONNECT (the broker closes it),
and the CONNACK held for the auth answer when both came in one read (one write).
Raw sockets against a real Mosquitto (and, for brokers that misbehave, a raw
fake broker), a stub API server that lets answers be cached (max-age) and
counts its calls. Each hostile case sits beside the polite one.

Usage: session_path_test.py PATH/TO/mqtt-proxy   (MQTT_PROXY_BINARY overrides)"""
import errno
import json
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from mosquitto import PASSWORD, USERNAME  # noqa: E402
from netutil import LoopbackServer, free_port, wait_for_port  # noqa: E402
from processes import ProcessGroup, proxy_argv  # noqa: E402
from stub_auth import StubAuthServer  # noqa: E402
from wire import connect_packet, mqtt_packet, mqtt_string, parse_mqtt, publish_fields, publish_packet  # noqa: E402
from wire import read_packet  # noqa: E402
from wire import subscribe_packet  # noqa: E402

PROXY = None
ACL = {"publish": ["private/alice/#"], "subscribe": ["private/alice/#"]}
DISCONNECT = b"\xe0\x00"
LINGER = 2.0  # connection_closing.cpp's linger_period


def caching_stub_auth():
    """Every token starting with "alice-" is alice's, answered with
    Cache-Control max-age=60 (the proxy caches it); the others are refused."""
    return StubAuthServer({}, anyone=lambda token: {"user": "alice", "acl": ACL} if token.startswith("alice-") else None,
                          max_age=60)


class FakeBroker(LoopbackServer):
    """A raw MQTT broker on a loopback port: answers every CONNECT with an
    accepting CONNACK (3.1.1 or 5.0 as asked) and records, per connection,
    its client id and what happened: "DISCONNECT", then "EOF" or "RST".
    With close_on_disconnect it closes as Mosquitto does; without, it keeps
    the connection open after a DISCONNECT (a broker that never closes)."""

    def __init__(self, close_on_disconnect):
        self.close_on_disconnect = close_on_disconnect
        self.connections = []  # {"client_id", "events": [...], "times": {event: monotonic}}
        self.hold_connack = None  # a threading.Event: each CONNACK waits until it is set
        self.close_at = None  # "accept": close each connection at once; "connect": on its CONNECT, unanswered
        self.lock = threading.Lock()
        super().__init__()

    def serve(self, sock):
        if self.close_at == "accept":
            sock.close()
            return
        record = {"client_id": None, "events": [], "times": {}}
        with self.lock:
            self.connections.append(record)

        def note(event):
            record["events"].append(event)
            record["times"][event] = time.monotonic()

        buffer = b""
        try:
            while True:
                packet, buffer = read_packet(sock, buffer)
                kind = packet[0] >> 4
                if kind == 1:
                    body = packet[2:] if packet[1] < 0x80 else packet[3:]
                    version = body[6]
                    at = 10
                    if version == 5:
                        at += 1 + body[10]  # property length (small)
                    (length,) = struct.unpack(">H", body[at:at + 2])
                    record["client_id"] = body[at + 2:at + 2 + length].decode()
                    record["segments_at_connect"] = segments_received(sock)
                    if self.close_at == "connect":
                        note("closed at CONNECT")
                        sock.close()
                        return
                    gate = self.hold_connack
                    if gate:
                        gate.wait(10)
                    sock.sendall(b"\x20\x03\x00\x00\x00" if version == 5 else b"\x20\x02\x00\x00")
                elif kind == 12:
                    sock.sendall(b"\xd0\x00")
                elif kind == 14:
                    note("DISCONNECT")
                    if self.close_on_disconnect:
                        sock.close()
                        return
        except EOFError:
            note("EOF")
        except ConnectionResetError:
            note("RST")
        except OSError:
            note("error")
        sock.close()

    def connection_of(self, client_id, timeout=5):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                for record in self.connections:
                    if record["client_id"] and record["client_id"].endswith(":" + client_id):
                        return record
            time.sleep(0.02)
        raise AssertionError(f"no broker connection for {client_id}")



def segments_received(sock):
    """(segments, segments with data) the socket has received: Linux's
    tcp_info tcpi_segs_in and tcpi_data_segs_in."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    (segs_in,) = struct.unpack_from("I", info, 140)
    (data_segs_in,) = struct.unpack_from("I", info, 152)
    return segs_in, data_segs_in


def recv_until_closed(sock, timeout):
    """Reads and drops until the peer closes: True on EOF, False on a timeout."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except socket.timeout:
        return False


def sockets_of(pid):
    """{(local port, remote port): descriptor number} of pid's IPv4 TCP sockets."""
    inodes = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes[target[8:-1]] = int(fd)
    result = {}
    with open(f"/proc/{pid}/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                result[(int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16))] = inodes[fields[9]]
    return result


def tcp_nodelay_of(pid, fd):
    """TCP_NODELAY of another process's socket, through a duplicate taken
    with pidfd_getfd (Linux 5.6; the test runs the proxy as its child)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        dup = libc.syscall(438, pidfd, fd, 0)  # SYS_pidfd_getfd on x86-64 and arm64
        if dup < 0:
            raise OSError(ctypes.get_errno(), "pidfd_getfd")
    finally:
        os.close(pidfd)
    sock = socket.socket(fileno=dup)
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        sock.detach()
        os.close(dup)


def connect_with_will(client_id, will_topic, will_payload):
    """A 3.1.1 clean-session CONNECT with a QoS 0 will."""
    flags = 0x02 | 0x04
    payload = mqtt_string(client_id) + mqtt_string(will_topic) + struct.pack(">H", len(will_payload)) + will_payload
    return mqtt_packet(0x10, mqtt_string("MQTT") + bytes([4, flags]) + struct.pack(">H", 30) + payload)


class Session:
    """A raw client of the proxy: the packets it read so far, in order."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    @property
    def local_port(self):
        return self.sock.getsockname()[1]

    def send(self, data):
        self.sock.sendall(data)

    def packet(self):
        packet, self.buffer = read_packet(self.sock, self.buffer)
        return packet

    def expect_connack_then_answer(self, test):
        connack = self.packet()
        test.assertEqual(connack[:4], b"\x20\x02\x00\x00", connack.hex())
        answer = self.packet()
        test.assertEqual(answer[0] & 0xF0, 0x30, answer.hex())
        return publish_fields(answer)

    def ends(self, test, msg=None):
        """The proxy closes this connection within its linger deadline."""
        test.assertTrue(recv_until_closed(self.sock, LINGER - 0.5), msg)
        self.close()

    def leave(self, test):
        """DISCONNECT, and the proxy closes the connection."""
        self.send(DISCONNECT)
        self.ends(test, "the proxy did not close after DISCONNECT")

    def close(self):
        self.sock.close()


def session_with_will(test, port, client_id, will_topic, will_payload, token):
    """A client with a QoS 0 will, authenticated with `token`: (its Session, the auth answer's payload)."""
    s = Session(port)
    s.send(connect_with_will(client_id, will_topic, will_payload) + publish_packet("service/auth/" + token, b""))
    _, answer = s.expect_connack_then_answer(test)
    return s, answer


class BrokerSubscriber:
    """A subscriber straight on Mosquitto (the proxy's account): what the
    broker publishes, unfiltered by the proxy."""

    def __init__(self, port, topic):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.sock.sendall(connect_packet("observer-" + str(time.monotonic_ns()), USERNAME, PASSWORD) +
                          subscribe_packet(1, topic, 0))
        connack = self.packet()
        assert connack[:4] == b"\x20\x02\x00\x00", connack.hex()
        suback = self.packet()
        assert suback[0] == 0x90, suback.hex()

    def packet(self):
        packet, self.buffer = read_packet(self.sock, self.buffer)
        return packet

    def publishes_within(self, seconds):
        """(topic, payload) of every PUBLISH that arrives within `seconds`."""
        got, deadline = [], time.time() + seconds
        while time.time() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.time()))
            try:
                packet = self.packet()
            except socket.timeout:
                break
            if packet[0] & 0xF0 == 0x30:
                got.append(publish_fields(packet))
        return got

    def close(self):
        self.sock.close()


class WithMosquitto(unittest.TestCase):
    """Mosquitto, the caching stub and one proxy worker (the validation cache is per worker)."""

    @classmethod
    def setUpClass(cls):
        cls.group = ProcessGroup("session-path-", stop_timeout=15, must_stop=True)
        _, cls.broker_port = cls.group.mosquitto()
        cls.auth = caching_stub_auth()
        cls.group.at_close(cls.auth.close)
        cls.port = free_port()
        cls.proxy = cls.group.spawn("proxy", proxy_argv(PROXY, cls.port, cls.broker_port, cls.auth.url, "--threads",
                                                        "1", "--log-level", "info"), ports=[cls.port])

    @classmethod
    def tearDownClass(cls):
        cls.group.close()

    def log(self):
        return self.group.log_of("proxy")

    def closed_line_of(self, client_id, timeout=5):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for line in self.log().splitlines():
                if "connection closed" in line and f"client_id={client_id} " in line:
                    return line
            time.sleep(0.05)
        self.fail(f"no 'connection closed' line for {client_id}:\n{self.log()}")

    def test_1_one_segment_cache_miss_then_hit_and_the_accepted_peer_address(self):
        for attempt, client_id in enumerate(("one-seg-a", "one-seg-b")):
            calls_before = self.auth.calls.get("alice-one", 0)
            s = Session(self.port)
            s.send(connect_packet(client_id) + publish_packet("service/auth/alice-one", b""))
            topic, payload = s.expect_connack_then_answer(self)
            self.assertEqual(topic, "service/auth/alice-one")
            self.assertEqual(json.loads(payload), {"result": "ok", "user": "alice"})
            # The first is a miss (the API server asked, told the client's
            # address as accept() gave it), the second a cached answer.
            self.assertEqual(self.auth.calls.get("alice-one", 0), calls_before + (1 if attempt == 0 else 0))
            if attempt == 0:
                self.assertEqual(self.auth.remote_addrs[-1], f"127.0.0.1:{s.local_port}")
            port = s.local_port
            s.leave(self)
            line = self.closed_line_of(client_id)
            self.assertIn(f"remote=127.0.0.1:{port} ", line)
            self.assertIn('reason="client disconnected', line)

    def test_2_two_segments_cache_miss_and_hit(self):
        for client_id in ("two-seg-a", "two-seg-b"):
            s = Session(self.port)
            s.send(connect_packet(client_id))
            connack = s.packet()
            self.assertEqual(connack[:4], b"\x20\x02\x00\x00")
            time.sleep(0.05)  # the auth PUBLISH in a read of its own
            s.send(publish_packet("service/auth/alice-two", b""))
            answer = s.packet()
            self.assertEqual(json.loads(publish_fields(answer)[1]), {"result": "ok", "user": "alice"})
            s.leave(self)
        self.assertEqual(self.auth.calls.get("alice-two"), 1)

    def test_3_auth_and_more_publishes_in_one_segment_are_relayed_in_order(self):
        observer = BrokerSubscriber(self.broker_port, "private/alice/three")
        for token in ("alice-three-miss", "alice-three-miss"):  # a miss, then a hit
            s = Session(self.port)
            s.send(connect_packet("three") + publish_packet("service/auth/" + token, b"") +
                   b"".join(publish_packet("private/alice/three", f"{token}-{i}".encode()) for i in range(3)) +
                   DISCONNECT)
            s.expect_connack_then_answer(self)
            s.ends(self)
            got = observer.publishes_within(1.0)
            self.assertEqual(got, [("private/alice/three", f"{token}-{i}".encode()) for i in range(3)])
        observer.close()
        self.assertEqual(self.auth.calls.get("alice-three-miss"), 1)  # the second was the cache's answer

    def test_3b_a_cached_answer_meets_the_subscribe_behind_it_in_the_same_segment(self):
        # The cache answers within the read that brought the auth PUBLISH;
        # the answer applies after that read's last packet, as a posted one
        # did: the SUBSCRIBEs behind it are held, then checked against the
        # ACL the answer brought (allowed: granted, relayed; not: 0x80), and
        # the PUBLISH behind them comes back through the allowed one.
        for attempt in ("miss", "hit"):
            s = Session(self.port)
            s.send(connect_packet("sub-" + attempt) + publish_packet("service/auth/alice-3b", b"") +
                   subscribe_packet(1, "private/alice/3b", 1) + subscribe_packet(2, "private/bob/3b", 1) +
                   publish_packet("private/alice/3b", attempt.encode()))
            s.expect_connack_then_answer(self)
            packets = [s.packet() for _ in range(3)]  # the proxy's own SUBACK may overtake the broker's
            subacks = sorted(p for p in packets if p[0] == 0x90)
            self.assertEqual(subacks, [b"\x90\x03\x00\x01\x01", b"\x90\x03\x00\x02\x80"], [p.hex() for p in packets])
            echo = [p for p in packets if p[0] & 0xF0 == 0x30]
            self.assertEqual([publish_fields(p) for p in echo], [("private/alice/3b", attempt.encode())])
            s.leave(self)
        self.assertEqual(self.auth.calls.get("alice-3b"), 1)

    def test_4_refused_session_in_one_segment(self):
        s = Session(self.port)
        s.send(connect_packet("refused") + publish_packet("service/auth/mallory-token", b""))
        topic, payload = s.expect_connack_then_answer(self)
        self.assertEqual(json.loads(payload), {"result": "denied", "reason": "invalid_session"})
        s.ends(self)

    def test_5_hostile_client_closes_right_after_the_auth_publish(self):
        # Cache hit and miss: a fresh token, then the same token again; the
        # proxy must neither crash nor leak the session, and go on serving.
        for token in ("alice-gone", "alice-gone", "alice-gone-too"):
            raw = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            raw.sendall(connect_packet("gone") + publish_packet("service/auth/" + token, b""))
            raw.close()
        # An RST instead of a FIN, right after the auth PUBLISH.
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.sendall(connect_packet("reset") + publish_packet("service/auth/alice-gone", b""))
        raw.close()
        time.sleep(0.5)
        s = Session(self.port)
        s.send(connect_packet("after-gone") + publish_packet("service/auth/alice-gone", b""))
        s.expect_connack_then_answer(self)
        s.leave(self)
        self.assertIsNone(self.proxy.poll(), "the proxy died")
        self.assertNotIn("connection task failed", self.log())

    def test_6_disconnect_ends_the_broker_side_without_the_will(self):
        observer = BrokerSubscriber(self.broker_port, "private/alice/will")
        s, _ = session_with_will(self, self.port, "will-polite", "private/alice/will", b"gone", "alice-will")
        s.leave(self)
        self.assertEqual(observer.publishes_within(1.0), [])
        # The control: dropped without DISCONNECT, the will goes out (the
        # proxy's FIN to the broker is still sent when no DISCONNECT went).
        s, _ = session_with_will(self, self.port, "will-dropped", "private/alice/will", b"gone", "alice-will")
        s.close()
        self.assertEqual(observer.publishes_within(LINGER - 0.5), [("private/alice/will", b"gone")])
        observer.close()


    def test_7_both_sockets_of_a_session_have_nodelay(self):
        # The client side gets TCP_NODELAY from the listening socket (Linux
        # copies it to accepted sockets; no setsockopt per connection), the
        # broker side from a setsockopt once connected. Without it a relayed
        # packet could wait for the ACK of the one before (Nagle).
        s = Session(self.port)
        s.send(connect_packet("nodelay") + publish_packet("service/auth/alice-nodelay", b""))
        s.expect_connack_then_answer(self)
        sockets = sockets_of(self.proxy.pid)
        client_side = sockets.get((self.port, s.local_port))
        broker_side = [fd for (local, remote), fd in sockets.items() if remote == self.broker_port]
        self.assertIsNotNone(client_side, sockets)
        self.assertGreaterEqual(len(broker_side), 1, sockets)
        try:
            self.assertTrue(tcp_nodelay_of(self.proxy.pid, client_side), "the client's socket has Nagle on")
            for fd in broker_side:
                self.assertTrue(tcp_nodelay_of(self.proxy.pid, fd), "a broker socket has Nagle on")
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EACCES, errno.ENOSYS):
                raise
            self.skipTest(f"another process's socket cannot be looked at here: {e}")
        s.leave(self)

    def test_9_a_large_connect_goes_out_whole_as_the_dials_probe(self):
        # The broker link's first write (the CONNECT, sent as the dial's
        # probe) carries the client's will: with a 65,000-byte payload the
        # broker must still get it whole and once, and publish it exactly.
        payload = bytes(range(256)) * 253 + b"end"
        observer = BrokerSubscriber(self.broker_port, "private/alice/bigwill")
        s, _ = session_with_will(self, self.port, "big-will", "private/alice/bigwill", payload, "alice-bigwill")
        s.close()  # dropped without DISCONNECT: the will goes out
        self.assertEqual(observer.publishes_within(LINGER), [("private/alice/bigwill", payload)])
        observer.close()

    def test_8_bytes_after_disconnect_are_not_relayed_and_cost_no_will(self):
        # Hostile: DISCONNECT with a PUBLISH behind it in the same segment,
        # then more bytes later, the socket never closed. The proxy closes
        # its side at once (the client said goodbye; the later bytes may get
        # an RST), relays nothing after the DISCONNECT and, since the broker
        # got the DISCONNECT, no will is published.
        observer = BrokerSubscriber(self.broker_port, "private/alice/#")
        s, _ = session_with_will(self, self.port, "after-goodbye", "private/alice/will", b"gone", "alice-after")
        s.send(DISCONNECT + publish_packet("private/alice/late", b"after the goodbye"))
        time.sleep(0.2)
        # Closed at once, not held for the client's FIN (which never comes) until the linger deadline.
        self.assertNotIn((self.port, s.local_port), sockets_of(self.proxy.pid))
        try:
            s.send(publish_packet("private/alice/later", b"much later"))
        except OSError:
            pass  # reset already: the proxy had closed
        try:
            closed = recv_until_closed(s.sock, LINGER - 0.5)
        except ConnectionResetError:
            closed = True  # the RST for the later bytes came first: closed all the same
        self.assertTrue(closed, "the proxy kept the connection open")
        s.close()
        self.assertEqual(observer.publishes_within(1.0), [])
        observer.close()
        self.assertIn('client_id=after-goodbye user=alice reason="client disconnected"', self.log())
        s = Session(self.port)  # and the proxy serves the next one
        s.send(connect_packet("after-goodbye-next") + publish_packet("service/auth/alice-after", b""))
        s.expect_connack_then_answer(self)
        s.leave(self)


    @unittest.skipUnless(shutil.which("ss"), "needs ss (iproute2)")
    def test_10_a_clean_session_leaves_no_time_wait_at_the_broker(self):
        # Mosquitto closes first after the DISCONNECT; the proxy, having read
        # its EOF and with nothing more for it, closes with an RST, so the
        # broker's end is freed at once instead of waiting 60 s in TIME_WAIT
        # (a FIN there would leave one per session). The session is clean all
        # the same: no will (test_6).
        def sockets_at_broker():  # [state, recv-q, send-q, local, peer] of each
            out = subprocess.run(["ss", "-tanH", "state", "all", f"( sport = :{self.broker_port} )"],
                                 capture_output=True, text=True, check=True).stdout
            return [line.split() for line in out.splitlines() if line.strip()]

        def time_wait_at_broker():
            return {" ".join(fields[-2:]) for fields in sockets_at_broker() if fields[0] == "TIME-WAIT"}

        def open_at_broker():
            return [fields for fields in sockets_at_broker() if fields[0] not in ("LISTEN", "TIME-WAIT")]

        before = time_wait_at_broker()
        for n in range(5):
            s = Session(self.port)
            s.send(connect_packet(f"no-tw-{n}") + publish_packet("service/auth/alice-no-tw", b""))
            s.expect_connack_then_answer(self)
            s.leave(self)
        for n in range(5):
            self.assertIn("reason=\"client disconnected\"", self.closed_line_of(f"no-tw-{n}"))
        # Until no socket of these sessions is left at the broker's port but
        # in TIME_WAIT (a broker end still in FIN_WAIT2 would pass for nothing).
        deadline = time.time() + 5
        while open_at_broker() and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(open_at_broker(), [])
        self.assertEqual(time_wait_at_broker() - before, set())


class WithBrokerByName(unittest.TestCase):
    """The broker given by host name (as in a compose file): the dial goes
    through the resolver and dial_upstream, whose probe is the queued
    CONNECT too; the session and its will get through whole."""

    def test_session_and_will_through_a_broker_named_localhost(self):
        group = ProcessGroup("session-path-named-", stop_timeout=15, must_stop=True)
        self.addCleanup(group.close)
        _, broker_port = group.mosquitto()
        auth = caching_stub_auth()
        group.at_close(auth.close)
        port = free_port()
        argv = proxy_argv(PROXY, port, broker_port, auth.url, "--threads", "1")
        argv[argv.index("--upstream") + 1] = f"localhost:{broker_port}"
        group.spawn("proxy", argv, ports=[port])
        observer = BrokerSubscriber(broker_port, "private/alice/named")
        payload = b"named " * 5000
        for i in range(2):
            s, answer = session_with_will(self, port, f"named-{i}", "private/alice/named", payload, "alice-named")
            self.assertEqual(json.loads(answer), {"result": "ok", "user": "alice"})
            s.close()
            self.assertEqual(observer.publishes_within(LINGER), [("private/alice/named", payload)])
        observer.close()


class WithFakeBrokers(unittest.TestCase):
    """The proxy in front of a raw broker: what the broker sees of the end of a session."""

    def start(self, close_on_disconnect):
        self.group = ProcessGroup("session-path-fake-", stop_timeout=15, must_stop=True)
        self.broker = FakeBroker(close_on_disconnect)
        self.group.at_close(self.broker.close)
        self.auth = caching_stub_auth()
        self.group.at_close(self.auth.close)
        self.port = free_port()
        self.group.spawn("proxy", proxy_argv(PROXY, self.port, self.broker.port, self.auth.url, "--threads", "1",
                                             "--upstream-protocol", "3.1.1"), ports=[self.port])
        self.addCleanup(self.group.close)

    def session(self, client_id, then):
        s = Session(self.port)
        s.send(connect_packet(client_id) + publish_packet("service/auth/alice-fake", b""))
        s.expect_connack_then_answer(self)
        started = time.monotonic()
        s.send(then)
        if then:
            self.assertTrue(recv_until_closed(s.sock, LINGER - 0.5), "the proxy did not close the client's side")
        s.close()
        return started

    def wait_events(self, record, count, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline and len(record["events"]) < count:
            time.sleep(0.02)
        return record["events"]

    def test_polite_broker_closes_after_disconnect(self):
        self.start(close_on_disconnect=True)
        for client_id in ("fake-polite-1", "fake-polite-2"):
            self.session(client_id, DISCONNECT)
            record = self.broker.connection_of(client_id)
            self.assertEqual(self.wait_events(record, 1, 2), ["DISCONNECT"])

    def test_hostile_broker_that_never_closes_is_closed_at_the_linger_deadline(self):
        self.start(close_on_disconnect=False)
        started = self.session("fake-stays", DISCONNECT)
        record = self.broker.connection_of("fake-stays")
        # DISCONNECT, then the proxy's FIN (a clean close, no RST) once the
        # linger deadline passes, though the broker never closed its side.
        self.assertEqual(self.wait_events(record, 2, LINGER + 5), ["DISCONNECT", "EOF"])
        self.assertGreater(record["times"]["EOF"] - started, LINGER - 0.5)

    def test_broker_that_closes_before_its_connack_gets_the_client_a_prompt_denial(self):
        # The broker socket's first wait (connected at once, not re-armed):
        # the broker's FIN, at accept or right after the CONNECT, must end the
        # session at once, not at the auth deadline (timeouts.auth_ms, 10 s).
        self.start(close_on_disconnect=True)
        for close_at in ("accept", "connect"):
            self.broker.close_at = close_at
            s = Session(self.port, timeout=5)
            s.send(connect_packet("fake-gone-" + close_at) + publish_packet("service/auth/alice-fake", b""))
            connack = s.packet()
            self.assertEqual(connack[:4], b"\x20\x02\x00\x00", connack.hex())
            answer = s.packet()
            self.assertEqual(answer[0] & 0xF0, 0x30, answer.hex())
            self.assertIn(b'"result":"denied"', answer)
            self.assertNotIn(b'"timeout"', answer)
            s.ends(self)
        self.broker.close_at = None
        self.session("fake-after-gone", DISCONNECT)  # and the next one is served

    def test_the_connect_rides_on_the_handshakes_last_ack(self):
        # hold_handshake_ack (issue 14): the broker's socket gets no bare ACK
        # before the CONNECT. By then it has received the SYN (Linux counts
        # it on the accepted socket) and segments with data, nothing else.
        self.start(close_on_disconnect=True)
        for client_id in ("fake-smart-1", "fake-smart-2"):
            self.session(client_id, DISCONNECT)
            segments, with_data = self.broker.connection_of(client_id)["segments_at_connect"]
            self.assertGreaterEqual(with_data, 1)
            self.assertEqual(segments, 1 + with_data, "a bare ACK reached the broker before the CONNECT")

    def test_client_dropped_without_disconnect_gets_the_broker_a_fin_at_once(self):
        self.start(close_on_disconnect=False)
        started = self.session("fake-dropped", b"")
        record = self.broker.connection_of("fake-dropped")
        self.assertEqual(self.wait_events(record, 1, LINGER + 5), ["EOF"])
        self.assertLess(record["times"]["EOF"] - started, LINGER - 0.5, "the FIN waited for the linger deadline")


def publish_v5(topic, payload):
    """A 5.0 QoS 0 PUBLISH with no properties."""
    return mqtt_packet(0x30, mqtt_string(topic) + b"\x00" + payload)


def auth_publish(version, topic):
    """The auth PUBLISH (empty payload) in the client's protocol version."""
    return (publish_v5 if version == 5 else publish_packet)(topic, b"")


def packets_of(data):
    """The whole packets in `data`, in order."""
    packets = []
    while data:
        parsed = parse_mqtt(data)
        if parsed is None:
            break
        packet, data = parsed
        packets.append(packet)
    return packets


def readable_now(sock):
    return bool(select.select([sock], [], [], 0)[0])


def slices_of(pid):
    """se.slice (ns) of each thread of pid, from /proc/PID/task/TID/sched."""
    slices = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/sched") as f:
            slices += [int(line.split(":")[1]) for line in f if line.startswith("se.slice")]
    return slices


class ThreadSlice(unittest.TestCase):
    """`--thread-slice-us`: each worker thread asks the scheduler for that
    slice (EEVDF, Linux >= 6.12); sessions go through as before."""

    def test_workers_run_with_the_slice_asked_for(self):
        group = ProcessGroup("session-path-slice-", must_stop=True)
        self.addCleanup(group.close)
        _, broker_port = group.mosquitto()
        auth = caching_stub_auth()
        group.at_close(auth.close)
        port = free_port()
        proxy = group.spawn("proxy", proxy_argv(PROXY, port, broker_port, auth.url, "--threads", "2",
                                                "--thread-slice-us", "250"), ports=[port])
        slices = slices_of(proxy.pid)
        if not slices:
            self.skipTest("this kernel does not show se.slice")
        if "kernel refused" in group.log_of("proxy"):
            self.skipTest("this kernel has no custom slices (Linux < 6.12)")
        self.assertGreaterEqual(slices.count(250_000), 2, f"both workers: {slices}")
        s = Session(port)
        s.send(connect_packet("sliced") + publish_packet("service/auth/alice-slice", b""))
        topic, payload = s.expect_connack_then_answer(self)
        self.assertEqual(json.loads(payload)["result"], "ok")
        s.close()


class HeldConnack(unittest.TestCase):
    """A client that sends its auth PUBLISH with its CONNECT gets the CONNACK
    and the answer in one write (the CONNACK held for the answer, within
    timeouts.connack_hold_ms); a client that sends CONNECT alone gets it at
    once. A raw fake broker whose CONNACK the test can hold back shows when
    the proxy wrote: "held" proxy with connack_hold_ms = 1000 (so a loaded
    machine does not reach the bound in the middle of a test), "default" with
    the default bound (50 ms)."""

    @classmethod
    def setUpClass(cls):
        cls.group = ProcessGroup("session-path-held-", stop_timeout=15, must_stop=True)
        try:
            cls.broker = FakeBroker(close_on_disconnect=True)
            cls.group.at_close(cls.broker.close)

            def answer(token):
                if token.startswith("slow-"):
                    time.sleep(1.5)  # an API server that takes its time (within the proxy's 3 s HTTP timeout)
                    return {"user": "alice", "acl": ACL}
                return {"user": "alice", "acl": ACL} if token.startswith("alice-") else None
            cls.auth = StubAuthServer({}, anyone=answer, max_age=60)
            cls.group.at_close(cls.auth.close)
            conf = cls.group.write("held.toml", "[timeouts]\nconnack_hold_ms = 1000\n")
            cls.ports = {"held": free_port(), "default": free_port()}
            cls.proxies = {}
            for name, extra in (("held", ["--config", conf]), ("default", [])):
                port = cls.ports[name]
                cls.proxies[name] = cls.group.spawn(name, proxy_argv(PROXY, port, cls.broker.port, cls.auth.url, "--threads", "1", *extra),
                                ports=[port])
        except BaseException:
            cls.group.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.group.close()

    def gate_broker(self):
        gate = threading.Event()
        self.broker.hold_connack = gate
        self.addCleanup(gate.set)
        self.addCleanup(setattr, self.broker, "hold_connack", None)
        return gate

    def closed_line(self, proxy, client_id, timeout=5):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for line in self.group.log_of(proxy).splitlines():
                if "connection closed" in line and f"client_id={client_id} " in line:
                    return line
            time.sleep(0.05)
        self.fail(f"no 'connection closed' line for {client_id}:\n{self.group.log_of(proxy)}")

    def test_1_connack_and_answer_in_one_write_when_the_auth_came_with_connect(self):
        for version, client_id in ((4, "held-311"), (5, "held-50"), (4, "held-311-hit")):
            gate = self.gate_broker()
            s = Session(self.ports["held"])
            auth = auth_publish(version, "service/auth/alice-held")
            s.send(connect_packet(client_id, version=version) + auth)
            self.broker.connection_of(client_id)  # validated, dialled, CONNECT sent: the broker holds its CONNACK
            self.assertFalse(readable_now(s.sock), "the CONNACK did not wait for the auth answer")
            gate.set()
            packets = packets_of(s.sock.recv(65536))  # one read: both came in one write
            self.assertEqual(len(packets), 2, [p.hex() for p in packets])
            connack, answer = packets
            self.assertEqual(connack[0], 0x20, connack.hex())
            self.assertEqual(connack[3], 0x00, connack.hex())  # accepted (3.1.1 return code, 5.0 reason code)
            self.assertEqual(answer[0] & 0xF0, 0x30, answer.hex())
            self.assertIn(b'{"result":"ok","user":"alice"}', answer)
            s.leave(self)

    def test_2_connect_alone_gets_its_connack_at_once(self):
        # Well before the hold's bound (1 s here): a client that waits for
        # its CONNACK before it authenticates must not wait for the bound.
        for version, client_id in ((4, "alone-311"), (5, "alone-50")):
            s = Session(self.ports["held"], timeout=0.8)
            s.send(connect_packet(client_id, version=version))
            connack = s.packet()
            self.assertEqual(connack[0], 0x20, connack.hex())
            s.sock.settimeout(10)
            auth = auth_publish(version, "service/auth/alice-alone")
            s.send(auth)
            answer = s.packet()
            self.assertIn(b'{"result":"ok","user":"alice"}', answer)
            s.leave(self)

    def test_3_slow_api_server_the_connack_comes_at_the_bound(self):
        # The default bound (50 ms); the API server answers after 1.5 s: the
        # CONNACK comes alone long before the answer.
        s = Session(self.ports["default"], timeout=1)
        s.send(connect_packet("slow-api") + publish_packet("service/auth/slow-token", b""))
        connack = s.packet()
        self.assertEqual(connack[:4], b"\x20\x02\x00\x00", connack.hex())
        self.assertEqual(s.buffer, b"")
        self.assertFalse(readable_now(s.sock), "the answer came with the CONNACK: the API server was not slow")
        s.sock.settimeout(10)
        answer = s.packet()
        self.assertIn(b'{"result":"ok","user":"alice"}', answer)
        s.leave(self)

    def test_4_refused_token_connack_and_denial_in_one_write(self):
        for version, client_id in ((4, "refused-311"), (5, "refused-50")):
            s = Session(self.ports["held"])
            auth = auth_publish(version, "service/auth/mallory-" + client_id)
            s.send(connect_packet(client_id, version=version) + auth)
            data = s.sock.recv(65536)  # one read: all in one write
            packets = packets_of(data)
            kinds = [p[0] & 0xF0 for p in packets]
            self.assertEqual(kinds, [0x20, 0x30] + ([0xE0] if version == 5 else []), data.hex())
            self.assertIn(b'"result":"denied"', packets[1])
            self.assertIn(b'"reason":"invalid_session"', packets[1])
            if version == 5:
                self.assertEqual(packets[2][2], 0x87, packets[2].hex())  # Not authorized
            s.ends(self)

    def test_5_direct_mode_gets_the_brokers_connack(self):
        gate = self.gate_broker()
        s = Session(self.ports["held"])
        s.send(connect_packet("direct-held", "any", "alice-direct"))
        self.broker.connection_of("direct-held")
        self.assertFalse(readable_now(s.sock), "a CONNACK before the broker's")
        gate.set()
        connack = s.packet()
        self.assertEqual(connack[:4], b"\x20\x02\x00\x00", connack.hex())
        s.leave(self)

    def test_6_hostile_clients_close_while_their_connack_is_held(self):
        # FIN or RST right behind CONNECT + auth PUBLISH, while the broker
        # holds its CONNACK: the connection ends (its line is logged) and a
        # polite client after them is served.
        for client_id, reset in (("gone-fin", False), ("gone-rst", True)):
            gate = self.gate_broker()
            raw = socket.create_connection(("127.0.0.1", self.ports["held"]), timeout=5)
            if reset:
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raw.sendall(connect_packet(client_id) + publish_packet("service/auth/alice-gone", b""))
            raw.close()
            gate.set()
            self.closed_line("held", client_id)
        s = Session(self.ports["held"])
        s.send(connect_packet("after-gone") + publish_packet("service/auth/alice-gone", b""))
        s.expect_connack_then_answer(self)
        s.leave(self)
        self.assertIsNone(self.proxies["held"].poll(), "the proxy died")


if __name__ == "__main__":
    given = sys.argv.pop(1) if len(sys.argv) > 1 else None
    PROXY = os.environ.get("MQTT_PROXY_BINARY") or given
    if not PROXY:
        sys.exit("usage: session_path_test.py PATH/TO/mqtt-proxy")
    unittest.main(verbosity=2)
