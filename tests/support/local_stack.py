"""deploy/local-stack.sh for the Python tests: start the whole system on a
free block of loopback ports, read its env file, stop it; and the small HTTP
helper the tests use against its API server and admin endpoints."""
import json
import os
import random
import socket
import subprocess
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "deploy", "local-stack.sh")
# The offsets from --base-port that local-stack.sh listens on (or may).
PORT_OFFSETS = (0, 1, 2, 3, 4, 5, 11, 12, 20, 30, 31, 32, 33)
# rabbitmq-cluster: three nodes, each MQTT, AMQP and distribution.
PORT_OFFSETS += (34, 35, 36, 37, 38)


def ports_free(base):
    for offset in PORT_OFFSETS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", base + offset))
            except OSError:
                return False
    return True


def start(directory, broker):
    """Starts the stack in `directory` with `broker`; returns its env (ports, demo user)."""
    base = random.randrange(20000, 30000, 100)  # below the usual ephemeral range
    while not ports_free(base):
        base = random.randrange(20000, 30000, 100)
    subprocess.run([SCRIPT, "start", "--dir", directory, "--base-port", str(base), "--broker", broker], check=True,
                   timeout=240)
    with open(os.path.join(directory, "env")) as f:
        return dict(line.strip().split("=", 1) for line in f if "=" in line)


def stop(directory):
    subprocess.run([SCRIPT, "stop", "--dir", directory], timeout=120)


def http(url, body=None):
    """(status, body text) of a GET, or of a POST with a JSON body."""
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def login(env, user, password):
    """A session token of the user from the stack's auth-server (POST /v1/login)."""
    status, body = http(f"http://127.0.0.1:{env['AUTH_PORT']}/v1/login", {"username": user, "password": password})
    assert status == 200, body
    return json.loads(body)["session"]


def metrics(admin_port):
    """{series: value} of a proxy's /metrics."""
    status, body = http(f"http://127.0.0.1:{admin_port}/metrics")
    assert status == 200, status
    return {line.split(" ")[0]: float(line.split(" ")[1]) for line in body.splitlines()
            if line and not line.startswith("#")}
