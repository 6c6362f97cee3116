"""Calls from billcore to Robokassa's web services over HTTP (docs/robokassa.md §6-§8).

Every URL comes from :func:`common.endpoints`, i.e. from the method's payment URL, so a sandbox at
``<prefix>/Merchant/Index.aspx`` answers all of them. No function here changes a payment: they return
what the gateway said and write one line to ``pmrobokassa.log`` per call (never a password).
"""
from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from http import cookiejar
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.adapters
from urllib3.exceptions import ConnectTimeoutError

from . import protocol
from .common import LOG_MODULE, algorithm, config, endpoints, log_line

USER_AGENT = "billcore-pmrobokassa/0.1"
ERROR_BODY_MAX = 1000  # how much of an HTTP error answer is kept to tell the admin what the gateway said


class GatewayUnavailable(Exception):
    """The gateway could not be reached or answered with an HTTP error; worth retrying later.

    ``sent`` is False only when the request certainly never left (connection refused, name not
    resolved, connect timeout, server certificate refused in the TLS handshake): the gateway cannot have
    acted on it. Otherwise (read timeout, connection reset or TLS EOF after sending, an HTTP error) it
    may have. ``status_code`` is the
    HTTP status of an error answer, and ``body`` the first :data:`ERROR_BODY_MAX` characters of its body.
    """

    def __init__(self, message: str, *, sent: bool = True, status_code: int | None = None, body: str = ""):
        super().__init__(message)
        self.sent, self.status_code = sent, status_code
        self.body = body  # the start of an error answer's body (the gateway's own words), for the admin


# causes that can only happen before a byte of the request reached the server: the connection was never
# made (refused, name not resolved, connect timeout) or TLS refused the server's certificate during the
# handshake. Anything else (reset, EOF, read timeout, an SSLError of another kind) may come after sending.
_BEFORE_SENDING = (ConnectTimeoutError,  # NewConnectionError and NameResolutionError too
                   ConnectionRefusedError, socket.gaierror, ssl.SSLCertVerificationError)


