#!/usr/bin/python3
"""The web console (auth/console/) in a real browser: Debian's chromium,
headless, driven by playwright-core (tests/browser/console_driver.mjs; npm ci on
first run, no browser download) against the real auth-server, a real
Mosquitto and mqtt-proxy with a WebSocket listener, all on free loopback ports.

The page is served by auth-server (--console-dir) and, for the CORS cases, by a
static server on another origin. The proxy's allowed_origins lists both origins
that may connect; auth-server's --cors-origin lists the static one.
Usage: console_test.py PATH/TO/mqtt-proxy PATH/TO/auth-server OUTPUT_DIR"""
import functools
import http.server
import json
import os
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CONSOLE = os.path.join(ROOT, "auth", "console")
CHROMIUM = "/usr/bin/chromium"
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from certs import make_ca, make_leaf  # noqa: E402
from netutil import free_port  # noqa: E402
from processes import AuthServer, ProcessGroup, proxy_argv  # noqa: E402

DEMO_USER, DEMO_PASSWORD = "demo", "demo-password-0123"
NEW_PASSWORD = "changed-password-4567"  # set mid-test: every session of the user is revoked


def npm_ci(directory, package):
    """npm ci from the lock file when the package is not installed yet."""
    if os.path.isdir(os.path.join(directory, "node_modules", package)):
        return
    env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=directory, env=env, check=True)


class StaticConsole(http.server.SimpleHTTPRequestHandler):
    """The console's files from "any static server" (another origin than the
    API server's), with MQTT.js at the same relative path auth-server uses."""

    def translate_path(self, path):
        if path.split("?", 1)[0] == "/vendor/mqtt.min.js":
            return os.path.join(CONSOLE, "node_modules", "mqtt", "dist", "mqtt.min.js")
        return super().translate_path(path)

    def log_message(self, *args):
        pass


class System(ProcessGroup):
    """Mosquitto, auth-server (console + CORS), mqtt-proxy (TCP + WebSocket), a static server."""

    def __init__(self, proxy, auth_server):
        super().__init__("console-browser-")
        self.static_port = free_port()
        self.static = http.server.ThreadingHTTPServer(
            ("127.0.0.1", self.static_port), functools.partial(StaticConsole, directory=CONSOLE))
        threading.Thread(target=self.static.serve_forever, daemon=True).start()
        self.static_origin = f"http://127.0.0.1:{self.static_port}"

        _, self.broker_port = self.mosquitto()

        self.auth = AuthServer(self, auth_server, "--console-dir", CONSOLE, "--cors-origin", self.static_origin)
        self.auth.add_user(DEMO_USER, DEMO_PASSWORD, groups=["demo"], extra=["--kdf-iterations", "1000"])
        self.auth_port, self.auth_origin = self.auth.port, self.auth.url

        # wss:// with a certificate of a CA made here (the browser is told to accept it).
        ca = make_ca(self.dir, "test-ca")
        key, cert = make_leaf(self.dir, "server", "/CN=localhost", ca, "DNS:localhost,IP:127.0.0.1")
        self.tcp_port, self.ws_port, self.wss_port = free_port(), free_port(), free_port()
        self.proxy_argv = proxy_argv(
            proxy, self.tcp_port, self.broker_port, self.auth_origin, "--ws-listen", f"127.0.0.1:{self.ws_port}",
            "--wss-listen", f"127.0.0.1:{self.wss_port}", "--tls-cert", cert, "--tls-key", key,
            "--ws-allowed-origin", self.auth_origin, "--ws-allowed-origin", self.static_origin)
        self.start_proxy()

    def start_proxy(self):
        self.proxy = self.spawn("mqtt-proxy", self.proxy_argv, ports=[self.tcp_port, self.ws_port, self.wss_port],
                                mode="a")

    def restart_proxy(self):
        """Stops mqtt-proxy (its connections drop) and starts it again on the same ports."""
        self.stop(self.proxy, timeout=20, must_stop=True)
        self.start_proxy()

    def change_password(self):
        """moduser --password-stdin: every session of the user is revoked (user_sessions_revoked)."""
        result = self.auth.cli("moduser", "--user", DEMO_USER, "--password-stdin", stdin=NEW_PASSWORD + "\n")
        assert result.returncode == 0, result.stderr

    def dump_logs(self):
        for name in ("auth-server", "mqtt-proxy", "mosquitto"):
            print(f"---- {name}.log (last lines)\n" + "".join(self.log_of(name).splitlines(keepends=True)[-30:]))

    def close(self):
        self.static.shutdown()
        self.static.server_close()
        super().close()


