#!/usr/bin/python3
"""A RabbitMQ 3.10 cluster of three as the broker tier (deploy/local-stack.sh
--broker rabbitmq-cluster): HAProxy, two mqtt-proxy instances each given all
three nodes, the real auth-server, paho and pika clients.

Which node a client's broker connection went to is read from the proxies'
per-node counters (mqtt_proxy_upstream_node_connects_total{node}): the one
that went up while the client connected."""
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import paho.mqtt.client as mqtt
import pika

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
import local_stack  # noqa: E402
from local_stack import http  # noqa: E402
from paho_app import AuthAnswers, granted_codes  # noqa: E402

RABBITMQ_SCRIPT = os.path.join(ROOT, "deploy", "rabbitmq.sh")


class App(AuthAnswers):
    """A mobile app through the load balancer: logs in, authenticates with the
    auth PUBLISH on every (re)connect, reconnects by itself."""

    def __init__(self, env, client_id, user="demo", password=None, version=mqtt.MQTTv311):
        self.env = env
        self.session = local_stack.login(env, user, password or env["DEMO_PASSWORD"])
        self.messages, self.auth_answers, self.disconnects = queue.Queue(), queue.Queue(), queue.Queue()
        # MQTT 5.0 apps are bridged to the cluster's 3.1.1 (RabbitMQ 3.10) by the proxies.
        kwargs = {"clean_session": True} if version != mqtt.MQTTv5 else {}
        self.client = mqtt.Client(client_id=client_id, protocol=version, **kwargs)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_connect = lambda c, u, f, rc, *props: c.publish("service/auth/" + self.session, b"", qos=1)
        self.client.on_disconnect = lambda c, u, rc, *props: self.disconnects.put(rc)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", int(env["LB_PORT"]), 30)
        self.client.loop_start()
        assert json.loads(self.auth_answers.get(timeout=15))["result"] == "ok"

    def subscribe(self, topic):
        granted = queue.Queue()
        self.client.on_subscribe = lambda c, u, mid, q, *props: granted.put(granted_codes(q))
        self.client.subscribe(topic, qos=1)
        return granted.get(timeout=10)

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()


