#!/usr/bin/python3
"""Where an idle authenticated TCP client's memory goes in mqtt-proxy. Not a
test. Starts Mosquitto, the auth-server (1000 sessions of 100 users) and one
mqtt-proxy (bench/benchstack.py), holds N idle clients (bench/mqtt_load idle,
200 handshakes in flight) and prints the proxy's Pss growth per client.

With --heaptrack OUT the proxy runs under heaptrack and is killed (SIGKILL)
while the clients are held, so heaptrack's "leaked" is what was live; then
print the live heap by call site with

  heaptrack_print -f OUT.zst -p 0 -a 0 -T 0 --flamegraph-cost-type leaked -F stacks.txt

Usage: idle_profile.py --bin build/bin [--proxy PATH] [--idle 2000] [--heaptrack OUT]"""
import argparse
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchstack import Stack, pss_kib  # noqa: E402


def descendant_named(pid, prefix):
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            if parent != pid:
                continue
            with open(f"/proc/{entry}/comm") as f:
                if f.read().startswith(prefix):
                    return int(entry)
        except OSError:
            continue
        found = descendant_named(int(entry), prefix)
        if found:
            return found
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(HERE, "..", "build", "bin"))
    parser.add_argument("--proxy", help="the mqtt-proxy to profile (default: the one in --bin)")
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--heaptrack", default="", help="heaptrack output file (without .zst)")
    args = parser.parse_args()
    binary = os.path.abspath(args.bin)
    proxy = os.path.abspath(args.proxy or os.path.join(binary, "mqtt-proxy"))
    launched = proxy
    if args.heaptrack:
        launched = os.path.join(os.path.dirname(os.path.abspath(args.heaptrack)), "heaptrack-proxy.sh")
        with open(launched, "w") as f:
            f.write(f'#!/bin/sh\nexec heaptrack -o {os.path.abspath(args.heaptrack)} {proxy} "$@"\n')
        os.chmod(launched, 0o755)
    stack = Stack(launched, os.path.join(binary, "auth-server"))
    try:
        _, tokens, _ = stack.token_files(1000)
        pid = stack.processes["mqtt-proxy"][0].pid
        if args.heaptrack:
            time.sleep(1.0)
            pid = descendant_named(pid, os.path.basename(proxy)[:15])
        before = pss_kib(pid)
        load = subprocess.Popen([os.path.join(binary, "mqtt_load"), "--port", str(stack.proxy_port), "--tokens", tokens,
                                 "--topic", "private/user0/bench", "idle", str(args.idle), "200"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = load.stdout.readline().strip()
        time.sleep(1.0)
        after = pss_kib(pid)
        print(f"{ready} proxy_pss_per_client={(after - before) * 1024 / args.idle:.0f} B", flush=True)
        if args.heaptrack:
            os.kill(pid, signal.SIGKILL)
            stack.processes["mqtt-proxy"][0].wait(timeout=300)  # heaptrack writes its file
        load.stdin.close()
        load.wait(timeout=60)
    finally:
        stack.close()


if __name__ == "__main__":
    main()
