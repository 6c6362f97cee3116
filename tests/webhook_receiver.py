"""A webhook receiver for tests: verifies every delivery's signature with ``standardwebhooks`` and records
it by ``webhook-id``; it can fail its first requests or hang, as a receiver being deployed would."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from billcore.testing.fixtures import FAST_SHUTDOWN


class Receiver:
    """Serve on a free port of 127.0.0.1; ``url`` is where to send. ``fail_first`` requests get a 500;
    while ``hang`` is set, requests wait (until ``release()``) before answering."""

    def __init__(self, fail_first: int = 0):
        self.secret: str | None = None
        self.fail_first = fail_first
        self.requests = 0
        self.received: list[tuple[str, dict]] = []  # (webhook-id, parsed body) of accepted deliveries
        self.bad_signatures = 0
        self.hang = threading.Event()
        self.hanging = threading.Event()  # set while a request is held
        self._release = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.requests += 1
                    number = receiver.requests
                if receiver.hang.is_set():
                    receiver.hanging.set()
                    receiver._release.wait(30)
                try:
                    data = Webhook(receiver.secret).verify(body, dict(self.headers.items()))
                except WebhookVerificationError:
                    with receiver._lock:
                        receiver.bad_signatures += 1
                    self._answer(400, b"bad signature")
                    return
                if number <= receiver.fail_first:
                    self._answer(500, b"not yet")
                    return
                with receiver._lock:
                    receiver.received.append((self.headers["webhook-id"], data))
                self._answer(200, b"ok")

            def _answer(self, status, text):
                self.send_response(status)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs=FAST_SHUTDOWN, daemon=True)

    def release(self):
        self.hang.clear()
        self._release.set()

    def ids(self) -> set[str]:
        return {msg_id for msg_id, _ in self.received}

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.release()
        self.server.shutdown()
        self.server.server_close()
