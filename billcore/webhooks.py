"""Outbound webhooks and customer e-mails, sent from the outbox (:mod:`billcore.outbox`).

``flask --app billcore webhooks deliver`` (cron, every minute) runs :func:`deliver`:

1. *dispatch*: outbox events not yet dispatched are locked (``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
   SQLite's write lock) and fanned out into deliveries, one per active endpoint subscribed to the event's
   type and one e-mail for a customer notice, in the transaction that marks them dispatched: each event
   is fanned out exactly once, even with several hosts running the job.
2. *claim*: due deliveries are locked the same way and leased (``next_attempt_at`` moved ``WEBHOOK_LEASE_
   SECONDS`` ahead, the attempt counted) in a short transaction; no lock is held while sending. They are
   leased a few at a time, as many as can be sent within the lease at ``WEBHOOK_TIMEOUT_SECONDS`` each.
3. *send* and *book*: the answer is recorded in a transaction of its own. A job killed while sending
   leaves the lease to expire, and the delivery is sent again by the next run: at least once, never lost.

Webhooks are signed per the Standard Webhooks specification by the ``standardwebhooks`` package
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature``); ``webhook-id`` is ``evt_<event id>``,
the same on every retry and resend, so a receiver drops duplicates by it. A failed attempt is retried
after ``WEBHOOK_RETRY_BASE_SECONDS * 2**(attempts-1)`` (capped at a day); after ``WEBHOOK_MAX_ATTEMPTS``
the delivery is given up and its endpoint disabled, which the admin sees on the overview and the
webhooks page. Deliveries of a disabled endpoint wait, untouched, until it is enabled again.

An endpoint's URL must not lead to a loopback, private, link-local or otherwise reserved address
(server-side request forgery) unless its host is in ``WEBHOOK_ALLOWED_HOSTS``; every address the host
resolves to is checked before each attempt, and redirects are not followed.
"""
from __future__ import annotations

import base64
import ipaddress
import json
import logging
import secrets
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import select, true
from standardwebhooks.webhooks import Webhook

from .crypto import decrypt_json, encrypt_json
from .db import db
from .models import Delivery, OutboxEvent, WebhookEndpoint, utcnow
from .outbox import CUSTOMER_NOTICES, EVENT_TYPES
from .payments.service import write_transaction

log = logging.getLogger(__name__)

WEBHOOK, EMAIL = "webhook", "email"
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
ANSWER_LIMIT = 2000  # characters of a receiver's answer kept for the admin
MAX_URL = 2000
DEFAULTS = {"WEBHOOK_LEASE_SECONDS": 300, "WEBHOOK_RETRY_BASE_SECONDS": 30, "WEBHOOK_MAX_ATTEMPTS": 10,
            "WEBHOOK_TIMEOUT_SECONDS": 10, "WEBHOOK_ALLOWED_HOSTS": [], "WEBHOOK_BATCH": 100}


class WebhookError(ValueError):
    """An endpoint that cannot be stored as given (URL, events); the message says why."""


def setting(name: str) -> Any:
    """A webhook setting from the app's configuration, else its default."""
    value = current_app.config.get(name)
    return DEFAULTS[name] if value is None else value


# --- endpoints ------------------------------------------------------------------------------------------

def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def endpoint_secret(endpoint: WebhookEndpoint) -> str:
    """The endpoint's signing secret, decrypted."""
    return decrypt_json(endpoint.secret_encrypted)["secret"]


def check_url(url: str) -> str:
    """The URL if it may be stored: http(s), a host, no credentials, at most ``MAX_URL`` characters."""
    url = (url or "").strip()
    if len(url) > MAX_URL:
        raise WebhookError(_("The URL is too long."))
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError(_("Enter an http:// or https:// URL."))
    if parts.username or parts.password:
        raise WebhookError(_("The URL must not contain a user name or password."))
    return url


def check_events(events: list[str]) -> list[str]:
    """The event types, in the catalogue's order; at least one, all known."""
    unknown = set(events) - set(EVENT_TYPES)
    if unknown or not events:
        raise WebhookError(_("Choose at least one event."))
    return [e for e in EVENT_TYPES if e in events]


