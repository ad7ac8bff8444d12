#!/usr/bin/python3
"""What each transport costs in mqtt-proxy: memory per idle authenticated
connection and sequential connection set-up rate, for tcp, tls, ws and wss;
then relay throughput with the broker reached over TCP and over TLS
(bench/proxy_bench as the client). A fresh proxy per run (so freed memory of
one does not hide the next), Mosquitto behind it, a stub API server. Prints
a Markdown section.
Usage: transport_bench.py PATH/TO/mqtt-proxy [CONNECTIONS] [--kinds tcp,tls,ws,wss,haproxy-tls]
                          [--no-relay] [--bytes] [--wrap 'heaptrack -o FILE'] [--hold SECONDS]
                          [--warmup N]
haproxy-tls: HAProxy 2.6 (`mode tcp`, TLS terminated with the same ECDSA certificate) in front of
Mosquitto, clients sending CONNECT only, for comparison. --wrap runs each proxy under a profiler;
--hold keeps the idle clients open that long before the proxy is stopped (for a profiler's snapshot);
--bytes prints memory in bytes, not tenths of KiB (changes of a few hundred bytes are below that rounding).
--warmup N opens N clients (kept open, not counted) before the first memory reading, on every path alike:
the first connections pay once for what every later one shares (OpenSSL's per-thread random generator and
algorithm fetches, the validation cache's entry, the upstream pool), which a per-client figure from
1000 clients would otherwise spread over them. Default 0, as in earlier rounds."""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "support"))
from certs import make_ca, make_leaf  # noqa: E402
from netutil import free_port, wait_for_port  # noqa: E402
from stub_auth import StubAuthServer  # noqa: E402
from wire import RawWebSocket, connect_packet, parse_mqtt, publish_packet  # noqa: E402


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main_pid(process):
    """The profiled program's pid when --wrap put a launcher in front of it."""
    for _ in range(50):
        try:
            with open(f"/proc/{process.pid}/task/{process.pid}/children") as f:
                children = [int(c) for c in f.read().split()]
        except OSError:
            children = []
        if not children:
            return process.pid
        if os.path.basename(os.readlink(f"/proc/{children[0]}/exe")) != "mqtt-proxy":
            process = type("p", (), {"pid": children[0]})
            continue
        return children[0]
    return process.pid


def read_packet(sock, buffer):
    while True:
        parsed = parse_mqtt(buffer)
        if parsed:
            return parsed
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError
        buffer += chunk


def open_client(kind, port, context, index):
    """One CONNECT + auth PUBLISH over `kind`; returns the open connection."""
    connect = connect_packet(f"bench-{kind}-{index}")
    auth = publish_packet("service/auth/bench-token", b"")
    if kind in ("ws", "wss"):
        ws = RawWebSocket(port, tls=context if kind == "wss" else None)
        assert ws.status == 101
        ws.send(2, connect + auth)
        ws.packet()  # CONNACK
        ws.packet()  # auth answer
        return ws.sock
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if kind == "haproxy-tls":  # CONNECT only: Mosquitto behind HAProxy knows nothing of the auth PUBLISH
        sock = context.wrap_socket(sock, server_hostname="localhost")
        sock.sendall(connect)
        read_packet(sock, b"")
        return sock
    if kind == "tls":
        sock = context.wrap_socket(sock, server_hostname="localhost")
    sock.sendall(connect + auth)
    _, rest = read_packet(sock, b"")
    read_packet(sock, rest)
    return sock


