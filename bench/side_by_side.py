#!/usr/bin/python3
"""mqtt-proxy beside HAProxy (mode tcp, defaults) and Mosquitto direct, in one
run, with one client for all three paths (bench/mqtt_load: raw sockets +
epoll). Not a test. One Mosquitto, one auth-server (real, 1000 sessions of
100 users), one HAProxy and one mqtt-proxy, all on loopback.

For each path:
  idle      N authenticated clients held open: Pss growth of the path's own
            process (mqtt-proxy, HAProxy; for direct, Mosquitto) per client,
            and the broker's growth beside it. Fresh processes: measured first.
  sessions  open + authenticate + DISCONNECT, INFLIGHT at a time, 1000
            distinct tokens through mqtt-proxy: sessions/s, and CPU seconds
            (utime + stime from /proc/PID/stat) of every process per session.
  relay     QoS 0, 64 B, 4 publishers -> 1 subscriber; QoS 1, 256 B, 2 -> 1:
            messages/s at the subscriber, as a ratio to HAProxy in the same round.
  latency   QoS 1, 256 B, paced: p50 / p99 publish-to-delivery.
Rounds repeat sessions, relay and latency; medians are printed. Each measure
starts once the whole stack is quiet (benchstack.settle): a flood leaves the
broker busy for up to a second, and the next measure would time that.

Usage: side_by_side.py [--bin build/bin] [--rounds 5] [--idle 2000] [--seconds 5]
                       [--inflight 100] [--rate 2000] [--proxy-args "..."]"""
import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchstack import TICK, Stack, cpu_seconds, free_port, pss_kib, settle, wait_for_port  # noqa: E402,F401

