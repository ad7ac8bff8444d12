#!/usr/bin/python3
"""One scenario file, two brokers: every scenario runs against Mosquitto and
against test-broker with paho-mqtt (3.1.1 and 5.0) and mosquitto_pub/sub, and
must give the expected observation on both, so the two brokers agree.
Usage: scenarios_test.py PATH/TO/test-broker"""
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.subscribeoptions import SubscribeOptions

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from netutil import free_port, wait_for_port  # noqa: E402

TEST_BROKER = None
V3, V5 = mqtt.MQTTv311, mqtt.MQTTv5


class Broker:
    def __init__(self, kind):
        self.kind, self.port = kind, free_port()
        self.dir = tempfile.mkdtemp(prefix=f"scenario-{kind}-")
        os.chmod(self.dir, 0o755)
        if kind == "mosquitto":
            conf = os.path.join(self.dir, "mosquitto.conf")
            with open(conf, "w") as f:
                f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
            cmd = [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", conf]
        else:
            cmd = [TEST_BROKER, "--listen", f"127.0.0.1:{self.port}", "--sys-interval", "1"]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def close(self):
        self.process.terminate()
        self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Client:
    """A paho client that records what it receives."""

    def __init__(self, broker, client_id, version=V3, clean=True, will=None, expiry=None, subscribe=None):
        self.messages, self.acks = queue.Queue(), queue.Queue()
        self.disconnected = threading.Event()
        self.connected = threading.Event()
        self.flags = {}
        self.client = mqtt.Client(client_id=client_id, protocol=version,
                                  **({"clean_session": clean} if version == V3 else {}))
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload.decode(), m.qos, m.retain))
        self.client.on_subscribe = lambda c, u, mid, granted, *rest: self.acks.put(
            [getattr(g, "value", g) for g in granted])
        self.client.on_disconnect = lambda c, u, *rest: self.disconnected.set()

        def on_connect(c, u, flags, rc, properties=None):
            self.flags = dict(flags) if isinstance(flags, dict) else {"session present": flags.session_present}
            self.properties = properties
            self.connected.set()

        self.client.on_connect = on_connect
        if will:
            self.client.will_set(*will)
        props = None
        if version == V5 and expiry is not None:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = expiry
        self.client.reconnect_delay_set(60, 60)
        kwargs = {"clean_start": clean, "properties": props} if version == V5 else {}
        self.client.connect("127.0.0.1", broker.port, 30, **kwargs)
        self.client.loop_start()
        assert self.connected.wait(5), "no CONNACK"
        if subscribe:
            self.subscribe(*subscribe)

    def subscribe(self, topic, qos=0, options=None):
        if options is not None:
            self.client.subscribe(topic, options=options)
        else:
            self.client.subscribe(topic, qos)
        return self.acks.get(timeout=5)

    def publish(self, topic, payload, qos=0, retain=False):
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5)

    def received(self, count=None, timeout=1.0):
        out = []
        deadline = time.time() + timeout
        while count is None or len(out) < count:
            left = deadline - time.time()
            if left <= 0:
                break
            try:
                out.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
        return out

    def stop(self, clean=True):
        if clean:
            self.client.disconnect()
            self.client.loop_stop()
        else:
            self.client.loop_stop()
            self.client.socket().close()  # no DISCONNECT: the will goes out


# Each scenario takes a broker and returns an observation, the same on both brokers.

def qos2_end_to_end(b, v):
    sub = Client(b, f"q2sub{v}", v, subscribe=(f"q2/{v}/#", 2))
    pub = Client(b, f"q2pub{v}", v)
    pub.publish(f"q2/{v}/x", "exactly once", qos=2)
    got = sub.received(timeout=1.5)
    sub.stop(), pub.stop()
    return got


def granted_qos_is_the_minimum(b, v):
    sub = Client(b, f"minsub{v}", v)
    granted = sub.subscribe(f"min/{v}", 1)
    pub = Client(b, f"minpub{v}", v)
    pub.publish(f"min/{v}", "m", qos=2)
    got = sub.received(1)
    sub.stop(), pub.stop()
    return granted, got


