#!/usr/bin/python3
"""Clients that send without ever reading, against the real mqtt-proxy, a real
Mosquitto and a stub API server: the proxy's memory (VmRSS of its process)
stays bounded and the flooding client is paused (its sends stall) or closed.
Each hostile case sits beside the polite one it abuses.

Usage: hostile_clients_test.py PATH/TO/mqtt-proxy   (MQTT_PROXY_BINARY overrides)"""
import concurrent.futures
import os
import resource
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from netutil import free_port  # noqa: E402
from processes import OneSystemPerClass, ProcessGroup, proxy_argv  # noqa: E402
from stub_auth import StubAuthServer  # noqa: E402
from wire import auth_exchange, connect_packet, publish_fields, publish_packet, read_packet, subscribe_packet  # noqa: E402

PROXY = None
SESSIONS = {"alice-token": {"user": "alice", "acl": {"publish": ["private/alice/#"], "subscribe": ["private/alice/#"]}}}
MIB = 1024 * 1024
# ~2 MiB: one write_high_water (1 MiB) of queue plus the read buffers and
# the allocator's slack; the unbounded proxy grew by hundreds of MiB.
RSS_BUDGET_KIB = 2 * 1024 + 512
PINGREQ = b"\xc0\x00"
SANITIZED = os.environ.get("MQTT_PROXY_SANITIZED") == "1"  # set by run.sh for the ASan+UBSan binary


