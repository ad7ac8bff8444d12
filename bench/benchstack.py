"""Shared pieces of the Python benchmarks (not tests): a loopback stack of
Mosquitto, the real auth-server and one mqtt-proxy, and an asyncio MQTT 3.1.1
client that opens a session (CONNECT + auth PUBLISH), reads the answer and
leaves. Stdlib only; the wire helpers come from tests/support/wire.py."""
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "support"))
from netutil import free_port, wait_for_port  # noqa: E402
from processes import http  # noqa: E402,F401 (the bench scripts' HTTP helper too)
from wire import connect_packet, mqtt_packet, parse_mqtt, publish_packet  # noqa: E402

DISCONNECT = mqtt_packet(0xE0, b"")


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of a process, in seconds (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def settle(pids, quiet_ms=10, interval=0.1, longest=10.0):
    """Waits until the processes together used at most quiet_ms of CPU in each
    of two intervals in a row (or `longest` seconds passed); returns the
    seconds waited. A measure must not start while the broker still works off
    the last one's backlog: after a flood, Mosquitto may be busy for most of a
    second, and a paced latency run started then measures that, not the path."""
    t0 = time.time()
    quiet = 0

    def total():
        used = 0.0
        for pid in pids:
            try:
                used += cpu_seconds(pid)
            except OSError:
                pass
        return used

    last = total()
    while quiet < 2 and time.time() - t0 < longest:
        time.sleep(interval)
        now = total()
        quiet = quiet + 1 if (now - last) * 1000 <= quiet_ms else 0
        last = now
    return time.time() - t0


def pss_kib(pid):
    """Proportional set size of a process, KiB (/proc/PID/smaps_rollup)."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def strace_summary(path):
    """(total calls, {syscall: calls}) from the table `strace -c -o PATH` writes."""
    counts, total = {}, 0
    with open(path) as f:
        for line in f:
            fields = line.split()
            # % time, seconds, usecs/call, calls, [errors,] syscall
            if len(fields) >= 5 and re.match(r"^[0-9.]+$", fields[0]) and fields[-1] != "total":
                counts[fields[-1]] = int(fields[3])
            elif fields and fields[-1] == "total":
                total = int(fields[3])
    return total, counts


class Stack:
    """Mosquitto + auth-server + one mqtt-proxy on free loopback ports."""

    def __init__(self, proxy, auth_server, proxy_args=(), auth_args=(), broker_conf="", broker_auth="password"):
        self.proxy_bin, self.auth_bin = proxy, auth_server
        self.dir = tempfile.mkdtemp(prefix="bench-")
        os.chmod(self.dir, 0o755)  # mosquitto started as root drops to its own user and must read the files
        self.db = os.path.join(self.dir, "auth.db")
        self.token_file = os.path.join(self.dir, "service-token")
        with open(self.token_file, "w") as f:
            f.write("events-secret-0123456789\n")
        self.processes = {}
        self.auth_args = list(auth_args)
        try:
            self._start(proxy_args, broker_conf, broker_auth)
        except BaseException:
            self.close()  # a program that did not come up must not leave the others running
            raise

    def _start(self, proxy_args, broker_conf, broker_auth):
        self.broker_port = free_port()
        passwd = os.path.join(self.dir, "passwd")
        with open(passwd, "w") as f:
            f.write("proxy:proxy-secret\n")
        subprocess.run(["mosquitto_passwd", "-U", passwd], check=True)
        os.chmod(passwd, 0o644)
        conf = os.path.join(self.dir, "mosquitto.conf")
        # broker_auth "none": the broker checks no password (Mosquitto hashes the
        # password of every CONNECT with PBKDF2-SHA512, more CPU than a proxy's whole session).
        access = f"allow_anonymous false\npassword_file {passwd}\n" if broker_auth == "password" else \
            "allow_anonymous true\n"
        with open(conf, "w") as f:
            f.write(f"listener {self.broker_port} 127.0.0.1\n{access}"
                    "persistence false\nlog_type error\nmax_connections -1\n" + broker_conf)
        self.spawn("mosquitto", [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", conf])
        self.auth_port = free_port()
        self.auth_url = f"http://127.0.0.1:{self.auth_port}"
        self.start_auth_server()
        wait_for_port(self.broker_port)
        self.proxy_port, self.admin_port = self.spawn_proxy("mqtt-proxy", self.proxy_bin, proxy_args)
        time.sleep(0.3)

    def spawn_proxy(self, name, binary, proxy_args=()):
        """An mqtt-proxy in front of this stack's broker and API server, on
        free ports; returns (listen port, admin port) once both listen."""
        port, admin_port = free_port(), free_port()
        self.spawn(name, [
            binary, "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{self.broker_port}",
            "--upstream-username", "proxy", "--upstream-password", "proxy-secret", "--auth-url", self.auth_url,
            "--auth-service-token-file", self.token_file, "--admin", f"127.0.0.1:{admin_port}",
            "--log-level", "warn", "--max-connections", "20000", *proxy_args])
        wait_for_port(port)
        wait_for_port(admin_port)
        return port, admin_port

    def spawn(self, name, argv):
        log = open(os.path.join(self.dir, name + ".log"), "a")
        self.processes[name] = (subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT), log)

    def start_auth_server(self):
        self.spawn("auth-server", [self.auth_bin, "serve", "--db", self.db, "--listen", f"127.0.0.1:{self.auth_port}",
                                   "--service-token-file", self.token_file, "--log-level", "warn", *self.auth_args])
        wait_for_port(self.auth_port)

    def kill_auth_server(self):
        process, log = self.processes.pop("auth-server")
        process.send_signal(signal.SIGKILL)
        process.wait()
        log.close()

    def log_of(self, name):
        with open(os.path.join(self.dir, name + ".log")) as f:
            return f.read()

    def cli(self, *args):
        result = subprocess.run([self.auth_bin, *args, "--db", self.db], text=True, capture_output=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result

    def sessions(self, count, users=100):
        """count distinct session tokens of `users` cheap-to-log-in users."""
        for u in range(users):
            self.cli("adduser", "--user", f"user{u}", "--password", "bench-password", "--kdf-iterations", "1000")
        tokens = []
        for i in range(count):
            status, body = http("POST", self.auth_url + "/v1/login",
                                {"username": f"user{i % users}", "password": "bench-password"})
            assert status == 200, body
            tokens.append(json.loads(body)["session"])
        return tokens

    def token_files(self, count):
        """`count` sessions (sessions()) written one per line for mqtt_load
        --tokens: all of them, and user0's alone (every 100th), whose relay
        clients share one topic tree. Returns (tokens, all_file, user0_file)."""
        tokens = self.sessions(count)
        all_file = os.path.join(self.dir, "tokens")
        user0_file = os.path.join(self.dir, "tokens-user0")
        for path, chosen in ((all_file, tokens), (user0_file, tokens[::100])):
            with open(path, "w") as f:
                f.write("\n".join(chosen) + "\n")
        return tokens, all_file, user0_file

    def metrics(self):
        """{metric{labels}: value} from the proxy's /metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        values = {}
        for line in text.splitlines():
            m = re.match(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
            if m:
                values[m.group(1)] = float(m.group(2))
        return values

    def close(self):
        for name in reversed(list(self.processes)):
            process, log = self.processes[name]
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
        self.processes.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


async def session(port, client_id, token, timeout=10.0):
    """One MQTT session through the proxy: CONNECT + auth PUBLISH, wait for the
    answer, DISCONNECT. Returns (outcome, seconds) where outcome is "ok",
    the denial reason ("auth_unavailable", "invalid_session", ...), or
    "error:<what>" when the connection failed or ended without an answer."""
    started = time.monotonic()
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        writer.write(connect_packet(client_id) + publish_packet("service/auth/" + token, b""))
        buffer = b""
        deadline = started + timeout
        while True:
            parsed = parse_mqtt(buffer)
            if parsed:
                packet, buffer = parsed
                kind = packet[0] >> 4
                if kind == 2 and packet[3] != 0:  # CONNACK refused
                    return f"connack:{packet[3]}", time.monotonic() - started
                if kind == 3:  # the auth answer
                    m = re.search(rb'"reason":"([a-z_]+)"', packet)
                    outcome = "ok" if b'"ok"' in packet else (m.group(1).decode() if m else "denied")
                    if outcome == "ok":
                        writer.write(DISCONNECT)
                    return outcome, time.monotonic() - started
                continue
            chunk = await asyncio.wait_for(reader.read(4096), max(0.01, deadline - time.monotonic()))
            if not chunk:
                return "error:closed", time.monotonic() - started
            buffer += chunk
    except asyncio.TimeoutError:
        return "error:timeout", time.monotonic() - started
    except OSError as e:
        return f"error:{type(e).__name__}", time.monotonic() - started
    finally:
        if writer is not None:
            writer.close()


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]
