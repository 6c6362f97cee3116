"""``Idempotency-Key`` on every write: the first answer is stored per token and replayed for a repeat.

The key is claimed (a row without an answer) in its own transaction before the write runs, so two
requests with one key never both run: the second gets 409 while the first is under way, then the first
one's answer. A repeat with another method, path or body is refused (422). Every answer the API gives on
purpose is stored, errors too (a refusal is replayed as it was, never run a second time). Only an
unexpected error (an exception no view handled) frees the key, and only when no write was committed
during the request: then nothing changed and a retry must be able to run. Rows live
``IDEMPOTENCY_TTL_HOURS`` (default 24) and are purged as new keys are claimed.
"""
from __future__ import annotations

import hashlib
import re
from datetime import timedelta

from flask import Response, current_app, g, request
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from ..db import db
from ..models import ApiIdempotency, utcnow
from ..payments.service import committed_in_request
from .problems import PROBLEM_TYPE, Problem, problem_response

HEADER = "Idempotency-Key"
MAX_KEY = 255
KEY_PATTERN = r"^[!-~]{1,255}$"  # visible ASCII: what a header carries unchanged everywhere
_KEY = re.compile(KEY_PATTERN)
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
UNHANDLED_FLAG = "api_unhandled_error"  # set by the API's 500 handler: the answer was not given on purpose
FAILED_AFTER_WRITE = ("The server failed after a change was saved. This Idempotency-Key keeps this answer: "
                      "look the result up before sending a new request.")
PARAMETER = {"in": "header", "name": HEADER, "required": False,
             "description": "Any unique text (e.g. a UUID): a repeat of the request with the same key gets "
                            "the first answer again instead of doing the write twice.",
             "schema": {"type": "string", "pattern": KEY_PATTERN}}


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for part in (request.method, request.path, request.query_string.decode("latin-1")):
        digest.update(part.encode() + b"\0")
    digest.update(request.get_data(cache=True))
    return digest.hexdigest()


def before_write(token_id: int) -> Response | None:
    """Claim the request's key, or answer at once with the stored response (or a problem)."""
    key = request.headers.get(HEADER)
    if key is None or request.method not in WRITE_METHODS:
        return None
    if not _KEY.fullmatch(key):
        raise Problem(400, f"{HEADER} must be 1 to {MAX_KEY} visible ASCII characters.", code="idempotency-key")
    fingerprint = _fingerprint()
    now = utcnow()
    ttl = timedelta(hours=float(current_app.config.get("IDEMPOTENCY_TTL_HOURS") or 24))
    db.session.execute(delete(ApiIdempotency).where(ApiIdempotency.token_id == token_id,
                                                    ApiIdempotency.created_at < now - ttl))
    db.session.add(ApiIdempotency(token_id=token_id, key=key, fingerprint=fingerprint, created_at=now))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
    else:
        g.idempotency = (token_id, key)
        return None
    stored = db.session.execute(select(ApiIdempotency).where(
        ApiIdempotency.token_id == token_id, ApiIdempotency.key == key)).scalar_one_or_none()
    if stored is None:  # freed by a server error meanwhile
        raise Problem(409, "A request with this Idempotency-Key has just failed; retry it.", code="idempotency-retry")
    if stored.fingerprint != fingerprint:
        raise Problem(422, "This Idempotency-Key was used for another request.", code="idempotency-key-reused")
    if stored.status_code is None:
        raise Problem(409, "A request with this Idempotency-Key is still being processed.",
                      code="idempotency-in-progress")
    response = current_app.response_class(stored.body or "", status=stored.status_code,
                                          mimetype=PROBLEM_TYPE if stored.status_code >= 400 else "application/json")
    response.headers["Idempotent-Replayed"] = "true"
    return response


def mark_unhandled() -> None:
    """Note that the request's answer is an unexpected server error, not one the API gives on purpose."""
    g.setdefault(UNHANDLED_FLAG, True)


def can_retry() -> bool:
    """True when the request ended in an unexpected error before any write was committed."""
    return not committed_in_request()


def after_write(response: Response) -> Response:
    """Store the answer for the claimed key, or free the key after an unexpected error that changed nothing."""
    claim = g.pop("idempotency", None)
    if claim is None:
        return response
    token_id, key = claim
    where = (ApiIdempotency.token_id == token_id, ApiIdempotency.key == key)
    with db.engine.begin() as conn:
        if g.get(UNHANDLED_FLAG) and can_retry():
            conn.execute(delete(ApiIdempotency).where(*where))
        else:
            conn.execute(update(ApiIdempotency).where(*where).values(
                status_code=response.status_code, body=response.get_data(as_text=True)))
    return response


def free_unanswered() -> None:
    """A request ended without its answer stored (an exception escaped every handler): free its key when
    nothing was committed, else keep a server error as the key's answer so a retry never writes twice."""
    claim = g.pop("idempotency", None)
    if claim is None:
        return
    token_id, key = claim
    where = (ApiIdempotency.token_id == token_id, ApiIdempotency.key == key, ApiIdempotency.status_code.is_(None))
    with db.engine.begin() as conn:
        if can_retry():
            conn.execute(delete(ApiIdempotency).where(*where))
        else:
            body = problem_response(500, FAILED_AFTER_WRITE, code="failed-after-write").get_data(as_text=True)
            conn.execute(update(ApiIdempotency).where(*where).values(status_code=500, body=body))
