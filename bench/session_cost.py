#!/usr/bin/python3
"""What one new session costs the proxy process, by measures that do not
depend on the machine's load (issue 14, part 2). Not a test. The same stack
and client as side_by_side.py (Mosquitto, the real auth-server with 1000
sessions, HAProxy, mqtt-proxy; bench/mqtt_load `sessions`), then for
mqtt-proxy and, beside it, HAProxy (CONNECT only):

  cpu       utime + stime of the process (/proc/PID/stat) per session, and each apart
  threads   context switches per session of each thread of the process
            (/proc/PID/task/*/status): which threads wake for a session
  syscalls  `strace -f -c` attached over one run: calls per session by name
            (strace slows the process; the counts, not the times, are the point)

    bench/session_cost.py --bin build/bin [--proxy other/mqtt-proxy] [--seconds 4] [--inflight 100]

Compare two proxies by running it once with each --proxy, back to back."""
import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import side_by_side  # noqa: E402
from benchstack import strace_summary  # noqa: E402


def user_system_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / side_by_side.TICK, int(fields[12]) / side_by_side.TICK


def thread_switches(pid):
    """{thread name/tid: voluntary + involuntary context switches}"""
    result = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                text = f.read()
        except OSError:
            continue
        name = re.search(r"^Name:\s*(.*)$", text, re.M).group(1)
        switches = sum(int(v) for v in re.findall(r"ctxt_switches:\s*(\d+)", text))
        result[f"{name}/{tid}"] = switches
    return result


def strace_counts(pid, run):
    """Runs run() with strace -f -c attached to pid: ({syscall: calls}, run's result)."""
    out = tempfile.mktemp(prefix="strace.")
    tracer = subprocess.Popen(["strace", "-f", "-c", "-o", out, "-p", str(pid)], stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached to every thread
    result = run()
    tracer.send_signal(signal.SIGINT)
    tracer.wait(timeout=30)
    _, counts = strace_summary(out)
    os.unlink(out)
    return counts, result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "build", "bin"),
                        help="where auth-server, mqtt_load (and mqtt-proxy unless --proxy) are")
    parser.add_argument("--proxy", help="the mqtt-proxy binary to measure")
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--broker-auth", choices=["password", "none"], default="password",
                        help="none: Mosquitto checks no password (its PBKDF2 would set every path's rate)")
    parser.add_argument("--inflight", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="CPU rounds (median)")
    parser.add_argument("--proxy-args", default="")
    parser.add_argument("--no-strace", action="store_true", help="CPU and threads only")
    args = parser.parse_args()
    _, paths = side_by_side.paths_of(args.bin, args.proxy, args.proxy_args, prefix="session_cost.",
                                       broker_auth=args.broker_auth)
    mode = ["sessions", args.seconds, args.inflight]
    try:
        print(f"# session_cost: {args.proxy or 'mqtt-proxy of ' + args.bin}, {args.inflight} in flight, "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}")
        paths.run("mqtt-proxy", ["sessions", 1, args.inflight])  # warm-up: cache, pools
        for name in ("haproxy", "mqtt-proxy"):
            pid = paths.pid[name]
            cpu, user, system, failed = [], [], [], 0
            for _ in range(args.rounds):
                c0 = side_by_side.cpu_seconds(pid)
                u0, s0 = user_system_seconds(pid)
                t0 = thread_switches(pid)
                auth0 = side_by_side.cpu_seconds(paths.pid["auth-server"])
                kv, out = paths.run(name, mode)
                c1 = side_by_side.cpu_seconds(pid)
                u1, s1 = user_system_seconds(pid)
                t1 = thread_switches(pid)
                auth1 = side_by_side.cpu_seconds(paths.pid["auth-server"])
                n = int(kv.get("sessions", 0)) or 1
                failed += int(kv.get("failed", 0))
                cpu.append((c1 - c0) / n * 1e6)
                user.append((u1 - u0) / n * 1e6)
                system.append((s1 - s0) / n * 1e6)
                print(f"{name}: {out}; cpu {cpu[-1]:.1f} µs/session"
                      + (f", auth-server {(auth1 - auth0) / n * 1e6:.1f} µs/session" if name == "mqtt-proxy" else ""))
            med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
            print(f"{name}: CPU µs per session, median of {args.rounds}: {med(cpu):.1f} (user {med(user):.1f}, "
                  f"system {med(system):.1f}); failed {failed}")
            print(f"{name}: context switches per session by thread (last round): " +
                  ", ".join(f"{k} {(t1.get(k, 0) - t0.get(k, 0)) / n:.2f}" for k in sorted(t1)))
            if args.no_strace:
                continue
            counts, (kv, out) = strace_counts(pid, lambda: paths.run(name, mode))
            n = int(kv.get("sessions", 0)) or 1
            total = sum(counts.values())
            print(f"{name}: under strace {out}")
            print(f"{name}: syscalls per session {total / n:.1f}: " +
                  ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])
                            if v / n >= 0.01))
    finally:
        paths.close()


if __name__ == "__main__":
    main()
