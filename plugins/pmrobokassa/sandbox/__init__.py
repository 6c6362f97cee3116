"""The Robokassa sandbox: a local emulator of the gateway, served by billcore itself.

Off unless ``PMROBOKASSA_SANDBOX`` is true (the demo turns it on). It answers under
``/sandbox/robokassa/`` the way docs/robokassa.md describes auth.robokassa.ru and services.robokassa.ru:
the payment page (``Merchant/Index.aspx``), the ResultURL notification with retries and fault
injection, the Success/Fail redirects, the XML web service (``OpStateExt``, ``GetCurrencies``), child
recurring charges and the Refund API. A payment method whose URL is
``<base>/sandbox/robokassa/Merchant/Index.aspx`` then uses it for every endpoint.

Configuration (``app.config`` keys, or environment variables with the ``BILLCORE_`` prefix):

* ``PMROBOKASSA_SANDBOX`` - true to serve the sandbox (never on a production installation: its pages
  and its "send again" button need no login, like a public gateway).
* ``PMROBOKASSA_SANDBOX_SHOPS`` - list of shops ``{login, password1, password2, password3,
  hash_algorithm, result_url, success_url, fail_url, result_method, success_method, fail_method,
  test_password1, test_password2}``; missing URLs default to ``<BASE_URL>/mancgi/rkresult`` (``rksuccess``,
  ``rkfail``); without ``BASE_URL`` the configured ``SERVER_NAME``, else ``http://127.0.0.1:5000`` -
  never the request's Host header. Absent: one shop ``demo-shop`` (see :data:`.shops.DEFAULT_SHOP`), as
  the demo uses.
* ``PMROBOKASSA_SANDBOX_FAULT`` - the notification mode preselected on the payment page: ``normal``,
  ``twice``, ``parallel``, ``late``, ``bad_signature`` or ``none``.
* ``PMROBOKASSA_SANDBOX_RETRY_DELAYS`` (default ``[0, 1, 2, 5]`` seconds; at most 20 attempts),
  ``PMROBOKASSA_SANDBOX_TIMEOUT`` (10 s), ``PMROBOKASSA_SANDBOX_PARALLEL`` (5 concurrent deliveries),
  ``PMROBOKASSA_SANDBOX_LATE_SECONDS`` (3 s).
* ``PMROBOKASSA_SANDBOX_WORKERS`` (4, at most 32) delivery threads per process and
  ``PMROBOKASSA_SANDBOX_QUEUE`` (100) deliveries waiting for them; beyond that a delivery is dropped
  with a line in ``pmrobokassa.log`` (status polling then settles the payment).
* ``PMROBOKASSA_SANDBOX_FEE_PERCENT`` (3.9) - the ``Fee`` reported in notifications.
* ``PMROBOKASSA_SANDBOX_REFUND_SECONDS`` (2) - a refund stays ``processing`` at most this long (or until
  the second GetState); ``PMROBOKASSA_SANDBOX_REFUND=cancel`` makes refunds end ``canceled``.
* ``PMROBOKASSA_SANDBOX_RECURRING=refuse`` - child recurring charges are created and then refused;
  ``odd-answer`` - they are made, but answered with an HTML page (200) instead of ``OK<InvoiceID>``.
* ``PMROBOKASSA_SANDBOX_DB`` - the SQLite file of the sandbox (default: in the instance folder).
* ``PMROBOKASSA_SANDBOX_LATENCY`` - per web service, a fixed delay, random jitter and a share of
  requests that time out, e.g. ``{"*": {"delay": 0.2}}`` (see :mod:`.latency`), so benchmarks and tests
  can stand in for a slow real gateway.
"""
from __future__ import annotations

from flask import Blueprint, Flask

SANDBOX_PREFIX = "/sandbox/robokassa"


def sandbox_enabled(app: Flask) -> bool:
    """True when the app's config turns the sandbox on (``PMROBOKASSA_SANDBOX``)."""
    value = app.config.get("PMROBOKASSA_SANDBOX")
    if isinstance(value, str):  # BILLCORE_PMROBOKASSA_SANDBOX=yes and friends
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def sandbox_blueprints(app: Flask) -> list[Blueprint]:
    """The sandbox's blueprint when enabled (else nothing), exempted from billcore's CSRF protection:
    its endpoints are "the gateway", called by browsers and servers that carry no billcore token."""
    if not sandbox_enabled(app):
        return []
    from .views import bp

    csrf = app.extensions.get("csrf")
    if csrf is not None:
        csrf.exempt(bp)
    return [bp]