def create_endpoint(url: str, events: list[str], description: str | None = None) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; returns it and its signing secret (shown once, stored encrypted)."""
    secret = new_secret()
    now = utcnow()
    endpoint = WebhookEndpoint(url=check_url(url), events=check_events(events),
                               description=(description or "").strip()[:200] or None,
                               secret_encrypted=encrypt_json({"secret": secret}), active=True, failures=0,
                               created_at=now, updated_at=now)
    db.session.add(endpoint)
    db.session.commit()
    return endpoint, secret


def set_endpoint_active(endpoint: WebhookEndpoint, active: bool) -> None:
    """Enable (its waiting deliveries go out with the next run) or disable an endpoint."""
    endpoint.active = active
    if active:
        endpoint.failures, endpoint.disabled_reason = 0, None
    endpoint.updated_at = utcnow()
    db.session.commit()


def disabled_endpoints() -> list[WebhookEndpoint]:
    """Endpoints the delivery job disabled (they have a reason): the admin is told about them."""
    return list(db.session.execute(select(WebhookEndpoint).where(
        WebhookEndpoint.active.is_(False), WebhookEndpoint.disabled_reason.is_not(None))).scalars())


def resend(delivery_id: int) -> Delivery:
    """Send a delivery again with the next run (same ``webhook-id``), whatever its state."""
    delivery = db.session.get(Delivery, delivery_id)
    if delivery is None:
        raise WebhookError(_("No such delivery."))
    # a fresh series of attempts: a delivery given up after the last attempt must not be given up again at once
    delivery.state, delivery.attempts, delivery.next_attempt_at, delivery.updated_at = PENDING, 0, utcnow(), utcnow()
    db.session.commit()
    return delivery


# --- server-side request forgery ------------------------------------------------------------------------

def address_refusal(url: str) -> str | None:
    """Why ``url`` must not be called now (None when it may): a host that resolves to a loopback, private,
    link-local, multicast or reserved address, unless the host is in ``WEBHOOK_ALLOWED_HOSTS``."""
    host = urlsplit(url).hostname or ""
    if host.lower() in {h.lower() for h in setting("WEBHOOK_ALLOWED_HOSTS")}:
        return None
    try:
        infos = socket.getaddrinfo(host, urlsplit(url).port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        return f"cannot resolve {host}: {exc}"
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not is_public_address(address):
            return f"{host} resolves to {address}, which is not a public address"
    return None


# IPv6 prefixes that carry an IPv4 address the host may reach through a translator or a tunnel: NAT64
# (64:ff9b::/96 and the local-use 64:ff9b:1::/48), 6to4 (2002::/16) and Teredo (2001::/32). Python's
# is_global calls some of them global, though they can lead to 127.0.0.1 or a private network.
_EMBEDDING_IPV4 = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16",
                                                          "2001::/32"))


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for a global unicast address a webhook may be sent to; an IPv6 address that embeds an IPv4
    one (mapped, NAT64, 6to4, Teredo) is judged by the IPv4 address only when it is plainly mapped, and
    refused otherwise."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            address = address.ipv4_mapped
        elif any(address in network for network in _EMBEDDING_IPV4):
            return False
    return address.is_global and not address.is_multicast


# --- the job --------------------------------------------------------------------------------------------

@dataclass
class DeliverResult:
    """What one :func:`deliver` did."""

    dispatched: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    disabled: list[int] = field(default_factory=list)


def dispatch(limit: int = 500) -> int:
    """Fan undispatched outbox events out into deliveries (see module doc); returns how many events."""
    from . import mail

    with write_transaction() as session:
        events = session.execute(select(OutboxEvent).where(OutboxEvent.dispatched.is_(False))
                                 .order_by(OutboxEvent.id).limit(limit).with_for_update(skip_locked=True)).scalars().all()
        if not events:
            return 0
        endpoints = session.execute(select(WebhookEndpoint).where(WebhookEndpoint.active.is_(True))).scalars().all()
        now = utcnow()
        for event in events:
            for endpoint in endpoints:
                if event.type in (endpoint.events or []):
                    session.add(Delivery(event_id=event.id, channel=WEBHOOK, endpoint_id=endpoint.id, state=PENDING,
                                         attempts=0, next_attempt_at=now, created_at=now, updated_at=now))
            if event.type in CUSTOMER_NOTICES and mail.enabled():
                session.add(Delivery(event_id=event.id, channel=EMAIL, endpoint_id=None, state=PENDING, attempts=0,
                                     next_attempt_at=now, created_at=now, updated_at=now))
            event.dispatched = True
        return len(events)


@dataclass(frozen=True)
class _Claimed:
    delivery_id: int
    channel: str
    attempts: int
    event_id: int
    event_type: str
    payload: dict[str, Any]
    created_at: datetime
    endpoint_id: int | None
    url: str | None
    secret_encrypted: str | None


def _claim(now: datetime, limit: int, seen: set[int] | frozenset[int] = frozenset()) -> list[_Claimed]:
    """Lease up to ``limit`` due deliveries (due at ``now``, not in ``seen``), the lease counted from now or
    ``now``."""
    lease = timedelta(seconds=float(setting("WEBHOOK_LEASE_SECONDS")))
    leased_until = max(now, utcnow()) + lease
    with write_transaction() as session:
        rows = session.execute(
            select(Delivery).outerjoin(WebhookEndpoint, WebhookEndpoint.id == Delivery.endpoint_id)
            .where(Delivery.state == PENDING, Delivery.next_attempt_at <= now,
                   (Delivery.endpoint_id.is_(None)) | (WebhookEndpoint.active.is_(True)),
                   Delivery.id.not_in(seen) if seen else true())
            .order_by(Delivery.next_attempt_at, Delivery.id).limit(limit)
            .with_for_update(skip_locked=True, of=Delivery)).scalars().all()
        claimed = []
        for delivery in rows:
            delivery.attempts = (delivery.attempts or 0) + 1
            delivery.next_attempt_at, delivery.updated_at = leased_until, now
            event, endpoint = delivery.event, delivery.endpoint
            claimed.append(_Claimed(delivery.id, delivery.channel, delivery.attempts, event.id, event.type,
                                    dict(event.payload or {}), event.created_at, delivery.endpoint_id,
                                    endpoint.url if endpoint else None,
                                    endpoint.secret_encrypted if endpoint else None))
        return claimed


def message_body(event_type: str, payload: dict[str, Any], created_at: datetime) -> str:
    """The JSON a receiver gets: the Standard Webhooks shape ``{type, timestamp, data}``."""
    return json.dumps({"type": event_type, "timestamp": created_at.isoformat(), "data": payload},
                      ensure_ascii=False, sort_keys=True)


def _send_webhook(item: _Claimed, now: datetime) -> tuple[bool, int | None, str]:
    """POST one signed message; (ok, HTTP status or None, the answer or error for the admin)."""
    refusal = address_refusal(item.url)
    if refusal is not None:
        return False, None, f"refused: {refusal}"
    body = message_body(item.event_type, item.payload, item.created_at)
    msg_id = f"evt_{item.event_id}"
    signer = Webhook(decrypt_json(item.secret_encrypted)["secret"])
    headers = {"content-type": "application/json", "user-agent": "billcore-webhooks",
               "webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": signer.sign(msg_id, now, body)}
    try:
        with requests.post(item.url, data=body.encode(), headers=headers, allow_redirects=False, stream=True,
                           timeout=float(setting("WEBHOOK_TIMEOUT_SECONDS"))) as response:
            answer = response.raw.read(ANSWER_LIMIT, decode_content=True).decode("utf-8", "replace")
            return 200 <= response.status_code < 300, response.status_code, answer
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        # (reading the body goes to urllib3 directly: a receiver stalling mid-body raises its ReadTimeoutError)
        return False, None, f"{type(exc).__name__}: {exc}"[:ANSWER_LIMIT]


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff: base, 2 x base, 4 x base ... capped at a day."""
    base = float(setting("WEBHOOK_RETRY_BASE_SECONDS"))
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), 86400))


