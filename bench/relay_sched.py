#!/usr/bin/python3
"""Where a relay flood's rate goes between the paths: per message, how often
each process of the stack slept (voluntary context switches: it waited in
epoll_wait and had to be woken) and was preempted (involuntary: something
else took its CPU), beside its CPU time. Mosquitto sets the pace of the
flood (it is single-threaded and runs a core flat out), so what matters is
what the path makes Mosquitto pay: wake-ups it must do for the path's
threads, and preemptions by them. Not a test.

Usage: relay_sched.py [--bin build-release/bin] [--slices 6] [--seconds 3]
                      [--qos 0] [--proxy-b BIN --proxy-b-args "..."]
Interleaved slices, as side_by_side.py's interleaved relay."""
import argparse
import os
import resource
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from side_by_side import Paths, interleaved  # noqa: E402


def switches(pid):
    """(voluntary, involuntary) context switches summed over the threads of pid."""
    vol = invol = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        invol += int(line.split()[1])
        except OSError:
            pass
    return vol, invol


def switches_of_stack(paths):
    """(voluntary, involuntary) switches of every process; the generator's from the runs waited for so far."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    sw = {name: switches(pid) for name, pid in paths.pid.items()}
    sw["generator"] = (children.ru_nvcsw, children.ru_nivcsw)
    return sw


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(HERE, "..", "build-release", "bin"))
    parser.add_argument("--slices", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--qos", type=int, default=0)
    parser.add_argument("--proxy-args", default="")
    parser.add_argument("--proxy-b")
    parser.add_argument("--proxy-b-args")
    parser.add_argument("--haproxy-global", action="append", help="a line for HAProxy's global section; repeatable")
    args = parser.parse_args()
    mode = ["relay", args.seconds, 0, 64, 4] if args.qos == 0 else ["relay", args.seconds, 1, 256, 2]
    paths = Paths(types.SimpleNamespace(bin=args.bin, proxy_args=args.proxy_args, broker_auth="none",
                                        proxy_b=args.proxy_b, proxy_b_args=args.proxy_b_args))
    names = list(paths.paths)
    procs = [n for n in paths.pid if n != "auth-server"] + ["generator"]
    try:
        totals, _ = interleaved(paths, names, args.slices, mode, tokens=paths.user0_file,
                                probe=lambda: switches_of_stack(paths))
        h = totals["haproxy"]["count"] / totals["haproxy"]["seconds"]
        print(f"\n## relay QoS {args.qos}, {args.slices} interleaved slices of {args.seconds} s per path; per 1000 "
              "messages published: voluntary / involuntary switches, CPU ms\n")
        print("| path | msgs/s | ratio | " + " | ".join(procs) + " |\n|---|---|---|" + "---|" * len(procs))
        for name in names:
            t = totals[name]
            k = t["work"] / 1000 or 1  # interleaved's "work" of a relay run: the messages published
            cells = [f"{t['probe'][p][0] / k:.1f} / {t['probe'][p][1] / k:.1f}, {t['cpu'][p] / k * 1000:.2f}"
                     for p in procs]
            rate = t["count"] / t["seconds"]
            print(f"| {name} | {rate:.0f} | {rate / h:.3f} | " + " | ".join(cells) + " |")
    finally:
        paths.close()


if __name__ == "__main__":
    main()
