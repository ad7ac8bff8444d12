#!/usr/bin/python3
"""What survives the loss of one node of a 3-node RabbitMQ 3.10 cluster, with
the MQTT plugin, measured (on demand, not in ctest; results in README.md).

    bench/cluster_node_loss.py [--durable-queues classic|quorum] [--base-port N]

Starts deploy/rabbitmq.sh's cluster, talks MQTT 3.1.1 straight to the nodes
(paho, as the proxy's account) and reports, for node A = node 0 stopped:
routing across nodes; a persistent session whose QoS 1 queue lives on A
(reconnecting on B: CONNACK, session present, the messages queued before the
loss, new messages); a retained message published on A; the will of a client
connected to A; and what comes back when A returns."""
import argparse
import os
import queue
import subprocess
import sys
import tempfile
import time

import paho.mqtt.client as mqtt

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SCRIPT = os.path.join(ROOT, "deploy", "rabbitmq.sh")
PASSWORD = "loss-bench"


class Client:
    def __init__(self, port, client_id, clean=True, will=None):
        self.messages, self.connacks, self.disconnects = queue.Queue(), queue.Queue(), queue.Queue()
        self.client = mqtt.Client(client_id=client_id, clean_session=clean)
        self.client.username_pw_set("proxy", PASSWORD)
        if will:
            self.client.will_set(will, b"will of " + client_id.encode(), qos=1)
        self.client.on_connect = lambda c, u, flags, rc: self.connacks.put((rc, flags.get("session present", 0)))
        self.client.on_disconnect = lambda c, u, rc: self.disconnects.put(rc)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload.decode(), m.retain))
        self.client.connect("127.0.0.1", port, 30)
        self.client.loop_start()
        self.connack = self.connacks.get(timeout=10)

    def drain(self, wait):
        got, deadline = [], time.time() + wait
        while time.time() < deadline:
            try:
                got.append(self.messages.get(timeout=max(0.05, deadline - time.time())))
            except queue.Empty:
                break
        return got

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()


def subscribed(client, topic):
    done = queue.Queue()
    client.client.on_subscribe = lambda c, u, mid, granted: done.put(granted)
    client.client.subscribe(topic, qos=1)
    return done.get(timeout=10)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--durable-queues", default="classic", choices=("classic", "quorum"))
    parser.add_argument("--base-port", type=int, default=27300)
    parser.add_argument("--crash", action="store_true", help="SIGKILL node A instead of rabbitmqctl stop")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="rabbit-loss-")
    port = [args.base_port + 3 * i for i in range(3)]
    results = {}
    started = time.time()
    subprocess.run([SCRIPT, "start", directory, str(args.base_port), "proxy", PASSWORD, "--nodes", "3",
                    "--durable-queues", args.durable_queues], check=True, timeout=300)
    results["cluster start (s)"] = round(time.time() - started, 1)
    try:
        # Routing: a publisher on A reaches subscribers on B and C.
        subs = [Client(port[i], f"sub{i}") for i in (1, 2)]
        for s in subs:
            subscribed(s, "loss/route")
        pub = Client(port[0], "pub")
        pub.client.publish("loss/route", b"across", qos=1).wait_for_publish(5)
        results["publish on A reaches B and C"] = all(s.drain(3) == [("loss/route", "across", 0)] for s in subs)

        # A persistent session whose QoS 1 subscription queue is on A; 3 messages queued while it is away.
        keeper = Client(port[0], "keeper", clean=False)
        subscribed(keeper, "loss/kept")
        keeper.stop()
        for i in range(3):
            pub.client.publish("loss/kept", f"queued {i}".encode(), qos=1).wait_for_publish(5)
        # A retained message published on A.
        pub.client.publish("loss/retained", b"retained on A", qos=1, retain=True).wait_for_publish(5)
        time.sleep(0.5)
        for where, index in (("A", 0), ("B", 1)):
            fresh = Client(port[index], f"fresh-before-{where}")
            subscribed(fresh, "loss/retained")
            results[f"retained from A seen on {where}, A up"] = [m[1] for m in fresh.drain(2)]
            fresh.stop()
        # A client on A with a will, and a watcher on B.
        watcher = Client(port[1], "watcher")
        subscribed(watcher, "loss/will")
        doomed = Client(port[0], "doomed", will="loss/will")
        pub.stop()

        stopped = time.time()
        subprocess.run([SCRIPT, "kill-node" if args.crash else "stop-node", directory, "0"], check=True, timeout=120)
        results["stop A (s)"] = round(time.time() - stopped, 1)
        results["client on A disconnected"] = not doomed.disconnects.empty()
        results["will of the client on A, seen on B"] = [m[1] for m in watcher.drain(3)]
        doomed.client.loop_stop()

        # The persistent session comes back on B.
        back = None
        try:
            back = Client(port[1], "keeper", clean=False)
            results["keeper on B: CONNACK rc, session present"] = back.connack
            results["keeper on B: messages queued before the loss"] = [m[1] for m in back.drain(3)]
            sender = Client(port[2], "sender-after")
            sender.client.publish("loss/kept", b"after the loss", qos=1).wait_for_publish(5)
            results["keeper on B: new message without re-subscribing"] = [m[1] for m in back.drain(2)]
            granted = subscribed(back, "loss/kept")
            results["keeper on B: SUBSCRIBE again granted"] = granted
            sender.client.publish("loss/kept", b"after re-subscribing", qos=1).wait_for_publish(5)
            results["keeper on B: new message after re-subscribing"] = [m[1] for m in back.drain(2)]
            sender.stop()
            back.stop()
        except Exception as e:  # a refused or dropped connection is a result too
            results["keeper on B"] = f"failed: {e!r}"
            if back:
                results["keeper on B: connection closed by the broker"] = not back.disconnects.empty()
                back.client.loop_stop()
        fresh = Client(port[2], "fresh-after")
        subscribed(fresh, "loss/retained")
        results["retained from A seen on C, A down"] = [m[1] for m in fresh.drain(2)]
        fresh.stop()
        for s in subs:
            s.stop()
        watcher.stop()

        restarted = time.time()
        subprocess.run([SCRIPT, "start-node", directory, "0"], check=True, timeout=300)
        results["restart A (s)"] = round(time.time() - restarted, 1)
        again = Client(port[0], "keeper", clean=False)
        results["keeper on A again: session present"] = again.connack[1]
        results["keeper on A again: messages"] = [m[1] for m in again.drain(3)]
        again.client.loop_stop()
    finally:
        subprocess.run([SCRIPT, "stop", directory], timeout=120)
    how = "killed (SIGKILL)" if args.crash else "stopped (rabbitmqctl stop)"
    print(f"RabbitMQ 3.10 cluster of 3, mqtt.durable_queue_type = {args.durable_queues}, node A {how}:")
    for key, value in results.items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    sys.exit(main())
