#!/usr/bin/python3
"""auth-server under bursts of new connections: TOKENS distinct sessions,
IN_FLIGHT clients at once, each request `POST /v1/sessions/validate` on a NEW
TCP connection (`Connection: close`), for SECONDS. Reports validations/s,
failures (anything but 200 with the user), latency, and the kernel's
TcpExt ListenOverflows / ListenDrops delta (/proc/net/netstat, the counters
`nstat -az TcpExtListenOverflows` shows) over the run. Stdlib asyncio; the
client shares the machine's cores with the server. Prints a Markdown section.
Usage: validate_newconn_bench.py PATH/TO/auth-server [TOKENS] [IN_FLIGHT] [SECONDS]"""
import asyncio
import collections
import json
import sys
import time

from benchstack import http, percentile
import benchstack


class AuthOnly(benchstack.Stack):
    """Only the auth-server (no broker, no proxy)."""

    def __init__(self, auth_server, auth_args=()):
        import os
        import tempfile
        self.auth_bin, self.processes = auth_server, {}
        self.dir = tempfile.mkdtemp(prefix="bench-")
        self.db = os.path.join(self.dir, "auth.db")
        self.token_file = os.path.join(self.dir, "service-token")
        with open(self.token_file, "w") as f:
            f.write("events-secret-0123456789\n")
        self.auth_port = benchstack.free_port()
        self.auth_url = f"http://127.0.0.1:{self.auth_port}"
        self.auth_args = list(auth_args)
        self.start_auth_server()


def tcp_ext():
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            return dict(zip(names.split()[1:], map(int, values.split()[1:])))
    return {}


async def validate(port, token):
    body = json.dumps({"session": token}).encode()
    request = (f"POST /v1/sessions/validate HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        writer.write(request)
        answer = await asyncio.wait_for(reader.read(), 10)  # until the server closes
        status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.1 ") else "garbled"
        if status == "200" and b'"user":"user' not in answer.replace(b" ", b""):
            status = "200-without-user"
        return status
    except asyncio.TimeoutError:
        return "timeout"
    except OSError as e:
        return type(e).__name__
    finally:
        if writer is not None:
            writer.close()


async def load(port, tokens, in_flight, seconds):
    outcomes, latencies = collections.Counter(), []
    stop_at = time.monotonic() + seconds
    counter = iter(range(10 ** 12))

    async def client():
        while time.monotonic() < stop_at:
            i = next(counter)
            started = time.monotonic()
            outcome = await validate(port, tokens[i % len(tokens)])
            latencies.append(time.monotonic() - started)
            outcomes[outcome] += 1

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(in_flight)))
    return outcomes, latencies, time.monotonic() - started


def main():
    auth_server = sys.argv[1]
    tokens_n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    in_flight = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 20
    stack = AuthOnly(auth_server)
    try:
        tokens = stack.sessions(tokens_n)
        with open(f"/proc/{stack.processes['auth-server'][0].pid}/status") as f:
            threads = next(line.split()[1] for line in f if line.startswith("Threads:"))
        before = tcp_ext()
        outcomes, latencies, took = asyncio.run(load(stack.auth_port, tokens, in_flight, seconds))
        after = tcp_ext()
    finally:
        stack.close()
    total = sum(outcomes.values())
    failures = total - outcomes["200"]
    why = ", ".join(f"{k}: {v}" for k, v in outcomes.items() if k != "200")
    print(f"### auth-server: validations on new connections ({tokens_n} distinct sessions, {in_flight} in flight)\n")
    print("| requests | validations/s | failures | p50 / p99 / max latency | ListenOverflows Δ | ListenDrops Δ | "
          "server threads |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {total} in {took:.1f} s | {outcomes['200'] / took:.0f} | {failures}{f' ({why})' if why else ''} | "
          f"{percentile(latencies, 50) * 1000:.1f} / {percentile(latencies, 99) * 1000:.1f} / "
          f"{max(latencies) * 1000:.1f} ms | {after.get('ListenOverflows', 0) - before.get('ListenOverflows', 0)} | "
          f"{after.get('ListenDrops', 0) - before.get('ListenDrops', 0)} | {threads} |")


if __name__ == "__main__":
    main()