def drive(system, config):
    """Runs console_driver.mjs; answers its requests (a line "@restart-proxy" or
    "@change-password" on its stdout) with "ok" on its stdin once done."""
    driver = subprocess.Popen(["node", os.path.join(HERE, "console_driver.mjs"), json.dumps(config)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    timer = threading.Timer(240, driver.kill)
    timer.start()
    try:
        for line in driver.stdout:
            print(line, end="", flush=True)
            if line.strip() == "@restart-proxy":
                system.restart_proxy()
            elif line.strip() == "@change-password":
                system.change_password()
            else:
                continue
            driver.stdin.write("ok\n")
            driver.stdin.flush()
        return driver.wait()
    finally:
        timer.cancel()
        if driver.poll() is None:
            driver.kill()
            driver.wait()


def main():
    proxy, auth_server, output = sys.argv[1:4]
    if not os.access(CHROMIUM, os.X_OK):
        print(f"{CHROMIUM} is missing: deploy/install-deps.sh installs Debian's chromium", file=sys.stderr)
        return 1
    npm_ci(HERE, "playwright-core")
    npm_ci(CONSOLE, "mqtt")
    os.makedirs(output, exist_ok=True)
    system = System(proxy, auth_server)
    try:
        config = {
            "chromium": CHROMIUM,
            "output": output,
            "user": DEMO_USER,
            "password": DEMO_PASSWORD,
            "new_password": NEW_PASSWORD,
            "auth_origin": system.auth_origin,
            "auth_port": system.auth_port,
            "static_port": system.static_port,
            "tcp_port": system.tcp_port,
            "ws_url": f"ws://127.0.0.1:{system.ws_port}/mqtt",
            "wss_url": f"wss://localhost:{system.wss_port}/mqtt",
        }
        returncode = drive(system, config)
        if returncode != 0:
            system.dump_logs()
            return 1
        # What the browser hid from the page, seen from the servers: the proxy refused
        # the WebSocket from http://localhost:<auth port>, and the refused CORS
        # preflight kept that page's login from ever being sent (6 logins: the
        # console's, three for mosquitto_pub/sub, the allowed cross-origin page's,
        # the refused-WebSocket page's; one failure, the wrong password).
        proxy_log, auth_log = system.log_of("mqtt-proxy"), system.log_of("auth-server")
        checks = [
            (f"origin http://localhost:{system.auth_port} is not allowed" in proxy_log,
             "the proxy did not log the refused WebSocket origin"),
            (auth_log.count("login ok user=demo") == 10, f"{auth_log.count('login ok user=demo')} logins instead of 10"),
            (auth_log.count("login failed user=demo") == 1, "not exactly one failed login"),
        ]
        failed = [why for good, why in checks if not good]
        if failed:
            print("console_test: " + "; ".join(failed), file=sys.stderr)
            system.dump_logs()
            return 1
        screenshot = os.path.join(output, "console.png")
        if not os.path.getsize(screenshot) > 10000:
            print("the screenshot is missing or empty", file=sys.stderr)
            return 1
        print("console_test: all browser checks passed; screenshot", screenshot)
        return 0
    finally:
        system.close()


if __name__ == "__main__":
    sys.exit(main())
