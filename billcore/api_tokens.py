"""API tokens: made and revoked by an admin (admin area, CLI), shown once, stored as a SHA-256 hash.

A token is 32 random bytes (URL-safe text after ``bc_``); at that strength a fast hash is enough (a
password hash is for guessable secrets) and lets each request find its token by an index lookup.
"""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select, update

from .db import db
from .models import ApiToken, utcnow

PREFIX = "bc_"
SCOPES = ("read", "write")
# last_used_at is written at most this often per token: not one write per API request
LAST_USED_EVERY = timedelta(seconds=60)
MAX_TOKEN_LENGTH = 100  # longer Authorization values are refused before hashing


class TokenError(ValueError):
    """A token that cannot be made or revoked as asked."""


def hash_token(token: str) -> str:
    """The stored form of ``token``."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def normalise_scopes(scopes: list[str] | tuple[str, ...] | str) -> str:
    """``read`` or ``read write`` (write implies read); :class:`TokenError` for anything else."""
    wanted = set(scopes.split() if isinstance(scopes, str) else scopes)
    if not wanted or wanted - set(SCOPES):
        raise TokenError(f"scopes must be among {', '.join(SCOPES)}")
    return "read write" if "write" in wanted else "read"


def create_token(name: str, scopes: list[str] | tuple[str, ...] | str, *, actor: str | None = None) -> tuple[ApiToken, str]:
    """Make a token; returns the row and the token itself (the only time it can be seen)."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise TokenError("a token needs a name of at most 100 characters")
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, token_hash=hash_token(token), prefix=token[:10], scopes=normalise_scopes(scopes),
                   created_by=actor, created_at=utcnow())
    db.session.add(row)
    db.session.commit()
    return row, token


def revoke_token(token_id: int) -> ApiToken:
    """Revoke a token for good (it stays listed); :class:`TokenError` if there is none."""
    row = db.session.get(ApiToken, token_id)
    if row is None:
        raise TokenError(f"no token {token_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        db.session.commit()
    return row


def list_tokens() -> list[ApiToken]:
    """Every token, newest first."""
    return list(db.session.execute(select(ApiToken).order_by(ApiToken.id.desc())).scalars())


def find_token(token: str) -> ApiToken | None:
    """The live (not revoked) token for the ``token`` text, or None."""
    if not token or len(token) > MAX_TOKEN_LENGTH or not token.startswith(PREFIX):
        return None
    row = db.session.execute(select(ApiToken).where(ApiToken.token_hash == hash_token(token))).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    return row


def touch(row: ApiToken) -> None:
    """Record that the token was used now (at most once a minute, in its own short write)."""
    now = utcnow()
    if row.last_used_at is not None and now - row.last_used_at < LAST_USED_EVERY:
        return
    db.session.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
    db.session.commit()
