"""Per-module log files in ``LOG_DIR`` (``pmrobokassa.log``, ``rkresult.log`` ...), secrets masked.

Each file gets one line per event. Several worker processes may append to the same file: each record is
written with a single ``write`` on a file opened in append mode, which Linux keeps whole.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from flask import Flask, current_app

from .crypto import MASK

_known_secrets: set[str] = set()
_lock = threading.Lock()

FORMAT = "%(asctime)s %(process)d %(levelname)s %(message)s"


def remember_secrets(values) -> None:
    """Add secret values that must be masked in every log line from now on (done whenever a payment
    method's secrets are decrypted)."""
    with _lock:
        _known_secrets.update(v for v in values if v and len(v) >= 4)


class SecretMaskFilter(logging.Filter):
    """Replaces every known secret in a record's final message by ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for secret in list(_known_secrets):
            if secret in message:
                message = message.replace(secret, MASK)
        record.msg, record.args = message, None
        return True


def file_logger(stem: str, app: Flask | None = None) -> logging.Logger:
    """The logger writing to ``<LOG_DIR>/<stem>.log`` for ``app`` (default: the current app).

    The level comes from ``LOG_LEVELS[stem]``, else ``LOG_LEVEL``.
    """
    app = app or current_app._get_current_object()
    log_dir = Path(app.config["LOG_DIR"]).resolve()
    path = log_dir / f"{stem}.log"
    name = f"billcore.file.{path}"
    logger = logging.getLogger(name)
    if not getattr(logger, "_billcore_ready", False):
        with _lock:
            if not getattr(logger, "_billcore_ready", False):
                log_dir.mkdir(parents=True, exist_ok=True)
                handler = logging.FileHandler(path, encoding="utf-8", delay=True)
                handler.setFormatter(logging.Formatter(FORMAT))
                handler.addFilter(SecretMaskFilter())
                logger.addHandler(handler)
                logger.propagate = False
                logger._billcore_ready = True  # type: ignore[attr-defined]
    level = app.config["LOG_LEVELS"].get(stem, app.config["LOG_LEVEL"])
    logger.setLevel(level)
    return logger


def init_app(app: Flask) -> None:
    """Make sure the log folder exists."""
    Path(app.config["LOG_DIR"]).mkdir(parents=True, exist_ok=True)
