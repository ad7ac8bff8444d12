"""The real programs of the Python integration tests (mqtt-proxy, auth-server,
Mosquitto) started in one test directory, each with its output in
DIR/NAME.log, and stopped in the reverse order at the end.

A test's System derives from ProcessGroup: spawn() what it needs, read a
program's log with log_of(), close() once. KEEP_TEST_DIR=1 keeps the
directory (configs and logs) to look at afterwards."""
import atexit
import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request

from mosquitto import PASSWORD, USERNAME, start_mosquitto
from netutil import free_port, wait_for_port


class ProcessGroup:
    def __init__(self, prefix, stop_timeout=10, must_stop=False):
        """prefix: the test directory's name prefix.
        stop_timeout: how long close() waits for each program after SIGTERM.
        must_stop: a program still running then is a failure of the test (it
        is killed all the same); otherwise it is just killed."""
        self.dir = tempfile.mkdtemp(prefix=prefix)
        os.chmod(self.dir, 0o755)  # mosquitto started as root drops to its own user and must read the files
        self.stop_timeout, self.must_stop = stop_timeout, must_stop
        self.processes = []  # (Popen, its log file), in start order
        self.cleanups = []  # what close() calls once the programs are stopped (a stub server's close)
        # A setUpClass that fails never reaches its tearDownClass: what it
        # started must not outlive the test program (a broker left running).
        atexit.register(self._kill_leftovers)

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, text):
        """DIR/NAME holding `text`; its path."""
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    def log_path(self, name):
        return self.path(name + ".log")

    def spawn(self, name, argv, ports=(), mode="w", **popen):
        """Starts argv with stdout and stderr in DIR/NAME.log (mode "a" adds to
        it), then waits until each of `ports` accepts connections."""
        log = open(self.log_path(name), mode)
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, **popen)
        self.processes.append((process, log))
        self._wait_listening(name, process, log, ports)
        return process

    def _wait_listening(self, name, process, log, ports):
        """Until each of `ports` accepts connections; a program that ends
        first fails at once, with the end of its log (a port taken meanwhile,
        a bad flag...)."""
        try:
            for port in ports:
                wait_for_port(port, alive=lambda: process.poll() is None)
        except RuntimeError as e:
            log.flush()
            with open(self.log_path(name), errors="replace") as f:
                tail = f.read()[-2000:]
            raise RuntimeError(f"{name}: {e}; exit status {process.poll()}; its log ends:\n{tail}") from None

    def mosquitto(self, extra=(), **options):
        """Mosquitto as mosquitto.start_mosquitto makes it (options: file_mode,
        line_buffered), logging to DIR/mosquitto.log; (Popen, port) once it listens."""
        log = open(self.log_path("mosquitto"), "w")
        process, port = start_mosquitto(self.dir, extra, log=log, **options)
        self.processes.append((process, log))
        self._wait_listening("mosquitto", process, log, [port])
        return process, port

    def at_close(self, cleanup):
        self.cleanups.append(cleanup)

    def log_of(self, name, errors=None):
        with open(self.log_path(name), errors=errors) as f:
            return f.read()

    def stop(self, process, timeout=None, must_stop=None):
        """Stops one program early (SIGTERM) and closes its log."""
        index = next(i for i, (p, _) in enumerate(self.processes) if p is process)
        _, log = self.processes.pop(index)
        try:
            stop_process(process, self.stop_timeout if timeout is None else timeout,
                         self.must_stop if must_stop is None else must_stop)
        finally:
            log.close()

    def _kill_leftovers(self):
        for process, _ in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    def close(self):
        failures = []
        for process, log in reversed(self.processes):
            try:
                stop_process(process, self.stop_timeout, self.must_stop)
            except AssertionError as e:
                failures.append(str(e))
            log.close()
        self.processes = []
        for cleanup in self.cleanups:
            cleanup()
        if failures:
            raise AssertionError("; ".join(failures) + f" (logs in {self.dir})")
        if os.environ.get("KEEP_TEST_DIR"):
            print("test files in", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def stop_process(process, timeout, must_stop):
    """SIGTERM, then SIGKILL after `timeout` seconds; with must_stop, needing
    the SIGKILL is an AssertionError (raised once the process is gone)."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
        return
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if must_stop:
        raise AssertionError(f"{process.args[0]} (pid {process.pid}) still ran {timeout} s after SIGTERM")


def upstream_args(broker_port):
    """mqtt-proxy's flags for the Mosquitto of mosquitto.py: its address and the proxy's account."""
    return ["--upstream", f"127.0.0.1:{broker_port}", "--upstream-username", USERNAME,
            "--upstream-password", PASSWORD]


def http(method, url, body=None, headers=None, timeout=10):
    """(status, body text) of one request with an optional JSON body; HTTP errors are answers too."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers=dict({"Content-Type": "application/json"}, **(headers or {})))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class AuthServer:
    """The real auth-server in a ProcessGroup: `serve` on a free loopback port
    with the database DIR/auth.db; its command line and its login."""

    def __init__(self, group, binary, *flags, name="auth-server"):
        self.binary, self.db = binary, group.path("auth.db")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        group.spawn(name, [binary, "serve", "--db", self.db, "--listen", f"127.0.0.1:{self.port}", *flags],
                    ports=[self.port])

    def cli(self, *args, stdin=None, timeout=30):
        """One command of its command line on the same database (adduser, moduser, ...)."""
        return subprocess.run([self.binary, *args, "--db", self.db], input=stdin, text=True, capture_output=True,
                              timeout=timeout)

    def add_user(self, name, password, groups=(), extra=(), timeout=30):
        argv = ["adduser", "--user", name, "--password", password]
        for group in groups:
            argv += ["--group", group]
        result = self.cli(*argv, *extra, timeout=timeout)
        assert result.returncode == 0, result.stderr

    def login(self, name, password):
        """A new session token of the user (POST /v1/login)."""
        status, body = http("POST", self.url + "/v1/login", {"username": name, "password": password})
        assert status == 200, body
        return json.loads(body)["session"]


def proxy_argv(binary, port, broker_port, auth_url, *extra, admin_port=None):
    """mqtt-proxy on 127.0.0.1:port in front of the Mosquitto of mosquitto.py,
    validating with auth_url, its admin port free_port()'s unless given."""
    return [binary, "--listen", f"127.0.0.1:{port}", *upstream_args(broker_port), "--auth-url", auth_url,
            "--admin", f"127.0.0.1:{admin_port or free_port()}", *extra]


class OneSystemPerClass:
    """unittest.TestCase mixin: one system (the class's make_system()) for
    all its tests, closed at the end, after the paho loops of the clients
    kept with keep()."""

    @classmethod
    def setUpClass(cls):
        cls.system = cls.make_system()
        cls.apps = []

    @classmethod
    def tearDownClass(cls):
        for app in cls.apps:
            app.client.loop_stop()
        cls.system.close()

    def keep(self, app):
        self.apps.append(app)
        return app
