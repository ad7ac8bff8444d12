#!/usr/bin/python3
"""probe.py BIN PATHS SECONDS RATE [-- CMD...]: the stack of side_by_side.py; for each PATH
(comma list of direct, haproxy, mqtt-proxy) a paced latency run (mqtt_load latency), with CMD
({pid}: the path's process, {path}: its name) started 0.5 s into the first round. REPEAT=n rounds.
Prints each run's result, the CPU time (schedstat, all threads) per message of Mosquitto and of
the path process, and how that time split over the path process's threads (one worker or two).
Writes $OUT/pids-PATH (mqtt_load, Mosquitto, path process) for timeline.py. Round 6 (paced), e.g.:
  flock /work/bench-results/bench.lock bench/paced/probe.py build/bin haproxy,mqtt-proxy 2 2000
  OUT=/tmp bench/paced/probe.py build/bin haproxy,mqtt-proxy 3 2000 -- perf record -q -a \
    -e raw_syscalls:sys_enter,raw_syscalls:sys_exit,sched:sched_switch,sched:sched_waking \
    -o /tmp/tl-{path}.data -- sleep 1
  bench/paced/timeline.py /tmp/tl-mqtt-proxy.data mqtt-proxy /tmp/pids-mqtt-proxy
  bench/paced/pairs.py /tmp/tl-mqtt-proxy.data
With SLICE_NS=N set, odd rounds run with an EEVDF slice of N ns on every thread of the processes in
SLICE_ON (default mqtt-proxy), set from outside with sched_setattr (slice.py), even rounds with the
default slice, and each line says which (round 6: the experiment behind thread_slice_us), e.g.:
  SLICE_NS=100000 REPEAT=10 bench/paced/probe.py build/bin haproxy,mqtt-proxy,direct 3 2000"""
import sys, os, subprocess, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import side_by_side as sbs
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__))); from slice import set_slice
def runtime_ns(pid):
    t = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as f: t += int(f.read().split()[0])
    return t
class A: pass
a = A(); a.bin = sys.argv[1]; a.proxy_args = os.environ.get("PROXY_ARGS", "")
paths, seconds, rate = sys.argv[2].split(","), float(sys.argv[3]), int(sys.argv[4])
cmd = sys.argv[6:] if len(sys.argv) > 5 else []
p = sbs.Paths(a)
try:
    print("pids", p.pid, file=sys.stderr)
    for i in range(int(os.environ.get("REPEAT", "1"))):
        ns = int(os.environ["SLICE_NS"]) if os.environ.get("SLICE_NS") and i % 2 else 0
        if os.environ.get("SLICE_NS"):
            for who in os.environ.get("SLICE_ON", "mqtt-proxy").split(","):
                set_slice(p.pid[who], ns)
        for path in paths:
            pid = p.pid[p.paths[path][1]]
            p.settle("x")
            argv = [p.load, *p.paths[path][0]]
            if path == "mqtt-proxy": argv += ["--tokens", p.user0_file]
            argv += ["--topic", "private/user0/bench", "latency", str(seconds), str(rate)]
            t0 = {t: open(f"/proc/{pid}/task/{t}/schedstat").read().split()[0] for t in os.listdir(f"/proc/{pid}/task")}
            c0 = {k: runtime_ns(v) / 1e9 for k, v in p.pid.items()}
            lp = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
            cp = None
            with open(os.path.join(os.environ.get("OUT", "/tmp"), f"pids-{path}"), "w") as f:
                f.write(f"{lp.pid} {p.pid['mosquitto']} {pid}\n")
            if cmd and i == 0:
                time.sleep(0.5)
                cp = subprocess.Popen([c.replace("{pid}", str(pid)).replace("{path}", path) for c in cmd])
            out = lp.communicate()[0].strip()
            if cp: cp.wait()
            c1 = {k: runtime_ns(v) / 1e9 for k, v in p.pid.items()}
            n = int(seconds * rate)
            split = sorted(((int(open(f"/proc/{pid}/task/{t}/schedstat").read().split()[0]) - int(v)) / 1e6 for t, v in t0.items()), reverse=True)
            cpu_split = "threads_ms=" + "/".join(f"{x:.0f}" for x in split if x > 1)
            cpu = " ".join(f"{k}={(c1[k]-c0[k])/n*1e6:.1f}" for k in ("mosquitto", p.paths[path][1]) if k in c0)
            print(i, f"slice={ns}", path, out, f"load={os.getloadavg()[0]:.2f}", "cpu_us_per_msg:", cpu, cpu_split, flush=True)
finally:
    p.close()
