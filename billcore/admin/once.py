"""One-time form tokens: a double submit of an admin form that moves money acts once.

The form carries a random token; when the action is done the token is remembered in the session with
the page that shows the result. The same form sent again (a double click, Back and submit again) finds
its token used and is sent to that page with a notice instead of acting a second time. Only the last
``KEEP`` tokens are kept, so the session stays small.
"""
from __future__ import annotations

import secrets

from flask import session

SESSION_KEY = "admin_once"
KEEP = 20
MAX_TOKEN = 64
FIELD = "once"  # the hidden field's name in the forms


def new_token() -> str:
    """A fresh token to render in a form."""
    return secrets.token_urlsafe(16)


def used(token: str | None) -> str | None:
    """The result page of the action already done with this token, or None when it is unused."""
    if not token:
        return None
    where = (session.get(SESSION_KEY) or {}).get(token[:MAX_TOKEN])
    return where if isinstance(where, str) else None


def remember(token: str, where: str) -> None:
    """Mark the token used; a repeat is sent to ``where`` (a local URL)."""
    done = dict(session.get(SESSION_KEY) or {})
    done.pop(token[:MAX_TOKEN], None)
    done[token[:MAX_TOKEN]] = where
    session[SESSION_KEY] = dict(list(done.items())[-KEEP:])
