#!/usr/bin/python3
"""mqtt-proxy's transports with real peers: mosquitto_pub/sub over TLS, paho
and MQTT.js over ws:// and wss://, a hand-rolled WebSocket client for framing
edge cases, mTLS, PROXY protocol before TLS and WebSocket, certificate reload
on SIGHUP, and Mosquitto behind a TLS listener (with a client certificate) as
the upstream. Certificates are made here with the openssl command line.
Usage: transports_test.py PATH/TO/mqtt-proxy"""
import json
import os
import queue
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import paho.mqtt.client as mqtt

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from certs import make_ca, make_leaf  # noqa: E402
from mosquitto import mosquitto_binary, write_passwd  # noqa: E402
from netutil import free_port, wait_for_port  # noqa: E402
from stub_auth import StubAuthServer  # noqa: E402
from wire import (RawWebSocket, connect_packet, publish_fields, publish_packet,  # noqa: E402
                  subscribe_packet, ws_frame)

PROXY = None
SESSIONS = {
    "alice-token": {"user": "alice", "acl": {"publish": ["private/alice/#"], "subscribe": ["private/alice/#"]}},
}


# ---------------------------------------------------------------- the system

class System:
    """Mosquitto (plain and TLS listeners) + stub API server + two proxies."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="transports-")
        os.chmod(self.dir, 0o755)  # mosquitto started as root drops to its own user and must read the files
        d = self.dir
        self.ca = make_ca(d, "test-ca")
        self.rogue_ca = make_ca(d, "rogue-ca")
        self.server = make_leaf(d, "server", "/CN=localhost", self.ca, "DNS:localhost,IP:127.0.0.1")
        self.reloaded = make_leaf(d, "reloaded", "/O=Reloaded/CN=localhost", self.ca, "DNS:localhost,IP:127.0.0.1")
        self.device = make_leaf(d, "device", "/CN=device-1", self.ca)
        self.rogue_device = make_leaf(d, "rogue-device", "/CN=device-1", self.rogue_ca)
        self.proxy_client = make_leaf(d, "proxy-client", "/CN=proxy", self.ca)
        # The files proxy A serves; the reload test overwrites them.
        self.live_cert, self.live_key = os.path.join(d, "live.pem"), os.path.join(d, "live.key")
        shutil.copy(self.server[1], self.live_cert)
        shutil.copy(self.server[0], self.live_key)
        for name in os.listdir(d):
            os.chmod(os.path.join(d, name), 0o644)

        self.broker_port, self.broker_tls_port = free_port(), free_port()
        passwd = write_passwd(d)
        conf = os.path.join(d, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"per_listener_settings false\nallow_anonymous false\npassword_file {passwd}\npersistence false\n"
                    f"listener {self.broker_port} 127.0.0.1\n"
                    f"listener {self.broker_tls_port} 127.0.0.1\ncafile {self.ca[1]}\ncertfile {self.server[1]}\n"
                    f"keyfile {self.server[0]}\nrequire_certificate true\ntls_version tlsv1.2\n")
        self.broker_log = open(os.path.join(d, "mosquitto.log"), "w")
        self.broker = subprocess.Popen([mosquitto_binary(), "-c", conf], stdout=self.broker_log, stderr=subprocess.STDOUT)
        self.auth = StubAuthServer(SESSIONS)
        wait_for_port(self.broker_port)
        wait_for_port(self.broker_tls_port)

        # Proxy A: all four listeners; the broker over TLS with a client certificate.
        self.tcp, self.tls, self.ws, self.wss, self.admin = (free_port() for _ in range(5))
        self.proxy_a, self.log_a = self.start_proxy(
            "a", ["--listen", f"127.0.0.1:{self.tcp}", "--tls-listen", f"127.0.0.1:{self.tls}",
                  "--ws-listen", f"127.0.0.1:{self.ws}", "--wss-listen", f"127.0.0.1:{self.wss}",
                  "--tls-cert", self.live_cert, "--tls-key", self.live_key,
                  "--handshake-timeout-ms", "1000",
                  "--upstream", f"127.0.0.1:{self.broker_tls_port}", "--upstream-tls", "--upstream-ca", self.ca[1],
                  "--upstream-cert", self.proxy_client[1], "--upstream-key", self.proxy_client[0],
                  "--upstream-server-name", "localhost", "--admin", f"127.0.0.1:{self.admin}"],
            [self.tcp, self.tls, self.ws, self.wss])
        # Proxy B: mTLS, an origin allow-list, and a PROXY protocol header expected on every listener.
        self.mtls, self.ws_pp = free_port(), free_port()
        self.proxy_b, self.log_b = self.start_proxy(
            "b", ["--listen", "off", "--tls-listen", f"127.0.0.1:{self.mtls}", "--ws-listen", f"127.0.0.1:{self.ws_pp}",
                  "--tls-cert", self.server[1], "--tls-key", self.server[0], "--tls-client-ca", self.ca[1],
                  "--ws-allowed-origin", "https://app.example", "--proxy-protocol", "--handshake-timeout-ms", "1000",
                  "--upstream", f"127.0.0.1:{self.broker_port}",
                  "--admin", f"127.0.0.1:{free_port()}"],
            [self.mtls, self.ws_pp])

    def start_proxy(self, name, args, ports):
        path = os.path.join(self.dir, f"proxy-{name}.log")
        log = open(path, "w")
        process = subprocess.Popen(
            [PROXY, *args, "--upstream-username", "proxy", "--upstream-password", "proxy-secret",
             "--auth-url", self.auth.url, "--log-level", "debug"],
            stdout=log, stderr=subprocess.STDOUT)
        for port in ports:
            wait_for_port(port)
        return process, path

    def tls_context(self, ca=None, cert=None):
        context = ssl.create_default_context(cafile=ca or self.ca[1])
        if cert:
            context.load_cert_chain(cert[1], cert[0])
        return context

    def metric(self, name, labels):
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=5).read().decode()
        match = re.search(re.escape(name + labels) + r" (\d+)", text)
        return int(match.group(1)) if match else None

    def metric_reaches(self, name, labels, expected, timeout=3):
        """The counter's value once it reached `expected` (or at the deadline): the
        proxy counts on the connection's own thread, maybe just after the client saw the close."""
        deadline = time.time() + timeout
        while True:
            value = self.metric(name, labels)
            if value >= expected or time.time() > deadline:
                return value
            time.sleep(0.05)

    def close(self):
        for p in (self.proxy_a, self.proxy_b, self.broker):
            p.terminate()
            p.wait(timeout=10)
        self.auth.close()
        self.broker_log.close()
        if os.environ.get("KEEP_TEST_DIR"):
            print("kept", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def proxy_v1(source="203.0.113.7", port=40000):
    return f"PROXY TCP4 {source} 127.0.0.1 {port} 5000\r\n".encode()


def proxy_v2(source="203.0.113.7", port=40000):
    address = socket.inet_aton(source) + socket.inet_aton("127.0.0.1") + struct.pack(">HH", port, 5000)
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack(">H", len(address)) + address


def read_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("closed after %d bytes" % len(data))
        data += chunk
    return data


def connack_over(sock, username="alice", password="alice-token"):
    sock.sendall(connect_packet("raw-" + str(time.time()), username, password))
    return read_exactly(sock, 4)


class Paho:
    """paho over tcp/tls/websockets, authenticating with the auth topic."""

    def __init__(self, port, transport="tcp", tls=None, version=mqtt.MQTTv311, name="paho"):
        self.messages, self.granted = queue.Queue(), queue.Queue()
        self.client = mqtt.Client(client_id=f"{name}-{transport}-{version}", protocol=version, transport=transport)
        if transport == "websockets":
            self.client.ws_set_options(path="/mqtt")
        if tls:
            self.client.tls_set_context(tls)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload.decode(), m.qos))
        self.client.on_subscribe = lambda c, u, mid, granted, *rest: self.granted.put(
            [getattr(g, "value", g) for g in granted])
        self.client.reconnect_delay_set(60, 60)
        self.client.connect("localhost", port, 30)
        self.client.loop_start()

    def authenticate(self, token="alice-token"):
        self.client.publish("service/auth/" + token, b"", qos=1)
        topic, payload, _ = self.messages.get(timeout=5)
        assert topic == "service/auth/" + token, topic
        return json.loads(payload)

    def round_trip(self, test, topic="private/alice/paho"):
        self.client.subscribe(topic, qos=2)
        test.assertEqual(self.granted.get(timeout=5), [2])
        for qos in (0, 1, 2):
            self.client.publish(topic, f"qos{qos}", qos=qos)
            test.assertEqual(self.messages.get(timeout=5), (topic, f"qos{qos}", qos))

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()


