#!/usr/bin/python3
"""mqtt-proxy at this machine's file-descriptor ceiling (issue 14, goal 4).
Not a test: a heavy run (about 20,000 descriptors in the proxy, 10,000 in
Mosquitto, 10,000 in the generator), to be run by hand, rarely.

One Mosquitto, the real auth-server (1000 sessions of 100 users, each token
reused by about ten clients; the proxy's validation cache answers the
reuses), one mqtt-proxy with its open-file limit at the hard limit, and
bench/mqtt_load's `fill` mode as the clients:

  fill    open --clients sessions, --inflight handshakes at a time: CONNECT +
          auth PUBLISH, then SUBSCRIBE to a topic of its own
          (private/<user>/fill/<token>/<connection>)
  round   every held client publishes once to its own topic; the broker
          sends it back through the proxy: proves each one is authenticated
          and relaying in both directions
  extra   --extra more clients: the ones beyond the ceiling must be refused
          at accept (closed, no hang); the proxy must live and log the limit
  round   again: the clients already held are unaffected

Reports accepted / authenticated / refused, time to fill, the proxy's Pss per
client, descriptors in use (/proc/PID/fd) of the proxy and of Mosquitto, and
the proxy's log lines naming the limit. With --haproxy, the same fill through
HAProxy (mode tcp, maxconn derived from its descriptor limit) afterwards.

Usage: fd_ceiling.py [--bin build/bin] [--clients 9900] [--extra 300]
                     [--inflight 200] [--proxy-args "..."] [--haproxy]"""
import argparse
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchstack import Stack, cpu_seconds, free_port, pss_kib, wait_for_port  # noqa: E402

def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def soft_fd_limit(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return 0


def socket_states(port):
    """TCP states of the client ends towards `port`, and the listeners' accept queues (Recv-Q)."""
    out = subprocess.run(["ss", "-Htan", f"( dport = :{port} or sport = :{port} )"], capture_output=True,
                         text=True).stdout
    states, queues = {}, []
    for line in out.splitlines():
        parts = line.split()
        if parts[0] == "LISTEN":
            queues.append(int(parts[1]))
        elif parts[4].endswith(f":{port}"):  # the peer is the listener: the client's end
            states[parts[0]] = states.get(parts[0], 0) + 1
    return f"client ends {states}, accept queues {queues}"


def fields(line):
    return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)


class Generator:
    """bench/mqtt_load fill, driven line by line over stdin/stdout."""

    def __init__(self, argv):
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard)))

    def line(self):
        out = self.process.stdout.readline().strip()
        print(f"    generator: {out}", flush=True)
        return out

    def ask(self, command):
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.line()

    def close(self):
        try:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def fill(name, argv, pids, owner, args, metrics=None, port=None):
    """One fill through one path; returns a dict of results."""
    before = {n: pss_kib(p) for n, p in pids.items()}
    fds_before = {n: fds(p) for n, p in pids.items()}
    cpu_before = cpu_seconds(pids[owner])
    print(f"\n## {name}: fill {args.clients} with {args.inflight} handshakes in flight", flush=True)
    gen = Generator(argv + ["fill", str(args.clients), str(args.inflight)])
    result = {}
    try:
        filled = fields(gen.line())
        time.sleep(1.0)
        after = {n: pss_kib(p) for n, p in pids.items()}
        held = int(filled.get("ready", 0))
        result["filled"] = filled
        result["held"] = held
        result["fill_seconds"] = float(filled.get("seconds", 0))
        result["cpu_fill"] = cpu_seconds(pids[owner]) - cpu_before
        result["pss_per_client"] = (after[owner] - before[owner]) * 1024 / max(1, held)
        result["broker_pss_per_client"] = (after["mosquitto"] - before["mosquitto"]) * 1024 / max(1, held)
        result["fds"] = {n: (fds_before[n], fds(p)) for n, p in pids.items()}
        if metrics:
            result["metrics_filled"] = metrics()
        result["round1"] = fields(gen.ask("round 0"))
        refused_before = metrics().get("mqtt_proxy_connections_refused_total", 0) if metrics else None
        result["extra"] = fields(gen.ask(f"extra {args.extra} {args.inflight}"))
        result["fds_extra"] = {n: fds(p) for n, p in pids.items()}
        if port:
            print(f"    after the extra: {socket_states(port)}", flush=True)
        if metrics:
            m = metrics()
            result["metrics_extra"] = m
            result["refused_counted"] = m.get("mqtt_proxy_connections_refused_total", 0) - refused_before
        result["round2"] = fields(gen.ask("round 0"))
        result["alive"] = fields(gen.ask("alive"))
    finally:
        gen.close()
    return result


def ended(kv):
    """How the closed connections ended (the generator's diagnostics of pending ones left out)."""
    return {k[6:-1]: int(v) for k, v in kv.items() if k.startswith("ended[") and not k.startswith("ended[pending_")}


