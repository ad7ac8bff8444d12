#!/usr/bin/python3
"""The load-balanced system of deploy/local-stack.sh, end to end: HAProxy
(PROXY protocol v2) in front of two mqtt-proxy instances, auth-server, and a
broker. Usage: stack_test.py BROKER   (mosquitto | test-broker | rabbitmq)"""
import json
import os
import queue
import signal
import sys
import tempfile
import time
import unittest

import paho.mqtt.client as mqtt

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
import local_stack  # noqa: E402
from local_stack import http  # noqa: E402
from paho_app import AuthAnswers  # noqa: E402
BROKER = "mosquitto"


class App(AuthAnswers):
    """A mobile app: logs in over HTTP, connects through the load balancer,
    authenticates with the auth PUBLISH on every (re)connect."""

    def __init__(self, env, client_id, clean=True, websocket=False):
        self.env = env
        self.session = local_stack.login(env, env["DEMO_USER"], env["DEMO_PASSWORD"])
        self.messages, self.auth_answers = queue.Queue(), queue.Queue()
        self.disconnects = queue.Queue()
        self.client = mqtt.Client(client_id=client_id, clean_session=clean,
                                  transport="websockets" if websocket else "tcp")
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_connect = lambda c, u, f, rc: c.publish("service/auth/" + self.session, b"", qos=1)
        self.client.on_disconnect = lambda c, u, rc: self.disconnects.put(rc)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", int(env["LB_WS_PORT" if websocket else "LB_PORT"]), 30)
        self.client.loop_start()
        assert json.loads(self.auth_answers.get(timeout=10))["result"] == "ok"

    def local_port(self):
        sock = self.client.socket()
        return getattr(sock, "_socket", sock).getsockname()[1]  # paho wraps a WebSocket's socket

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()