def retained_set_replace_clear(b, v):
    pub = Client(b, f"retpub{v}", v)
    pub.publish(f"ret/{v}", "one", qos=1, retain=True)
    pub.publish(f"ret/{v}", "two", qos=1, retain=True)
    first = Client(b, f"ret1{v}", v, subscribe=(f"ret/{v}", 1)).received(timeout=0.7)
    pub.publish(f"ret/{v}", "", qos=1, retain=True)
    second = Client(b, f"ret2{v}", v, subscribe=(f"ret/{v}", 1)).received(timeout=0.7)
    pub.stop()
    return first, second


def will_on_abrupt_close_not_on_disconnect(b, v):
    watcher = Client(b, f"willw{v}", v, subscribe=(f"will/{v}/#", 1))
    polite = Client(b, f"polite{v}", v, will=(f"will/{v}/polite", "polite gone", 1))
    polite.stop(clean=True)
    crash = Client(b, f"crash{v}", v, will=(f"will/{v}/crash", "crash gone", 1))
    crash.stop(clean=False)
    got = watcher.received(timeout=1.5)
    watcher.stop()
    return got


def persistent_session_queues_while_offline(b, v):
    c = Client(b, f"persist{v}", v, clean=False, expiry=300, subscribe=(f"persist/{v}", 1))
    c.stop()
    pub = Client(b, f"ppub{v}", v)
    for i in range(3):
        pub.publish(f"persist/{v}", f"m{i}", qos=1)
    again = Client(b, f"persist{v}", v, clean=False, expiry=300)
    got = again.received(3, timeout=2)
    present = again.flags.get("session present")
    again.stop(), pub.stop()
    return bool(present), got


def takeover_closes_the_older_connection(b, v):
    first = Client(b, f"same{v}", v)
    second = Client(b, f"same{v}", v)
    kicked = first.disconnected.wait(3)
    alive = not second.disconnected.wait(0.5)
    first.client.loop_stop()
    second.stop()
    return kicked, alive


def shared_subscription_shares(b, v):
    a = Client(b, f"sha{v}", v, subscribe=(f"$share/g/shared/{v}", 1))
    c = Client(b, f"shc{v}", v, subscribe=(f"$share/g/shared/{v}", 1))
    pub = Client(b, f"shp{v}", v)
    for i in range(10):
        pub.publish(f"shared/{v}", str(i), qos=1)
    got_a, got_c = a.received(timeout=1.5), c.received(timeout=0.5)
    a.stop(), c.stop(), pub.stop()
    payloads = sorted(int(m[1]) for m in got_a + got_c)
    return payloads, len(got_a) > 0 and len(got_c) > 0


def dollar_topics_and_leading_wildcards(b, v):
    everything = Client(b, f"all{v}", v, subscribe=("#", 0))
    dollar = Client(b, f"dol{v}", v, subscribe=(f"$app/{v}/#", 0))
    pub = Client(b, f"dpub{v}", v)
    pub.publish(f"$app/{v}/x", "hidden from #")
    dollar_got = dollar.received(1)
    leaked = [m for m in everything.received(timeout=0.7) if m[0].startswith("$")]
    everything.stop(), dollar.stop(), pub.stop()
    return dollar_got, leaked


def ordering_per_subscription(b, v):
    sub = Client(b, f"ord{v}", v, subscribe=(f"ord/{v}", 1))
    pub = Client(b, f"ordp{v}", v)
    for i in range(20):
        pub.publish(f"ord/{v}", str(i), qos=1)
    got = [m[1] for m in sub.received(20, timeout=3)]
    sub.stop(), pub.stop()
    return got


