#!/usr/bin/python3
"""upstream.bind_addresses through the real mqtt-proxy to a real Mosquitto
(stub API server): the broker's own log names the source address of each
upstream connection, taken round robin from 127.0.0.2 and 127.0.0.3; a
source address this host does not have fails that dial as itself
("Cannot assign requested address"), and the client is told
upstream_unavailable rather than connected from another address.

Usage: upstream_bind_test.py PATH/TO/mqtt-proxy   (MQTT_PROXY_BINARY overrides)"""
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from netutil import free_port  # noqa: E402
from processes import ProcessGroup, proxy_argv  # noqa: E402
from stub_auth import StubAuthServer  # noqa: E402
from wire import auth_exchange  # noqa: E402

PROXY = None
SESSIONS = {"alice-token": {"user": "alice", "acl": {"publish": ["private/alice/#"], "subscribe": ["private/alice/#"]}}}


class System(ProcessGroup):
    """Mosquitto (logging connections) + stub API server + mqtt-proxy with the given source addresses."""

    def __init__(self, sources):
        super().__init__("bind-", stop_timeout=15, must_stop=True)
        _, self.broker_port = self.mosquitto(["log_dest stdout", "log_type notice", "connection_messages true"],
                                             line_buffered=True)
        self.port = free_port()
        self.auth = StubAuthServer(SESSIONS)
        self.at_close(self.auth.close)
        argv = proxy_argv(PROXY, self.port, self.broker_port, self.auth.url, "--threads", "2")
        for source in sources:
            argv += ["--upstream-bind-address", source]
        self.spawn("proxy", argv, ports=[self.port])

    def broker_sources(self):
        """{source address: connections} from Mosquitto's "New client connected from A:P as ID" lines."""
        found = re.findall(r"New client connected from ([0-9.]+):\d+ as (\S+)", self.log_of("mosquitto"))
        counts = {}
        for address, client_id in found:
            if "alice" in client_id:  # the proxy's start-up probe is not a client's connection
                counts[address] = counts.get(address, 0) + 1
        return counts

    def logs(self):
        return self.log_of("proxy")


def auth_answer(port, client_id):
    """CONNECT + auth PUBLISH; the proxy's answer on the auth topic, and the open socket."""
    return auth_exchange(port, client_id, "alice-token")


class SourceAddresses(unittest.TestCase):
    def test_broker_sees_each_source_address_round_robin(self):
        system = System(["127.0.0.2", "127.0.0.3"])
        sockets = []
        try:
            for i in range(6):
                answer, sock = auth_answer(system.port, f"bound-{i}")
                self.assertIn(b'"ok"', answer)
                sockets.append(sock)
            deadline = time.time() + 5
            while sum(system.broker_sources().values()) < 6 and time.time() < deadline:
                time.sleep(0.1)
            self.assertEqual(system.broker_sources(), {"127.0.0.2": 3, "127.0.0.3": 3})
        finally:
            for sock in sockets:
                sock.close()
            system.close()

    def test_without_source_addresses_the_kernel_chooses(self):
        system = System([])
        try:
            answer, sock = auth_answer(system.port, "unbound")
            self.assertIn(b'"ok"', answer)
            sock.close()
            deadline = time.time() + 5
            while not system.broker_sources() and time.time() < deadline:
                time.sleep(0.1)
            self.assertEqual(system.broker_sources(), {"127.0.0.1": 1})
        finally:
            system.close()

    def test_source_address_not_on_this_host_fails_the_dial_as_itself(self):
        system = System(["192.0.2.1"])  # TEST-NET-1 (RFC 5737): on no interface
        try:
            answer, sock = auth_answer(system.port, "unassignable")
            self.assertIn(b"upstream_unavailable", answer)
            sock.close()
            time.sleep(0.5)
            self.assertEqual(system.broker_sources(), {})
            self.assertIn("Cannot assign requested address", system.logs())
        finally:
            system.close()


if __name__ == "__main__":
    given = sys.argv.pop(1) if len(sys.argv) > 1 else None
    PROXY = os.environ.get("MQTT_PROXY_BINARY") or given
    if not PROXY:
        sys.exit(__doc__)
    unittest.main(verbosity=2)