class Paths:
    def __init__(self, args):
        self.stack = None
        try:
            self._start(args)
        except BaseException:
            if self.stack:
                self.stack.close()  # nothing left running when a program did not come up
            raise

    def _start(self, args):
        binary = os.path.abspath(args.bin)
        proxy_args = shlex.split(args.proxy_args)
        # The broker must not drop QoS 0 messages queued for a busy subscriber.
        self.stack = Stack(os.path.join(binary, "mqtt-proxy"), os.path.join(binary, "auth-server"),
                           proxy_args=proxy_args, broker_conf="max_queued_messages 0\nmax_inflight_messages 0\n",
                           broker_auth=getattr(args, "broker_auth", "password"))
        self.load = os.path.join(binary, "mqtt_load")
        # relay: user0's tokens, one user, one topic tree
        self.tokens, self.token_file, self.user0_file = self.stack.token_files(1000)
        self.haproxy_port = free_port()
        cfg = os.path.join(self.stack.dir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("global\n  maxconn 9900\n"
                    + "".join(f"  {g}\n" for g in getattr(args, "haproxy_global", None) or [])
                    +
                    "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n"
                    + "".join(f"  option {o}\n" for o in getattr(args, "haproxy_option", None) or [])
                    +
                    f"frontend mqtt\n  bind 127.0.0.1:{self.haproxy_port}\n  default_backend broker\n"
                    f"backend broker\n  server mosquitto 127.0.0.1:{self.stack.broker_port}\n")
        self.stack.spawn("haproxy", [shutil.which("haproxy") or "/usr/sbin/haproxy", "-f", cfg, "-db"])
        wait_for_port(self.haproxy_port)
        proxy_b = getattr(args, "proxy_b", None)
        if proxy_b:  # a second mqtt-proxy build in the same stack, for an A/B under the same noise
            b_args = getattr(args, "proxy_b_args", None)
            self.proxy_b_port, _ = self.stack.spawn_proxy("mqtt-proxy-b", os.path.abspath(proxy_b),
                                                          proxy_args if b_args is None else shlex.split(b_args))
        self.pid = {name: p.pid for name, (p, _) in self.stack.processes.items()}
        creds = ["--user", "proxy", "--pass", "proxy-secret"]
        self.paths = {
            "direct": (["--port", str(self.stack.broker_port)] + creds, "mosquitto"),
            "haproxy": (["--port", str(self.haproxy_port)] + creds, "haproxy"),
            "mqtt-proxy": (["--port", str(self.stack.proxy_port)], "mqtt-proxy"),
        }
        if proxy_b:
            self.paths["mqtt-proxy-b"] = (["--port", str(self.proxy_b_port)], "mqtt-proxy-b")

    def settle(self, what):
        """Every measure starts on a quiet stack, whichever path left work behind
        (and before its CPU seconds are read)."""
        waited = settle(self.pid.values())
        if waited > 0.5:
            print(f"settled for {waited:.1f} s before {what}", file=sys.stderr, flush=True)

    def run(self, path, mode, *, tokens=None, timeout=120):
        argv = [self.load, *self.paths[path][0]]
        if path.startswith("mqtt-proxy"):
            argv += ["--tokens", tokens or self.token_file]
        argv += ["--topic", "private/user0/bench", *map(str, mode)]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout).stdout.strip()
        return dict(kv.split("=", 1) for kv in out.split() if "=" in kv), out

    def cpu(self):
        """CPU seconds of each process of the stack, and of the generator runs so far."""
        times = os.times()
        return {**{name: cpu_seconds(pid) for name, pid in self.pid.items()},
                "generator": times.children_user + times.children_system}

    def idle(self, path, count):
        argv = [self.load, *self.paths[path][0]]
        if path.startswith("mqtt-proxy"):
            argv += ["--tokens", self.token_file]
        owner = self.paths[path][1]
        before = {name: pss_kib(pid) for name, pid in self.pid.items()}
        p = subprocess.Popen(argv + ["idle", str(count), "200"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
        ready = p.stdout.readline().strip()
        time.sleep(1.0)
        after = {name: pss_kib(pid) for name, pid in self.pid.items()}
        p.stdin.close()
        p.wait(timeout=60)
        time.sleep(1.0)
        return ready, (after[owner] - before[owner]) * 1024 / count, \
            (after["mosquitto"] - before["mosquitto"]) * 1024 / count

    def close(self):
        self.stack.close()


def whole_stack(cpu, own):
    """CPU per session of everything a session through a path wakes: the
    path's own process, Mosquitto, the auth-server and the generator."""
    return cpu["mosquitto"] + cpu["generator"] + cpu["auth-server"] + (cpu[own] if own != "mosquitto" else 0)


def interleaved(paths, names, slices, mode, tokens=None, probe=None):
    """Runs of `mode` through each path in short slices, taken in turn (the
    order rotating each time) until each path had `slices`: a slow spell of a
    shared host falls on all paths alike, where rounds one after another let
    it fall on one. Returns per path the sums over its slices (count: the
    run's `sessions` or `messages`; seconds; CPU seconds of every process),
    and per slice what each path's run printed. `probe`, if given, returns a
    dict of counters (tuples of numbers) read before and after each run; their
    growth is summed per path under "probe"."""
    totals = {n: {"count": 0, "work": 0, "seconds": 0.0, "failed": 0, "cpu": {}} for n in names}
    pairs = []
    for i in range(slices):
        order = names[i % len(names):] + names[:i % len(names)]
        rates = {}
        for name in order:
            paths.settle(f"{name} slice")
            p0 = probe() if probe else {}
            c0 = paths.cpu()
            kv, _ = paths.run(name, mode, tokens=tokens)
            c1 = paths.cpu()
            p1 = probe() if probe else {}
            t = totals[name]
            for k in p0:
                before = t.setdefault("probe", {}).get(k, (0,) * len(p0[k]))
                t["probe"][k] = tuple(b + y - x for b, x, y in zip(before, p0[k], p1[k]))
            t["count"] += int(kv.get("sessions", kv.get("messages", 0)))
            # What the CPU seconds paid for: every session, or every message published (warm-up included).
            t["work"] += int(kv.get("sessions", kv.get("published", 0)))
            t["seconds"] += float(kv.get("seconds", 0))
            t["failed"] += int(kv.get("failed", 0))
            for key in (k for k in kv if k.startswith("fail[")):  # which: fail[auth_unavailable]=N, ...
                t.setdefault("kinds", {})[key] = t.get("kinds", {}).get(key, 0) + int(kv[key])
            for k in c0:
                t["cpu"][k] = t["cpu"].get(k, 0.0) + c1[k] - c0[k]
            rates[name] = kv
        pairs.append(rates)
    return totals, pairs


def print_interleaved(paths, names, totals, pairs, unit):
    others = [n for n in names if n != "haproxy"]
    print(f"| path | {unit}/s | ratio to HAProxy | slices above HAProxy's neighbour | CPU µs per {unit[:-1]}: "
          "path process | Mosquitto | generator | whole stack | failed |\n|---|---|---|---|---|---|---|---|---|")
    h = totals["haproxy"]["count"] / totals["haproxy"]["seconds"]
    for name in names:
        t = totals[name]
        n = t["work"] or 1
        own = paths.paths[name][1]
        per = {k: v / n * 1e6 for k, v in t["cpu"].items()}
        whole = whole_stack(per, own)
        above = sum(1 for r in pairs if float(r[name].get("per_second", 0)) > float(r["haproxy"].get("per_second", 0))) \
            if name in others else "-"
        rate = t["count"] / t["seconds"]
        print(f"| {name} | {rate:.0f} | {rate / h:.3f} | {above} of {len(pairs)} | {per[own]:.2f} | "
              f"{per['mosquitto']:.2f} | {per['generator']:.2f} | {whole:.2f} | {t['failed']} |")
    for name in names:
        if totals[name].get("kinds"):
            print(f"\n{name} failures: " + ", ".join(f"{k}={v}" for k, v in totals[name]["kinds"].items()))


def interleaved_sessions(paths, names, slices, seconds, inflight):
    totals, pairs = interleaved(paths, names, slices, ["sessions", seconds, inflight])
    print(f"\n## new sessions, interleaved: {slices} slices of {seconds} s per path, {inflight} in flight\n")
    print_interleaved(paths, names, totals, pairs, "sessions")


def interleaved_relay(paths, names, slices, seconds):
    """The relay measures in slices: each slice is a fresh run (set-up and a
    1 s warm-up, then `seconds` measured), so the CPU per message counts
    every message published in the run."""
    for title, mode in (("QoS 0, 64 B, 4 -> 1", ["relay", seconds, 0, 64, 4]),
                        ("QoS 1, 256 B, 2 -> 1", ["relay", seconds, 1, 256, 2])):
        totals, pairs = interleaved(paths, names, slices, mode, tokens=paths.user0_file)
        print(f"\n## relay {title}, interleaved: {slices} slices of {seconds} s per path, messages at the "
              "subscriber\n")
        print_interleaved(paths, names, totals, pairs, "messages")


def interleaved_latency(paths, names, slices, seconds, rate):
    """Paced QoS 1 in slices: the median over the slices of each slice's p50
    and p99, and in how many slices the path was below HAProxy's neighbour."""
    _, pairs = interleaved(paths, names, slices, ["latency", seconds, rate], tokens=paths.user0_file)
    print(f"\n## paced QoS 1, 256 B, {rate}/s, interleaved: {slices} slices of {seconds} s per path\n")
    print("| path | p50 µs (median of slices) | p99 µs | slices with p50 below HAProxy's | p99 below |\n"
          "|---|---|---|---|---|")
    for name in names:
        def of(key, n=name):
            return [float(r[n].get(key, 0)) for r in pairs]
        below = (lambda key: sum(1 for a, b in zip(of(key), of(key, "haproxy")) if a < b)) \
            if name != "haproxy" else (lambda key: "-")
        print(f"| {name} | {statistics.median(of('p50_us')):.0f} | {statistics.median(of('p99_us')):.0f} | "
              f"{below('p50_us')} of {slices} | {below('p99_us')} of {slices} |")


def paths_of(bin_dir, proxy=None, proxy_args="", prefix="side_by_side.", broker_auth="password"):
    """Paths for a script that measures one mqtt-proxy binary (`proxy`, else
    the one in bin_dir) with the auth-server and mqtt_load of bin_dir: Paths
    takes the three from one directory, so they are linked into a fresh one.
    Returns (that directory, for the script's own files too; the Paths)."""
    work = tempfile.mkdtemp(prefix=prefix)
    for name in ("auth-server", "mqtt_load"):
        os.symlink(os.path.abspath(os.path.join(bin_dir, name)), os.path.join(work, name))
    os.symlink(os.path.abspath(proxy or os.path.join(bin_dir, "mqtt-proxy")), os.path.join(work, "mqtt-proxy"))
    return work, Paths(types.SimpleNamespace(bin=work, proxy_args=proxy_args, broker_auth=broker_auth))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(HERE, "..", "build", "bin"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--inflight", type=int, default=100)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--proxy-args", default="")
    parser.add_argument("--skip", default="", help="comma list of parts to leave out: idle,sessions,relay,latency")
    parser.add_argument("--slices", type=int, default=0,
                        help="also measure sessions interleaved: this many slices per path (see interleaved_sessions)")
    parser.add_argument("--slice-seconds", type=float, default=1.0)
    parser.add_argument("--relay-slices", type=int, default=0,
                        help="also measure relay interleaved: this many slices per path and QoS (see interleaved_relay)")
    parser.add_argument("--relay-slice-seconds", type=float, default=2.0)
    parser.add_argument("--latency-slices", type=int, default=0,
                        help="also measure paced latency interleaved: this many slices of --seconds per path")
    parser.add_argument("--haproxy-option", action="append",
                        help="an `option` line for HAProxy's defaults (e.g. tcp-smart-connect); repeatable")
    parser.add_argument("--haproxy-global", action="append",
                        help="a line for HAProxy's global section (e.g. 'nbthread 1'); repeatable")
    parser.add_argument("--proxy-b", help="a second mqtt-proxy binary, measured beside the first as mqtt-proxy-b")
    parser.add_argument("--proxy-b-args", help="mqtt-proxy-b's extra arguments (default: --proxy-args); with "
                        "--proxy-b naming the same binary, an A/B of a setting")
    parser.add_argument("--broker-auth", choices=["password", "none"], default="password",
                        help="none: Mosquitto checks no password, so its PBKDF2 per CONNECT does not set the pace")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    paths = Paths(args)
    names = ["direct", "haproxy", "mqtt-proxy"] + (["mqtt-proxy-b"] if args.proxy_b else [])
    try:
        print(f"# side_by_side: {args.rounds} rounds, {args.seconds} s per measure, broker auth {args.broker_auth}, "
              f"HAProxy options {args.haproxy_option or 'none'}, "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}")
        if "idle" not in skip:
            print(f"\n## idle authenticated TCP clients ({args.idle}, 200 handshakes in flight)\n")
            print("| path | generator | path process Pss per client | Mosquitto Pss per client |\n|---|---|---|---|")
            for name in names:
                ready, own, broker = paths.idle(name, args.idle)
                print(f"| {name} | `{ready}` | {own:.0f} B | {broker:.0f} B |", flush=True)
        results = {n: {"sessions": [], "cpu": [], "broker_core": [], "q0": [], "q1": [], "p50": [], "p99": []} for n in names}
        for r in range(args.rounds):
            for name in names:
                res = results[name]
                if "sessions" not in skip:
                    paths.settle(f"{name} sessions")
                    c0 = paths.cpu()
                    kv, out = paths.run(name, ["sessions", args.seconds, args.inflight])
                    c1 = paths.cpu()
                    n = int(kv.get("sessions", 0)) or 1
                    res["sessions"].append(float(kv.get("per_second", 0)))
                    res["cpu"].append({k: (c1[k] - c0[k]) / n * 1e6 for k in c0})
                    broker_core = (c1["mosquitto"] - c0["mosquitto"]) / float(kv.get("seconds", args.seconds))
                    res["broker_core"].append(broker_core)
                    print(f"round {r} {name} sessions: {out} broker_core={broker_core:.2f}", file=sys.stderr,
                          flush=True)
                if "relay" not in skip:
                    paths.settle(f"{name} qos0")
                    kv, out = paths.run(name, ["relay", args.seconds, 0, 64, 4], tokens=paths.user0_file)
                    res["q0"].append(float(kv.get("per_second", 0)))
                    print(f"round {r} {name} qos0: {out}", file=sys.stderr, flush=True)
                    paths.settle(f"{name} qos1")
                    kv, out = paths.run(name, ["relay", args.seconds, 1, 256, 2], tokens=paths.user0_file)
                    res["q1"].append(float(kv.get("per_second", 0)))
                    print(f"round {r} {name} qos1: {out}", file=sys.stderr, flush=True)
                if "latency" not in skip:
                    paths.settle(f"{name} latency")
                    kv, out = paths.run(name, ["latency", args.seconds, args.rate], tokens=paths.user0_file)
                    res["p50"].append(float(kv.get("p50_us", 0)))
                    res["p99"].append(float(kv.get("p99_us", 0)))
                    print(f"round {r} {name} latency: {out}", file=sys.stderr, flush=True)
        med = statistics.median
        if "sessions" not in skip:
            print(f"\n## new sessions, {args.inflight} in flight, 1000 distinct tokens through mqtt-proxy "
                  f"(median of {args.rounds})\n")
            print("| path | sessions/s | ratio to HAProxy | per-round ratios | CPU µs per session: path process | "
                  "Mosquitto | auth-server | generator | whole stack | Mosquitto's core use |\n"
                  "|---|---|---|---|---|---|---|---|---|---|")
            hap = results["haproxy"]["sessions"]
            for name in names:
                res = results[name]
                own = paths.paths[name][1]
                cpu = lambda k: med([c[k] for c in res["cpu"]])  # noqa: E731
                whole = med([whole_stack(c, own) for c in res["cpu"]])
                auth = f"{cpu('auth-server'):.0f}" if name.startswith("mqtt-proxy") else "-"
                ratios = [a / b for a, b in zip(res["sessions"], hap) if b]
                print(f"| {name} | {med(res['sessions']):.0f} | {med(ratios):.2f} | "
                      f"{', '.join(f'{x:.2f}' for x in ratios)} | {cpu(own):.0f} | {cpu('mosquitto'):.0f} | {auth} | "
                      f"{cpu('generator'):.0f} | {whole:.0f} | {med(res['broker_core']):.2f} |")
            print("\nratio: median of the per-round ratios to HAProxy. whole stack: CPU µs per session of the path "
                  "process, Mosquitto, auth-server and the generator. Mosquitto's core use near 1.00 means the "
                  "single-threaded broker set the pace, not the path.")
        if args.slices:
            interleaved_sessions(paths, names, args.slices, args.slice_seconds, args.inflight)
        if args.relay_slices:
            interleaved_relay(paths, names, args.relay_slices, args.relay_slice_seconds)
        if args.latency_slices:
            interleaved_latency(paths, names, args.latency_slices, args.seconds, args.rate)
        if "relay" not in skip:
            print(f"\n## relay, messages/s at the subscriber (median of {args.rounds}; ratio: median of the "
                  "per-round ratios to HAProxy)\n")
            print("| path | QoS 0, 64 B, 4 -> 1 | ratio | QoS 1, 256 B, 2 -> 1 | ratio |\n|---|---|---|---|---|")
            for name in names:
                res, hap = results[name], results["haproxy"]
                r0 = med([a / b for a, b in zip(res["q0"], hap["q0"]) if b])
                r1 = med([a / b for a, b in zip(res["q1"], hap["q1"]) if b])
                print(f"| {name} | {med(res['q0']):.0f} | {r0:.2f} | {med(res['q1']):.0f} | {r1:.2f} |")
        if "latency" not in skip:
            print(f"\n## paced QoS 1, 256 B, {args.rate}/s, publish to delivery (median of {args.rounds})\n")
            print("| path | p50 µs | p99 µs |\n|---|---|---|")
            for name in names:
                res = results[name]
                print(f"| {name} | {med(res['p50']):.0f} | {med(res['p99']):.0f} |")
        print(f"\nload average at the end: {os.getloadavg()}")
    finally:
        paths.close()


if __name__ == "__main__":
    main()
