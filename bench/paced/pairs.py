#!/usr/bin/python3
"""pairs.py perf.data: per (waker comm -> wakee comm), from sched_waking and sched_switch: how many
wake-ups, the share that ran on the waking CPU, and the median wake -> run (same CPU / other CPU)."""
import re, subprocess, sys, collections, statistics
out = subprocess.run(["perf", "script", "-i", sys.argv[1], "-F", "comm,tid,cpu,time,event,trace"],
                     capture_output=True, text=True).stdout
hdr = re.compile(r"^\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)$")
pend, cur = {}, {}
st = collections.defaultdict(lambda: {"n": 0, "same": 0, "lat_same": [], "lat_other": []})
for line in out.splitlines():
    m = hdr.match(line)
    if not m: continue
    comm, tid, cpu, t, ev, rest = m.groups(); cpu = int(cpu); t = float(t) * 1e6
    if ev == "sched:sched_waking":
        mm = re.search(r"comm=(.+?) pid=(\d+)", rest)
        pend[int(mm.group(2))] = (t, cpu, comm, mm.group(1))
    elif ev == "sched:sched_switch":
        mm = re.search(r"==> next_comm=(.+?) next_pid=(\d+)", rest)
        nxt = int(mm.group(2))
        if nxt in pend:
            wt, wcpu, waker, wakee = pend.pop(nxt)
            s = st[(waker[:12], wakee[:12])]
            s["n"] += 1; same = wcpu == cpu; s["same"] += same
            s["lat_same" if same else "lat_other"].append(t - wt)
med = lambda v: f"{statistics.median(v):5.0f}" if v else "    -"
for (a, b), s in sorted(st.items(), key=lambda kv: -kv[1]["n"]):
    if s["n"] < 100: continue
    print(f"{a:12} -> {b:12} {s['n']:6}  same {s['same']/s['n']:.2f}  lat same {med(s['lat_same'])}  other {med(s['lat_other'])}")
