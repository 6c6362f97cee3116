"""Parsing ids from query strings and forms without letting odd input reach the database."""
from __future__ import annotations

MAX_ID = 2**31 - 1  # the range of an INTEGER primary key on every supported database


def row_id(text: str) -> int:
    """A positive database id from ``text``; ``ValueError`` otherwise (so ``request.args.get(name,
    type=row_id)`` gives None). Unicode digits and out-of-range numbers are refused."""
    text = (text or "").strip()
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= MAX_ID:
        raise ValueError(f"not a row id: {text[:20]!r}")
    return int(text)
