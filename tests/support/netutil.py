"""Loopback port helpers shared by the Python integration tests."""
import socket
import threading
import time


def free_port():
    """A port nobody listens on right now (the kernel's choice for port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
