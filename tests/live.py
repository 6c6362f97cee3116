"""A real HTTP server on a free port of 127.0.0.1 for an app (threads, so runs of tests in parallel
workers never share a port)."""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask
from werkzeug.serving import make_server

from billcore.testing.fixtures import FAST_SHUTDOWN

logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request in the test output


@contextmanager
def serve(app: Flask) -> Iterator[str]:
    """Serve ``app`` while the block runs; yields its base URL (``http://127.0.0.1:<port>``)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs=FAST_SHUTDOWN, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
