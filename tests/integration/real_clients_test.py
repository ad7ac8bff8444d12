#!/usr/bin/python3
"""mqtt-proxy with clients we did not write: paho-mqtt (3.1.1 and 5.0) and
mosquitto_pub / mosquitto_sub, against a real Mosquitto that refuses anonymous
clients, with a stub API server. Usage: real_clients_test.py PATH/TO/mqtt-proxy"""
import json
import os
import queue
import subprocess
import sys
import threading
import time
import unittest

import paho.mqtt.client as mqtt

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from netutil import free_port  # noqa: E402
from paho_app import granted_codes  # noqa: E402
from processes import OneSystemPerClass, ProcessGroup, proxy_argv  # noqa: E402
from stub_auth import StubAuthServer  # noqa: E402


PROXY = None
SESSIONS = {
    "alice-token": {"user": "alice", "acl": {"publish": ["private/alice/#"], "subscribe": ["private/alice/#"]}},
    "bob-token": {"user": "bob", "acl": {"publish": ["private/bob/#"], "subscribe": ["private/bob/#"]}},
}


class System(ProcessGroup):
    """Mosquitto + stub API server + mqtt-proxy on free loopback ports."""

    def __init__(self):
        super().__init__("real-clients-", must_stop=True)
        _, self.broker_port = self.mosquitto()
        self.port = free_port()
        self.auth = StubAuthServer(SESSIONS)
        self.at_close(self.auth.close)
        self.spawn("proxy", proxy_argv(PROXY, self.port, self.broker_port, self.auth.url), ports=[self.port])


class PahoClient:
    def __init__(self, system, client_id, version):
        self.messages, self.granted, self.disconnected = queue.Queue(), queue.Queue(), threading.Event()
        self.client = mqtt.Client(client_id=client_id, protocol=version)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload.decode(), m.qos))
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = lambda c, u, *rest: self.disconnected.set()
        self.system = system

    def _on_subscribe(self, client, userdata, mid, granted, *rest):
        self.granted.put(granted_codes(granted))

    def connect(self, subscribe_first=None, will=None):
        if will:
            self.client.will_set(*will)
        if subscribe_first:
            # Subscribing from on_connect, as many apps do: before authentication.
            self.client.on_connect = lambda c, u, *rest: c.subscribe(subscribe_first, qos=2)
        self.client.reconnect_delay_set(60, 60)
        self.client.connect("127.0.0.1", self.system.port, 30)
        self.client.loop_start()

    def authenticate(self, token):
        self.client.publish("service/auth/" + token, b"", qos=1)
        topic, payload, _ = self.messages.get(timeout=5)
        assert topic == "service/auth/" + token, topic
        return json.loads(payload)

    def stop(self):
        self.client.loop_stop()


class RealClients(OneSystemPerClass, unittest.TestCase):
    make_system = System

    def paho_flow(self, version, name):
        c = PahoClient(self.system, name, version)
        c.connect(subscribe_first="private/alice/#")
        self.assertEqual(c.authenticate("alice-token"), {"result": "ok", "user": "alice"})
        self.assertEqual(c.granted.get(timeout=5), [2])  # QoS 2 asked, QoS 2 granted, through the proxy
        for qos in (0, 1, 2):
            c.client.publish("private/alice/paho", f"qos{qos}", qos=qos)
            self.assertEqual(c.messages.get(timeout=5), ("private/alice/paho", f"qos{qos}", qos))
        c.client.disconnect()
        c.stop()

    def test_paho_311(self):
        self.paho_flow(mqtt.MQTTv311, "paho311")

    def test_paho_5(self):
        self.paho_flow(mqtt.MQTTv5, "paho5")

    def test_paho_invalid_session_is_denied_and_disconnected(self):
        for version in (mqtt.MQTTv311, mqtt.MQTTv5):
            c = PahoClient(self.system, "intruder", version)
            c.connect()
            self.assertEqual(c.authenticate("forged"), {"result": "denied", "reason": "invalid_session"})
            self.assertTrue(c.disconnected.wait(5))
            c.stop()

    def test_paho_will_on_abrupt_drop(self):
        watcher = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.system.broker_port), "-u", "proxy", "-P",
             "proxy-secret", "-t", "private/alice/will", "-C", "1", "-W", "10"], stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        c = PahoClient(self.system, "dropper", mqtt.MQTTv311)
        c.connect(will=("private/alice/will", "paho died", 1))
        self.assertEqual(c.authenticate("alice-token")["result"], "ok")
        c.stop()
        c.client.socket().close()  # no DISCONNECT
        out, _ = watcher.communicate(timeout=15)
        self.assertEqual(out.strip(), "paho died")

    def mosquitto_clients(self, version):
        base = ["-h", "127.0.0.1", "-p", str(self.system.port), "-V", version, "-u", "alice", "-P", "alice-token"]
        sub = subprocess.Popen(["mosquitto_sub", *base, "-i", f"sub-{version}", "-t", "private/alice/cli", "-q", "2",
                                "-C", "1", "-W", "10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        pub = subprocess.run(["mosquitto_pub", *base, "-i", f"pub-{version}", "-t", "private/alice/cli", "-q", "2",
                              "-m", f"hello {version}"], capture_output=True, text=True, timeout=10)
        self.assertEqual(pub.returncode, 0, pub.stderr)
        out, err = sub.communicate(timeout=15)
        self.assertEqual(out.strip(), f"hello {version}", err)
        denied = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.system.port), "-V", version,
                                 "-u", "x", "-P", "forged", "-t", "private/alice/cli", "-m", "x"],
                                capture_output=True, text=True, timeout=10)
        self.assertNotEqual(denied.returncode, 0)
        self.assertIn("not authori", (denied.stderr + denied.stdout).lower())
        outside = subprocess.run(["mosquitto_sub", *base, "-i", f"greedy-{version}", "-t", "#", "-C", "1", "-W", "2"],
                                 capture_output=True, text=True, timeout=10)
        # The SUBACK refuses '#'; mosquitto_sub reports it and gives up.
        self.assertIn("All subscription requests were denied", outside.stdout + outside.stderr)

    def test_mosquitto_clients_311(self):
        self.mosquitto_clients("mqttv311")

    def test_mosquitto_clients_5(self):
        self.mosquitto_clients("mqttv5")


if __name__ == "__main__":
    PROXY = sys.argv.pop(1)
    PROXY = os.environ.get("MQTT_PROXY_BINARY") or PROXY  # run.sh: the ASan+UBSan build
    unittest.main(verbosity=2)
