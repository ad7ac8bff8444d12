"""A stand-in for the API server's POST /v1/sessions/validate, for tests that
are about the proxy rather than about auth-server: fixed sessions, every
call's remote_addr recorded and calls counted by token."""
import http.server
import json
import threading

from netutil import free_port


class StubAuthServer:
    def __init__(self, sessions, anyone=None, expires_in=3600, max_age=None):
        """sessions: token -> {"user", "acl"}; anyone: the answer for every other
        token, or a function of the token giving it (None: 401); max_age: a
        200's Cache-Control max-age (None: no header, the proxy caches nothing)."""
        self.remote_addrs, self.calls = [], {}
        answer_for = anyone if callable(anyone) else (lambda token: anyone)
        self.port = free_port()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                token = body.get("session", "")
                owner.calls[token] = owner.calls.get(token, 0) + 1
                owner.remote_addrs.append(body.get("remote_addr"))
                session = sessions.get(token) or answer_for(token)
                status, answer = ((200, dict(session, expires_in=expires_in)) if session
                                  else (401, {"error": "invalid_session"}))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if status == 200 and max_age is not None:
                    self.send_header("Cache-Control", f"max-age={max_age}")
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
