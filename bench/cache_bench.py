#!/usr/bin/python3
"""The validation cache's effect on sessions per second through mqtt-proxy
(auth PUBLISH mode, the real auth-server, Mosquitto): TOKENS distinct
sessions, each connecting ROUNDS times (CONNECT, auth PUBLISH, answer,
DISCONNECT), IN_FLIGHT sessions at once, with the cache on (default) and off
(--auth-cache-max-entries 0). Counts API calls from the proxy's /metrics and
refusals as the clients saw them. Prints a Markdown section.
Usage: cache_bench.py PATH/TO/mqtt-proxy PATH/TO/auth-server [TOKENS] [ROUNDS] [IN_FLIGHT]"""
import asyncio
import collections
import sys
import time

from benchstack import Stack, percentile, session


async def run_round(port, tokens, in_flight, round_no):
    queue = collections.deque(enumerate(tokens))
    outcomes, latencies = collections.Counter(), []

    async def worker():
        while queue:
            i, token = queue.popleft()
            outcome, took = await session(port, f"c{i}", token)
            outcomes[outcome] += 1
            latencies.append(took)

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return outcomes, latencies, time.monotonic() - started


def measure(proxy, auth_server, label, proxy_args, tokens_n, rounds, in_flight):
    stack = Stack(proxy, auth_server, proxy_args=proxy_args)
    try:
        tokens = stack.sessions(tokens_n)
        before = stack.metrics()
        total, latencies, per_round, elapsed = collections.Counter(), [], [], 0.0
        for r in range(rounds):
            outcomes, lat, took = asyncio.run(run_round(stack.proxy_port, tokens, in_flight, r))
            total.update(outcomes)
            latencies += lat
            elapsed += took
            per_round.append(len(tokens) / took)
        after = stack.metrics()
        delta = lambda k: int(after.get(k, 0) - before.get(k, 0))  # noqa: E731
        return {
            "label": label, "sessions": sum(total.values()), "ok": total["ok"],
            "refused": sum(v for k, v in total.items() if k != "ok"), "outcomes": dict(total),
            "rate": sum(total.values()) / elapsed, "per_round": per_round,
            "p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
            # Every miss is one HTTP call here: each token is used once per round, so no
            # coalescing, and the breaker stays closed (checked: no refusals).
            "api_calls": delta('mqtt_proxy_auth_cache_total{result="miss"}'),
            "hits": delta('mqtt_proxy_auth_cache_total{result="hit"}'),
                    }
    finally:
        stack.close()


def main():
    proxy, auth_server = sys.argv[1], sys.argv[2]
    tokens_n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    in_flight = int(sys.argv[5]) if len(sys.argv) > 5 else 100
    rows = [measure(proxy, auth_server, "cache on (default)", [], tokens_n, rounds, in_flight),
            measure(proxy, auth_server, "cache off (`--auth-cache-max-entries 0`)",
                    ["--auth-cache-max-entries", "0"], tokens_n, rounds, in_flight)]
    print(f"### Validation cache: {tokens_n} distinct sessions × {rounds} rounds, {in_flight} in flight\n")
    print("| proxy | sessions | sessions/s (all rounds) | sessions/s per round | p50 / p99 time to answer | "
          "API calls (= cache misses) | cache hits | refused |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        refused = f"{r['refused']}" + (f" ({', '.join(f'{k}: {v}' for k, v in r['outcomes'].items() if k != 'ok')})"
                                       if r["refused"] else "")
        print(f"| {r['label']} | {r['sessions']} | {r['rate']:.0f} | {' / '.join(f'{x:.0f}' for x in r['per_round'])} | "
              f"{r['p50'] * 1000:.1f} / {r['p99'] * 1000:.1f} ms | {r['api_calls']} | {r['hits']} | "
              f"{refused} |")


if __name__ == "__main__":
    main()