def _book(item: _Claimed, ok: bool, status: int | None, answer: str, now: datetime, result: DeliverResult) -> None:
    with write_transaction() as session:
        delivery = session.get(Delivery, item.delivery_id, with_for_update=True)
        if delivery is None or delivery.state != PENDING:
            return
        delivery.last_status, delivery.last_answer, delivery.updated_at = status, answer[:ANSWER_LIMIT], now
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id) if delivery.endpoint_id else None
        if ok:
            delivery.state, delivery.delivered_at = DELIVERED, now
            if endpoint is not None:
                endpoint.failures = 0
            result.delivered += 1
            return
        if endpoint is not None:
            endpoint.failures = (endpoint.failures or 0) + 1
        if delivery.attempts < int(setting("WEBHOOK_MAX_ATTEMPTS")) or (endpoint is not None and not endpoint.active):
            # (an endpoint disabled meanwhile: its deliveries wait for it instead of being given up)
            delivery.next_attempt_at = now + retry_delay(delivery.attempts)
            result.retried += 1
            return
        delivery.state = FAILED
        result.failed += 1
        if endpoint is not None and endpoint.active:
            endpoint.active = False
            endpoint.disabled_reason = f"delivery {delivery.id} failed {delivery.attempts} times; last: {answer[:200]}"
            endpoint.updated_at = now
            result.disabled.append(endpoint.id)
            log.warning("webhook endpoint %s disabled: %s", endpoint.id, endpoint.disabled_reason)