class Cluster(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="cluster-")
        cls.env = local_stack.start(cls.dir, "rabbitmq-cluster")
        cls.nodes = cls.env["BROKER_NODES"].split(",")  # node i: MQTT port, AMQP port + 1
        cls.apps = []
        # A device account that may also read the device topics (demo may not).
        subprocess.run([os.path.join(ROOT, "build", "bin", "auth-server"), "adduser", "--db",
                        os.path.join(cls.dir, "auth.db"), "--user", "tv1", "--password", "tv1-password",
                        "--allow-publish", "webos/tv1/#", "--allow-subscribe", "webos/tv1/#"],
                       check=True, stdout=subprocess.DEVNULL)

    @classmethod
    def tearDownClass(cls):
        for app in cls.apps:
            app.client.loop_stop()
        local_stack.stop(cls.dir)
        if os.environ.get("KEEP_TEST_DIR"):
            print("test files in", cls.dir)
        else:
            shutil.rmtree(cls.dir, ignore_errors=True)

    def admin(self, i):
        return self.env[f"ADMIN{i}_PORT"]

    def metrics(self, i):
        return local_stack.metrics(self.admin(i))

    def node_counter(self, name, node):
        return sum(self.metrics(i).get(f'mqtt_proxy_upstream_node_{name}_total{{node="{node}"}}', 0) for i in (1, 2))

    def connect_counts(self):
        return {node: self.node_counter("connects", node) for node in self.nodes}

    def app_on_node(self, client_id, **login):
        """(app, node): a new app, and the node its broker connection went to."""
        before = self.connect_counts()
        app = App(self.env, client_id, **login)
        self.apps.append(app)
        granted = app.subscribe("private/demo/" + client_id if "user" not in login else "webos/tv1/#")
        self.assertEqual(granted, [1])
        grown = [n for n, count in self.connect_counts().items() if count > before[n]]
        self.assertEqual(len(grown), 1, f"one node's connect counter grows per client: {grown}")
        return app, grown[0]

    def one_app_per_node(self, prefix, **login):
        """An app on each node: new connections go round robin, a few tries are enough."""
        by_node = {}
        for attempt in range(12):
            app, node = self.app_on_node(f"{prefix}{attempt}", **login)
            if node in by_node:
                app.stop()
            else:
                by_node[node] = app
            if len(by_node) == len(self.nodes):
                return by_node
        self.fail(f"new connections did not reach every node: {sorted(by_node)}")

    def readyz(self, i):
        return http(f"http://127.0.0.1:{self.admin(i)}/readyz")

    def test_1_publisher_on_one_node_reaches_subscribers_on_the_others(self):
        # MQTT 5.0 apps, bridged by the proxies to the cluster's 3.1.1.
        apps = self.one_app_per_node("spread", version=mqtt.MQTTv5)
        a, b, c = (apps[n] for n in self.nodes)
        for sub in (b, c):
            sub.subscribe("private/demo/#")
        a.client.publish("private/demo/across", b"from node A", qos=1)
        for sub in (b, c):
            self.assertEqual(sub.messages.get(timeout=10), ("private/demo/across", "from node A"))
        for app in (a, b, c):
            app.stop()

    def test_2_device_topic_routed_on_webos_topic_to_amqp_on_another_node(self):
        apps = self.one_app_per_node("tv", user="tv1", password="tv1-password")
        publisher, subscriber = apps[self.nodes[0]], apps[self.nodes[2]]
        # The AMQP consumer's queue lives on node B: the channel is opened there.
        amqp_port = int(self.nodes[1].split(":")[1]) + 1
        amqp = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", amqp_port, "/", pika.PlainCredentials("proxy", self.env["PROXY_PASSWORD"])))
        channel = amqp.channel()
        queue_name = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue_name, "webos.topic", routing_key="webos.tv1.#")
        publisher.client.publish("webos/tv1/info", b"device info", qos=1).wait_for_publish(5)
        got = None
        for _ in range(100):
            method, _, body = channel.basic_get(queue_name, auto_ack=True)
            if method:
                got = (method.exchange, method.routing_key, body)
                break
            time.sleep(0.05)
        amqp.close()
        self.assertEqual(got, ("webos.topic", "webos.tv1.info", b"device info"))
        # And the MQTT subscriber on node C has it under its MQTT name.
        self.assertEqual(subscriber.messages.get(timeout=10), ("webos/tv1/info", "device info"))
        for app in apps.values():
            app.stop()

    def test_2b_dotted_topics_and_starred_filters_are_refused_in_front_of_rabbitmq(self):
        # RabbitMQ maps '/' to '.' and takes '*' as a wildcard: "private/demo/a.b" would be the
        # routing key of "private/demo/a/b", and "*" a wildcard the ACL never checked.
        app, _ = self.app_on_node("dots")
        self.assertEqual(app.subscribe("private/demo/#"), [1])
        self.assertEqual(app.subscribe("private/demo/*"), [128])
        app.client.publish("private/demo/a.b", b"dotted", qos=1).wait_for_publish(5)  # acknowledged, dropped
        app.client.publish("private/demo/a/b", b"plain", qos=1)
        self.assertEqual(app.messages.get(timeout=10), ("private/demo/a/b", "plain"))
        app.stop()

    def test_3_node_loss_moves_its_clients_to_live_nodes_and_readyz_stays_200(self):
        apps = self.one_app_per_node("loss")
        victim = self.nodes[0]
        on_victim = apps[victim]
        victim_connects = self.node_counter("connects", victim)
        subprocess.run([RABBITMQ_SCRIPT, "stop-node", self.env["RABBITMQ_DIR"], "0"], check=True, timeout=120,
                       stdout=subprocess.DEVNULL)
        # Its client is cut and comes back by itself, through HAProxy, to a live node.
        on_victim.disconnects.get(timeout=15)
        self.assertEqual(json.loads(on_victim.auth_answers.get(timeout=20))["result"], "ok")
        for i in (1, 2):
            self.assertEqual(self.readyz(i)[0], 200, self.readyz(i)[1])
        # More new clients: those planned on the dead node are moved on within the connect timeout.
        newcomers = [self.app_on_node(f"after{k}") for k in range(6)]
        self.assertNotIn(victim, {node for _, node in newcomers})
        self.assertEqual(self.node_counter("connects", victim), victim_connects)
        self.assertGreaterEqual(self.node_counter("failures", victim), 1)
        down_somewhere = [self.metrics(i).get(f'mqtt_proxy_upstream_node_up{{node="{victim}"}}') for i in (1, 2)]
        self.assertIn(0, down_somewhere)
        # The moved client works: what one live node's client publishes reaches it.
        on_victim.subscribe("private/demo/#")
        newcomers[0][0].client.publish("private/demo/moved", b"after the loss", qos=1)
        self.assertEqual(on_victim.messages.get(timeout=10), ("private/demo/moved", "after the loss"))
        for i in (1, 2):
            self.assertEqual(self.readyz(i)[0], 200)
        for app in [on_victim] + [a for a, _ in newcomers] + [apps[n] for n in self.nodes[1:]]:
            app.stop()

    def test_4_no_node_left_readyz_is_503(self):
        for index in (1, 2):
            subprocess.run([RABBITMQ_SCRIPT, "stop-node", self.env["RABBITMQ_DIR"], str(index)], check=True,
                           timeout=120, stdout=subprocess.DEVNULL)
        for i in (1, 2):
            status, body = self.readyz(i)
            self.assertEqual(status, 503)
            self.assertIn("broker unreachable", body)


if __name__ == "__main__":
    unittest.main(verbosity=2)
