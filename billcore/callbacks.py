"""The payment door's gateway side: the views a gateway (or the payer's browser coming back from it) calls.

A payment module writes only what its gateway's protocol decides (the signature, which fields mean what,
the literal answer); the core does everything every gateway callback needs, the same way for all modules:

* :func:`gateway_callback` makes a server-to-server notification view: the body is capped before it is
  parsed, the fields are read (POST body, else the query string), the payment id is parsed and the
  payment loaded with its method's settings (:class:`CallbackRequest`), the caller's address (behind
  ``TRUSTED_PROXIES``) is checked against the module's allow-list when it has one, a refusal is recorded
  bounded (the protocol's fields only, each cut short, and a limited number per minute), a database
  failure answers 503 so that the gateway retries, and the view is exempt from CSRF (it is signed) and
  no other view is.
* :func:`gateway_return` makes the view the payer's browser comes back to: it changes nothing, is
  recorded (bounded), optionally checks the return's signature, and sends the browser to the checkout's
  return page (:func:`return_url`), which shows the payment's real status.

Both mark their view (:data:`CALLBACK_MARK`); :func:`exempt_callbacks` exempts exactly the marked views of a
module's blueprints from CSRF when billcore registers them.
"""
from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import Any

from flask import Flask, Response, current_app, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy.exc import SQLAlchemyError

from .args import MAX_ID
from .db import db, request_connection
from .limits import allow, client_address, known_fields
from .logs import file_logger
from .paymethods import CallbackContext, callback_context
from .payments.service import record_event

__all__ = ["Answer", "CallbackRequest", "Refuse", "gateway_callback", "gateway_return", "return_url",
           "address_in", "exempt_callbacks", "CALLBACK_MARK"]

CALLBACK_MARK = "billcore_callback"  # attribute set on the views made here: billcore exempts them from CSRF
MAX_ID_DIGITS = 18  # longer "ids" are malformed, not merely unknown


@dataclass(frozen=True)
class CallbackRequest:
    """One gateway request, as a module's handler receives it.

    ``params`` holds the first value of each field (the POST body, else the query string); ``headers``
    the request's headers; ``address`` the caller's address behind the trusted proxies; ``payment`` the
    payment named by the id field (it exists and belongs to the module: anything else was refused
    already), with its method's decrypted ``settings``.
    """

    params: Mapping[str, str]
    headers: Mapping[str, str]
    address: str
    payment: CallbackContext


@dataclass(frozen=True)
class Answer:
    """What the gateway hears back: the body, literally, with its HTTP status and media type."""

    body: str
    status: int = 200
    mimetype: str = "text/plain"


class Refuse(Exception):
    """Raised by a callback handler (or a ``verify`` it gave to the payment service) to refuse a request.

    Nothing has changed (the service rolls back a refusal raised inside it); the core records the refusal,
    bounded, and answers ``answer`` (default: ``reason``) with ``status``.
    """

    def __init__(self, reason: str, *, status: int = 400, answer: str | None = None):
        super().__init__(reason)
        self.reason, self.status = reason, status
        self.answer = reason if answer is None else answer


LogLine = Callable[[int | None, str, int, Mapping[str, str]], None]


def _default_log(source: str) -> LogLine:
    def log(payment_id: int | None, message: str, level: int, params: Mapping[str, str]) -> None:
        file_logger(source).log(level, "payment %s: %s", payment_id if payment_id is not None else "-", message)

    return log


def _params() -> dict[str, str]:
    """The request's fields: the POST body, else the query string (the first value of each name)."""
    source = request.form if request.method == "POST" and request.form else request.args
    return {str(name): str(source.get(name, "")) for name in source.keys()}


def _payment_id(raw: str | None) -> int:
    """The payment id of a callback; :class:`Refuse` when it is missing (400), not a number (400) or could
    not be a payment (404, like an unknown one)."""
    raw = (raw or "").strip()
    if not raw:
        raise Refuse("missing payment id", answer="bad request")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > MAX_ID_DIGITS:
        raise Refuse("malformed payment id", answer="bad request")
    if not 0 < int(raw) <= MAX_ID:
        raise Refuse(f"unknown payment {raw}", status=404, answer="unknown payment")
    return int(raw)


