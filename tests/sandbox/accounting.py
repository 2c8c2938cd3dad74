"""Counts every AWS API call the sandbox answers, so tests can assert on client behaviour.

One counter per (service, action, region, caller, target, outcome). ``outcome`` is ``"ok"`` or the
AWS error code the caller received (``ThrottlingException``, ``AccessDeniedException``, ...), so
"exactly one SendSSHPublicKey and one StartSession per host", "N throttled" and "M denied" are all
simple queries. ``target`` is the instance or session the call was about (empty for list calls).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

FIELDS = ("service", "action", "region", "caller", "target", "outcome")


@dataclass(frozen=True)
class CallKey:
    service: str
    action: str
    region: str
    caller: str
    target: str
    outcome: str


class CallLog:
    """Thread-safe API call counters with filtering and reset."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[CallKey] = Counter()

    def record(  # noqa: PLR0917 - one field per counter key
        self, service: str, action: str, region: str, caller: str, target: str = "", outcome: str = "ok"
    ) -> None:
        key = CallKey(service, action, region, caller, target, outcome)
        with self._lock:
            self._counts[key] += 1

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def query(self, filters: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Rows matching ``filters`` (field → exact value) plus their total and per-outcome totals."""
        wanted = {k: v for k, v in (filters or {}).items() if k in FIELDS and v is not None}
        with self._lock:
            items = list(self._counts.items())
        rows = []
        total = 0
        outcomes: Counter[str] = Counter()
        for key, count in items:
            fields = asdict(key)
            if all(fields[k] == v for k, v in wanted.items()):
                rows.append({**fields, "count": count})
                total += count
                outcomes[key.outcome] += count
        rows.sort(key=lambda r: tuple(r[f] for f in FIELDS))
        return {
            "total": total,
            "ok": outcomes.get("ok", 0),
            "throttled": outcomes.get("ThrottlingException", 0),
            "denied": outcomes.get("AccessDeniedException", 0) + outcomes.get("UnauthorizedOperation", 0),
            "by_outcome": dict(outcomes),
            "rows": rows,
        }
