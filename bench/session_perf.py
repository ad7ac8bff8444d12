#!/usr/bin/python3
"""Where the CPU of a new session goes, by process and kernel function, for
mqtt-proxy and HAProxy (CONNECT only) in the same stack (issue 14, part 2,
round 6). Not a test. The stack and client of side_by_side.py; for each path a
sessions run with `perf record -a -g -e cpu-clock` (software clock: this VM has
no hardware counters) over the whole machine, so the generator, Mosquitto,
the auth-server and the path process are all seen. Samples are normalised to
samples per 1000 sessions, so two paths (or two binaries) compare whatever the
rate was. Also counts the TIME_WAIT sockets mid-run, by local/peer port, to
show which side of each link closed first.

    bench/session_perf.py --bin build/bin [--proxy other/mqtt-proxy] [--seconds 4] [--top 40]
                          [--keep DIR]   (keeps perf.data per path for perf report)"""
import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import side_by_side  # noqa: E402


def time_wait_by_side(ports, seconds):
    """{side: count} of the TIME_WAIT sockets created in the last `seconds`
    (their 60 s timer has more than 60 - seconds left), by who holds them: the
    side that closed first. Sockets of earlier runs are still there, hence
    the timer, not a difference of two counts."""
    out = subprocess.run(["ss", "-Htano", "state", "time-wait"], capture_output=True, text=True).stdout
    counts = collections.Counter()
    for line in out.splitlines():
        timer = re.search(r"timewait,(\d+)sec", line)
        fields = line.split()
        if len(fields) < 4 or not timer or int(timer.group(1)) + 1 < 60 - seconds:
            continue
        local, peer = fields[2], fields[3]
        lport, pport = int(local.rsplit(":", 1)[1]), int(peer.rsplit(":", 1)[1])
        if lport in ports:
            counts[f"{ports[lport]}'s accepted end"] += 1
        elif pport in ports:
            counts[f"the dialer's end (to {ports[pport]})"] += 1
        else:
            counts["other"] += 1
    return counts


def tcp_counters():
    """{counter: value} of the kernel's TCP/IP counters (nstat -az: absolute, all)."""
    out = subprocess.run(["nstat", "-az", "--json"], capture_output=True, text=True).stdout
    return {k: v for k, v in json.loads(out)["kernel"].items() if k.startswith(("Tcp", "Ip"))}


def perf_report(data, sort):
    """[(percent, key)] from perf report --stdio, self time, no call graph."""
    out = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "-g", "none",
                          "--percent-limit", "0.2", "--sort", sort],
                         capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "%" not in line.split()[0]:
            continue
        pct, *rest = line.split()
        rows.append((float(pct.rstrip("%")), " ".join(rest)))
    return rows


def samples_by_syscall(data, comms):
    """({(comm, where): samples}, {comm: samples}) from the call chains: where
    is the syscall the sample is under (the frame above do_syscall_64), "user",
    or the kernel entry it came through; "+softirq" when it ran the network
    receive softirq (on loopback the receiver's work runs in the sender's
    syscall: the FIN or data a process sends is partly charged to it)."""
    out = subprocess.run(["perf", "script", "-i", data, "-F", "comm,ip,sym"],
                         capture_output=True, text=True).stdout
    by, total = collections.Counter(), collections.Counter()

    def account(comm, frames):
        if comm not in comms or not frames:
            return
        total[comm] += 1
        names = [name for _, name in frames]
        where = None
        for i, name in enumerate(names):
            if name == "do_syscall_64" and i > 0:
                where = "sys " + re.sub(r"^(__x64_sys_|__se_sys_|__do_sys_|__sys_|ksys_)", "", names[i - 1])
        if where is None:
            kernel = [name for in_kernel, name in frames if in_kernel]
            where = "user" if not frames[0][0] else f"kernel ({kernel[-1]})"
        if any(name in ("net_rx_action", "handle_softirqs", "__do_softirq") for name in names):
            where += " +softirq"
        by[(comm, where)] += 1

    comm, frames = None, []
    for line in out.splitlines():
        if not line.strip():
            account(comm, frames)
            comm, frames = None, []
        elif not line[0].isspace():
            account(comm, frames)
            comm, frames = line.split()[0], []
        else:
            parts = line.split()
            frames.append((parts[0].startswith("ffffffff"), parts[1] if len(parts) > 1 else "?"))
    account(comm, frames)
    return by, total