def address_in(address: str, networks: Iterable[str]) -> bool:
    """True when ``address`` is in one of ``networks`` (addresses or CIDR blocks; malformed entries are
    skipped)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for entry in networks:
        try:
            if ip in ipaddress.ip_network(str(entry).strip(), strict=False):
                return True
        except ValueError:
            continue
    return False


def _record_refusal(source: str, kind: str, payment_id: int | None, outcome: str, params: Mapping[str, str],
                    fields: Sequence[str], prefixes: Sequence[str], answer: str | None, log: LogLine) -> bool:
    """Record a refused request, bounded: only the protocol's ``fields`` (and up to ten starting with one
    of ``prefixes``), each cut to ``CALLBACK_FIELD_MAX`` characters, and at most
    ``CALLBACK_REFUSED_RECORDS`` per source and payment and ``CALLBACK_REFUSED_RECORDS_TOTAL`` per source
    in a window, so a flood of refused requests cannot grow the database without bound. False when the
    database could not take the record."""
    config = current_app.config
    if not (allow(config["CALLBACK_REFUSED_RECORDS"], "refused", source, str(payment_id or "-"))
            and allow(config["CALLBACK_REFUSED_RECORDS_TOTAL"], "refused", source)):
        log(payment_id, "refused request not recorded: too many in a short time", logging.WARNING, params)
        return True
    data = known_fields(params, fields, prefixes=prefixes, max_length=int(config["CALLBACK_FIELD_MAX"]))
    try:
        record_event(payment_id, kind=kind, source=source, outcome=outcome[:255], data=data, answer=answer)
    except SQLAlchemyError:
        db.session.rollback()
        current_app.logger.exception("could not record a refused %s request", source)
        return False
    return True


def gateway_callback(module: str, *, source: str, id_field: str, fields: Sequence[str],
                     prefixes: Sequence[str] = (),
                     allowed_addresses: Callable[[Mapping[str, Any]], Sequence[str] | None] | None = None,
                     log: LogLine | None = None, log_file: str | None = None,
                     ) -> Callable[[Callable[[CallbackRequest], Answer]], Callable]:
    """Make a gateway's server-to-server notification view from ``handler(call) -> Answer``.

    ``module`` is the module's key: a payment of another module is refused like an unknown one.
    ``source`` names the script in events and its log file (``rkresult``). ``id_field`` is the field that
    carries billcore's payment id. ``fields`` (and ``prefixes``) are the protocol's fields: only they are
    kept of a refused request. ``allowed_addresses(settings)`` returns the networks the gateway calls from
    (None or empty: no check). ``log(payment_id, message, level, params)`` writes the module's log line
    (default: one line in ``<source>.log``).

    The handler verifies the request (in constant time) and hands the payment to the payment service,
    returning the gateway's literal :class:`Answer`; it raises :class:`Refuse` to refuse. Database errors
    become 503 and any other exception 500 (the gateway retries both); nothing half-done is committed.
    """
    write = log or _default_log(log_file or source)

    def decorate(handler: Callable[[CallbackRequest], Answer]) -> Callable:
        @wraps(handler)
        def view() -> Response:
            # one pooled connection for the whole notification: the first look, the service's locked
            # transaction and a refusal's record share it; returned to the pool on any exit
            with request_connection():
                return respond()

        def respond() -> Response:
            request.max_content_length = int(current_app.config["CALLBACK_MAX_CONTENT_LENGTH"])
            params = _params()
            payment_id: int | None = None
            try:
                payment_id = _payment_id(params.get(id_field))
                found = callback_context(payment_id)
                if found is None or found.module != module:
                    payment_id = None
                    raise Refuse(f"unknown payment {params.get(id_field, '')[:20]}", status=404,
                                 answer="unknown payment")
                address = client_address()
                networks = allowed_addresses(found.settings) if allowed_addresses is not None else None
                if networks and not address_in(address, networks):
                    raise Refuse(f"address {address} is not one the gateway calls from", status=403,
                                 answer="forbidden")
                answer = handler(CallbackRequest(params=params, headers=request.headers, address=address,
                                                 payment=found))
                if not isinstance(answer, Answer):  # a bug like any other: 500, and the gateway retries
                    raise TypeError(f"the {source} handler must return an Answer, not {type(answer).__name__}")
            except Refuse as refusal:
                db.session.rollback()
                write(payment_id, f"refused ({refusal.status}): {refusal.reason}", logging.WARNING, params)
                _record_refusal(source, "notification", payment_id, f"rejected: {refusal.reason}", params, fields,
                                prefixes, refusal.answer, write)
                return Response(refusal.answer, refusal.status, mimetype="text/plain")
            except SQLAlchemyError as exc:
                db.session.rollback()
                write(payment_id, f"database failure, answered 503: {type(exc).__name__}", logging.ERROR, params)
                return Response("temporary failure, please retry", 503, mimetype="text/plain")
            except Exception as exc:  # a bug must still answer non-success (the gateway retries) and leave a trace
                db.session.rollback()
                current_app.logger.exception("%s failed", source)
                write(payment_id, f"internal error, answered 500: {type(exc).__name__}", logging.ERROR, params)
                return Response("internal error, please retry", 500, mimetype="text/plain")
            return Response(answer.body, answer.status, mimetype=answer.mimetype)

        setattr(view, CALLBACK_MARK, True)
        return view

    return decorate


def return_url(payment_id: int, outcome: str) -> str:
    """Where the payer's browser goes back to: the checkout's return page for ``outcome`` (``success``,
    ``fail`` or ``pending``), which shows the payment's real status to its owner and waits for the
    notification while the payment is open."""
    return url_for("checkout.payment_return", payment_id=payment_id, outcome=outcome)


def _error_page(status: int, message: str) -> tuple[str, int]:
    return render_template("error.html", code=status, error=message), status


def gateway_return(module: str, *, source: str, id_field: str, outcome: str, fields: Sequence[str],
                   prefixes: Sequence[str] = (),
                   verify: Callable[[Mapping[str, str], Mapping[str, Any]], bool] | None = None,
                   log: LogLine | None = None, log_file: str | None = None) -> Callable:
    """Make the view the payer's browser comes back to from the gateway (``outcome``: ``success``,
    ``fail`` or ``pending``).

    It never changes a payment: only the notification does. It records the return (bounded, as it is
    unauthenticated), and sends the browser to :func:`return_url`. It answers the same whatever the id,
    so that nobody learns which payments exist; the return page itself shows a payment to its owner only.
    With ``verify(params, settings)`` (a gateway that signs the return), a return that does not verify
    gets an error page instead, and so does one naming no payment of the module (it cannot verify: the
    same answer as a bad signature). A database failure answers 503 so that the browser tries again.
    """
    write = log or _default_log(log_file or source)

    def view() -> Any:
        with request_connection():  # the look at the payment and the return's record: one checkout
            return respond()

    def respond() -> Any:
        request.max_content_length = int(current_app.config["CALLBACK_MAX_CONTENT_LENGTH"])
        params = _params()
        try:
            payment_id: int | None = _payment_id(params.get(id_field))
        except Refuse:
            payment_id = None
        try:
            found = callback_context(payment_id) if payment_id is not None else None
        except SQLAlchemyError:
            db.session.rollback()
            write(payment_id, "database failure, answered 503", logging.ERROR, params)
            return _error_page(503, _("The service is temporarily unavailable. Please try again shortly."))
        known = found if found is not None and found.module == module else None
        # A signed return naming no payment of this module cannot verify either: it gets the same error page
        # as a bad signature, so that its answer does not tell which payments exist.
        if verify is not None and (known is None or not verify(params, known.settings)):
            reason = "bad signature" if known is not None else "no payment of this module"
            write(payment_id, f"{outcome} return refused: {reason}", logging.WARNING, params)
            if not _record_refusal(source, "return", payment_id if known else None, f"rejected: {reason}", params,
                                   fields, prefixes, None, write):
                return _error_page(503, _("The service is temporarily unavailable. Please try again shortly."))
            return _error_page(400, _("This return link is not valid. Your payment, if made, will be credited "
                                      "when the payment system notifies us."))
        if known is None:
            note = f"{outcome} return for no payment of this module"
        else:
            note = f"{outcome} return, nothing changed; payment is {known.status}"
        write(payment_id, note, logging.INFO if known else logging.WARNING, params)
        if not _record_refusal(source, "return", payment_id if known else None, note, params, fields, prefixes,
                               None, write):
            return _error_page(503, _("The service is temporarily unavailable. Please try again shortly."))
        if payment_id is None:
            return redirect(url_for("checkout.dashboard"))
        return redirect(return_url(payment_id, outcome))

    # the endpoint's name: an identifier (a source such as "pmtemplate tplsuccess" has a space)
    view.__name__ = view.__qualname__ = re.sub(r"\W+", "_", source).strip("_") + "_return"
    view.__module__ = f"{module}.{source}"
    setattr(view, CALLBACK_MARK, True)
    return view


def exempt_callbacks(app: Flask, blueprint_names: Iterable[str]) -> list[str]:
    """Exempt from CSRF exactly the views of ``blueprint_names`` made by :func:`gateway_callback` or
    :func:`gateway_return`; returns their endpoints. Called by billcore when it registers a module."""
    csrf = app.extensions.get("csrf")
    prefixes = tuple(f"{name}." for name in blueprint_names)
    exempted = []
    for endpoint, view in app.view_functions.items():
        if endpoint.startswith(prefixes) and getattr(view, CALLBACK_MARK, False):
            if csrf is not None:
                csrf.exempt(view)
            exempted.append(endpoint)
    return exempted
