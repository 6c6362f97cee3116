"""Calls from billcore to Robokassa's web services over HTTP (docs/robokassa.md §6-§8).

Every URL comes from :func:`common.endpoints`, i.e. from the method's payment URL, so a sandbox at
``<prefix>/Merchant/Index.aspx`` answers all of them. No function here changes a payment: they return
what the gateway said and write one line to ``pmrobokassa.log`` per call (never a password).
"""
from __future__ import annotations

import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

import certifi
import urllib3
from requests.utils import get_environ_proxies, select_proxy
from urllib3.exceptions import ConnectTimeoutError
from urllib3.exceptions import HTTPError as TransportError
from werkzeug.http import parse_options_header

from . import protocol
from .common import LOG_MODULE, algorithm, config, endpoints, log_line

USER_AGENT = "billcore-pmrobokassa/0.1"
ERROR_BODY_MAX = 1000  # how much of an HTTP error answer is kept to tell the admin what the gateway said
ANSWER_MAX = 1024 * 1024  # bytes of an answer read at most: Robokassa's are a few kB (GetCurrencies the largest)


class GatewayUnavailable(Exception):
    """The gateway could not be reached or answered with an HTTP error; worth retrying later.

    ``sent`` is False only when the request certainly never left (connection refused, name not
    resolved, connect timeout, server certificate refused in the TLS handshake): the gateway cannot have
    acted on it. Otherwise (read timeout, connection reset or TLS EOF after sending, an HTTP error, an
    answer too large to read) it may have. ``status_code`` is the HTTP status of an error answer, and
    ``body`` the first :data:`ERROR_BODY_MAX` characters of its body.
    """

    def __init__(self, message: str, *, sent: bool = True, status_code: int | None = None, body: str = ""):
        super().__init__(message)
        self.sent, self.status_code = sent, status_code
        self.body = body  # the start of an error answer's body (the gateway's own words), for the admin


# causes that can only happen before a byte of the request reached the server: the connection was never
# made (refused, name not resolved, connect timeout) or TLS refused the server's certificate during the
# handshake. Anything else (reset, EOF, read timeout, an SSLError of another kind) may come after sending.
_BEFORE_SENDING = (ConnectTimeoutError,  # urllib3's NewConnectionError and NameResolutionError too
                   ConnectionRefusedError, socket.gaierror, ssl.SSLCertVerificationError)


def _causes(exc: BaseException):
    """``exc`` and what it explicitly wraps: args[0], urllib3's ``reason`` and ``original_error`` (a proxy
    that could not be reached), ``__cause__`` (never the implicit ``__context__``, which may be an
    unrelated exception handled earlier)."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo and len(seen) < 32:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo.extend([getattr(item, "reason", None), getattr(item, "original_error", None), item.__cause__,
                     *(item.args[:1] if item.args else ())])


def _never_sent(exc: BaseException) -> bool:
    """True only when ``exc`` certainly happened before the request could reach the server.

    A connect timeout, a connection refused, a name not resolved or a certificate refused in the TLS
    handshake. Any other failure (an SSLError such as an EOF while reading the answer, a reset, a read
    timeout) may have come after the request was sent: the gateway may have acted on it.
    """
    return any(isinstance(cause, _BEFORE_SENDING) for cause in _causes(exc))


def _unavailable(exc: BaseException, url: str) -> GatewayUnavailable:
    return GatewayUnavailable(f"{type(exc).__name__} calling {url}", sent=not _never_sent(exc))


# --------------------------------------------------------------------------------------------------
# Transport: urllib3's connection pools, one set per thread, so connections (and TLS sessions) are reused
# --------------------------------------------------------------------------------------------------


def _environment_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``https_proxy``, ``http_proxy``, ``all_proxy``, either
    case, read as the requests library reads them: ``no_proxy`` with host names, ports and networks), or
    None. A proxy written without a scheme (``proxy.example:3128``) is taken as ``http://``."""
    proxy = select_proxy(url, get_environ_proxies(url))
    if not proxy:
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _ca_options() -> dict[str, str]:
    """What a gateway's TLS certificate is checked against: ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE``
    when set (a file, or a folder of hashed certificates, as for the requests library), else certifi's
    bundle."""
    path = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
    return {"ca_cert_dir": path} if os.path.isdir(path) else {"ca_certs": path}