def sample_count(data):
    out = subprocess.run(["perf", "report", "-i", data, "--stdio", "--sort", "comm", "-g", "none"],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("# Samples:"):
            n = line.split()[2]
            return int(float(n[:-1]) * 1000) if n.endswith("K") else int(n)
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "build", "bin"))
    parser.add_argument("--proxy", help="the mqtt-proxy binary to measure")
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--broker-auth", choices=["password", "none"], default="password",
                        help="none: Mosquitto checks no password (its PBKDF2 would set every path's rate)")
    parser.add_argument("--inflight", type=int, default=100)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--paths", default="haproxy,mqtt-proxy")
    parser.add_argument("--keep", help="directory to keep perf.data files in")
    args = parser.parse_args()
    work, paths = side_by_side.paths_of(args.bin, args.proxy, prefix="session_perf.",
                                              broker_auth=args.broker_auth)
    ports = {paths.stack.broker_port: "mosquitto", paths.haproxy_port: "haproxy",
             paths.stack.proxy_port: "mqtt-proxy"}
    try:
        print(f"# session_perf: {args.proxy or 'mqtt-proxy of ' + args.bin}, {args.inflight} in flight, "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}")
        paths.run("mqtt-proxy", ["sessions", 1, args.inflight])
        for name in args.paths.split(","):
            paths.settle(name)
            data = os.path.join(work, f"{name}.perf.data")
            perf = subprocess.Popen(["perf", "record", "-a", "-g", "-e", "cpu-clock", "-o", data],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
            nstat0, t0 = tcp_counters(), time.monotonic()
            kv, out = paths.run(name, ["sessions", args.seconds, args.inflight])
            tw, nstat1 = time_wait_by_side(ports, time.monotonic() - t0 + 0.5), tcp_counters()
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=60)
            n = int(kv.get("sessions", 0)) or 1
            total = sample_count(data)
            per_k = total / n * 1000
            print(f"\n## {name}: {out}")
            print(f"{name}: {total} samples, {per_k:.0f} per 1000 sessions (incl. idle and the 1 s lead-in)")
            print(f"{name}: TIME_WAIT sockets of this run per session, by the end that closed first "
                  "(timers of whole seconds: ± a second's worth): " + ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(tw.items())))
            print(f"{name}: TCP counters per session (whole machine): " +
                  ", ".join(f"{k} {(nstat1[k] - nstat0.get(k, 0)) / n:.2f}" for k in sorted(nstat1)
                            if (nstat1[k] - nstat0.get(k, 0)) / n >= 0.05))
            for sort in ("comm,dso", "comm,sym"):
                print(f"{name}: samples per 1000 sessions by {sort}")
                for pct, key in perf_report(data, sort)[:args.top]:
                    print(f"  {pct * per_k / 100:8.0f}  {key}")
            owner = {"haproxy": "haproxy", "mqtt-proxy": "mqtt-proxy", "direct": "mosquitto"}[name]
            comms = [owner, "mqtt_load", "mosquitto", "auth-server"]
            by, total_by = samples_by_syscall(data, comms)
            for comm in comms:
                print(f"{name}: {comm}: {total_by[comm] / n * 1000:.1f} samples per 1000 sessions, by syscall:")
                for (c, where), count in sorted(by.items(), key=lambda kv: -kv[1]):
                    if c == comm and count / n * 1000 >= 1:
                        print(f"  {count / n * 1000:8.1f}  {where}")
            if args.keep:
                os.makedirs(args.keep, exist_ok=True)
                shutil.copy(data, os.path.join(args.keep, f"{name}.perf.data"))
    finally:
        paths.close()


if __name__ == "__main__":
    main()
