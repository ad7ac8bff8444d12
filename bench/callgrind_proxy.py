#!/usr/bin/python3
"""User-space instructions per relayed message and per new session in
mqtt-proxy, counted by callgrind (this VM has no hardware counters, and wall
clock on a shared 2-core machine is noisy). The same stack and client as
side_by_side.py; the proxy runs under `valgrind --tool=callgrind` (through a
wrapper script), its counters are zeroed before each measure and dumped
after it; Ir of all threads divided by the messages the subscriber received
and by the PUBLISHes through the proxy in both directions (published +
received: the received/published ratio moves from run to run, so the second
figure is the steadier one), or by the sessions opened (50 in flight). The
steadiest: per packet relayed, by the calls of client_session::on_client_frame
and on_upstream_frame in the dump (every packet the proxy framed, PUBACKs too).
The paced measure (QoS 1 at 500/s, one packet per read) shows the fixed cost
of a packet: reads, writes, wake-ups; the floods mostly the per-packet parse.
Dumps are written with uncompressed names, so each can be annotated alone
(--keep prints where).

    bench/callgrind_proxy.py --proxy build/bin/mqtt-proxy --bin build/bin

Compare two builds by running it once with each --proxy, back to back."""
import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import side_by_side  # noqa: E402


def relayed_frames(dump):
    """Calls of client_session::on_client_frame and on_upstream_frame in a
    dump: every packet the relay framed, in either direction."""
    frames, callee = 0, None
    with open(dump) as f:
        for line in f:
            if line.startswith("cfn="):
                callee = line
            elif line.startswith("calls=") and callee:
                if "client_session::on_client_frame(" in callee or "client_session::on_upstream_frame(" in callee:
                    frames += int(line[6:].split()[0])
                callee = None
    return frames


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--proxy", required=True, help="the mqtt-proxy binary to count")
    parser.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "build", "bin"),
                        help="where auth-server and mqtt_load are")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the dumps (each measure's, printed) to annotate")
    parser.add_argument("--sessions-only", action="store_true",
                        help="only new sessions, with 10 tokens: the validation cache answers every one after the warm-up")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="callgrind_proxy.")
    for name in ("auth-server", "mqtt_load"):
        os.symlink(os.path.abspath(os.path.join(args.bin, name)), os.path.join(work, name))
    wrapper = os.path.join(work, "mqtt-proxy")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nexec valgrind --tool=callgrind --compress-strings=no --callgrind-out-file={work}/cg.out.%p "
                f"{os.path.abspath(args.proxy)} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    paths = side_by_side.Paths(types.SimpleNamespace(bin=work, proxy_args=""))
    pid = str(paths.pid["mqtt-proxy"])

    def newest_dump():
        return sorted(glob.glob(f"{work}/cg.out.{pid}*"), key=os.path.getmtime)[-1]

    def dumped_total():
        subprocess.run(["callgrind_control", "-d", pid], capture_output=True)
        time.sleep(1)
        with open(newest_dump()) as f:
            for line in f:
                if line.startswith(("totals:", "summary:")):
                    return int(line.split()[1])
        return 0

    try:
        s = args.seconds
        measures = (("QoS 0, 64 B, 4 -> 1", ["relay", s, 0, 64, 4]), ("QoS 1, 256 B, 2 -> 1", ["relay", s, 1, 256, 2]),
                    ("paced QoS 1, 256 B, 500/s", ["latency", s, 500]),
                    ("new sessions, 50 in flight", ["sessions", s, 50]))
        if args.sessions_only:
            measures = (("new sessions, 50 in flight, 10 tokens (cache answering)", ["sessions", s, 50]),)
            paths.run("mqtt-proxy", ["sessions", 1, 50], tokens=paths.user0_file)  # warm-up: cache, pools
        else:
            paths.run("mqtt-proxy", ["relay", 1, 0, 64, 4], tokens=paths.user0_file)  # warm-up
        for label, mode in measures:
            subprocess.run(["callgrind_control", "-z", pid], capture_output=True)
            kv, out = paths.run("mqtt-proxy", mode,
                                tokens=paths.user0_file if mode[0] != "sessions" or args.sessions_only else None)
            total = dumped_total()
            count = int(kv.get("messages", kv.get("received", kv.get("sessions", 0)))) or 1
            both = count + int(kv.get("published", kv.get("sent", 0)))
            per_both = f", {total / both:.0f} per PUBLISH in either direction" if mode[0] != "sessions" else ""
            # The steadier figure: what the proxy did in the window may differ from what the
            # client counted in it (bytes wait in socket buffers), the packets it framed do not.
            frames = relayed_frames(newest_dump())
            if frames and mode[0] != "sessions":
                per_both += f", {total / frames:.0f} per packet relayed ({frames} packets, either direction)"
            print(f"{label}: {total / count:.0f} instructions each{per_both} ({total} Ir; {out})", flush=True)
            if args.keep:
                print(f"  profile: callgrind_annotate {newest_dump()}", flush=True)
    finally:
        paths.close()


if __name__ == "__main__":
    main()