class Transports(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        mqttjs = os.path.join(HERE, "mqttjs")
        if not os.path.isdir(os.path.join(mqttjs, "node_modules", "mqtt")):
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=mqttjs, check=True)
        cls.system = System()

    @classmethod
    def tearDownClass(cls):
        cls.system.close()

    # ------------------------------------------------------------ TLS

    def test_mosquitto_clients_over_tls_to_a_tls_broker(self):
        s = self.system
        base = ["-h", "localhost", "-p", str(s.tls), "--cafile", s.ca[1], "-u", "alice", "-P", "alice-token"]
        sub = subprocess.Popen(["mosquitto_sub", *base, "-i", "tls-sub", "-t", "private/alice/tls", "-q", "2",
                                "-C", "1", "-W", "10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        pub = subprocess.run(["mosquitto_pub", *base, "-i", "tls-pub", "-t", "private/alice/tls", "-q", "2",
                              "-m", "over tls both ways"], capture_output=True, text=True, timeout=10)
        self.assertEqual(pub.returncode, 0, pub.stderr)
        out, err = sub.communicate(timeout=15)
        self.assertEqual(out.strip(), "over tls both ways", err)

    def test_tls_client_refuses_a_proxy_it_does_not_trust(self):
        s = self.system
        pub = subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(s.tls), "--cafile", s.rogue_ca[1],
                              "-u", "alice", "-P", "alice-token", "-t", "private/alice/x", "-m", "x"],
                             capture_output=True, text=True, timeout=10)
        self.assertNotEqual(pub.returncode, 0)
        self.assertIn("tls error", (pub.stdout + pub.stderr).lower())
        time.sleep(0.2)
        with open(s.log_a) as f:
            self.assertIn("alert unknown ca", f.read())  # the client's TLS alert, logged by the proxy

    def test_tls_protocol_floor_is_1_2(self):
        context = self.system.tls_context()
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            with socket.create_connection(("127.0.0.1", self.system.tls), timeout=5) as raw:
                context.wrap_socket(raw, server_hostname="localhost").close()
        time.sleep(0.2)
        with open(self.system.log_a) as f:
            self.assertIn("unsupported protocol", f.read())  # refused by the proxy, not by the client

    def test_tls_1_2_with_a_legacy_cipher_is_refused(self):
        context = self.system.tls_context()
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers("ECDHE-ECDSA-AES128-SHA")  # CBC with SHA-1: not in the modern list
        with self.assertRaises(ssl.SSLError):
            with socket.create_connection(("127.0.0.1", self.system.tls), timeout=5) as raw:
                context.wrap_socket(raw, server_hostname="localhost").close()
        time.sleep(0.2)
        with open(self.system.log_a) as f:
            self.assertIn("no shared cipher", f.read())  # refused by the proxy's list, not by the client
        context.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
        with socket.create_connection(("127.0.0.1", self.system.tls), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                self.assertEqual(tls.version(), "TLSv1.2")
                self.assertEqual(connack_over(tls), b"\x20\x02\x00\x00")

    def test_garbage_and_silence_on_the_tls_listener_end_only_that_connection(self):
        s = self.system
        before = s.metric("mqtt_proxy_handshake_failures_total", '{transport="tls"}')
        with socket.create_connection(("127.0.0.1", s.tls), timeout=5) as garbage:
            garbage.sendall(connect_packet("plaintext-on-tls"))
            self.assertEqual(garbage.recv(1024), b"")  # closed; maybe after a TLS alert
        started = time.time()
        with socket.create_connection(("127.0.0.1", s.tls), timeout=5) as silent:
            self.assertEqual(silent.recv(1024), b"")
        self.assertLess(time.time() - started, 4)  # handshake timeout is 1 s here
        self.assertGreaterEqual(time.time() - started, 0.8)
        self.assertGreaterEqual(s.metric_reaches("mqtt_proxy_handshake_failures_total", '{transport="tls"}', before + 2),
                                before + 2)
        with socket.create_connection(("127.0.0.1", s.tls), timeout=5) as raw:  # still serving
            with s.tls_context().wrap_socket(raw, server_hostname="localhost") as tls:
                self.assertEqual(connack_over(tls), b"\x20\x02\x00\x00")
        with open(s.log_a) as f:
            self.assertIn("tls handshake with", f.read())

    def test_denied_session_over_tls_gets_its_answer_then_close_notify(self):
        s = self.system
        raw = socket.create_connection(("127.0.0.1", s.tls), timeout=5)
        with s.tls_context().wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as tls:
            self.assertEqual(connack_over(tls, None, None), b"\x20\x02\x00\x00")
            tls.sendall(publish_packet("service/auth/forged", b""))
            data = b""
            while True:
                chunk = tls.recv(4096)  # a TCP close without close_notify raises SSLEOFError here
                if not chunk:
                    break
                data += chunk
        topic, payload = publish_fields(data)
        self.assertEqual(json.loads(payload), {"result": "denied", "reason": "invalid_session"})

    def test_will_through_a_tls_broker_connection(self):
        """A clean DISCONNECT must reach the broker before TLS closes (no will);
        an abrupt drop must not look clean (will)."""
        s = self.system
        for clean in (True, False):
            with self.subTest(clean=clean):
                watcher = subprocess.Popen(
                    ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(s.broker_port), "-u", "proxy", "-P",
                     "proxy-secret", "-t", "private/alice/will", "-C", "1", "-W", "3"],
                    stdout=subprocess.PIPE, text=True)
                time.sleep(0.3)
                c = mqtt.Client(client_id=f"will-{clean}")
                c.tls_set_context(s.tls_context())
                messages = queue.Queue()
                c.on_message = lambda cl, u, m: messages.put(m.payload)
                c.will_set("private/alice/will", "gone", qos=1)
                c.connect("localhost", s.tls, 30)
                c.loop_start()
                c.publish("service/auth/alice-token", b"", qos=1)
                self.assertEqual(json.loads(messages.get(timeout=5))["result"], "ok")
                time.sleep(0.2)
                if clean:
                    c.disconnect()
                    c.loop_stop()
                else:
                    c.loop_stop()
                    c.socket().close()
                out, _ = watcher.communicate(timeout=10)
                self.assertEqual(out.strip(), "" if clean else "gone")

    def test_mtls_requires_a_certificate_from_the_configured_ca(self):
        s = self.system
        for cert, ok in ((s.device, True), (None, False), (s.rogue_device, False)):
            with self.subTest(cert=cert and cert[1]):
                raw = socket.create_connection(("127.0.0.1", s.mtls), timeout=5)
                raw.sendall(proxy_v2())
                try:
                    tls = s.tls_context(cert=cert).wrap_socket(raw, server_hostname="localhost")
                    # TLS 1.3 reports a refused client certificate on the first read.
                    answer = connack_over(tls)
                    self.assertTrue(ok, "a connection without a valid client certificate got through")
                    self.assertEqual(answer, b"\x20\x02\x00\x00")
                    tls.close()
                except (ssl.SSLError, EOFError, ConnectionError) as e:
                    self.assertFalse(ok, f"refused: {e}")
                    raw.close()

    def test_proxy_protocol_before_tls_and_before_websocket(self):
        s = self.system
        s.auth.remote_addrs.clear()
        raw = socket.create_connection(("127.0.0.1", s.mtls), timeout=5)
        raw.sendall(proxy_v2("203.0.113.7", 40001))
        with s.tls_context(cert=s.device).wrap_socket(raw, server_hostname="localhost") as tls:
            self.assertEqual(connack_over(tls), b"\x20\x02\x00\x00")
        ws = RawWebSocket(s.ws_pp, prefix=proxy_v1("198.51.100.9", 40002))
        self.assertEqual(ws.status, 101)
        ws.send(2, connect_packet("ws-behind-lb", "alice", "alice-token"))
        self.assertEqual(ws.packet(), b"\x20\x02\x00\x00")
        ws.close()
        self.assertIn("203.0.113.7:40001", s.auth.remote_addrs)
        self.assertIn("198.51.100.9:40002", s.auth.remote_addrs)
        time.sleep(0.3)
        with open(s.log_b) as f:
            log = f.read()
        self.assertIn("remote=203.0.113.7:40001", log)
        self.assertIn("remote=198.51.100.9:40002", log)

    def test_a_stalled_proxy_header_is_cut_off_at_the_handshake_deadline(self):
        started = time.time()
        with socket.create_connection(("127.0.0.1", self.system.ws_pp), timeout=5) as stalled:
            stalled.sendall(b"PROXY TCP4 203.0.113")  # and then nothing
            self.assertEqual(stalled.recv(1024), b"")
        self.assertLess(time.time() - started, 4)
        self.assertGreaterEqual(time.time() - started, 0.8)
        time.sleep(0.2)
        with open(self.system.log_b) as f:
            self.assertIn("no PROXY protocol header within 1000 ms", f.read())

    def test_certificate_reload_on_sighup_keeps_open_connections(self):
        s = self.system
        old = Paho(s.tls, tls=s.tls_context(), name="before-reload")
        self.assertEqual(old.authenticate()["result"], "ok")
        shutil.copy(s.reloaded[1], s.live_cert)
        shutil.copy(s.reloaded[0], s.live_key)
        try:
            s.proxy_a.send_signal(signal.SIGHUP)
            deadline = time.time() + 5
            while True:
                with socket.create_connection(("127.0.0.1", s.tls), timeout=5) as raw:
                    with s.tls_context().wrap_socket(raw, server_hostname="localhost") as tls:
                        subject = dict(x[0] for x in tls.getpeercert()["subject"])
                if subject.get("organizationName") == "Reloaded" or time.time() > deadline:
                    break
                time.sleep(0.1)
            self.assertEqual(subject.get("organizationName"), "Reloaded")
            old.round_trip(self, "private/alice/reload")  # the connection from before the reload still relays
            # Broken files: the proxy keeps serving the last good certificate.
            with open(s.live_key, "w") as f:
                f.write("not a key\n")
            s.proxy_a.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            with socket.create_connection(("127.0.0.1", s.tls), timeout=5) as raw:
                with s.tls_context().wrap_socket(raw, server_hostname="localhost") as tls:
                    self.assertEqual(connack_over(tls), b"\x20\x02\x00\x00")
            with open(s.log_a) as f:
                self.assertIn("keeping the old TLS certificates", f.read())
        finally:
            old.stop()
            shutil.copy(s.server[1], s.live_cert)
            shutil.copy(s.server[0], s.live_key)
            s.proxy_a.send_signal(signal.SIGHUP)

    # ------------------------------------------------------------ WebSocket: real clients

    def test_paho_over_websocket(self):
        for version in (mqtt.MQTTv311, mqtt.MQTTv5):
            with self.subTest(version=version):
                c = Paho(self.system.ws, transport="websockets", version=version)
                self.assertEqual(c.authenticate(), {"result": "ok", "user": "alice"})
                c.round_trip(self)
                c.stop()

    def test_paho_over_secure_websocket(self):
        c = Paho(self.system.wss, transport="websockets", tls=self.system.tls_context())
        self.assertEqual(c.authenticate(), {"result": "ok", "user": "alice"})
        c.round_trip(self)
        c.stop()

    def mqttjs(self, url, version, ca=None):
        args = ["node", os.path.join(HERE, "mqttjs", "client.mjs"), url, "alice-token", "alice", str(version)]
        run = subprocess.run(args + ([ca] if ca else []), capture_output=True, text=True, timeout=30)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        result = json.loads(run.stdout.strip().splitlines()[-1])
        self.assertEqual(result["auth"], {"result": "ok", "user": "alice"})
        self.assertEqual(result["granted"], [2])
        self.assertEqual(sorted(result["messages"]), [["private/alice/mqttjs", f"qos{q}", q] for q in (0, 1, 2)])

    def test_mqttjs_over_ws(self):
        for version in (4, 5):
            with self.subTest(version=version):
                self.mqttjs(f"ws://localhost:{self.system.ws}/mqtt", version)

    def test_mqttjs_over_wss(self):
        self.mqttjs(f"wss://localhost:{self.system.wss}/mqtt", 4, self.system.ca[1])

    # ------------------------------------------------------------ WebSocket: framing edge cases

    def test_packets_split_across_and_packed_into_frames_with_ping_and_close(self):
        ws = RawWebSocket(self.system.ws, protocols="chat, mqtt")
        self.assertEqual(ws.status, 101)
        self.assertEqual(ws.headers.get("sec-websocket-protocol"), "mqtt")
        connect = connect_packet("framing")
        # One CONNECT as a fragmented message with a ping between the fragments.
        ws.send(2, connect[:5], fin=False)
        ws.send(9, b"are you there")
        ws.send(0, connect[5:], fin=True)
        self.assertEqual(ws.frame(), (0x80, 10, b"are you there"))  # pong, same payload
        self.assertEqual(ws.packet(), b"\x20\x02\x00\x00")
        # The auth PUBLISH and a SUBSCRIBE packed into one frame.
        ws.send(2, publish_packet("service/auth/alice-token", b"") + subscribe_packet(7, "private/alice/#", 2))
        topic, payload = publish_fields(ws.packet())
        self.assertEqual((topic, json.loads(payload)), ("service/auth/alice-token", {"result": "ok", "user": "alice"}))
        self.assertEqual(ws.packet(), b"\x90\x03\x00\x07\x02")
        # A PUBLISH split over two separate messages.
        publish = publish_packet("private/alice/raw", b"split in two")
        ws.send(2, publish[:9])
        ws.send(2, publish[9:])
        self.assertEqual(publish_fields(ws.packet()), ("private/alice/raw", b"split in two"))
        # Close handshake started by the client: the server answers with a close frame, then closes TCP.
        ws.send(8, struct.pack(">H", 1000))
        fin, opcode, payload = ws.frame()
        self.assertEqual(opcode, 8)
        self.assertEqual(ws.sock.recv(16), b"")
        ws.close()

    def test_text_frames_close_the_connection(self):
        ws = RawWebSocket(self.system.ws)
        ws.send(2, connect_packet("texter"))
        self.assertEqual(ws.packet(), b"\x20\x02\x00\x00")
        ws.send(1, b"MQTT in a text frame")  # MQTT-6.0.0-1
        with self.assertRaises(EOFError):
            while True:
                ws.packet()
        ws.close()

    # Hostile WebSocket clients: each broken frame ends that connection with a
    # close frame naming the violation (RFC 6455 7.4.1), then TCP closes; the
    # proxy serves the next client.

    def assert_failed_with(self, ws, code):
        with self.assertRaisesRegex(EOFError, "close frame %04x" % code):
            while True:
                ws.packet()
        self.assertEqual(ws.sock.recv(16), b"")  # and TCP is closed
        ws.close()

    def assert_still_serving(self):
        ws = RawWebSocket(self.system.ws)
        ws.send(2, connect_packet("after-a-hostile-one"))
        self.assertEqual(ws.packet(), b"\x20\x02\x00\x00")
        ws.close()

    def test_unmasked_client_frame_fails_with_1002(self):
        ws = RawWebSocket(self.system.ws)
        ws.send(2, connect_packet("unmasked"))
        self.assertEqual(ws.packet(), b"\x20\x02\x00\x00")
        payload = subscribe_packet(1, "private/alice/#", 0)
        ws.sock.sendall(bytes([0x82, len(payload)]) + payload)  # no mask bit, no key (RFC 6455 5.1)
        self.assert_failed_with(ws, 1002)
        self.assert_still_serving()

    def test_oversized_and_fragmented_control_frames_fail_with_1002(self):
        for name, frame in (("oversized ping", ws_frame(9, b"p" * 126)),
                            ("fragmented ping", ws_frame(9, b"half", fin=False)),
                            ("reserved opcode", ws_frame(0xB, b"")),
                            ("continuation of nothing", ws_frame(0, b"\x10", fin=True))):
            with self.subTest(name):
                ws = RawWebSocket(self.system.ws)
                ws.send(2, connect_packet("control-" + name.replace(" ", "-")))
                self.assertEqual(ws.packet(), b"\x20\x02\x00\x00")
                ws.sock.sendall(frame)
                self.assert_failed_with(ws, 1002)
        self.assert_still_serving()

    def test_text_frame_fails_with_1003_over_wss_too(self):
        ws = RawWebSocket(self.system.wss, tls=self.system.tls_context())
        ws.send(2, connect_packet("texter-tls"))
        self.assertEqual(ws.packet(), b"\x20\x02\x00\x00")
        ws.send(1, b"MQTT in a text frame")  # MQTT-6.0.0-1
        with self.assertRaisesRegex(EOFError, "close frame 03eb"):
            while True:
                ws.packet()
        ws.close()

    def test_a_flood_of_pings_while_not_reading_costs_the_proxy_no_memory(self):
        """64 MB of pings from a client that reads nothing: the proxy answers only the latest ping
        of what it has read (RFC 6455 5.5.3) and stops reading while a pong cannot be sent, so its
        memory stays flat; other clients are served meanwhile, and the flooder, reading again,
        gets pongs with the ping's payload."""
        pid = self.system.proxy_a.pid
        ws = RawWebSocket(self.system.ws)
        ws.send(2, connect_packet("ping-flooder"))
        self.assertEqual(ws.packet(), b"\x20\x02\x00\x00")
        before = rss_kib(pid)
        burst = ws_frame(9, b"x" * 125) * 512
        ws.sock.settimeout(3)
        sent = 0
        try:
            while sent < 64 * 1024 * 1024:
                ws.sock.sendall(burst)
                sent += len(burst)
        except socket.timeout:
            pass  # held back by TCP: the proxy stopped reading
        self.assertGreater(sent, 1024 * 1024)
        self.assert_still_serving()
        if os.environ.get("MQTT_PROXY_SANITIZED") != "1":  # ASan's quarantine keeps freed blocks resident
            self.assertLess(rss_kib(pid) - before, 8 * 1024, f"after {sent} bytes of pings")
        ws.sock.settimeout(10)
        pongs = 0
        while pongs < 3:
            fin, opcode, payload = ws.frame()
            self.assertEqual((opcode, payload), (10, b"x" * 125))
            pongs += 1
        ws.close()

    def test_denied_session_gets_its_answer_then_a_close_frame(self):
        ws = RawWebSocket(self.system.wss, tls=self.system.tls_context())
        ws.send(2, connect_packet("forger"))
        self.assertEqual(ws.packet(), b"\x20\x02\x00\x00")
        ws.send(2, publish_packet("service/auth/forged", b""))
        topic, payload = publish_fields(ws.packet())
        self.assertEqual(json.loads(payload), {"result": "denied", "reason": "invalid_session"})
        with self.assertRaisesRegex(EOFError, "close frame 03e8"):  # 1000, normal closure
            ws.packet()
        ws.send(8, struct.pack(">H", 1000))
        ws.close()

    def test_upgrade_requests_that_are_refused(self):
        s = self.system
        cases = [
            (s.ws, dict(protocols="chat"), 400),
            (s.ws, dict(protocols=None), 400),
            (s.ws, dict(path="/elsewhere"), 404),
            (s.ws, dict(origin="https://anywhere.example"), 101),  # no allow-list on proxy A
            (s.ws_pp, dict(origin="https://evil.example", prefix=proxy_v1()), 403),
            (s.ws_pp, dict(origin="https://APP.example", prefix=proxy_v1()), 101),
            (s.ws_pp, dict(prefix=proxy_v1()), 101),  # no Origin: not a browser
        ]
        before = s.metric("mqtt_proxy_handshake_failures_total", '{transport="ws"}')
        for port, kwargs, status in cases:
            with self.subTest(**kwargs):
                ws = RawWebSocket(port, **kwargs)
                self.assertEqual(ws.status, status)
                if status != 101:
                    self.assertNotIn("sec-websocket-protocol", ws.headers)
                ws.close()
        with socket.create_connection(("127.0.0.1", s.ws), timeout=5) as plain:
            plain.sendall(b"GET /mqtt HTTP/1.1\r\nHost: localhost\r\n\r\n")
            self.assertIn(b" 426 ", plain.recv(4096))
        with socket.create_connection(("127.0.0.1", s.ws), timeout=5) as garbage:
            garbage.sendall(connect_packet("mqtt-on-a-websocket-port"))
            answer = garbage.recv(4096)
            self.assertTrue(answer.startswith(b"HTTP/1.1 400"), answer)
        self.assertEqual(s.metric_reaches("mqtt_proxy_handshake_failures_total", '{transport="ws"}', before + 5), before + 5)

    # ------------------------------------------------------------ upstream TLS

    def test_upstream_with_an_untrusted_certificate_is_refused(self):
        s = self.system
        port = free_port()
        proxy, log = s.start_proxy(
            "untrusting", ["--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{s.broker_tls_port}",
                           "--upstream-tls", "--upstream-ca", s.rogue_ca[1], "--upstream-cert", s.proxy_client[1],
                           "--upstream-key", s.proxy_client[0], "--admin", f"127.0.0.1:{free_port()}"], [port])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                self.assertEqual(connack_over(raw), b"\x20\x02\x00\x03")  # 3.1.1: server unavailable
            with open(log) as f:
                self.assertIn("certificate verify failed", f.read())
        finally:
            proxy.terminate()
            proxy.wait(timeout=10)


if __name__ == "__main__":
    PROXY = sys.argv.pop(1)
    PROXY = os.environ.get("MQTT_PROXY_BINARY") or PROXY  # run.sh: the ASan+UBSan build
    unittest.main(verbosity=2)