def haproxy_row(work, server, broker_port, port, context, connections, warmup=0):
    """HAProxy terminating TLS in front of Mosquitto: its memory per idle client, as the issue compares."""
    pem = os.path.join(work, "haproxy.pem")
    with open(pem, "w") as out:
        out.write(open(server[1]).read() + open(server[0]).read())
    conf = os.path.join(work, "haproxy.cfg")
    with open(conf, "w") as f:
        f.write(f"global\n  maxconn 4000\n  nbthread 1\ndefaults\n  mode tcp\n  timeout connect 5s\n"
                f"  timeout client 600s\n  timeout server 600s\nfrontend mqtt\n"
                f"  bind 127.0.0.1:{port} ssl crt {pem}\n  default_backend broker\n"
                f"backend broker\n  server mosquitto 127.0.0.1:{broker_port}\n")
    haproxy = subprocess.Popen([shutil.which("haproxy") or "/usr/sbin/haproxy", "-f", conf, "-db"],
                               stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        time.sleep(0.3)
        warm = [open_client("haproxy-tls", port, context, -1 - i) for i in range(warmup)]
        time.sleep(0.3 if warm else 0)
        before, pss_before = rss_kib(haproxy.pid), pss_kib(haproxy.pid)
        started = time.time()
        opened = [open_client("haproxy-tls", port, context, i) for i in range(connections)]
        elapsed = time.time() - started
        time.sleep(0.5)
        after, pss_after = rss_kib(haproxy.pid), pss_kib(haproxy.pid)
        for sock in opened + warm:
            sock.close()
    finally:
        haproxy.terminate()
        haproxy.wait(timeout=10)
    return ("haproxy-tls (CONNECT only)", connections / elapsed, (after - before) * 1024 / connections,
            (pss_after - pss_before) * 1024 / connections)


def main():
    argv = sys.argv[1:]
    options = {"--kinds": "tcp,tls,ws,wss", "--wrap": "", "--hold": "0", "--warmup": "0"}
    flags = set()
    positional = []
    while argv:
        arg = argv.pop(0)
        if arg in options:
            options[arg] = argv.pop(0)
        elif arg.startswith("--"):
            flags.add(arg)
        else:
            positional.append(arg)
    proxy_binary = positional[0]
    connections = int(positional[1]) if len(positional) > 1 else 1000
    kinds = options["--kinds"].split(",")
    warmup = int(options["--warmup"])
    work = tempfile.mkdtemp(prefix="transport-bench-")
    os.chmod(work, 0o755)
    ca = make_ca(work, "bench-ca")
    server = make_leaf(work, "server", "/CN=localhost", ca, "DNS:localhost,IP:127.0.0.1")
    context = ssl.create_default_context(cafile=ca[1])
    for name in os.listdir(work):
        os.chmod(os.path.join(work, name), 0o644)  # mosquitto started as root reads them as its own user
    broker_port, broker_tls_port = free_port(), free_port()
    conf = os.path.join(work, "mosquitto.conf")
    with open(conf, "w") as f:
        # No cap on queued messages: Mosquitto would drop QoS 0 for a subscriber that lags, and
        # proxy_bench waits for every message.
        f.write(f"per_listener_settings false\nallow_anonymous true\npersistence false\nmax_connections -1\n"
                f"max_queued_messages 0\n"
                f"listener {broker_port} 127.0.0.1\n"
                f"listener {broker_tls_port} 127.0.0.1\ncertfile {server[1]}\nkeyfile {server[0]}\n")
    broker = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", conf],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bench_user = {"user": "bench", "acl": {"publish": ["private/bench/#"], "subscribe": ["private/bench/#"]}}
    auth = StubAuthServer({}, anyone=bench_user)
    wait_for_port(broker_port)
    wait_for_port(broker_tls_port)
    rows, relay = [], []
    try:
        for kind in kinds:
            port = free_port()
            if kind == "haproxy-tls":
                rows.append(haproxy_row(work, server, broker_port, port, context, connections, warmup))
                continue
            flag = {"tcp": "--listen", "tls": "--tls-listen", "ws": "--ws-listen", "wss": "--wss-listen"}[kind]
            args = [proxy_binary, "--upstream", f"127.0.0.1:{broker_port}", "--auth-url",
                    auth.url, "--admin", f"127.0.0.1:{free_port()}", "--log-level", "warn",
                    "--tls-cert", server[1], "--tls-key", server[0], "--threads", "1"]
            args += [flag, f"127.0.0.1:{port}"] + ([] if kind == "tcp" else ["--listen", "off"])
            proxy = subprocess.Popen(options["--wrap"].split() + args)
            wait_for_port(port)
            time.sleep(0.3)
            pid = main_pid(proxy)
            warm = [open_client(kind, port, context, -1 - i) for i in range(warmup)]
            time.sleep(0.3 if warm else 0)
            before, pss_before = rss_kib(pid), pss_kib(pid)
            started = time.time()
            opened = [open_client(kind, port, context, i) for i in range(connections)]
            elapsed = time.time() - started
            time.sleep(0.5)
            after, pss_after = rss_kib(pid), pss_kib(pid)
            rows.append((kind, connections / elapsed, (after - before) * 1024 / connections,
                         (pss_after - pss_before) * 1024 / connections))
            time.sleep(float(options["--hold"]))
            for sock in opened + warm:
                sock.close()
            os.kill(pid, signal.SIGTERM)  # the proxy itself, so a --wrap profiler sees it exit and writes its data
            proxy.wait(timeout=120)
        if "--no-relay" in flags:
            kinds = []
        bench = os.path.join(os.path.dirname(os.path.abspath(proxy_binary)), "proxy_bench")
        for upstream in ("tcp", "tls") if kinds else ():
            port = free_port()
            args = [proxy_binary, "--listen", f"127.0.0.1:{port}", "--auth-url", auth.url,
                    "--admin", f"127.0.0.1:{free_port()}", "--log-level", "warn"]
            if upstream == "tls":
                args += ["--upstream", f"127.0.0.1:{broker_tls_port}", "--upstream-tls", "--upstream-ca", ca[1],
                         "--upstream-server-name", "localhost"]
            else:
                args += ["--upstream", f"127.0.0.1:{broker_port}"]
            proxy = subprocess.Popen(args)
            wait_for_port(port)
            time.sleep(0.3)
            run = subprocess.run([bench, str(port), "bench-token", "bench", "10", "200000"], capture_output=True,
                                 text=True, timeout=120)
            relay.append((upstream, run.stdout.strip() or run.stderr.strip()))
            proxy.terminate()
            proxy.wait(timeout=10)
    finally:
        broker.terminate()
        broker.wait(timeout=10)
        auth.close()
        shutil.rmtree(work, ignore_errors=True)

    print("## mqtt-proxy: cost of each transport")
    print()
    print("A fresh mqtt-proxy (one thread) per transport, Mosquitto behind it, a stub API server. A Python client")
    print(f"opens {connections} connections one after another (TCP connect, TLS handshake with ECDSA P-256, WebSocket")
    print("upgrade, CONNECT, auth PUBLISH, answer) and keeps them open idle; the rate is bound by that client.")
    if warmup:
        print(f"{warmup} warm-up clients per path are opened first and kept open, outside the figures.")
    print()
    print("| transport | connections set up per second (sequential) | proxy memory per idle connection (RSS) "
          "| same, Pss |")
    print("|---|---|---|---|")
    for kind, rate, per_connection, pss in rows:
        if "--bytes" in flags:
            print(f"| {kind} | {rate:.0f} | {per_connection:,.0f} B | {pss:,.0f} B |")
        else:
            print(f"| {kind} | {rate:.0f} | about {per_connection / 1024:.1f} KiB | {pss / 1024:.1f} KiB |")
    print()
    if not relay:
        return
    print("Relay throughput, client to proxy over TCP, proxy to Mosquitto over TCP or TLS (TLS 1.3,")
    print("ECDSA P-256); `bench/proxy_bench` publishes 200000 QoS 0 messages of 64 bytes to a subscriber:")
    print()
    print("| proxy to broker | result |")
    print("|---|---|")
    for upstream, line in relay:
        print(f"| {upstream} | `{line}` |")


if __name__ == "__main__":
    main()
