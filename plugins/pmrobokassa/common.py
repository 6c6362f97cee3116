"""Small helpers shared by the Robokassa module's parts: settings, endpoints, log lines, config."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import current_app

from billcore.gateway import file_logger, quote

from . import protocol

KEY = "pmrobokassa"
CURRENCY = "RUB"  # Robokassa's OutSum is always in roubles (docs/robokassa.md §1.2)

# The log files of docs/design.md §6: the module's own and one per CGI-style script.
LOG_MODULE, LOG_PAYMENT, LOG_RESULT, LOG_SUCCESS, LOG_FAIL = (
    "pmrobokassa", "rkpayment", "rkresult", "rksuccess", "rkfail")

# Robokassa's documented notification addresses (docs/robokassa.md §3).
DEFAULT_ALLOWED_IPS = ("185.59.216.65", "185.59.217.65")

CONFIG_DEFAULTS: dict[str, Any] = {
    "PMROBOKASSA_CHECK_IP": False,
    "PMROBOKASSA_ALLOWED_IPS": list(DEFAULT_ALLOWED_IPS),
    "PMROBOKASSA_HTTP_TIMEOUT": 10,  # seconds, web-service calls (OpStateExt, Refund API, Recurring)
    "PMROBOKASSA_HTTP_POOL": 2,  # keep-alive connections per host and thread (gateway.http_pools)
    "PMROBOKASSA_CURRENCIES_TIMEOUT": 3,  # seconds, GetCurrencies while the settings form is shown
    "PMROBOKASSA_CURRENCIES_CACHE_SECONDS": 300,
    # None = ask GetCurrencies, except under TESTING where only non-standard (sandbox) URLs are asked,
    # so that a test run never talks to the real gateway.
    "PMROBOKASSA_FETCH_CURRENCIES": None,
}


def config(name: str) -> Any:
    """A ``PMROBOKASSA_*`` setting of the current app, falling back to the module's default."""
    return current_app.config.get(name, CONFIG_DEFAULTS[name])


def algorithm(settings: Mapping[str, Any]) -> str:
    """The method's hash algorithm (lowercase name), MD5 when not set."""
    return str(settings.get("hash_algorithm") or "md5").lower()


def payment_url(settings: Mapping[str, Any]) -> str:
    """The payment page URL of the method (the standard one when not set)."""
    return str(settings.get("url") or protocol.STANDARD_PAYMENT_URL).strip()


def endpoints(settings: Mapping[str, Any]) -> protocol.Endpoints:
    """Every gateway URL, derived from the method's payment URL so a sandbox stands in for all."""
    return protocol.endpoints_from_payment_url(payment_url(settings))


def logger(stem: str) -> logging.Logger:
    """The file logger ``<LOG_DIR>/<stem>.log``."""
    return file_logger(stem)


def log_line(stem: str, payment_id: int | str | None, outcome: str, level: int = logging.INFO,
             **facts: Any) -> None:
    """Write one line ``payment=<id> outcome=<text> key=value...`` to ``<stem>.log``.

    Every value is written by :func:`billcore.logs.quote` (quoted and escaped unless a plain token), so
    gateway data can add neither a line nor a field. Callers pass only non-secret facts; the core's
    filter masks known secrets as a second line of defence.
    """
    fields = [("payment", payment_id if payment_id is not None else "-"), ("outcome", outcome),
              *((k, v) for k, v in facts.items() if v not in (None, ""))]
    # built here, not as %-arguments: the file handler would quote the already quoted text again
    logger(stem).log(level, " ".join(f"{k}={quote(v)}" for k, v in fields))
