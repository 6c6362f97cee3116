"""CSRF protection for every form and the usual security headers on every response."""
from __future__ import annotations

from flask import Flask, Response
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # Gateway redirect forms post to the gateway, so form-action stays open; everything else is local.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; frame-ancestors 'none'; base-uri 'self'",
}


def init_app(app: Flask) -> None:
    """Enable CSRF (gateway callbacks exempt themselves) and add security headers to responses."""
    csrf.init_app(app)
    https = app.config["BASE_URL"].startswith("https://")

    defaults = [*HEADERS.items(), *([("Strict-Transport-Security", "max-age=31536000")] if https else [])]
    by_lower_name = [(name.lower(), name, value) for name, value in defaults]

    @app.after_request
    def _headers(response: Response) -> Response:
        # A header a view set itself is kept. One pass over the response's headers instead of a
        # setdefault per header (each a scan that raises KeyError when missing): every gateway
        # notification pays this (bench/notify.py).
        present = {name.lower() for name, _ in response.headers.items()}
        response.headers.extend([(name, value) for lower, name, value in by_lower_name if lower not in present])
        return response
