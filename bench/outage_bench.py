#!/usr/bin/python3
"""mqtt-proxy while the API server is down: a steady stream of clients with
already-issued (and already validated) sessions connects through the proxy
(CONNECT, auth PUBLISH, answer, DISCONNECT); after BEFORE seconds the
auth-server is killed (SIGKILL) or frozen (SIGSTOP, a hung server), OUTAGE
seconds later restarted (SIGCONT); the stream goes on for AFTER seconds. Run
with degraded mode off (default) and on (--auth-stale-if-error-ms 600000).
The auth-server runs with --validate-max-age 5 so cached answers expire
early in the outage and only degraded mode can admit from them (with the
default 60 s the fresh cache alone would carry a 30 s outage).
Prints a Markdown section.
Usage: outage_bench.py PATH/TO/mqtt-proxy PATH/TO/auth-server [kill|stop] [RATE] [OUTAGE] [TOKENS]"""
import asyncio
import collections
import signal
import sys
import time

from benchstack import Stack, percentile, session, wait_for_port

BEFORE, AFTER = 10.0, 20.0


async def stream(stack, tokens, rate, outage, how):
    """Returns (results, samples, marks): results = [(start, outcome, seconds)],
    samples = [(t, metrics)] every 0.25 s, marks = {"down": t, "up": t}."""
    results, samples, marks, tasks = [], [], {}, []
    t0 = time.monotonic()
    total = BEFORE + outage + AFTER

    async def one(i):
        start = time.monotonic() - t0
        outcome, took = await session(stack.proxy_port, f"s{i}", tokens[i % len(tokens)])
        results.append((start, outcome, took))

    async def sample():
        while time.monotonic() - t0 < total:
            values = await asyncio.to_thread(stack.metrics)
            samples.append((time.monotonic() - t0, values))
            await asyncio.sleep(0.25)

    async def control():
        await asyncio.sleep(BEFORE)
        marks["down"] = time.monotonic() - t0
        if how == "kill":
            await asyncio.to_thread(stack.kill_auth_server)
        else:
            stack.processes["auth-server"][0].send_signal(signal.SIGSTOP)
        await asyncio.sleep(outage)
        if how == "kill":
            await asyncio.to_thread(stack.start_auth_server)
        else:
            stack.processes["auth-server"][0].send_signal(signal.SIGCONT)
            await asyncio.to_thread(wait_for_port, stack.auth_port)
        marks["up"] = time.monotonic() - t0

    sampler, controller = asyncio.create_task(sample()), asyncio.create_task(control())
    i = 0
    while time.monotonic() - t0 < total:
        tasks.append(asyncio.create_task(one(i)))
        i += 1
        next_at = t0 + i / rate
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    await asyncio.gather(*tasks, sampler, controller)
    return results, samples, marks


def warm(stack, tokens, rounds=6):
    """Every token validated on (very likely) both workers: SO_REUSEPORT spreads
    connections, and each worker has its own cache."""
    async def run():
        queue = collections.deque((r, i) for r in range(rounds) for i in range(len(tokens)))

        async def worker():
            while queue:
                r, i = queue.popleft()
                outcome, _ = await session(stack.proxy_port, f"w{r}-{i}", tokens[i])
                assert outcome == "ok", outcome
        await asyncio.gather(*(worker() for _ in range(50)))
    asyncio.run(run())


