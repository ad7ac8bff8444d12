"""One private RabbitMQ 3.10 node with the MQTT plugin for a Python test: its
own data directory, loopback ports (MQTT, AMQP = MQTT + 1, distribution =
MQTT + 2), the proxy's account, and the exchange `webos.topic` the plugin
publishes to. The same steps as deploy/rabbitmq.sh for one node, kept here
so a test does not depend on that script's command line."""
import os
import random
import shutil
import socket
import subprocess

import pika


def _ports_free(base):
    for port in (base, base + 1, base + 2):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


class RabbitNode:
    def __init__(self, directory, user, password):
        self.dir, self.user, self.password = directory, user, password
        os.makedirs(directory, exist_ok=True)
        os.chmod(directory, 0o755)
        self.port = random.randrange(30000, 32000, 3)
        while not _ports_free(self.port):
            self.port = random.randrange(30000, 32000, 3)
        self.node = "mqtt-proxy-bridge-%d@localhost" % self.port
        self.env = dict(os.environ, RABBITMQ_NODENAME=self.node, RABBITMQ_MNESIA_BASE=f"{directory}/mnesia",
                        RABBITMQ_LOG_BASE=f"{directory}/log", RABBITMQ_CONFIG_FILE=f"{directory}/rabbitmq",
                        RABBITMQ_ENABLED_PLUGINS_FILE=f"{directory}/enabled_plugins",
                        RABBITMQ_PID_FILE=f"{directory}/rabbitmq.pid", HOME=os.environ.get("HOME", "/root"),
                        ERL_EPMD_ADDRESS="127.0.0.1", RABBITMQ_NODE_PORT=str(self.port + 1),
                        RABBITMQ_DIST_PORT=str(self.port + 2),
                        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}")
        self.process = None

    def ctl(self, *args):
        return subprocess.run(["rabbitmqctl", "-n", self.node, *args], env=self.env, capture_output=True, text=True,
                              timeout=150)

    def start(self):
        with open(f"{self.dir}/rabbitmq.conf", "w") as f:
            f.write(f"listeners.tcp.default = 127.0.0.1:{self.port + 1}\n"
                    f"mqtt.listeners.tcp.default = 127.0.0.1:{self.port}\n"
                    "mqtt.allow_anonymous = false\nmqtt.vhost = /\nmqtt.exchange = webos.topic\n"
                    "loopback_users = none\nlog.console = true\nlog.file = false\n")
        with open(f"{self.dir}/enabled_plugins", "w") as f:
            f.write("[rabbitmq_mqtt].\n")
        # Debian's rabbitmq-server, started as root, runs the node as the rabbitmq user.
        if os.getuid() == 0 and shutil.which("chown"):
            subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", self.dir], check=False)
        self.log = open(f"{self.dir}/rabbitmq-server.log", "w")
        self.process = subprocess.Popen(["rabbitmq-server"], env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        for step in (["wait", "--pid", str(self.process.pid), "--timeout", "120"], ["await_startup", "--timeout", "120"],
                     ["add_user", self.user, self.password], ["set_permissions", "-p", "/", self.user, ".*", ".*", ".*"]):
            result = self.ctl(*step)
            if result.returncode != 0:
                raise RuntimeError(f"rabbitmqctl {step[0]}: {result.stderr or result.stdout}")
        connection = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", self.port + 1, "/", pika.PlainCredentials(self.user, self.password)))
        connection.channel().exchange_declare("webos.topic", exchange_type="topic", durable=True)
        connection.close()

    def stop(self):
        self.ctl("stop")
        if self.process:
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.log.close()
        # The Erlang port mapper outlives the node; end it when no node is left.
        names = subprocess.run(["epmd", "-names"], capture_output=True, text=True, env=self.env)
        if names.returncode == 0 and "name " not in names.stdout:
            subprocess.run(["epmd", "-kill"], capture_output=True, env=self.env)