def report(name, r, owner):
    f, e = r["filled"], r["extra"]
    print(f"\n| {name} | value |\n|---|---|")
    print(f"| clients asked for | {args_global.clients} |")
    print(f"| authenticated and subscribed (held) | {r['held']} |")
    print(f"| failed during the fill | {sum(ended(f).values())} {ended(f) or ''} |")
    print(f"| time to fill | {r['fill_seconds']:.1f} s ({r['held'] / max(r['fill_seconds'], 1e-9):.0f} sessions/s) |")
    print(f"| {owner} CPU during the fill | {r['cpu_fill']:.1f} s ({r['cpu_fill'] / max(1, r['held']) * 1e6:.0f} µs per session) |")
    print(f"| {owner} Pss per held client | {r['pss_per_client']:.0f} B |")
    print(f"| Mosquitto Pss per held client | {r['broker_pss_per_client']:.0f} B |")
    for n, (b, a) in r["fds"].items():
        print(f"| {n} descriptors before / filled / after extra | {b} / {a} / {r['fds_extra'][n]} |")
    print(f"| round 1: echoed / sent | {r['round1'].get('echoed')} / {r['round1'].get('sent')} "
          f"in {float(r['round1'].get('seconds', 0)):.1f} s |")
    print(f"| extra {args_global.extra}: accepted / refused / pending after 15 s | {e.get('ready')} / "
          f"{sum(ended(e).values())} {ended(e)} / {e.get('pending')} |")
    if "refused_counted" in r:
        print(f"| proxy's connections_refused_total grew by | {r['refused_counted']:.0f} |")
    print(f"| round 2 (after the extra): echoed / sent | {r['round2'].get('echoed')} / {r['round2'].get('sent')} |")
    print(f"| held clients still alive at the end | {r['alive'].get('ready')} |", flush=True)


def main():
    global args_global
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(HERE, "..", "build", "bin"))
    parser.add_argument("--clients", type=int, default=9900)
    parser.add_argument("--extra", type=int, default=300)
    parser.add_argument("--inflight", type=int, default=200)
    parser.add_argument("--proxy-args", default="", help="extra mqtt-proxy flags, after the stack's own")
    parser.add_argument("--haproxy", action="store_true", help="also fill through HAProxy afterwards")
    args = args_global = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # every process started here inherits hard/hard
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = map(int, f.read().split())
    print(f"# fd_ceiling: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}")
    print(f"open file limit: soft {soft} -> {hard}, hard {hard} (every process here); "
          f"ephemeral ports {low}-{high} ({high - low + 1}: per destination, so the client side and the "
          f"proxy's side to the broker each have them all)")
    binary = os.path.abspath(args.bin)
    stack = Stack(os.path.join(binary, "mqtt-proxy"), os.path.join(binary, "auth-server"),
                  proxy_args=shlex.split(args.proxy_args), auth_args=())
    try:
        tokens = stack.sessions(1000)
        token_file = os.path.join(stack.dir, "tokens")
        with open(token_file, "w") as f:
            for i, token in enumerate(tokens):
                f.write(f"{token} private/user{i % 100}/fill/{i}\n")
        pids = {n: p.pid for n, (p, _) in stack.processes.items()}
        print("limits: " + ", ".join(f"{n} {soft_fd_limit(p)}" for n, p in pids.items()))
        start_log = [line for line in stack.log_of("mqtt-proxy").splitlines() if "file limit" in line]
        for line in start_log:
            print(f"proxy at start: {line}")
        load = os.path.join(binary, "mqtt_load")
        r = fill("mqtt-proxy", [load, "--port", str(stack.proxy_port), "--tokens", token_file], pids, "mqtt-proxy",
                 args, stack.metrics, stack.proxy_port)
        alive = stack.processes["mqtt-proxy"][0].poll() is None
        time.sleep(5.5)  # the listener's next report of refusals, counted over 5 s
        report("mqtt-proxy", r, "mqtt-proxy")
        print(f"| proxy process alive after the run | {alive} |")
        log = stack.log_of("mqtt-proxy")
        limit_lines = [line for line in log.splitlines() if "limit" in line]
        print(f"\nproxy log lines naming a limit: {len(limit_lines)}")
        for line in limit_lines[:6]:
            print(f"  {line}")
        others = [line for line in log.splitlines() if "limit" not in line]
        kinds = {}
        for line in others:
            key = re.sub(r"\d+", "N", re.sub(r"^\[[^\]]*\] ", "", line))[:120]
            kinds[key] = kinds.get(key, 0) + 1
        print(f"other proxy log lines: {len(others)}")
        for key, n in sorted(kinds.items(), key=lambda kv: -kv[1])[:8]:
            print(f"  {n} x {key}")
        auth_log = stack.log_of("auth-server").splitlines()
        print(f"auth-server log lines: {len(auth_log)}" + "".join(f"\n  {line}" for line in auth_log[:3]))
        if args.haproxy:
            wait_fds = time.monotonic()
            while fds(pids["mosquitto"]) > 200 and time.monotonic() - wait_fds < 30:
                time.sleep(0.5)
            process, log_file = stack.processes.pop("mqtt-proxy")  # its descriptors and memory out of the way
            process.terminate()
            process.wait(timeout=30)
            log_file.close()
            port = free_port()
            cfg = os.path.join(stack.dir, "haproxy.cfg")
            with open(cfg, "w") as f:  # no maxconn: HAProxy derives it from its descriptor limit
                f.write("defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n"
                        f"frontend mqtt\n  bind 127.0.0.1:{port}\n  default_backend broker\n"
                        f"backend broker\n  server mosquitto 127.0.0.1:{stack.broker_port}\n")
            stack.spawn("haproxy", [shutil.which("haproxy") or "/usr/sbin/haproxy", "-f", cfg, "-db"])
            wait_for_port(port)
            hpids = {"haproxy": stack.processes["haproxy"][0].pid, "mosquitto": pids["mosquitto"]}
            print(f"haproxy descriptor limit {soft_fd_limit(hpids['haproxy'])}")
            h = fill("haproxy", [load, "--port", str(port), "--user", "proxy", "--pass", "proxy-secret"], hpids,
                     "haproxy", args, port=port)
            report("haproxy", h, "haproxy")
            print(f"| haproxy alive after the run | {stack.processes['haproxy'][0].poll() is None} |")
            hlog = stack.log_of("haproxy").splitlines()
            print(f"haproxy log lines: {len(hlog)}" + "".join(f"\n  {line}" for line in hlog[:6]))
    finally:
        stack.close()


if __name__ == "__main__":
    main()
