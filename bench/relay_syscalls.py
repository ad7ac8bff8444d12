#!/usr/bin/python3
"""Syscalls and CPU seconds per relayed message, mqtt-proxy beside HAProxy
(mode tcp), on the stack and client of side_by_side.py. Measures that a busy
shared machine does not distort much (rates do): for each path and load,

  cpu   one plain run: utime + stime of the path's process (/proc/PID/stat)
        per message the subscriber received;
  sys   one run with `strace -f -c -p PID` attached: syscalls of the path's
        process per message received, total and by name.

Loads: paced QoS 1 at RATE/s (the latency test: one packet per read, so the
per-packet cost), QoS 0 64 B 4 -> 1 and QoS 1 256 B 2 -> 1 (flow-controlled:
packets batch, and strace slows the process it watches, which batches more,
so compare the two paths with each other, not with the plain run).

    bench/relay_syscalls.py --bin build/bin [--proxy build/bin/mqtt-proxy]"""
import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import side_by_side  # noqa: E402
from benchstack import strace_summary  # noqa: E402

LOADS = {
    "paced": lambda s, rate: ["latency", s, rate],
    "qos0": lambda s, rate: ["relay", s, 0, 64, 4],
    "qos1": lambda s, rate: ["relay", s, 1, 256, 2],
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "build", "bin"),
                        help="where auth-server and mqtt_load (and mqtt-proxy, unless --proxy) are")
    parser.add_argument("--proxy", help="the mqtt-proxy binary (default: the one in --bin)")
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--loads", default="paced,qos0,qos1")
    parser.add_argument("--paths", default="haproxy,mqtt-proxy")
    args = parser.parse_args()
    work, paths = side_by_side.paths_of(args.bin, args.proxy, prefix="relay_syscalls.")
    try:
        for path in ("haproxy", "mqtt-proxy"):  # warm-up
            paths.run(path, ["relay", 1, 0, 64, 4], tokens=paths.user0_file)
        for load in args.loads.split(","):
            mode = LOADS[load](args.seconds, args.rate)
            for path in args.paths.split(","):
                pid = paths.pid[paths.paths[path][1]]
                before = side_by_side.cpu_seconds(pid)
                kv, out = paths.run(path, mode, tokens=paths.user0_file)
                cpu = side_by_side.cpu_seconds(pid) - before
                got = int(kv.get("messages", kv.get("received", 0))) or 1
                trace = os.path.join(work, f"strace.{path}.{load}")
                tracer = subprocess.Popen(["strace", "-f", "-c", "-o", trace, "-p", str(pid)],
                                          stderr=subprocess.DEVNULL)
                time.sleep(0.5)
                kv2, out2 = paths.run(path, mode, tokens=paths.user0_file)
                tracer.terminate()
                tracer.wait(timeout=30)
                got2 = int(kv2.get("messages", kv2.get("received", 0))) or 1
                total, counts = strace_summary(trace)
                top = ", ".join(f"{name} {calls / got2:.2f}" for name, calls in
                                sorted(counts.items(), key=lambda kv: -kv[1])[:6])
                print(f"{load:5} {path:10} cpu {cpu / got * 1e6:6.2f} us/msg ({out}) | "
                      f"syscalls {total / got2:5.2f}/msg: {top} (under strace: {out2})", flush=True)
    finally:
        paths.close()


if __name__ == "__main__":
    main()
