"""Per-module log files in ``LOG_DIR`` (``pmrobokassa.log``, ``rkresult.log`` ...), secrets masked.

Each file gets one line per event. Several worker processes may append to the same file: each record is
written with a single ``write`` on a file opened in append mode, which Linux keeps whole. Values from
outside cannot forge lines or fields: every string argument is written by :func:`quote` (quoted and
escaped unless it is a plain token), and whatever still holds a line break is escaped as the line is
formatted. The folder is created 0700 and the files 0600.
"""
from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

from flask import Flask, current_app

from .config import private_file, private_folder
from .crypto import MASK

_known_secrets: set[str] = set()
_lock = threading.Lock()

FORMAT = "%(asctime)s %(process)d %(levelname)s %(message)s"
MAX_VALUE = 500  # characters of one value in a log line

# A value written bare: letters, digits and a few separators that cannot start another field.
_BARE = re.compile(rf"[\w.,:/@+\-#()\[\]*]{{1,{MAX_VALUE}}}", re.ASCII)
# Escaped inside a quoted value and in every line: C0 and C1 controls (\x85 is a line break for some
# readers), Unicode line and paragraph separators, and the quote and backslash themselves.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f\u2028\u2029"\\]')
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}


def _escape(match: re.Match) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named:
        return named
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def quote(value: object) -> str:
    """``value`` as one field of a log line: bare when it is a plain token (``12``, ``OK12``,
    ``BankCardPSR``), otherwise in double quotes with quotes, backslashes, control characters and line
    separators escaped, so that no value can add a line or a ``key=value`` field. Cut to MAX_VALUE."""
    text = str(value)[:MAX_VALUE]
    if _BARE.fullmatch(text):
        return text
    return '"' + _UNSAFE.sub(_escape, text) + '"'


def one_line(text: str) -> str:
    """``text`` with every line break and control character escaped (a log record is one line)."""
    return _LINE_BREAKS.sub(_escape, text)


class QuoteArgsFilter(logging.Filter):
    """Writes a record's string arguments through :func:`quote` (numbers and other types as they are)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Quote in place; never drops a record."""
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(quote(a) if isinstance(a, str) else a for a in args)
        elif isinstance(args, dict):
            record.args = {k: quote(v) if isinstance(v, str) else v for k, v in args.items()}
        return True


class OneLineFormatter(logging.Formatter):
    """The usual format, with line breaks (a message's or a traceback's) escaped: one record, one line."""

    def format(self, record: logging.LogRecord) -> str:
        """Format and escape."""
        return one_line(super().format(record))


def remember_secrets(values) -> None:
    """Add secret values that must be masked in every log line from now on (done whenever a payment
    method's secrets are decrypted)."""
    with _lock:
        _known_secrets.update(v for v in values if v and len(v) >= 4)


def mask(text: str) -> str:
    """``text`` with every known secret replaced by ``***``."""
    for secret in list(_known_secrets):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def mask_record(record: logging.LogRecord) -> None:
    """Mask known secrets in a record's final message and its exception text, in place.

    A message that holds a secret is formatted here (``args`` become part of ``msg``); others keep their
    arguments. A record whose arguments do not fit its format is left as it is, for the handler to report
    as logging always does. ``exc_info`` stays for tracebacks: handlers that format it themselves rather
    than through ``exc_text`` (a log shipper) must mask it on their side.
    """
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format is the handler's to report, never the caller's problem
        return
    masked = mask(message)
    if masked != message:
        record.msg, record.args = masked, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = mask(record.exc_text)
    if record.stack_info:
        record.stack_info = mask(record.stack_info)


class SecretMaskFilter(logging.Filter):
    """Replaces every known secret in a record's final message (and exception text) by ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record in place; never drops it."""
        mask_record(record)
        return True


CORE_LOGGER = "billcore"


def install_core_masking() -> None:
    """Mask known secrets in everything logged in this process (idempotent).

    A filter on a logger only sees records logged on that very logger, not those of its children
    (``billcore.plugins``, a plugin's ``pmrobokassa.sandbox.delivery``, loggers created later), so a
    record factory masks every record as it is made, before any handler (the root's, pytest's, a log
    shipper's) sees it; the filter on the ``billcore`` logger stays as a second line. A record without a
    known secret is left exactly as it was.
    """
    core = logging.getLogger(CORE_LOGGER)
    if not any(isinstance(f, SecretMaskFilter) for f in core.filters):
        core.addFilter(SecretMaskFilter())
    current = logging.getLogRecordFactory()
    if getattr(current, "_billcore_masking", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = current(*args, **kwargs)
        if _known_secrets:
            mask_record(record)
        return record

    factory._billcore_masking = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def file_logger(stem: str, app: Flask | None = None) -> logging.Logger:
    """The logger writing to ``<LOG_DIR>/<stem>.log`` for ``app`` (default: the current app).

    The level comes from ``LOG_LEVELS[stem]``, else ``LOG_LEVEL``.
    """
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    # Looked up on every callback: resolving the path and Logger.setLevel (which clears every
    # logger's level cache) each time showed in bench/notify.py's profile.
    known = app.extensions.setdefault("billcore.file_loggers", {})
    logger = known.get(stem)
    if logger is not None:
        level = _level(app.config["LOG_LEVELS"].get(stem, app.config["LOG_LEVEL"]))
        if logger.level != level:
            logger.setLevel(level)
        return logger
    log_dir = Path(app.config["LOG_DIR"]).resolve()
    path = log_dir / f"{stem}.log"
    name = f"billcore.file.{path}"
    logger = logging.getLogger(name)
    if not getattr(logger, "_billcore_ready", False):
        with _lock:
            if not getattr(logger, "_billcore_ready", False):
                private_folder(log_dir)
                private_file(path)
                handler = logging.FileHandler(path, encoding="utf-8", delay=True)
                handler.setFormatter(OneLineFormatter(FORMAT))
                handler.addFilter(SecretMaskFilter())
                handler.addFilter(QuoteArgsFilter())
                logger.addHandler(handler)
                logger.propagate = False
                logger._billcore_ready = True  # type: ignore[attr-defined]
    logger.setLevel(_level(app.config["LOG_LEVELS"].get(stem, app.config["LOG_LEVEL"])))
    known[stem] = logger
    return logger


def _level(level: int | str) -> int:
    """A logging level given as a number or a name (``"INFO"``) as its number."""
    if isinstance(level, int):
        return level
    number = logging.getLevelName(str(level).upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}")
    return number


def init_app(app: Flask) -> None:
    """Make sure the log folder exists and the ``billcore`` logger tree masks known secrets."""
    private_folder(Path(app.config["LOG_DIR"]))
    install_core_masking()

