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

    @app.after_request
    def _headers(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if https:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response