class HttpPools:
    """One thread's connections to Robokassa's web services: a urllib3 pool manager for direct calls and
    one per proxy, with at most ``size`` keep-alive connections per host, no retries (a POST may have
    reached the gateway), no redirects followed and no cookies kept.

    Which proxy applies is read from the environment once per scheme and host (``no_proxy``
    included): the web services are on a few hosts, and a batch job's environment does not change while
    it runs.
    """

    _MAX_REMEMBERED = 64

    def __init__(self, size: int) -> None:
        self.size = size
        self._managers: dict[str | None, urllib3.PoolManager] = {}
        self._proxies: dict[tuple[str, str], str | None] = {}

    def proxy_for(self, url: str) -> str | None:
        """The proxy a call to ``url`` goes through (None: directly)."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        if key in self._proxies:
            return self._proxies[key]
        proxy = _environment_proxy(url)
        if len(self._proxies) < self._MAX_REMEMBERED:
            self._proxies[key] = proxy
        return proxy

    def manager_for(self, url: str) -> urllib3.PoolManager:
        """The pool manager that calls ``url`` (through its proxy, if any)."""
        proxy = self.proxy_for(url)
        manager = self._managers.get(proxy)
        if manager is None:
            manager = self._managers[proxy] = self._make(proxy)
        return manager

    def _make(self, proxy: str | None) -> urllib3.PoolManager:
        options: dict[str, Any] = {"num_pools": 8, "maxsize": self.size, "retries": False,
                                   "cert_reqs": "CERT_REQUIRED", **_ca_options()}
        if proxy is None:
            return urllib3.PoolManager(**options)
        parts = urlsplit(proxy)
        if parts.username is not None:  # credentials in the proxy's URL, as requests took them
            options["proxy_headers"] = urllib3.make_headers(
                proxy_basic_auth=f"{unquote(parts.username)}:{unquote(parts.password or '')}")
        return urllib3.ProxyManager(proxy, **options)

    def close(self) -> None:
        """Close every connection of this thread's pools."""
        for manager in self._managers.values():
            manager.clear()
        self._managers.clear()


_local = threading.local()


def http_pools() -> HttpPools:
    """This thread's connection pools for Robokassa's web services.

    The batch jobs call from a pool of threads (``GATEWAY_WORKERS``); each thread keeps its own
    keep-alive connections (``PMROBOKASSA_HTTP_POOL`` per host), reused from call to call instead of a
    new TCP and TLS handshake each time.
    """
    pools = getattr(_local, "pools", None)
    if pools is None:
        pools = _local.pools = HttpPools(max(1, int(config("PMROBOKASSA_HTTP_POOL"))))
    return pools


def close_http_pools() -> None:
    """Close this thread's connections (tests; a thread about to end)."""
    pools = getattr(_local, "pools", None)
    if pools is not None:
        _local.pools = None
        pools.close()


@dataclass(frozen=True)
class Answer:
    """A web service's answer: its HTTP status, body and the body's character set."""

    status_code: int
    content: bytes
    charset: str = "utf-8"

    @property
    def text(self) -> str:
        """The body as text (undecodable bytes replaced)."""
        try:
            return self.content.decode(self.charset, "replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", "replace")


def _call(method: str, url: str, *, body: bytes | str | None = None, headers: Mapping[str, str] | None = None,
          timeout: float | None = None) -> Answer:
    """Send one request and read its answer (at most :data:`ANSWER_MAX` bytes); raises
    :class:`GatewayUnavailable` for a failure on the way or an HTTP error."""
    seconds = float(timeout or config("PMROBOKASSA_HTTP_TIMEOUT"))
    try:
        manager = http_pools().manager_for(url)
    except (TransportError, ValueError) as exc:  # a proxy urllib3 cannot use (socks5://...): nothing left
        # the type only: the exception's text may quote the proxy's URL, credentials included
        raise GatewayUnavailable(f"{type(exc).__name__} preparing the call to {url}", sent=False) from None
    try:
        response = manager.urlopen(
            method, url, body=body, headers={"User-Agent": USER_AGENT, **(headers or {})},
            timeout=urllib3.Timeout(connect=seconds, read=seconds), redirect=False, retries=False,
            preload_content=False)
        complete = False
        try:
            content = response.read(ANSWER_MAX + 1)
            complete = len(content) <= ANSWER_MAX
        finally:
            if complete:
                response.release_conn()  # read to the end: the connection goes back to the pool
            else:
                response.close()  # an unread rest (or a failure while reading): never reused
    except (TransportError, OSError) as exc:
        raise _unavailable(exc, url) from None
    if not complete:
        raise GatewayUnavailable(f"an answer of over {ANSWER_MAX} bytes from {url}")
    charset = parse_options_header(response.headers.get("Content-Type"))[1].get("charset") or "utf-8"
    answer = Answer(response.status, content, charset)
    if answer.status_code >= 400:
        raise GatewayUnavailable(f"HTTP {answer.status_code} from {url}", status_code=answer.status_code,
                                 body=answer.text[:ERROR_BODY_MAX])
    return answer


def _post(url: str, *, data: Mapping[str, str] | bytes | None = None, headers: Mapping[str, str] | None = None,
          timeout: float | None = None) -> Answer:
    """POST ``data``: form fields (sent form-encoded) or a body as it is (with its ``headers``)."""
    if isinstance(data, Mapping):
        headers = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        data = urlencode(data).encode("ascii")  # percent-encoded: ASCII whatever the values
    return _call("POST", url, body=data, headers=headers, timeout=timeout)


def _get(url: str, *, params: Mapping[str, str], timeout: float | None = None) -> Answer:
    """GET ``url`` with ``params`` added to its query."""
    separator = "&" if urlsplit(url).query else "?"
    return _call("GET", f"{url}{separator}{urlencode(params)}" if params else url, timeout=timeout)


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

