"""Robokassa protocol: Endpoints (§0, §6, §7, §8).

Part of :mod:`pmrobokassa.protocol` (a pure layer: no Flask, no database, no network).
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit



STANDARD_PAYMENT_URL = "https://auth.robokassa.ru/Merchant/Index.aspx"
_PAYMENT_PATH_SUFFIX = "/merchant/index.aspx"


@dataclass(frozen=True)
class Endpoints:
    """Every Robokassa URL the plugin calls or sends the buyer to."""

    payment_url: str
    xml_service_url: str
    recurring_url: str
    refund_create_url: str
    refund_state_url: str

    def xml_method_url(self, method: str) -> str:
        """URL of one XML interface method, e.g. ``xml_method_url("OpStateExt")``."""
        return f"{self.xml_service_url}/{method}"


def _endpoints_under(prefix: str, payment_url: str, refund_prefix: str) -> Endpoints:
    return Endpoints(
        payment_url=payment_url,
        xml_service_url=f"{prefix}/Merchant/WebService/Service.asmx",
        recurring_url=f"{prefix}/Merchant/Recurring",
        refund_create_url=f"{refund_prefix}/RefundService/Refund/Create",
        refund_state_url=f"{refund_prefix}/RefundService/Refund/GetState",
    )


def endpoints_from_payment_url(url: str) -> Endpoints:
    """Derive all endpoints from the payment page URL (the "URL" setting of the payment method).

    The standard ``https://auth.robokassa.ru/Merchant/Index.aspx`` gives Robokassa's real hosts
    (refunds live on ``services.robokassa.ru``). Any other ``<prefix>/Merchant/Index.aspx`` puts every
    endpoint under ``<prefix>``, so a local sandbox such as
    ``http://127.0.0.1:5000/sandbox/robokassa/Merchant/Index.aspx`` stands in for all of them.
    Raises ``ValueError`` for a URL that is not http(s), has no host, carries a query or fragment,
    or does not end in ``/Merchant/Index.aspx``.
    """
    if not isinstance(url, str):
        raise ValueError("payment URL must be a string")
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueError(f"payment URL must be an absolute http(s) URL, got {url!r}")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValueError(f"payment URL must not carry a query or fragment: {url!r}")
    if not parts.path.lower().endswith(_PAYMENT_PATH_SUFFIX):
        raise ValueError(f"payment URL must end in /Merchant/Index.aspx, got {url!r}")
    is_standard = (parts.scheme.lower(), parts.netloc.lower(), parts.path.lower()) == (
        "https", "auth.robokassa.ru", _PAYMENT_PATH_SUFFIX)
    if is_standard:
        # Robokassa's refund service lives on another host than the payment page (§8).
        return _endpoints_under("https://auth.robokassa.ru", STANDARD_PAYMENT_URL, "https://services.robokassa.ru")
    prefix = url[: len(url) - len(_PAYMENT_PATH_SUFFIX)]
    return _endpoints_under(prefix, url, prefix)