class Stack(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="stack-")
        cls.env = local_stack.start(cls.dir, BROKER)

    @classmethod
    def tearDownClass(cls):
        local_stack.stop(cls.dir)

    def metrics(self, admin_port):
        return local_stack.metrics(admin_port)

    def proxy_logs(self):
        logs = ""
        for i in (1, 2):
            with open(os.path.join(self.dir, f"mqtt-proxy{i}.log")) as f:
                logs += f.read()
        return logs

    def proxy_of(self, app):
        """Which proxy (1 or 2) serves the app: the only one with an open connection."""
        deadline = time.time() + 5
        while time.time() < deadline:
            open_by = {i: self.metrics(self.env[f"ADMIN{i}_PORT"])["mqtt_proxy_connections_open"] for i in (1, 2)}
            if sum(open_by.values()) >= 1:
                return max(open_by, key=open_by.get)
            time.sleep(0.1)
        self.fail("no proxy holds the connection")

    def flow_through_the_balancer(self, client_id, websocket):
        app = App(self.env, client_id, websocket=websocket)
        app.client.subscribe("private/demo/#", qos=1)
        time.sleep(0.3)
        app.client.publish(f"private/demo/{client_id}", f"via haproxy as {client_id}", qos=1)
        self.assertEqual(app.messages.get(timeout=5), (f"private/demo/{client_id}", f"via haproxy as {client_id}"))
        port = app.local_port()
        app.stop()
        time.sleep(0.5)
        # The proxies log the client's own address, carried by PROXY v2, not HAProxy's.
        self.assertIn(f"remote=127.0.0.1:{port} client_id={client_id} user=demo", self.proxy_logs())

    def test_1_flow_through_the_balancer_with_the_real_client_address(self):
        self.flow_through_the_balancer("flow", websocket=False)

    def test_1b_websocket_through_the_balancer_with_the_real_client_address(self):
        self.flow_through_the_balancer("browser", websocket=True)

    def test_2_metrics_count_what_happened(self):
        before = sum(self.metrics(self.env[f"ADMIN{i}_PORT"]).get('mqtt_proxy_authentications_total{result="ok"}', 0)
                     for i in (1, 2))
        app = App(self.env, "metered")
        app.client.subscribe("#", qos=0)  # refused by the ACL
        time.sleep(0.5)
        app.stop()
        after = [self.metrics(self.env[f"ADMIN{i}_PORT"]) for i in (1, 2)]
        self.assertEqual(sum(m.get('mqtt_proxy_authentications_total{result="ok"}', 0) for m in after), before + 1)
        self.assertGreaterEqual(sum(m.get('mqtt_proxy_acl_denials_total{packet="subscribe"}', 0) for m in after), 1)

    def test_3_kill_a_proxy_clients_reconnect_through_the_other_and_resume(self):
        app = App(self.env, "survivor", clean=False)
        app.client.subscribe("private/demo/failover", qos=1)
        time.sleep(0.3)
        victim = self.proxy_of(app)
        os.kill(int(self.env[f"PROXY{victim}_PID"]), signal.SIGKILL)
        app.disconnects.get(timeout=10)
        # Back through HAProxy on the other proxy, re-authenticated by on_connect.
        self.assertEqual(json.loads(app.auth_answers.get(timeout=20))["result"], "ok")
        sender = App(self.env, "sender")
        sender.client.publish("private/demo/failover", b"after failover", qos=1)
        self.assertEqual(app.messages.get(timeout=10), ("private/demo/failover", "after failover"))
        survivor = 2 if victim == 1 else 1
        self.assertGreaterEqual(self.metrics(self.env[f"ADMIN{survivor}_PORT"])["mqtt_proxy_connections_open"], 2)
        sender.stop()
        app.stop()
        self.__class__.survivor = survivor

    def test_4_draining_proxy_says_goodbye_logs_and_exits(self):
        # SIGTERM no longer keeps clients for the drain period: every live
        # connection is ended at once (5.0: DISCONNECT 0x8B; the broker gets a
        # normal DISCONNECT, no will) and the proxy exits when the last is gone.
        # tests/integration/drain_test.py covers clients moving to the other proxy.
        survivor = getattr(self.__class__, "survivor", 1)
        admin = self.env[f"ADMIN{survivor}_PORT"]
        self.assertEqual(http(f"http://127.0.0.1:{admin}/readyz")[0], 200)
        app = App(self.env, "drained")
        app.client.subscribe("private/demo/drain", qos=1)
        app.client.publish("private/demo/drain", b"served before the drain", qos=1)
        self.assertEqual(app.messages.get(timeout=5), ("private/demo/drain", "served before the drain"))
        pid = int(self.env[f"PROXY{survivor}_PID"])
        os.kill(pid, signal.SIGTERM)
        app.disconnects.get(timeout=10)
        deadline = time.time() + 10
        while time.time() < deadline and os.path.exists(f"/proc/{pid}") and \
                open(f"/proc/{pid}/stat").read().split()[2] != "Z":
            time.sleep(0.1)
        try:
            status = http(f"http://127.0.0.1:{admin}/readyz")[0]
        except OSError:
            status = None  # gone: that is not ready either
        self.assertIn(status, (503, None))
        logs = self.proxy_logs()
        self.assertIn('client_id=drained user=demo reason="proxy shutting down"', logs)
        self.assertIn("mqtt-proxy stopped", logs)
        app.client.loop_stop()


    def test_2b_rabbitmq_topic_exchange_qos_and_will(self):
        if BROKER != "rabbitmq":
            self.skipTest("RabbitMQ only")
        import pika
        # An AMQP consumer sees MQTT topic webos/demo/info as routing key webos.demo.info on webos.topic.
        amqp = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", int(self.env["BROKER_PORT"]) + 1, "/", pika.PlainCredentials("proxy", self.env["PROXY_PASSWORD"])))
        channel = amqp.channel()
        queue_name = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue_name, "webos.topic", routing_key="webos.demo.#")
        app = App(self.env, "rabbit")
        app.client.publish("webos/demo/info", b"to amqp", qos=1).wait_for_publish(5)
        body = None
        for _ in range(50):
            method, _, body = channel.basic_get(queue_name, auto_ack=True)
            if method:
                self.assertEqual(method.routing_key, "webos.demo.info")
                break
            time.sleep(0.1)
        self.assertEqual(body, b"to amqp")
        amqp.close()
        # RabbitMQ 3.10 grants at most QoS 1: the proxy passes its SUBACK on unchanged.
        granted = queue.Queue()
        app.client.on_subscribe = lambda c, u, mid, q: granted.put(q)
        app.client.subscribe("private/demo/rabbit", qos=2)
        self.assertEqual(granted.get(timeout=5), (1,))
        # QoS 0 and 1 both ways.
        for qos in (0, 1):
            app.client.publish("private/demo/rabbit", f"qos{qos}".encode(), qos=qos)
            self.assertEqual(app.messages.get(timeout=5), ("private/demo/rabbit", f"qos{qos}"))
        # The will of a client that drops, through the proxy.
        dropper = mqtt.Client(client_id="dropper")
        dropper.will_set("private/demo/rabbit", b"dropper gone", qos=1)
        answers = queue.Queue()
        dropper.on_message = lambda c, u, m: answers.put(m.payload)
        dropper.connect("127.0.0.1", int(self.env["LB_PORT"]), 30)
        dropper.loop_start()
        dropper.publish("service/auth/" + app.session, b"", qos=1)
        self.assertIn(b'"ok"', answers.get(timeout=10))
        dropper.loop_stop()
        dropper.socket().close()
        self.assertEqual(app.messages.get(timeout=10), ("private/demo/rabbit", "dropper gone"))
        app.stop()


if __name__ == "__main__":
    BROKER = sys.argv.pop(1) if len(sys.argv) > 1 else "mosquitto"
    unittest.main(verbosity=2)
