"""Flask's signed cookie session, minus its setup cost on requests that have no session at all.

Flask builds the itsdangerous serializer (with its key derivation) before it even looks for the session
cookie, and reads seven cookie settings before it notices an untouched empty session. A gateway's
notification never carries the cookie, and every one paid for both (bench/notify.py). The behaviour is
Flask's own: the same empty session, the same ``Vary: Cookie`` when the session was read, the same cookie
handling whenever there is or was something in it.
"""
from __future__ import annotations

from flask import Flask, Request, Response
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin


class CookieSessionInterface(SecureCookieSessionInterface):
    """:class:`~flask.sessions.SecureCookieSessionInterface` with early exits for cookie-less requests."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """An empty session at once when the request has no session cookie (Flask's answer too)."""
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Nothing to store for an empty session nobody changed, only the ``Vary`` header if it was read."""
        if not session and not session.modified:
            if session.accessed:
                response.vary.add("Cookie")
            return
        super().save_session(app, session, response)


def init_app(app: Flask) -> None:
    """Use :class:`CookieSessionInterface` for ``app``'s sessions."""
    app.session_interface = CookieSessionInterface()
