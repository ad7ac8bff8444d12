"""A stand-in for the API server's POST /v1/sessions/validate, for tests that
are about the proxy rather than about auth-server: fixed sessions, every
call's remote_addr recorded."""
import http.server
import json
import threading

from netutil import free_port


class StubAuthServer:
    def __init__(self, sessions, anyone=None, expires_in=3600):
        """sessions: token -> {"user", "acl"}; anyone: the answer for every other token (None: 401)."""
        self.remote_addrs = []
        self.port = free_port()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.remote_addrs.append(body.get("remote_addr"))
                session = sessions.get(body.get("session"), anyone)
                status, answer = ((200, dict(session, expires_in=expires_in)) if session
                                  else (401, {"error": "invalid_session"}))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        self.http.shutdown()
        self.http.server_close()
