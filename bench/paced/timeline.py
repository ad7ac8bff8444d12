#!/usr/bin/python3
"""timeline.py perf.data PROXYCOMM PIDSFILE: per paced message, its critical path
mqtt_load -> proxy -> Mosquitto -> proxy -> mqtt_load, rebuilt from the syscalls that moved a
PUBLISH (>= 250 bytes) of the three processes in PIDSFILE (probe.py writes it): the median gap
between one stage's syscall exit and the next one's entry (waiting: wake-up, run queue, other
work) and of each syscall, and on which CPUs the stages ran."""
import re, subprocess, sys, statistics, bisect, collections
proxy = sys.argv[2]
loadpid, mosqpid, proxypid = map(int, open(sys.argv[3]).read().split())
out = subprocess.run(["perf", "script", "-i", sys.argv[1], "-F", "comm,pid,tid,cpu,time,event,trace"],
                     capture_output=True, text=True).stdout
hdr = re.compile(r"^\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)$")
RECV = {45, 0, 47, 19}; SEND = {44, 46, 1, 20}
enter = {}
ev = collections.defaultdict(list)  # (who, kind) -> [(t_enter, t_exit, cpu)]
who_of = lambda c: "load" if c.startswith("mqtt_load") else "mosq" if c.startswith("mosquitto") else "proxy" if c.startswith(proxy[:8]) else None
switches = []
for line in out.splitlines():
    m = hdr.match(line)
    if not m: continue
    comm, pid, tid, cpu, t, e, rest = m.groups(); t = float(t) * 1e6; tid = int(tid); pid = int(pid)
    if e == "raw_syscalls:sys_enter":
        nr = int(rest.split()[1]); enter[tid] = (nr, t)
    elif e == "raw_syscalls:sys_exit":
        nr = int(rest.split()[1]); ret = int(rest.split("=")[1])
        if tid not in enter: continue
        enr, te = enter.pop(tid)
        w = {loadpid: "load", mosqpid: "mosq", proxypid: "proxy"}.get(pid)
        if not w or ret < 250: continue
        if nr in RECV: ev[(w, "recv")].append((te, t, int(cpu), ret))
        if nr in SEND: ev[(w, "send")].append((te, t, int(cpu), ret))
    elif e == "sched:sched_switch":
        switches.append((t, int(cpu), rest))
def after(key, t):
    lst = ev[key]; ts = [x[0] for x in lst]
    i = bisect.bisect_right(ts, t)
    return lst[i] if i < len(lst) else None
stages = collections.defaultdict(list)
chain = [("proxy", "recv"), ("proxy", "send"), ("mosq", "recv"), ("mosq", "send"), ("proxy", "recv"), ("proxy", "send"), ("load", "recv")]
cpus = collections.Counter()
for s in ev[("load", "send")]:
    t_prev = s[1]; prev_exit = s[1]; rec = [("load send", s)]
    ok = True
    for k in chain:
        x = after(k, t_prev)
        if not x: ok = False; break
        rec.append((k, x)); t_prev = x[1]
    if not ok: continue
    total = rec[-1][1][1] - s[0]
    if total > 2000: continue
    stages["total"].append(total)
    for (a, x), (b, y) in zip(rec, rec[1:]):
        stages[f"{a[0] if isinstance(a, tuple) else a}->{b[0]} {b[1]}"].append(y[0] - x[1])  # gap: exit of one to enter of next
        stages[f"  {b[0]} {b[1]} syscall"].append(y[1] - y[0])
    cpus["".join(str(x[2]) for _, x in rec)] += 1
for k, v in stages.items():
    print(f"{k:28} n={len(v):5} p50 {statistics.median(v):6.1f}  mean {statistics.mean(v):6.1f}")
print("cpu sequence (load send, proxy recv/send, mosq recv/send, proxy recv/send, load recv):", cpus.most_common(5))