def _causes(exc: BaseException):
    """``exc`` and what it explicitly wraps: args[0], urllib3's ``reason``, ``__cause__`` (never the
    implicit ``__context__``, which may be an unrelated exception handled earlier)."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo and len(seen) < 32:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo.extend([getattr(item, "reason", None), item.__cause__,
                     *(item.args[:1] if item.args else ())])


def _never_sent(exc: requests.RequestException) -> bool:
    """True only when ``exc`` certainly happened before the request could reach the server.

    A connect timeout, a connection refused, a name not resolved or a certificate refused in the TLS
    handshake. Any other failure (an SSLError such as an EOF while reading the answer, a reset, a read
    timeout) may have come after the request was sent: the gateway may have acted on it.
    """
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError):  # SSLError and ConnectTimeout are ConnectionErrors
        return False
    return any(isinstance(cause, _BEFORE_SENDING) for cause in _causes(exc))


def _unavailable(exc: requests.RequestException, url: str) -> GatewayUnavailable:
    return GatewayUnavailable(f"{type(exc).__name__} calling {url}", sent=not _never_sent(exc))


# --------------------------------------------------------------------------------------------------
# Transport: one HTTP session per thread, so connections (and TLS sessions) are reused
# --------------------------------------------------------------------------------------------------

_local = threading.local()


class _NoCookies(cookiejar.DefaultCookiePolicy):
    """Never keep a cookie: a session serves every shop of this module, and the web services need none."""

    def set_ok(self, cookie, request):  # noqa: D102 - the cookiejar API
        return False

    def return_ok(self, cookie, request):  # noqa: D102
        return False


class _GatewaySession(requests.Session):
    """A ``requests.Session`` that reads the environment's proxy and CA settings once per scheme and host.

    requests looks them up on every call (each a scan of the whole environment, a good part of a small
    call's cost); which proxy applies depends only on the URL's scheme and host (``no_proxy`` included),
    Robokassa's web services are on a few hosts, and a batch job's environment does not change while it
    runs.
    """

    _MAX_REMEMBERED = 64

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[Any, ...], dict[str, Any]] = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # noqa: D102
        key = (*urlsplit(url)[:2], tuple(sorted((proxies or {}).items())), stream, verify, cert)
        found = self._environment.get(key)
        if found is None:
            found = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if len(self._environment) < self._MAX_REMEMBERED:
                self._environment[key] = found
        # a copy, down to the proxies' mapping: what requests does with it must not change what is kept
        return {name: dict(value) if isinstance(value, dict) else value for name, value in found.items()}


def http_session() -> requests.Session:
    """This thread's HTTP session for Robokassa's web services.

    The batch jobs call from a pool of threads (``GATEWAY_WORKERS``); a ``requests.Session`` is not
    meant to be shared between threads, so each thread keeps its own, with keep-alive connections
    (``PMROBOKASSA_HTTP_POOL`` per host) reused from call to call instead of a new TCP and TLS handshake
    each time. No retries (a POST may have reached the gateway) and no cookies.
    """
    session = getattr(_local, "session", None)
    if session is None:
        session = _GatewaySession()
        size = max(1, int(config("PMROBOKASSA_HTTP_POOL")))
        adapter = requests.adapters.HTTPAdapter(pool_connections=size, pool_maxsize=size, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.cookies.set_policy(_NoCookies())
        session.headers["User-Agent"] = USER_AGENT
        _local.session = session
    return session


def close_http_session() -> None:
    """Close this thread's HTTP session and its connections (tests; a thread about to end)."""
    session = getattr(_local, "session", None)
    if session is not None:
        _local.session = None
        session.close()


def _http_error(response: requests.Response, url: str) -> GatewayUnavailable:
    return GatewayUnavailable(f"HTTP {response.status_code} from {url}", status_code=response.status_code,
                              body=response.text[:ERROR_BODY_MAX])


def _post(url: str, *, data: Any = None, headers: Mapping[str, str] | None = None,
          timeout: float | None = None) -> requests.Response:
    try:
        response = http_session().post(url, data=data, headers=dict(headers or {}),
                                       timeout=timeout or config("PMROBOKASSA_HTTP_TIMEOUT"), allow_redirects=False)
    except requests.RequestException as exc:
        raise _unavailable(exc, url) from None
    if response.status_code >= 400:
        raise _http_error(response, url)
    return response


def _get(url: str, *, params: Mapping[str, str], timeout: float | None = None) -> requests.Response:
    try:
        response = http_session().get(url, params=params,
                                      timeout=timeout or config("PMROBOKASSA_HTTP_TIMEOUT"), allow_redirects=False)
    except requests.RequestException as exc:
        raise _unavailable(exc, url) from None
    if response.status_code >= 400:
        raise _http_error(response, url)
    return response


# --------------------------------------------------------------------------------------------------
# OpStateExt (§6.1)
# --------------------------------------------------------------------------------------------------


def op_state(settings: Mapping[str, Any], inv_id: int) -> protocol.OpState:
    """Ask OpStateExt about invoice ``inv_id``; signature ``MerchantLogin:InvoiceID:Password#2``.

    Raises :class:`GatewayUnavailable` (network, HTTP error) or :class:`protocol.ProtocolError`
    (unparsable answer). A non-zero result code is returned in ``OpState.result_code``.
    """
    login = str(settings.get("identifier") or "")
    signature = protocol.opstate_signature(algorithm(settings), login, str(inv_id),
                                           str(settings.get("password2") or ""))
    url = endpoints(settings).xml_method_url("OpStateExt")
    response = _post(url, data={"MerchantLogin": login, "InvoiceID": str(inv_id), "Signature": signature})
    state = protocol.parse_opstate(response.content)
    log_line(LOG_MODULE, inv_id, "OpStateExt answered", call="OpStateExt", result_code=state.result_code,
             state_code=state.state_code, description=state.description)
    return state


# --------------------------------------------------------------------------------------------------
# GetCurrencies (§6.2), cached per identifier and URL
# --------------------------------------------------------------------------------------------------

_cache: dict[tuple[str, str, str], tuple[float, list[protocol.CurrencyGroup] | None]] = {}
_cache_lock = threading.Lock()


def clear_currencies_cache() -> None:
    """Forget every cached GetCurrencies answer (tests, or after the settings changed)."""
    with _cache_lock:
        _cache.clear()


def get_currencies(identifier: str, url: str, language: str = "en") -> list[protocol.CurrencyGroup] | None:
    """The payment options GetCurrencies offers shop ``identifier``, or None when it cannot be asked.

    Answers (and failures, for a shorter time) are cached per identifier, URL and language for
    ``PMROBOKASSA_CURRENCIES_CACHE_SECONDS``, so the settings form stays fast when the gateway is slow.
    """
    if not identifier or not url:
        return None
    key = (identifier, url, language)
    now = time.monotonic()
    ttl = float(config("PMROBOKASSA_CURRENCIES_CACHE_SECONDS"))
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
    groups: list[protocol.CurrencyGroup] | None
    try:
        service = protocol.endpoints_from_payment_url(url).xml_method_url("GetCurrencies")
        response = _get(service, params={"MerchantLogin": identifier, "Language": language},
                        timeout=float(config("PMROBOKASSA_CURRENCIES_TIMEOUT")))
        groups = protocol.parse_currencies(response.content) or None
        log_line(LOG_MODULE, None, "GetCurrencies answered", call="GetCurrencies", identifier=identifier,
                 groups=len(groups or ()))
    except (GatewayUnavailable, ValueError) as exc:  # ProtocolError is a ValueError
        groups = None
        log_line(LOG_MODULE, None, "GetCurrencies failed, using the built-in list", call="GetCurrencies",
                 identifier=identifier, error=exc)
        ttl = min(ttl, 60.0)  # retry a failed gateway sooner than a good answer expires
    with _cache_lock:
        _cache[key] = (now + ttl, groups)
    return groups


# --------------------------------------------------------------------------------------------------
# Refund API (§8)
# --------------------------------------------------------------------------------------------------


def refund_create(settings: Mapping[str, Any], *, payment_id: int, op_key: str, refund_sum: Decimal | None,
                  invoice_items: Sequence[protocol.RefundItem] | None = None) -> protocol.RefundCreateAnswer:
    """POST a refund request (JWT signed with Password #3) to ``Refund/Create``.

    The body is the token as a JSON string (``"eyJ…"``, quoted) with ``Content-Type: application/json``,
    as Robokassa's official CMS plugins and its published API description send it. ``refund_sum`` None
    asks for the whole operation; ``invoice_items`` are the lines of the refund receipt (54-FZ). Raises
    :class:`GatewayUnavailable` (its ``body`` holds the gateway's words for an HTTP error) or
    :class:`protocol.ProtocolError`.
    """
    token = protocol.make_refund_jwt(str(settings.get("password3") or ""), op_key=op_key, refund_sum=refund_sum,
                                     invoice_items=invoice_items)
    response = _post(endpoints(settings).refund_create_url, data=refund_request_body(token),
                     headers={"Content-Type": "application/json"})
    answer = protocol.parse_refund_create_answer(response.content)
    log_line(LOG_MODULE, payment_id, "Refund/Create answered", call="Refund/Create", success=answer.success,
             request_id=answer.request_id, message=answer.message,
             refund_sum=refund_sum if refund_sum is not None else "full",
             receipt_lines=len(invoice_items) if invoice_items else 0)
    return answer


def refund_request_body(token: str) -> bytes:
    """The body of ``Refund/Create``: the JWT as a JSON string literal (a JWT needs no escaping)."""
    return json.dumps(token).encode("ascii")


def refund_state(settings: Mapping[str, Any], *, payment_id: int, request_id: str) -> protocol.RefundState:
    """GET ``Refund/GetState?id=<requestId>``. Raises :class:`GatewayUnavailable` or ``ProtocolError``."""
    response = _get(endpoints(settings).refund_state_url, params={"id": request_id})
    state = protocol.parse_refund_state_answer(response.content)
    log_line(LOG_MODULE, payment_id, "Refund/GetState answered", call="Refund/GetState", request_id=request_id,
             label=state.label, message=state.message)
    return state


# --------------------------------------------------------------------------------------------------
# Recurring child charge (§7.1)
# --------------------------------------------------------------------------------------------------


def recurring(settings: Mapping[str, Any], fields: Mapping[str, str], *, payment_id: int) -> str:
    """POST a child charge to ``/Merchant/Recurring`` and return the answer's text (``OK<InvoiceID>``)."""
    response = _post(endpoints(settings).recurring_url, data=dict(fields))
    text = response.text.strip()
    log_line(LOG_MODULE, payment_id, "Recurring answered", call="Recurring", answer=text[:100])
    return text