def _release(item: _Claimed) -> None:
    """Give a claimed delivery back untried (its lease and attempt undone)."""
    with write_transaction() as session:
        delivery = session.get(Delivery, item.delivery_id, with_for_update=True)
        if delivery is not None and delivery.state == PENDING:
            delivery.attempts = max((delivery.attempts or 1) - 1, 0)
            delivery.next_attempt_at = utcnow()


def claim_chunk(limit: int) -> int:
    """How many deliveries to lease at a time: as many as can surely be sent before their lease ends
    (each send may take up to twice the timeout: connecting, then reading), at least one."""
    lease = float(setting("WEBHOOK_LEASE_SECONDS"))
    per_send = 2 * float(setting("WEBHOOK_TIMEOUT_SECONDS"))
    return max(1, min(limit, int(lease // per_send) if per_send > 0 else limit))


def deliver(now: datetime | None = None, limit: int | None = None) -> DeliverResult:
    """One run of the job: dispatch new events, then send the due deliveries (see module doc).

    Deliveries are leased in chunks that can be sent within their lease, so a slow receiver never lets
    the lease of a waiting delivery run out (and another run send it too). Whatever goes wrong with one
    delivery is booked as its failed attempt and the run goes on with the next.
    """
    from . import mail

    result = DeliverResult()
    result.dispatched = dispatch()
    now = now or utcnow()
    left = int(limit or setting("WEBHOOK_BATCH"))
    seen: set[int] = set()  # each delivery is tried at most once a run, whatever clock the caller gives
    while left > 0:
        chunk = _claim(now, claim_chunk(left), seen)
        if not chunk:
            break
        left -= len(chunk)
        seen.update(item.delivery_id for item in chunk)
        for item in chunk:
            if item.endpoint_id in result.disabled:
                _release(item)  # disabled by this run: no more requests to it; the delivery waits
                continue
            try:
                if item.channel == WEBHOOK:
                    ok, status, answer = _send_webhook(item, utcnow())
                else:
                    ok, status, answer = mail.send_notice(item.delivery_id, item.event_type, item.payload)
            except Exception as exc:  # noqa: BLE001 - one delivery's fault must not stop the others
                log.exception("delivery %s failed unexpectedly", item.delivery_id)
                ok, status, answer = False, None, f"{type(exc).__name__}: {exc}"[:ANSWER_LIMIT]
            _book(item, ok, status, answer, utcnow(), result)
    return result
