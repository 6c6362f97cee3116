"""Configuration layers and the instance folder's generated keys.

Precedence, lowest first: built-in defaults, ``<instance>/config.py``, environment variables prefixed
``BILLCORE_`` (``BILLCORE_DATABASE_URL`` sets ``DATABASE_URL``), then the ``test_config`` mapping.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from flask import Flask

DEFAULTS: dict[str, Any] = {
    # The public absolute URL gateways call back; blank means "the URL the request came in on".
    "BASE_URL": "",
    "DATABASE_URL": None,  # default: SQLite file in the instance folder
    "LOG_DIR": None,  # default: <instance>/var
    "LOG_LEVELS": {},  # per log file stem, e.g. {"pmrobokassa": "DEBUG"}
    "LOG_LEVEL": "INFO",
    # None = every discovered module (development-only ones only in debug/testing); or a list of keys.
    "PAYMENT_MODULES": None,
    "DEV_MODULES": False,
    "EXTRA_MODULES": {},  # key -> import path of modules loaded without an entry point
    "LANGUAGES": ["en", "ru"],
    "BABEL_DEFAULT_LOCALE": "en",
    "DEFAULT_CURRENCY": "RUB",
    # the time zone of the dates pages show to a user who has not chosen one (an IANA name)
    "DEFAULT_TIMEZONE": "Europe/Moscow",
    # the return page: after this many seconds of waiting for the gateway it says what happens next
    "RETURN_WAIT_NOTICE_SECONDS": 120,
    # the overview flags a payment still awaiting payment this many hours after it went to the gateway
    "STUCK_INPAY_HOURS": 2,
    # how customers reach support (shown when a payment takes long); blank: "our support team"
    "SUPPORT_CONTACT": "",
    "WIZARD_DRAFT_TTL_MINUTES": 60,
    "ADMIN_PAGE_SIZE": 50,
    "CLIENT_PAGE_SIZE": 20,
    "WTF_CSRF_TIME_LIMIT": None,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "REMEMBER_COOKIE_HTTPONLY": True,
    "REMEMBER_COOKIE_SAMESITE": "Lax",
    # Every wait for the database ends well before the WSGI server's worker timeout (gunicorn's 30 s
    # default, the documented setting), so a caller gets billcore's own 503 and never a killed worker.
    "SQLITE_BUSY_TIMEOUT_MS": 10000,
    "POSTGRES_LOCK_TIMEOUT_MS": 10000,  # PostgreSQL lock_timeout: waiting for a row or table lock
    "POSTGRES_STATEMENT_TIMEOUT_MS": 15000,  # PostgreSQL statement_timeout: any one statement
    # A pooled PostgreSQL connection idle for longer than this is tested before use (one it finds
    # closed, e.g. by a server restart, is replaced); one in steady use is not (billcore.db).
    "POSTGRES_PING_AFTER_IDLE_SECONDS": 10,
    "WORKER_TIMEOUT_SECONDS": 30,  # the documented gunicorn --timeout the limits above stay under
    # Request bodies: every request, and the gateways' callbacks (a few fields) much less.
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    "CALLBACK_MAX_CONTENT_LENGTH": 16 * 1024,
    # What a refused callback leaves in the database: its protocol's known fields, each cut to this many
    # characters; at most CALLBACK_REFUSED_RECORDS of them per script and payment (or unknown payment)
    # and CALLBACK_REFUSED_RECORDS_TOTAL per script in a window; beyond that only the log line.
    "CALLBACK_FIELD_MAX": 256,
    "CALLBACK_REFUSED_RECORDS": "10/minute",
    "CALLBACK_REFUSED_RECORDS_TOTAL": "60/minute",
    # Sessions: a login lasts this long at most (seconds or a timedelta), checked on the server.
    "PERMANENT_SESSION_LIFETIME": 12 * 3600,
    # Failed logins per e-mail and per client address; Flask-Limiter's storage: memory:// counts per
    # process, redis://host:6379 is shared by every worker and host.
    "LOGIN_LIMIT_PER_ACCOUNT": "10 per 15 minutes",
    "LOGIN_LIMIT_PER_ADDRESS": "30 per 15 minutes",
    "RATELIMIT_STORAGE_URI": "memory://",
    # Password checks running at once on a host (each takes a CPU core for a moment; 0 = no cap), and per
    # host in a window (None = no limit): what guessing from many addresses can take from the gateways.
    "LOGIN_HASH_SLOTS": 1,
    "LOGIN_HASH_RATE": "3/second",
    "RATELIMIT_HEADERS_ENABLED": True,
    # An unreachable Redis must not turn logins into 500s: count in memory meanwhile.
    "RATELIMIT_SWALLOW_ERRORS": True,
    "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
    "TRUSTED_PROXIES": 0,  # reverse proxies in front of billcore (X-Forwarded-For), for client addresses
    "SQLITE_CHECKPOINT_EVERY": 100,  # commits per process between WAL checkpoints (billcore.db)
    # A refund still "requested" after this many hours is flagged for an admin by `payments check`.
    "REFUND_ATTENTION_HOURS": 24,
    # A refund the gateway gave no id for may be settled by hand this many minutes after it was requested
    # (not sooner: its gateway request may still be under way, and failing it then could refund twice).
    "REFUND_SETTLE_GRACE_MINUTES": 15,
    # Gateway calls in flight per payment module and process in the batch jobs (payments check,
    # recurring run): {module: threads}, and the number for modules not listed (billcore.gateway_pool).
    "GATEWAY_WORKERS": {},
    "GATEWAY_WORKERS_DEFAULT": 8,
    # Of those threads, how many may be inside a database write transaction at once (per process); the
    # others wait for their turn with nothing open (billcore.write_priority).
    "BATCH_WRITERS": 2,
    # `payments check` does not ask again about a payment it (on any host) asked about less than this many
    # seconds ago. Two hosts whose cron starts the job a moment apart would otherwise each ask about the
    # payments the other polled before it began. 0: ask about every open payment on every run.
    "CHECK_AGAIN_AFTER_SECONDS": 60,
}

SECRET_KEY_FILE = "secret_key"
ENCRYPTION_KEY_FILE = "encryption.key"


def load_config(app: Flask, test_config: dict[str, Any] | None) -> None:
    """Fill ``app.config`` from every layer in order and derive the values that depend on others."""
    app.config.from_mapping(DEFAULTS)
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env("BILLCORE")
    if test_config:
        app.config.from_mapping(test_config)

    instance = Path(app.instance_path)
    private_folder(instance)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _read_or_create(instance / SECRET_KEY_FILE, lambda: secrets.token_hex(32))
    if not app.config.get("ENCRYPTION_KEY"):
        app.config["ENCRYPTION_KEY"] = _read_or_create(
            instance / ENCRYPTION_KEY_FILE, lambda: Fernet.generate_key().decode()
        )
    if not app.config.get("DATABASE_URL"):
        app.config["DATABASE_URL"] = f"sqlite:///{instance / 'billcore.sqlite'}"
        private_file(instance / "billcore.sqlite")  # SQLite gives its -wal and -shm files the same mode
    app.config["DATABASE_URL"] = normalise_database_url(str(app.config["DATABASE_URL"]))
    if not app.config.get("LOG_DIR"):
        app.config["LOG_DIR"] = str(instance / "var")
    base_url = str(app.config.get("BASE_URL") or "").rstrip("/")
    app.config["BASE_URL"] = base_url
    if base_url.startswith("https://") and app.config.get("SECURE_COOKIES", True):
        app.config["SESSION_COOKIE_SECURE"] = True
        app.config["REMEMBER_COOKIE_SECURE"] = True
    app.config["SQLALCHEMY_DATABASE_URI"] = app.config["DATABASE_URL"]


def private_folder(path: Path) -> None:
    """Create ``path`` (and missing parents) readable by the owner only (0700); an existing folder is
    left as the operator set it."""
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)  # mkdir's mode is reduced by the umask


def private_file(path: Path) -> None:
    """Create ``path`` empty and readable by the owner only (0600) unless it exists (then left alone)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def normalise_database_url(url: str) -> str:
    """Use the psycopg 3 driver for a plain ``postgresql://`` URL (the one operators usually write)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _read_or_create(path: Path, make) -> str:
    """Return the key stored in ``path``, creating it (readable by the owner only) on first use.

    The key is written to a temporary file first and linked into place, so a process starting at the
    same moment reads either no file or the whole key, never an empty one. An existing file without a
    key (a disk filled up, an edit gone wrong) is refused: a new key would make every stored secret
    unreadable.
    """
    try:
        return _stored_key(path)
    except FileNotFoundError:
        pass
    value = make()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(value + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(temporary, path)  # atomic; fails if another process got there first
        except FileExistsError:
            return _stored_key(path)
    finally:
        temporary.unlink(missing_ok=True)
    return value


def _stored_key(path: Path) -> str:
    value = path.read_text().strip()
    if not value:
        raise RuntimeError(f"{path} is empty: restore the key from a backup (a new key would make the "
                           "stored payment method secrets unreadable), or delete the file on a new install")
    return value
