"""Parsing ids from URLs, query strings and forms without letting odd input reach the database.

One id converter for every route (:class:`RowIdConverter`, registered by :func:`init_app` as ``id`` and
in place of werkzeug's ``int``) and :func:`row_id` for query strings and forms: an id the database could
never hold is "no such page" (404) or a refused argument, never a database error (500).
"""
from __future__ import annotations

from flask import Flask
from werkzeug.routing import BaseConverter, ValidationError

MAX_ID = 2**31 - 1  # the range of an INTEGER primary key on every supported database
_MAX_DIGITS = len(str(MAX_ID))


def row_id(text: str) -> int:
    """A positive database id from ``text``; ``ValueError`` otherwise (so ``request.args.get(name,
    type=row_id)`` gives None). Unicode digits and out-of-range numbers are refused."""
    text = (text or "").strip()
    if not (text.isascii() and text.isdigit()) or len(text.lstrip("0")) > _MAX_DIGITS \
            or not 0 < int(text) <= MAX_ID:
        raise ValueError(f"not a row id: {text[:20]!r}")
    return int(text)


class RowIdConverter(BaseConverter):
    """``<id:name>`` (and ``<int:name>``): an ASCII positive integer within an INTEGER key's range.

    Anything else does not match the route, so the URL is a 404 before a view or the database sees it
    (werkzeug's own ``int`` accepts 2147483648 and 99999999999, which PostgreSQL then refuses).
    """

    regex = r"[0-9]{1,12}"
    part_isolating = True

    def __init__(self, map, *args, **kwargs) -> None:  # noqa: A002 - werkzeug's parameter name
        # ``<int(min=1):x>``-style arguments are accepted and ignored: the range is always an id's
        super().__init__(map)

    def to_python(self, value: str) -> int:
        """The id, or werkzeug's ValidationError (the route does not match: 404)."""
        try:
            return row_id(value)
        except ValueError:
            raise ValidationError() from None

    def to_url(self, value) -> str:
        """The id as digits."""
        return str(int(value))


def init_app(app: Flask) -> None:
    """Make :class:`RowIdConverter` the converter of ``<id:...>`` and of ``<int:...>`` in every route of
    ``app``, the core's and every plugin's, so no route can pass an out-of-range id to the database."""
    app.url_map.converters["id"] = RowIdConverter
    app.url_map.converters["int"] = RowIdConverter