def scenario(proxy, auth_server, label, proxy_args, how, rate, outage, tokens_n):
    stack = Stack(proxy, auth_server, proxy_args=proxy_args, auth_args=["--validate-max-age", "5"])
    try:
        tokens = stack.sessions(tokens_n, users=50)
        warm(stack, tokens)
        base = stack.metrics()
        results, samples, marks = asyncio.run(stream(stack, tokens, rate, outage, how))
        last = samples[-1][1]
        down, up = marks["down"], marks["up"]
        delta = lambda k: int(last.get(k, 0) - base.get(k, 0))  # noqa: E731
        phases = [("before", 0, down), ("outage", down, up), ("after restart", up, 1e9)]
        rows = []
        for name, a, b in phases:
            rs = [r for r in results if a <= r[0] < b]
            refused = [r for r in rs if r[1] != "ok"]
            reasons = collections.Counter(r[1] for r in refused)
            ok_times = [r[2] for r in rs if r[1] == "ok"]
            rows.append((name, len(rs), len(rs) - len(refused), len(refused), dict(reasons),
                         [r[2] for r in refused], ok_times))
        # Breaker open at a session's start (sampled gauge, 0.25 s resolution).
        def breaker_at(t):
            before = [s for s in samples if s[0] <= t]
            return before[-1][1].get("mqtt_proxy_auth_breaker_open", 0) if before else 0
        open_refusals = [r[2] for r in results if down <= r[0] < up and r[1] != "ok" and breaker_at(r[0]) > 0]
        closed_refusals = [r[2] for r in results if down <= r[0] < up and r[1] != "ok" and breaker_at(r[0]) == 0]
        after = sorted((r for r in results if r[0] >= up), key=lambda r: r[0])
        first_ok = next((r[0] + r[2] - up for r in after if r[1] == "ok"), None)
        last_refused = max((r[0] + r[2] - up for r in after if r[1] != "ok"), default=None)
        breaker_closed = next((t - up for t, v in samples if t >= up and v.get("mqtt_proxy_auth_breaker_open", 0) == 0),
                              None)
        return {"label": label, "rows": rows, "opens": delta("mqtt_proxy_auth_breaker_opens_total"),
                "stale": delta('mqtt_proxy_auth_cache_total{result="stale"}'),
                "open_refusals": open_refusals, "closed_refusals": closed_refusals, "first_ok": first_ok,
                "last_refused": last_refused, "breaker_closed": breaker_closed}
    finally:
        stack.close()


def main():
    proxy, auth_server = sys.argv[1], sys.argv[2]
    how = sys.argv[3] if len(sys.argv) > 3 else "kill"
    rate = float(sys.argv[4]) if len(sys.argv) > 4 else 100
    outage = float(sys.argv[5]) if len(sys.argv) > 5 else 30
    tokens_n = int(sys.argv[6]) if len(sys.argv) > 6 else 200
    runs = [scenario(proxy, auth_server, "stale-if-error off (default)", [], how, rate, outage, tokens_n),
            scenario(proxy, auth_server, "`--auth-stale-if-error-ms 600000`",
                     ["--auth-stale-if-error-ms", "600000"], how, rate, outage, tokens_n)]
    what = "killed (SIGKILL), then started again" if how == "kill" else "frozen (SIGSTOP), then resumed (SIGCONT)"
    print(f"### API server {what}: {outage:.0f} s outage, {rate:.0f} sessions/s, {tokens_n} sessions\n")
    ms = lambda xs, p: f"{percentile(xs, p) * 1000:.1f}" if xs else "–"  # noqa: E731
    print("| proxy | phase | sessions | admitted | admitted in p50 / p99 ms | refused (reason: count) | "
          "refusal answered in p50 / p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        for name, n, ok, refused, reasons, refusal_times, ok_times in run["rows"]:
            why = ", ".join(f"{k}: {v}" for k, v in reasons.items()) or "0"
            print(f"| {run['label']} | {name} | {n} | {ok} | {ms(ok_times, 50)} / {ms(ok_times, 99)} | {why} | "
                  f"{ms(refusal_times, 50)} / {ms(refusal_times, 99)} |")
    print()
    print("| proxy | breaker opens | stale answers used | refusals while the breaker was open: n, p50 / p99 ms | "
          "refusals while it was closed: n, p50 / p99 ms | first admitted after restart | last refusal after restart | "
          "breaker closed after restart |")
    print("|---|---|---|---|---|---|---|---|")
    sec = lambda x: "–" if x is None else f"{x:.2f} s"  # noqa: E731
    for run in runs:
        o, c = run["open_refusals"], run["closed_refusals"]
        print(f"| {run['label']} | {run['opens']} | {run['stale']} | {len(o)}, {ms(o, 50)} / {ms(o, 99)} | "
              f"{len(c)}, {ms(c, 50)} / {ms(c, 99)} | {sec(run['first_ok'])} | {sec(run['last_refused'])} | "
              f"{sec(run['breaker_closed'])} |")


if __name__ == "__main__":
    main()