def no_local_and_retain_options(b, v):
    me = Client(b, "opts", V5)
    me.subscribe("opts/t", options=SubscribeOptions(qos=1, noLocal=True))
    other = Client(b, "opts-other", V5)
    me.publish("opts/t", "from me", qos=1)
    other.publish("opts/t", "from other", qos=1)
    local = me.received(timeout=1)
    other.publish("opts/r", "kept", qos=1, retain=True)
    never = Client(b, "opts-rh2", V5)
    never.subscribe("opts/r", options=SubscribeOptions(qos=1, retainHandling=2))
    as_published = Client(b, "opts-rap", V5)
    as_published.subscribe("opts/r", options=SubscribeOptions(qos=1, retainAsPublished=True))
    other.publish("opts/r", "again", qos=1, retain=True)
    rh2 = never.received(timeout=1)
    rap = as_published.received(2, timeout=1)
    for c in (me, other, never, as_published):
        c.stop()
    return local, rh2, rap


def cli_clients(b, v):
    version = "mqttv5" if v == V5 else "mqttv311"
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(b.port), "-V", version, "-t", f"cli/{v}", "-q", "2", "-C", "1",
                            "-W", "5", "-v"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.4)
    subprocess.run(["mosquitto_pub", "-p", str(b.port), "-V", version, "-t", f"cli/{v}", "-m", "from the cli", "-q", "2"],
                   check=True, timeout=5)
    out, _ = sub.communicate(timeout=10)
    return out.strip()


EXPECTED = {
    "qos2_end_to_end": lambda v: [(f"q2/{v}/x", "exactly once", 2, False)],
    "granted_qos_is_the_minimum": lambda v: ([1], [(f"min/{v}", "m", 1, False)]),
    "retained_set_replace_clear": lambda v: ([(f"ret/{v}", "two", 1, True)], []),
    "will_on_abrupt_close_not_on_disconnect": lambda v: [(f"will/{v}/crash", "crash gone", 1, False)],
    "persistent_session_queues_while_offline": lambda v: (True, [(f"persist/{v}", f"m{i}", 1, False) for i in range(3)]),
    "takeover_closes_the_older_connection": lambda v: (True, True),
    "shared_subscription_shares": lambda v: (list(range(10)), True),
    "dollar_topics_and_leading_wildcards": lambda v: ([(f"$app/{v}/x", "hidden from #", 0, False)], []),
    "ordering_per_subscription": lambda v: [str(i) for i in range(20)],
    # Retain handling 2 withholds retained messages at subscribe time only; live ones still arrive.
    "no_local_and_retain_options": lambda v: ([("opts/t", "from other", 1, False)], [("opts/r", "again", 1, False)],
                                              [("opts/r", "kept", 1, True), ("opts/r", "again", 1, True)]),
    "cli_clients": lambda v: f"cli/{v} from the cli",
}
SCENARIOS = [qos2_end_to_end, granted_qos_is_the_minimum, retained_set_replace_clear,
             will_on_abrupt_close_not_on_disconnect, persistent_session_queues_while_offline,
             takeover_closes_the_older_connection, shared_subscription_shares, dollar_topics_and_leading_wildcards,
             ordering_per_subscription, cli_clients]
V5_ONLY = [no_local_and_retain_options]


class BrokersAgree(unittest.TestCase):
    observations = {}

    @classmethod
    def setUpClass(cls):
        cls.brokers = {kind: Broker(kind) for kind in ("mosquitto", "test-broker")}

    @classmethod
    def tearDownClass(cls):
        for b in cls.brokers.values():
            b.close()

    def check(self, scenario, versions):
        for v in versions:
            results = {}
            for kind, b in self.brokers.items():
                with self.subTest(scenario=scenario.__name__, broker=kind, mqtt=v):
                    results[kind] = scenario(b, v)
                    self.assertEqual(results[kind], EXPECTED[scenario.__name__](v))
            self.assertEqual(results.get("mosquitto"), results.get("test-broker"), f"{scenario.__name__} v{v}")


for _scenario in SCENARIOS:
    setattr(BrokersAgree, f"test_{_scenario.__name__}",
            lambda self, s=_scenario: self.check(s, (V3, V5)))
for _scenario in V5_ONLY:
    setattr(BrokersAgree, f"test_{_scenario.__name__}",
            lambda self, s=_scenario: self.check(s, (V5,)))


if __name__ == "__main__":
    TEST_BROKER = sys.argv.pop(1)
    unittest.main(verbosity=2)
