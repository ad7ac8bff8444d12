#!/usr/bin/python3
"""How fast a revocation reaches live connections: the real auth-server, two
mqtt-proxy instances and Mosquitto (tests/integration/revocation_test.py's
System), CONNECTIONS raw MQTT clients spread over both proxies, each with its
own session. Logs out SAMPLES sessions one after another and measures, for
each, the time from the logout request to the end of the client's connection
(EOF on its socket); then deletes a user whose sessions are spread over both
proxies. Prints a Markdown section.
Usage: revocation_bench.py PATH/TO/mqtt-proxy PATH/TO/auth-server [CONNECTIONS] [SAMPLES]"""
import os
import selectors
import socket
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "support"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import revocation_test  # noqa: E402
from wire import connect_packet, parse_mqtt, publish_packet  # noqa: E402

USERS = 50


def authenticate(port, client_id, session):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(connect_packet(client_id) + publish_packet("service/auth/" + session, b""))
    buffer, packets = b"", []
    while len(packets) < 2:  # CONNACK, then the auth answer
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError(f"{client_id} was closed while authenticating")
        buffer += chunk
        while (parsed := parse_mqtt(buffer)):
            packet, buffer = parsed
            packets.append(packet)
    assert b'"ok"' in packets[1][1], packets[1]
    sock.setblocking(False)
    return sock


def wait_closed(selector, socks, started, timeout=10):
    """Seconds from `started` until each of `socks` reached EOF."""
    pending, took = set(socks), {}
    deadline = time.time() + timeout
    while pending and time.time() < deadline:
        for key, _ in selector.select(timeout=0.5):
            sock = key.fileobj
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data and sock in pending:
                took[sock] = time.time() - started
                pending.discard(sock)
                selector.unregister(sock)
                sock.close()
    if pending:
        raise RuntimeError(f"{len(pending)} revoked connections were still open after {timeout} s")
    return took


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main():
    revocation_test.PROXY, revocation_test.AUTH_SERVER = sys.argv[1], sys.argv[2]
    connections = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    samples = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    system = revocation_test.System()
    try:
        for u in range(USERS):
            result = system.cli("adduser", "--user", f"user{u}", "--password", "bench-password",
                                "--kdf-iterations", "1000")
            assert result.returncode == 0, result.stderr
        sessions = [(f"user{i % USERS}", system.login(f"user{i % USERS}", "bench-password"))
                    for i in range(connections)]
        selector = selectors.DefaultSelector()
        socks = []
        for i, (_, session) in enumerate(sessions):
            sock = authenticate(system.proxy_ports[i % 2], f"c{i}", session)
            selector.register(sock, selectors.EVENT_READ)
            socks.append(sock)
        latencies = []
        victims = range(USERS, USERS + samples)  # not user0's: that user is deleted below
        for i in victims:
            started = time.time()
            system.logout(sessions[i][1])
            latencies += wait_closed(selector, [socks[i]], started).values()
            time.sleep(0.02)
        doomed = [s for i, s in enumerate(socks) if sessions[i][0] == "user0" and i not in victims]
        started = time.time()
        result = system.cli("deluser", "--user", "user0")
        assert result.returncode == 0, result.stderr
        deleted = list(wait_closed(selector, doomed, started).values())
        ms = lambda s: f"{s * 1000:.1f} ms"  # noqa: E731
        print(f"### Revocation latency ({connections} connections over two proxies)\n")
        print("| what | samples | p50 | p99 | max |\n|---|---|---|---|---|")
        print(f"| logout (HTTP) → connection closed | {len(latencies)} | {ms(statistics.median(latencies))} | "
              f"{ms(percentile(latencies, 99))} | {ms(max(latencies))} |")
        print(f"| `deluser` (CLI, another process) → all {len(deleted)} connections of the user closed | "
              f"{len(deleted)} | {ms(statistics.median(deleted))} | {ms(percentile(deleted, 99))} | "
              f"{ms(max(deleted))} |")
    finally:
        system.close()


if __name__ == "__main__":
    main()
