#!/usr/bin/env python3
"""The training run of mqtt-proxy's profile-guided build (deploy/build-release.sh):
an instrumented mqtt-proxy (cmake -DMQTT_PGO=generate) does what it does in
production, in front of Mosquitto and the real auth-server, with the
benchmarks' generator: new sessions with 1000 distinct tokens (validated over
HTTP, then from the cache), idle clients, QoS 0 and QoS 1 relay, a paced
publish-to-delivery run. The proxy then stops as it does on SIGTERM, which
writes the profile (the .gcda files) into the directory the build named.

    bench/pgo_train.py --proxy build-pgo/bin/mqtt-proxy --bin build-pgo/bin [--seconds 3]

Code the training does not run (TLS, WebSocket, failures) is compiled as
without a profile (-fprofile-partial-training), not for size."""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchstack import Stack  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--proxy", required=True, help="the instrumented mqtt-proxy")
    parser.add_argument("--bin", required=True, help="where auth-server and mqtt_load are")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each part")
    args = parser.parse_args()
    load = os.path.join(args.bin, "mqtt_load")
    stack = Stack(os.path.abspath(args.proxy), os.path.join(args.bin, "auth-server"),
                  broker_conf="max_queued_messages 0\nmax_inflight_messages 0\n", broker_auth="none")
    try:
        _, token_file, one_user = stack.token_files(1000)  # relay: one user's topic tree
        seconds = str(args.seconds)
        parts = [
            ("sessions", token_file, ["sessions", seconds, "100"]),
            ("idle", token_file, ["idle", "1000", "200"]),
            ("relay QoS 0", one_user, ["relay", seconds, "0", "64", "4"]),
            ("relay QoS 1", one_user, ["relay", seconds, "1", "256", "2"]),
            ("latency", one_user, ["latency", seconds, "2000"]),
        ]
        for name, tokens_of_part, mode in parts:
            argv = [load, "--port", str(stack.proxy_port), "--tokens", tokens_of_part,
                    "--topic", "private/user0/bench", *mode]
            run = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                                 input="\n" if mode[0] == "idle" else None)
            out = run.stdout.strip().replace("\n", " ")
            print(f"pgo_train: {name}: {out}", flush=True)
            if run.returncode != 0 or "failed=0" not in out:
                sys.exit(f"pgo_train: {name} failed (exit {run.returncode}): {run.stderr.strip()}")
    finally:
        stack.close()  # SIGTERM: the proxy drains and exits, writing its profile


if __name__ == "__main__":
    main()
