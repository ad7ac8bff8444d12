"""Loopback port helpers shared by the Python integration tests."""
import socket
import threading
import time


def free_port():
    """A port nobody listens on right now, kept from everyone else for a
    minute: the kernel's choice for port 0, left with one of its own
    connections in TIME_WAIT. Until that ends no other bind(0) and no outgoing
    connection gets the port (tests running in parallel used to), while a
    server that sets SO_REUSEADDR or SO_REUSEPORT (cpp-httplib sets only the
    latter), as every program the tests start does, can still listen on it."""
    with socket.socket() as listener:
        # Both flags pass on to the connection left in TIME_WAIT, so a server
        # that sets either may bind over it.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the side that closes first is the one left in TIME_WAIT
        client.close()
        return port


def wait_for_port(port, timeout=10, alive=None):
    """Returns once something accepts connections on 127.0.0.1:port; raises
    at once if `alive` (the program that should listen) says it has ended."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"ended before it listened on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class LoopbackServer:
    """A TCP listener on a free loopback port that hands each accepted
    connection to `serve(sock)` on a thread of its own: the shape of the
    tests' fake brokers and nodes. close() closes the listener and every
    connection it accepted."""

    def __init__(self, backlog=64, port=0):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(backlog)
        self.port = self.listener.getsockname()[1]
        self.accepted = []
        threading.Thread(target=self._accept, daemon=True).start()

    def serve(self, sock):
        raise NotImplementedError

    def _accept(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(sock)
            threading.Thread(target=self.serve, args=(sock,), daemon=True).start()

    def close(self):
        for sock in [self.listener] + self.accepted:
            try:
                sock.close()
            except OSError:
                pass
