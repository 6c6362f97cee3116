"""Limits on what outside callers can make billcore do: request body sizes and request rates.

* Body caps: ``MAX_CONTENT_LENGTH`` caps every request; :func:`cap_body` gives a route (a gateway's
  callback) a smaller cap, read before the body is parsed. Too big a body is a 413 and nothing else.
* Rates: one Flask-Limiter for the app (:data:`limiter`), its counters in ``RATELIMIT_STORAGE_URI``:
  ``memory://`` (the default) counts per process, so with several workers or hosts use a shared store
  (``redis://host:6379``). :func:`allow` asks the same counters from code that is not a whole route (how
  many refused callbacks get recorded).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import wraps
from typing import Any

from flask import Flask, current_app, request
from flask_limiter import Limiter
from limits import parse

__all__ = ["allow", "cap_body", "client_address", "known_fields", "limiter"]

DROPPED = "_dropped"  # how many of a request's fields were left out
TRUNCATED = "_truncated"  # which kept fields were cut short
MAX_PREFIXED = 10  # fields kept by prefix (a shop's own parameters) at most


def client_address() -> str:
    """The caller's address: with ``TRUSTED_PROXIES = n`` (reverse proxies in front of billcore) the n-th
    address from the right of ``X-Forwarded-For`` (werkzeug ProxyFix's ``x_for``), else the socket's."""
    trusted = int(current_app.config.get("TRUSTED_PROXIES") or 0)
    if trusted > 0:
        forwarded = [part.strip() for part in ",".join(request.headers.getlist("X-Forwarded-For")).split(",")
                     if part.strip()]
        if len(forwarded) >= trusted:
            return forwarded[-trusted][:64]
    return request.remote_addr or "-"


limiter = Limiter(key_func=client_address)


def allow(limit: str, *keys: str) -> bool:
    """Count one event against ``limit`` (``"60/minute"``) for ``keys``; False once the limit is reached.

    The counters live in the app's limiter storage (shared by every worker when it is Redis). A storage
    that cannot be reached allows the event: these limits protect the database's size, never a payment.
    """
    try:
        return limiter.limiter.hit(parse(limit), "billcore", *keys)
    except Exception:  # noqa: BLE001 - a broken limiter storage must not refuse callbacks
        current_app.logger.warning("rate limit storage failed; allowing %s", "/".join(keys), exc_info=True)
        return True


def known_fields(params: Mapping[str, str], names: Sequence[str], *, prefixes: Sequence[str] = (),
                 max_length: int = 256) -> dict[str, Any]:
    """What may be kept of an unauthenticated request's fields: those named in ``names`` (and up to
    MAX_PREFIXED starting with one of ``prefixes``), each cut to ``max_length`` characters; ``_dropped``
    counts the fields left out and ``_truncated`` names the ones cut short (both only when not empty)."""
    kept: dict[str, Any] = {}
    truncated: list[str] = []
    prefixed = 0
    for name, value in params.items():
        if name in names:
            pass
        elif prefixes and name.startswith(tuple(prefixes)) and len(name) <= 64 and prefixed < MAX_PREFIXED:
            prefixed += 1
        else:
            continue
        value = str(value)
        if len(value) > max_length:
            truncated.append(name)
            value = value[:max_length]
        kept[name] = value
    dropped = len(params) - len(kept)
    if dropped:
        kept[DROPPED] = dropped
    if truncated:
        kept[TRUNCATED] = truncated
    return kept


def cap_body(config_name: str) -> Callable:
    """A view decorator: the request body may be at most ``app.config[config_name]`` bytes (413 otherwise).

    Flask checks ``request.max_content_length`` when the form is parsed and refuses a larger declared
    ``Content-Length`` at once, so a large body is never read into memory.
    """

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(*args, **kwargs):
            request.max_content_length = int(current_app.config[config_name])
            return view(*args, **kwargs)

        return wrapped

    return decorate


def retry_after(seconds: int) -> None:
    """Answer this request with ``Retry-After: seconds`` (a 429 decided by the view itself, which
    Flask-Limiter's own headers would otherwise overwrite)."""
    request.environ["billcore.retry_after"] = seconds


def init_app(app: Flask) -> None:
    """Set up the app's rate limiter (storage from ``RATELIMIT_STORAGE_URI``)."""

    # registered before Flask-Limiter's own hook, so it runs after it and its value is the one kept
    @app.after_request
    def _retry_after(response):
        seconds = request.environ.get("billcore.retry_after")
        if seconds is not None:
            response.headers["Retry-After"] = str(seconds)
        return response

    limiter.init_app(app)