class System(ProcessGroup):
    """Mosquitto + stub API server + mqtt-proxy on free loopback ports."""

    def __init__(self, file_limit=None):
        super().__init__("hostile-", stop_timeout=15, must_stop=True)
        _, self.broker_port = self.mosquitto()
        self.port = free_port()
        self.auth = StubAuthServer(SESSIONS)
        self.at_close(self.auth.close)
        self.proxy = self.spawn(
            "proxy", proxy_argv(PROXY, self.port, self.broker_port, self.auth.url, "--threads", "2"), ports=[self.port],
            preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (file_limit, file_limit)))
            if file_limit else None)

    def rss_kib(self):
        with open(f"/proc/{self.proxy.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def logs(self):
        return self.log_of("proxy")


class RssPeak:
    """Samples the proxy's VmRSS every 10 ms while in use."""

    def __init__(self, system):
        self.system, self.peak, self.stop = system, system.rss_kib(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.system.rss_kib())
            time.sleep(0.01)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def authenticated_socket(port, client_id):
    answer, sock = auth_exchange(port, client_id, "alice-token", timeout=5)
    assert b'"ok"' in answer, answer
    return sock


def flood(sock, chunk, limit_seconds=None, stall_seconds=1.5):
    """Sends `chunk` again and again without reading. 'paused' once sends
    have stalled for stall_seconds, 'closed' when the proxy closed. The proxy
    pauses once its answers fill the kernel's buffers towards the client (a
    few MiB, autotuned): an ASan build on a loaded machine reads the flood
    several times slower, so it gets longer to get there."""
    if limit_seconds is None:
        limit_seconds = 120 if SANITIZED else 30
    sock.setblocking(False)
    sent, view, last_progress = 0, memoryview(chunk), time.time()
    deadline = time.time() + limit_seconds
    while time.time() < deadline:
        try:
            n = sock.send(view)
            sent += n
            view = view[n:] if n < len(view) else memoryview(chunk)
            last_progress = time.time()
        except BlockingIOError:
            if time.time() - last_progress > stall_seconds:
                return "paused", sent
            time.sleep(0.01)
        except (ConnectionResetError, BrokenPipeError):
            return "closed", sent
    return "still sending", sent


def denied_publishes(count):
    """QoS 1 PUBLISHes to a topic alice may not publish to: each answered by the proxy itself."""
    return b"".join(publish_packet("private/bob/x", b"denied", qos=1, packet_id=1 + i % 65535) for i in range(count))


class HostileClients(OneSystemPerClass, unittest.TestCase):
    make_system = System

    def assert_bounded(self, label, before, peak):
        print(f"\n{label}: VmRSS before {before} KiB, peak {peak} KiB (+{peak - before} KiB)", file=sys.stderr)
        if SANITIZED:
            return  # ASan's shadow memory and quarantine make RSS meaningless; the pause is still checked
        self.assertLessEqual(peak - before, RSS_BUDGET_KIB, f"{label}: the proxy grew by {peak - before} KiB")

    def assert_flood_paused_and_bounded(self, what, when, sock, chunk, before):
        """Floods `sock` with `chunk` without reading: the proxy pauses or closes
        it, and its VmRSS stays within budget of `before`."""
        with RssPeak(self.system) as rss:
            outcome, sent = flood(sock, chunk)
        print(f"{what}: {outcome} after {sent // 1024} KiB sent", file=sys.stderr)
        self.assertIn(outcome, ("paused", "closed"))
        self.assert_bounded(f"{what} {when}", before, rss.peak)
        sock.close()

    def test_1_polite_pings_are_answered(self):
        sock = socket.create_connection(("127.0.0.1", self.system.port), timeout=5)
        sock.sendall(connect_packet("polite-pinger") + PINGREQ * 3)
        packet, buffer = read_packet(sock, b"")
        self.assertEqual(packet[0], 0x20)
        for _ in range(3):
            packet, buffer = read_packet(sock, buffer)
            self.assertEqual(packet, b"\xd0\x00")  # PINGRESP, before authentication too
        sock.close()

    def test_2_pingreq_flood_without_reading_before_auth(self):
        time.sleep(0.5)
        before = self.system.rss_kib()
        sock = socket.create_connection(("127.0.0.1", self.system.port), timeout=5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(connect_packet("pinger"))
        self.assert_flood_paused_and_bounded("PINGREQ flood", "before auth", sock, PINGREQ * 32768, before)

    def test_3_polite_denied_publish_is_acknowledged(self):
        sock = authenticated_socket(self.system.port, "polite-denied")
        sock.sendall(denied_publishes(3))
        buffer = b""
        for i in range(3):
            packet, buffer = read_packet(sock, buffer)
            self.assertEqual(packet[0], 0x40)  # PUBACK: 3.1.1 has no way to say no
            self.assertEqual(int.from_bytes(packet[2:4], "big"), i + 1)
        sock.close()

    def test_4_denied_qos1_flood_without_reading_after_auth(self):
        time.sleep(0.5)
        sock = authenticated_socket(self.system.port, "denied-flooder")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        time.sleep(0.3)
        before = self.system.rss_kib()
        self.assert_flood_paused_and_bounded("denied QoS 1 flood", "after auth", sock, denied_publishes(20000), before)

    def test_5_a_paused_client_that_reads_again_gets_every_answer(self):
        sock = authenticated_socket(self.system.port, "slow-reader")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        count = 300000  # ~1.2 MB of PUBACKs: more than the proxy queues, so it must pause and resume
        data = denied_publishes(count)
        # Its own socket object: Python's timeout bounds a whole sendall(), and
        # the proxy pauses this one for as long as the reader below is slow.
        sending = sock.dup()
        sending.settimeout(None)
        sender = threading.Thread(target=lambda: sending.sendall(data))
        sender.start()
        time.sleep(1)
        received, buffer = 0, b""
        sock.settimeout(10)
        while received < count:
            packet, buffer = read_packet(sock, buffer)
            self.assertEqual(packet[0], 0x40)
            self.assertEqual(int.from_bytes(packet[2:4], "big"), 1 + received % 65535)
            received += 1
        sender.join()
        sending.close()
        sock.close()

    def test_6_memory_goes_back_after_floods(self):
        time.sleep(1.5)
        before = self.system.rss_kib()
        socks = [authenticated_socket(self.system.port, f"flooder-{i}") for i in range(8)]
        threads = [threading.Thread(target=flood, args=(s, denied_publishes(20000), 30, 1.0)) for s in socks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        during = self.system.rss_kib()
        for s in socks:
            s.close()
        time.sleep(3)  # closes, the flush deadline, the periodic release
        after = self.system.rss_kib()
        print(f"\n8 floods: VmRSS before {before} KiB, during {during} KiB, 3 s after closing {after} KiB",
              file=sys.stderr)
        if SANITIZED:
            return
        self.assertGreater(during - before, 4 * 1024, "the floods did not fill the queues: the test tests nothing")
        self.assertLessEqual(after - before, 2 * 1024, "the memory of closed connections stayed with the process")

    def test_7_polite_qos2_flow_completes(self):
        sock = authenticated_socket(self.system.port, "polite-qos2")
        sock.sendall(publish_packet("private/alice/q2", b"x", qos=2, packet_id=7))
        packet, buffer = read_packet(sock, b"")
        self.assertEqual(packet, b"\x50\x02\x00\x07")  # PUBREC
        sock.sendall(b"\x62\x02\x00\x07")  # PUBREL
        packet, buffer = read_packet(sock, buffer)
        self.assertEqual(packet, b"\x70\x02\x00\x07")  # PUBCOMP
        sock.close()

    def test_8_every_packet_id_left_in_flight(self):
        """QoS 2 PUBLISHes on all 65,535 packet ids, none released: the proxy
        keeps each id until its PUBCOMP (its own UNSUBSCRIBE must not take
        one), in a bitmap of 8 KiB per connection, not a set node per id (4
        such clients held ~12 MiB that way). Released, every flow completes."""
        ids = range(1, 65536)
        frames = b"".join(publish_packet("private/alice/hoard", b"", qos=2, packet_id=i) for i in ids)
        socks = [authenticated_socket(self.system.port, f"id-hoarder-{i}") for i in range(4)]
        time.sleep(1)
        before = self.system.rss_kib()

        def exchange(sock, send, answer_type):
            """Sends `send` while reading one answer of `answer_type` per id, in order."""
            sock.settimeout(120 if SANITIZED else 30)
            sender = threading.Thread(target=sock.sendall, args=(send,))
            sender.start()
            buffer = b""
            for i in ids:
                packet, buffer = read_packet(sock, buffer)
                if packet != bytes([answer_type, 2]) + i.to_bytes(2, "big"):
                    return f"id {i}: {packet.hex()}"
            sender.join()
            return "ok"

        with concurrent.futures.ThreadPoolExecutor(len(socks)) as pool:
            outcomes = list(pool.map(lambda sock: exchange(sock, frames, 0x50), socks))
        self.assertEqual(outcomes, ["ok"] * len(socks))  # a PUBREC for every id
        time.sleep(1)
        held = self.system.rss_kib()
        print(f"\n4 x 65535 ids in flight: VmRSS before {before} KiB, holding them {held} KiB", file=sys.stderr)
        if not SANITIZED:
            self.assertLessEqual(held - before, 4 * 1024, "the ids in flight cost more than a bitmap each")
        pubrels = b"".join(b"\x62\x02" + i.to_bytes(2, "big") for i in ids)
        self.assertEqual(exchange(socks[0], pubrels, 0x70), "ok")  # a PUBCOMP for every id
        for sock in socks:
            sock.close()


def exact_publish(topic, size, fill):
    """A QoS 0 PUBLISH of exactly `size` bytes on the wire."""
    overhead = len(publish_packet(topic, b""))
    payload = fill * (size - overhead - 2)
    while len(publish_packet(topic, payload)) < size:
        payload += fill
    while len(publish_packet(topic, payload)) > size:
        payload = payload[:-1]
    packet = publish_packet(topic, payload)
    assert len(packet) == size, (len(packet), size)
    return packet


class WakeUps(OneSystemPerClass, unittest.TestCase):
    """Each reader of the proxy parks between packets, and when its last read
    emptied the socket it waits without re-arming epoll (net/reactor_wait.hpp);
    woken, it relays inline. A lost wake-up would leave bytes in the proxy's
    socket: the subscriber's bounded read fails. Publisher and subscriber go
    through the proxy and Mosquitto, so the broker side is exercised too
    (Mosquitto sends the subscriber's deliveries in bursts of its own)."""
    make_system = System

    def subscriber_and_publisher(self, name):
        """A subscriber to private/alice/<name>/#, its read buffer, and a
        publisher: both authenticated, both closed when the test ends."""
        sock = authenticated_socket(self.system.port, name)
        self.addCleanup(sock.close)
        sock.sendall(subscribe_packet(1, f"private/alice/{name}/#", 0))
        packet, buffer = read_packet(sock, b"")
        self.assertEqual(packet[0], 0x90, packet.hex())  # SUBACK
        sock.settimeout(10)  # the bound on every wait below
        pub = authenticated_socket(self.system.port, f"{name}-pub")
        self.addCleanup(pub.close)
        return sock, buffer, pub

    def expect(self, sock, buffer, packets):
        for sent in packets:
            got, buffer = read_packet(sock, buffer)
            self.assertEqual(publish_fields(got), publish_fields(sent))
        return buffer

    def test_1_polite_publish_is_delivered(self):
        sub, buffer, pub = self.subscriber_and_publisher("w1")
        packets = [publish_packet("private/alice/w1/t", b"hello %d" % i) for i in range(3)]
        for p in packets:
            pub.sendall(p)
        self.expect(sub, buffer, packets)

    def test_2_publish_in_one_byte_writes_with_pauses(self):
        sub, buffer, pub = self.subscriber_and_publisher("w2")
        pub.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a segment (and a wake-up) per byte
        packets = [publish_packet("private/alice/w2/t", bytes([65 + i]) * (20 + i)) for i in range(3)]
        for p in packets:
            for i in range(len(p)):
                pub.send(p[i:i + 1])
                time.sleep(0.002)
            time.sleep(0.05)
        buffer = self.expect(sub, buffer, packets)

    def test_3_bursts_the_size_of_a_read_then_silence(self):
        sub, buffer, pub = self.subscriber_and_publisher("w3")
        for size in (1024, 2048, 4096, 8192, 16384, 32768, 65536, 512, 1023, 1025, 65537, 131072):
            packet = exact_publish("private/alice/w3/t", size, bytes([97 + size % 26]))
            pub.sendall(packet)
            buffer = self.expect(sub, buffer, [packet])  # then nothing follows until it arrived

    def test_5_bursts_of_packets_ending_where_reads_end_then_silence(self):
        """Reads are 512 B to 64 KiB: bursts of 512 and 256 B packets make a
        read that fills its buffer end between two packets, with more waiting
        behind it and nothing new coming: only a re-armed wait finds those."""
        sub, buffer, pub = self.subscriber_and_publisher("w5")
        for size in (512, 256):
            for count in (2, 3, 8, 64, 300):
                for i in range(3):  # small packets one at a time first: the reads shrink
                    small = publish_packet("private/alice/w5/t", b"small %d" % i)
                    pub.sendall(small)
                    buffer = self.expect(sub, buffer, [small])
                burst = [exact_publish("private/alice/w5/t", size, bytes([97 + k % 26])) for k in range(count)]
                pub.sendall(b"".join(burst))
                buffer = self.expect(sub, buffer, burst)

    def test_4_many_pipelined_then_silence(self):
        sub, buffer, pub = self.subscriber_and_publisher("w4")
        packets = [publish_packet("private/alice/w4/t", b"%06d" % i + b"x" * (i % 300)) for i in range(900)]
        pub.sendall(b"".join(packets))
        buffer = self.expect(sub, buffer, packets)
        time.sleep(0.2)  # quiet: both readers parked again
        last = publish_packet("private/alice/w4/t", b"after the quiet spell")
        pub.sendall(last)
        self.expect(sub, buffer, [last])


class OutOfDescriptors(unittest.TestCase):
    """The proxy under a tiny open-file limit: clients beyond what its
    descriptors hold are refused cleanly at accept (not accepted only to fail
    their broker dial with EMFILE), the log names the limit, every client
    that fits is authenticated, and the proxy recovers."""

    @classmethod
    def setUpClass(cls):
        cls.system = System(file_limit=64)

    @classmethod
    def tearDownClass(cls):
        cls.system.close()

    def test_polite_client_within_the_limit(self):
        sock = authenticated_socket(self.system.port, "within-limit")
        sock.close()

    @staticmethod
    def outcome(sock, seconds=3.0):
        """'refused' (closed or reset before any byte), 'authenticated'
        (CONNACK 0 and the auth answer "ok"), else what came instead."""
        sock.settimeout(0.2)
        buffer, deadline = b"", time.time() + seconds
        while time.time() < deadline:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionError:
                chunk = b""
            if not chunk:
                return "refused" if not buffer else f"closed after {buffer[:8].hex()}"
            buffer += chunk
            if buffer[:1] == b"\x20" and len(buffer) >= 4 and buffer[3] == 0 and b'"ok"' in buffer:
                return "authenticated"
        return f"no answer in {seconds} s: {buffer[:8].hex()}"

    def test_admin_port_outlives_running_out(self):
        import re
        import urllib.request
        admin = re.search(r"admin (127\.0\.0\.1:\d+)", self.system.logs()).group(1).split(":")
        idle = []
        for _ in range(70):  # idle scrapers: the admin port keeps each up to 10 s, a descriptor apiece
            try:
                idle.append(socket.create_connection((admin[0], int(admin[1])), timeout=2))
            except OSError:
                pass
        time.sleep(1)  # the admin port met EMFILE meanwhile
        for sock in idle:
            sock.close()
        time.sleep(1)
        with urllib.request.urlopen(f"http://{admin[0]}:{admin[1]}/metrics", timeout=5) as response:
            self.assertIn(b"mqtt_proxy_connections_open", response.read())
        self.assertIsNone(self.system.proxy.poll(), "the proxy died")

    def lingering_then_newcomers(self, goodbye, prefix):
        """16 authenticated clients send `goodbye` and then neither read nor
        close; 0.3 s later 16 newcomers try. Returns their outcomes."""
        time.sleep(2.5)  # the connections of earlier tests are gone (closing ones linger up to 2 s)
        lingering = [authenticated_socket(self.system.port, f"{prefix}-{i}") for i in range(16)]
        for sock in lingering:
            sock.sendall(goodbye)  # the socket stays open and unread
        time.sleep(0.3)  # every session ended: none counts as open any more
        newcomers = []
        for i in range(16):
            try:
                sock = socket.create_connection(("127.0.0.1", self.system.port), timeout=5)
                sock.sendall(connect_packet(f"{prefix}-newcomer-{i}") + publish_packet("service/auth/alice-token", b"",
                                                                                         qos=0))
                newcomers.append(sock)
            except OSError:
                pass
        outcomes = [self.outcome(sock) for sock in newcomers]
        logs = self.system.logs()
        for sock in lingering + newcomers:
            sock.close()
        self.assertIsNone(self.system.proxy.poll(), "the proxy died")
        self.assertTrue(all(o in ("refused", "authenticated") for o in outcomes), outcomes)
        self.assertNotIn("unreachable", logs)
        self.assertNotIn("Too many open files", logs)
        return outcomes

    def test_closing_connections_still_hold_descriptors(self):
        """Clients whose session the proxy ended (a protocol error: a second
        CONNECT) and that then neither read nor close keep their descriptors
        in the proxy for up to the linger (2 s), waiting for their FIN, after
        they stopped counting as open. Clients arriving meanwhile are refused
        at accept, not accepted only to fail their broker dial with EMFILE;
        once the lingering ones are gone, clients are authenticated again."""
        outcomes = self.lingering_then_newcomers(connect_packet("again"), "linger")
        self.assertIn("refused", outcomes)  # the lingering connections were counted
        time.sleep(2.5)  # the linger passes
        authenticated_socket(self.system.port, "after-the-linger").close()

    def test_clients_that_said_disconnect_free_their_descriptors_at_once(self):
        """A client that sent DISCONNECT closes its side itself
        [MQTT-3.14.4-1]: the proxy closes its socket at once instead of
        waiting (up to the linger) for the client's FIN, so 16 such clients
        that never close leave room for 16 newcomers right away."""
        outcomes = self.lingering_then_newcomers(b"\xe0\x00", "goodbye")
        self.assertEqual(outcomes, ["authenticated"] * 16)

    def test_more_clients_than_descriptors(self):
        clients = []
        for i in range(80):  # each holds a client and a broker descriptor
            try:
                sock = socket.create_connection(("127.0.0.1", self.system.port), timeout=5)
                sock.sendall(connect_packet(f"many-{i}") + publish_packet("service/auth/alice-token", b"", qos=0))
                clients.append(sock)
            except OSError:
                pass
            time.sleep(0.01)
        outcomes = [self.outcome(sock) for sock in clients]
        logs = self.system.logs()
        self.assertIsNone(self.system.proxy.poll(), "the proxy died")
        # 64 descriptors hold 16 clients (tests/unit/listener_test.cpp): the rest are refused at accept.
        self.assertIn("connection limit 16 reached (open file limit 64", logs)
        self.assertNotIn("unreachable", logs)  # none accepted only to fail its broker dial (EMFILE)
        self.assertNotIn("Too many open files", logs)
        self.assertNotIn("timed out", logs)
        self.assertNotIn("Operation canceled", logs)  # what a failed open became inside asio's range connect
        counts = {o: outcomes.count(o) for o in set(outcomes)}
        self.assertEqual(set(counts) - {"refused", "authenticated"}, set(), counts)  # no hang, nothing half-done
        self.assertGreater(counts.get("refused", 0), 0, counts)
        self.assertGreater(counts.get("authenticated", 0), 0, counts)
        self.assertLessEqual(counts.get("authenticated", 0), 16, counts)
        for sock in clients:
            sock.close()
        time.sleep(2.5)  # closes and the linger period
        sock = authenticated_socket(self.system.port, "after-the-storm")  # descriptors are back
        sock.close()


if __name__ == "__main__":
    given = sys.argv.pop(1) if len(sys.argv) > 1 else None
    PROXY = os.environ.get("MQTT_PROXY_BINARY") or given
    unittest.main(verbosity=2)
