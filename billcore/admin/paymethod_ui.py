"""Helpers the payment-method pages share: feature names, and the gateway-side instructions with the
core's own warnings about this installation."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..logs import file_logger
from ..models import PaymentMethod
from ..paymethods import full_settings
from ..paymodule import (
    FEATURE_CHECKPAY,
    FEATURE_RECEIPTS,
    FEATURE_RECURRING,
    FEATURE_REFUND,
    FEATURE_SUBSCRIPTIONS,
    FEATURE_TEST_MODE,
    GatewaySetup,
)
from ..plugins import get_registry

FEATURE_LABELS = {
    FEATURE_REFUND: _l("Refunds"),
    FEATURE_RECURRING: _l("Recurring payments"),
    FEATURE_SUBSCRIPTIONS: _l("Subscriptions"),
    FEATURE_TEST_MODE: _l("Test mode"),
    FEATURE_CHECKPAY: _l("Status checks"),
    FEATURE_RECEIPTS: _l("Fiscal receipts"),
}


def feature_labels() -> dict[str, str]:
    """Translated names of the module features, by feature key."""
    return {key: str(label) for key, label in FEATURE_LABELS.items()}


def public_base_url() -> str:
    """The configured public URL, else the address this request came in on."""
    return current_app.config.get("BASE_URL") or request.host_url.rstrip("/")


def _PLAIN_HTTP() -> str:  # noqa: N802 - a message, built per request in the reader's language
    return _("The public address uses plain http: gateways may refuse it and notifications travel unencrypted. "
             "Use https.")


def core_warnings() -> list[str]:
    """What the core itself finds wrong with the public URL gateways will call."""
    warnings = []
    configured = current_app.config.get("BASE_URL") or ""
    if not configured:
        warnings.append(_("BILLCORE_BASE_URL is not set: the addresses below are built from the address of "
                          "this page (%(url)s). Set it to the public address gateways must call.",
                          url=public_base_url()))
    if urlsplit(public_base_url()).scheme == "http":
        warnings.append(_PLAIN_HTTP())
    return warnings


def log_module_failure(key: str, hook: str, exc: Exception) -> None:
    """Log a module's exception to ``<LOG_DIR>/paymethods.log``: its type and message with known secrets
    masked, and no traceback (a traceback's text is not masked and may quote the settings)."""
    file_logger("paymethods").error("payment module %s failed in %s: %s: %s", key, hook,
                                    type(exc).__name__, exc)


def gateway_setup(method: PaymentMethod) -> tuple[GatewaySetup | None, list[str], str | None]:
    """The module's gateway-side instructions for ``method``, all the warnings, and an error text when
    the module failed to answer (its exception is logged, never shown: it may carry settings)."""
    registry = get_registry()
    warnings = core_warnings()
    if registry.info(method.module) is None:
        return None, warnings, _("The payment module %(key)s is not loaded.", key=method.module)
    try:
        setup = registry.call(method.module, "billcore_gateway_setup", paymethod=method,
                              settings=full_settings(method), base_url=public_base_url())
    except Exception as exc:  # a module's bug must not take the method's page down
        log_module_failure(method.module, "billcore_gateway_setup", exc)
        return None, warnings, _("The payment module could not describe the gateway's side (see the log).")
    if setup is not None:
        warnings = merged_warnings(warnings, [str(w) for w in setup.warnings])
    return setup, warnings, None


def merged_warnings(*lists: list[str]) -> list[str]:
    """The warnings of ``lists`` in order, each text once: the core warns about the installation (plain
    http, no public address) for every module, so a module that repeats one adds nothing. Texts are
    compared without regard to case and spacing."""
    seen: set[str] = set()
    merged = []
    for warning in (w for warnings in lists for w in warnings):
        key = " ".join(warning.split()).casefold()
        if key and key not in seen:
            seen.add(key)
            merged.append(warning)
    return merged
