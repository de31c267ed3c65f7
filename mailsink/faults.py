"""The fault plan: the ESP misbehaviour a sink injects into its send calls."""

from __future__ import annotations

import collections
from typing import Any


class Faults:
    """The fault plan. Guarded by the sink's lock."""

    def __init__(self, latency_ms: float):
        self.latency_ms = float(latency_ms)
        self.recipient_limit: int | None = None
        self.reject: set[str] = set()
        self.invalid: set[str] = set()
        self.always: dict[str, Any] | None = None
        self.script: collections.deque[dict[str, Any]] = collections.deque()
        self.lookup_status: int | None = None  # answer for the read APIs, when failing

    def limit_for(self, esp_limit: int) -> int:
        return esp_limit if self.recipient_limit is None else self.recipient_limit

    def to_dict(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "recipient_limit": self.recipient_limit,
            "reject": sorted(self.reject),
            "invalid": sorted(self.invalid),
            "always": self.always,
            "next": list(self.script),
            "lookup_status": self.lookup_status,
        }


def make_fault(kind: str, **params: Any) -> dict[str, Any]:
    if kind == "status":
        status = int(params.get("status", 503))
        if not 400 <= status <= 599:
            raise ValueError(f"A failure status must be 4xx or 5xx, not {status}.")
        return {"kind": "status", "status": status}
    if kind == "rate_limit":
        return {"kind": "rate_limit", "retry_after": int(params.get("retry_after", 1))}
    if kind == "hang":
        return {
            "kind": "hang",
            "seconds": float(params.get("seconds", 30)),
            "accept": bool(params.get("accept", False)),
        }
    raise ValueError(f"Unknown fault {kind!r}; expected status, rate_limit or hang.")
