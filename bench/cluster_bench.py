#!/usr/bin/python3
"""Session set-up and relay throughput through a RabbitMQ 3.10 cluster of three
against a single RabbitMQ node (on demand, not in ctest; results in
docs/benchmarks.md). Both topologies are deploy/local-stack.sh: HAProxy, two
mqtt-proxy instances (given all three nodes, or the one), auth-server.

    bench/cluster_bench.py [--sessions 400] [--concurrency 20] [--pairs 4] [--messages 5000]

Session set-up: CONNECT + auth PUBLISH + SUBSCRIBE at QoS 1, timed to the
SUBACK (the broker session exists then), DISCONNECT. Throughput: `pairs`
publisher/subscriber pairs on their own topics, QoS 0, 64-byte payloads, the
publishers writing as fast as the proxies take it; timed from the first
PUBLISH to the last delivery. In the cluster a pair's two connections are on
different nodes two times in three (round robin), so most messages cross nodes."""
import argparse
import asyncio
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "support"))
import local_stack  # noqa: E402
from benchstack import DISCONNECT, percentile  # noqa: E402
from wire import connect_packet, parse_mqtt, publish_packet, subscribe_packet  # noqa: E402


async def read_until(reader, buffer, kind, deadline):
    """(packet, rest): the next packet of `kind`, skipping others."""
    while True:
        parsed = parse_mqtt(buffer)
        if parsed:
            packet, buffer = parsed
            if packet[0] >> 4 == kind:
                return packet, buffer
            continue
        chunk = await asyncio.wait_for(reader.read(65536), max(0.01, deadline - time.monotonic()))
        if not chunk:
            raise ConnectionError("closed")
        buffer += chunk


async def open_session(port, client_id, token, topic, timeout=15.0):
    """(reader, writer, buffer) once the auth answer is ok and `topic` is subscribed."""
    deadline = time.monotonic() + timeout
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(connect_packet(client_id) + publish_packet("service/auth/" + token, b""))
    answer, buffer = await read_until(reader, b"", 3, deadline)
    if b'"ok"' not in answer:
        raise ConnectionError(answer[-80:])
    writer.write(subscribe_packet(1, topic, 1))
    _, buffer = await read_until(reader, buffer, 9, deadline)
    return reader, writer, buffer


async def setup_benchmark(port, tokens, sessions, concurrency):
    latencies, failures = [], 0
    counter = iter(range(sessions))

    async def worker(w):
        nonlocal failures
        for i in counter:
            started = time.monotonic()
            try:
                _, writer, _ = await open_session(port, f"setup{w}-{i}", tokens[i % len(tokens)],
                                                  f"private/demo/setup{i}")
                latencies.append(time.monotonic() - started)
                writer.write(DISCONNECT)
                writer.close()
            except (OSError, ConnectionError, asyncio.TimeoutError):
                failures += 1

    started = time.monotonic()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.monotonic() - started
    return {"sessions/s": round(len(latencies) / elapsed, 1),
            "p50 ms": round(1000 * percentile(latencies, 50), 1),
            "p99 ms": round(1000 * percentile(latencies, 99), 1), "failed": failures}


async def throughput_benchmark(port, tokens, pairs, messages):
    subscribers = [await open_session(port, f"sub{i}", tokens[i % len(tokens)], f"private/demo/tp{i}")
                   for i in range(pairs)]
    publishers = [await open_session(port, f"pub{i}", tokens[i % len(tokens)], f"private/demo/idle{i}")
                  for i in range(pairs)]
    payload = b"x" * 64

    async def publish(i):
        _, writer, _ = publishers[i]
        packet = publish_packet(f"private/demo/tp{i}", payload)
        for start in range(0, messages, 100):
            writer.write(packet * min(100, messages - start))
            await writer.drain()

    async def receive(i):
        reader, _, buffer = subscribers[i]
        got, deadline = 0, time.monotonic() + 120
        while got < messages and time.monotonic() < deadline:
            parsed = parse_mqtt(buffer)
            if parsed:
                packet, buffer = parsed
                got += packet[0] >> 4 == 3
                continue
            try:
                chunk = await asyncio.wait_for(reader.read(65536), max(0.01, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if not chunk:
                break
            buffer += chunk
        return got

    started = time.monotonic()
    results = await asyncio.gather(*(receive(i) for i in range(pairs)), *(publish(i) for i in range(pairs)))
    elapsed = time.monotonic() - started
    delivered = sum(results[:pairs])
    for _, writer, _ in subscribers + publishers:
        writer.write(DISCONNECT)
        writer.close()
    return {"messages/s": round(delivered / elapsed), "delivered": f"{delivered}/{pairs * messages}"}


def run(broker, args):
    directory = tempfile.mkdtemp(prefix=f"bench-{broker}-")
    env = local_stack.start(directory, broker)
    try:
        tokens = []
        for _ in range(10):
            status, body = local_stack.http(f"http://127.0.0.1:{env['AUTH_PORT']}/v1/login",
                                            {"username": env["DEMO_USER"], "password": env["DEMO_PASSWORD"]})
            assert status == 200, body
            tokens.append(json.loads(body)["session"])
        port = int(env["LB_PORT"])
        setup = asyncio.run(setup_benchmark(port, tokens, args.sessions, args.concurrency))
        throughput = asyncio.run(throughput_benchmark(port, tokens, args.pairs, args.messages))
        return setup, throughput
    finally:
        local_stack.stop(directory)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--messages", type=int, default=5000)
    args = parser.parse_args()
    print(f"{args.sessions} sessions at concurrency {args.concurrency}; {args.pairs} pairs x {args.messages} "
          "QoS 0 messages of 64 bytes")
    print("| broker tier | sessions/s | set-up p50 | set-up p99 | failed | messages/s | delivered |")
    print("|---|---|---|---|---|---|---|")
    for broker, label in (("rabbitmq", "one RabbitMQ node"), ("rabbitmq-cluster", "RabbitMQ cluster of 3")):
        setup, throughput = run(broker, args)
        print(f"| {label} | {setup['sessions/s']} | {setup['p50 ms']} ms | {setup['p99 ms']} ms | {setup['failed']} "
              f"| {throughput['messages/s']} | {throughput['delivered']} |", flush=True)


if __name__ == "__main__":
    main()
