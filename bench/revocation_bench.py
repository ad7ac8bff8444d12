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
import concurrent.futures
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
BURST = 100  # logouts sent at once
DELETED = 5  # user0..user4 are deleted one after another at the end


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
    assert b'"ok"' in packets[1], packets
    sock.setblocking(False)
    return sock


def wait_closed(selector, socks, started, told, timeout=10):
    """Seconds from `started` until each of `socks` reached EOF; counts in
    told["session_revoked"] the connections that were told why first."""
    pending, took, received = set(socks), {}, {}
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
            received[sock] = received.get(sock, b"") + data
            if not data and sock in pending:
                took[sock] = time.time() - started
                if b"session_revoked" in received[sock]:
                    told["session_revoked"] = told.get("session_revoked", 0) + 1
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
        latencies, told = [], {}
        # Not the sessions of the users deleted below.
        victims = [i for i in range(connections) if i % USERS >= DELETED][:samples]
        for i in victims:
            started = time.time()
            system.logout(sessions[i][1])
            latencies += wait_closed(selector, [socks[i]], started, told).values()
            time.sleep(0.02)
        # A burst: BURST logouts sent at once from 20 threads, each timed from its own request.
        burst_victims = [i for i in range(connections) if i % USERS >= DELETED and i not in victims][:BURST]
        burst = []
        starts = {}

        def logout(i):
            starts[i] = time.time()
            system.logout(sessions[i][1])
        burst_started = time.time()
        # The closes are watched while the logouts are still being sent.
        with concurrent.futures.ThreadPoolExecutor(21) as pool:
            watcher = pool.submit(wait_closed, selector, [socks[i] for i in burst_victims], burst_started, told)
            list(pool.map(logout, burst_victims))
            took = watcher.result()
        for i in burst_victims:
            burst.append(burst_started + took[socks[i]] - starts[i])
        per_connection, per_user = [], []
        for u in range(DELETED):
            doomed = [s for i, s in enumerate(socks) if sessions[i][0] == f"user{u}"]
            started = time.time()
            result = system.cli("deluser", "--user", f"user{u}")
            assert result.returncode == 0, result.stderr
            took = list(wait_closed(selector, doomed, started, told).values())
            per_connection += took
            per_user.append(max(took))
            time.sleep(0.2)
        still_open = sum(1 for key in selector.get_map().values())
        ms = lambda s: f"{s * 1000:.1f} ms"  # noqa: E731
        row = lambda what, xs: (f"| {what} | {len(xs)} | {ms(statistics.median(xs))} | "  # noqa: E731
                                f"{ms(percentile(xs, 99))} | {ms(max(xs))} |")
        print(f"### Revocation latency ({connections} connections over two proxies)\n")
        print("| what | samples | p50 | p99 | max |\n|---|---|---|---|---|")
        print(row("logout (HTTP `POST /v1/sessions/revoke`) → that connection closed", latencies))
        print(row(f"{len(burst)} logouts at once (20 client threads) → each connection closed", burst))
        print(row(f"`deluser` (CLI, another process) → one of the user's connections closed", per_connection))
        print(row(f"`deluser` → all {connections // USERS} connections of the user closed (both proxies)", per_user))
        print(f"\n{told.get('session_revoked', 0)} of {len(latencies) + len(burst) + len(per_connection)} revoked connections "
              f"received the auth-topic denial `session_revoked` before the close; {still_open} other "
              f"connections stayed open (expected {connections - len(latencies) - len(burst) - len(per_connection)}).")
    finally:
        system.close()


if __name__ == "__main__":
    main()
