"""The sandbox's latency knob: make its web services as slow (and as unreliable) as a real gateway.

``PMROBOKASSA_SANDBOX_LATENCY`` maps an endpoint to how it answers; ``"*"`` applies to the endpoints not
listed. Each value is a mapping with

* ``delay`` - seconds every answer waits (default 0);
* ``jitter`` - up to this many seconds more, uniformly at random (default 0);
* ``timeouts`` - the share of requests (0..1) that are held for ``hang`` seconds (default 30) before an
  HTTP 504, so a caller with a shorter timeout sees a read timeout, as with a gateway that went silent.

Endpoints: ``OpStateExt``, ``GetCurrencies``, ``Recurring``, ``Refund/Create``, ``Refund/GetState``.
For example ``{"*": {"delay": 0.2}, "Recurring": {"delay": 0.5, "jitter": 0.2, "timeouts": 0.01}}``.
Every wait is capped at :data:`MAX_WAIT` seconds. The payment page and the notifications are not slowed.
"""
from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_WAIT = 120.0
ENDPOINTS = ("OpStateExt", "GetCurrencies", "Recurring", "Refund/Create", "Refund/GetState")


@dataclass(frozen=True)
class Latency:
    """How one endpoint answers: a fixed delay, random jitter on top, a share of requests left hanging."""

    delay: float = 0.0
    jitter: float = 0.0
    timeouts: float = 0.0
    hang: float = 30.0

    def wait(self, rng: random.Random | None = None) -> bool:
        """Sleep as configured; True when this request is one of the ``timeouts`` (answer 504 then)."""
        rng = rng or random
        if self.timeouts and rng.random() < self.timeouts:
            time.sleep(min(self.hang, MAX_WAIT))
            return True
        seconds = self.delay + (rng.uniform(0, self.jitter) if self.jitter else 0.0)
        if seconds > 0:
            time.sleep(min(seconds, MAX_WAIT))
        return False


def _number(spec: Mapping[str, Any], key: str, default: float, high: float) -> float:
    value = spec.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"PMROBOKASSA_SANDBOX_LATENCY: {key} must be a number, not {value!r}") from None
    if not 0 <= number <= high:
        raise ValueError(f"PMROBOKASSA_SANDBOX_LATENCY: {key} must be between 0 and {high:g}, not {number:g}")
    return number


def parse(config: Mapping[str, Any] | None) -> dict[str, Latency]:
    """The knob's setting as ``{endpoint or "*": Latency}``; ``ValueError`` on an unknown endpoint or key
    or a value out of range (a mistyped knob must not silently measure a fast gateway)."""
    result: dict[str, Latency] = {}
    for endpoint, spec in (config or {}).items():
        if endpoint != "*" and endpoint not in ENDPOINTS:
            raise ValueError(f"PMROBOKASSA_SANDBOX_LATENCY: unknown endpoint {endpoint!r} "
                             f"(one of {', '.join(ENDPOINTS)} or *)")
        if not isinstance(spec, Mapping):
            raise ValueError(f"PMROBOKASSA_SANDBOX_LATENCY[{endpoint!r}] must be a mapping")
        unknown = set(spec) - {"delay", "jitter", "timeouts", "hang"}
        if unknown:
            raise ValueError(f"PMROBOKASSA_SANDBOX_LATENCY[{endpoint!r}]: unknown key(s) {sorted(unknown)}")
        result[endpoint] = Latency(delay=_number(spec, "delay", 0, MAX_WAIT), jitter=_number(spec, "jitter", 0, MAX_WAIT),
                                   timeouts=_number(spec, "timeouts", 0, 1), hang=_number(spec, "hang", 30, MAX_WAIT))
    return result


def for_endpoint(config: Mapping[str, Any] | None, endpoint: str) -> Latency | None:
    """The latency of ``endpoint`` under ``config`` (its own entry, else ``"*"``), None when not slowed."""
    table = parse(config)
    return table.get(endpoint) or table.get("*")
