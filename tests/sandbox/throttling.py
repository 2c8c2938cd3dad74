"""API rate limits: one token bucket per (account, region, action), like AWS's per-account quotas.

A rule names an IAM-style action (``ssm:StartSession``) and gives a sustained ``rate`` (tokens per
second) and a ``burst`` (bucket size). A request takes one token; none left → the caller gets
``ThrottlingException`` ("Rate exceeded"), which botocore's standard and adaptive retry modes retry.

AWS does not publish the StartSession / SendSSHPublicKey rates; the defaults below are our
estimate of "a few per second with a small burst", on by default so that clients meet throttling in
every test run that opens many sessions at once, and documented in README.md. Tests and benchmarks
that want none set ``throttling.enabled: false`` or change a rule while running.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_RULES: dict[str, dict[str, float]] = {
    "ssm:StartSession": {"rate": 5.0, "burst": 20.0},
    "ssm:ResumeSession": {"rate": 5.0, "burst": 20.0},
    "ssm:TerminateSession": {"rate": 10.0, "burst": 40.0},
    "ec2-instance-connect:SendSSHPublicKey": {"rate": 10.0, "burst": 40.0},
    "ssm:DescribeInstanceInformation": {"rate": 20.0, "burst": 40.0},
}


@dataclass
class _Bucket:
    rate: float
    burst: float
    tokens: float
    stamp: float


class Throttler:
    """Token buckets keyed by (account, region, action); rules can change while running."""

    def __init__(
        self,
        rules: Mapping[str, Mapping[str, float]] | None = None,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.enabled = enabled
        self._rules: dict[str, dict[str, float]] = {k: dict(v) for k, v in DEFAULT_RULES.items()}
        self._rules.update({k: dict(v) for k, v in (rules or {}).items()})
        self._buckets: dict[tuple[str, str, str], _Bucket] = {}

    def configure(self, enabled: bool | None = None, rules: Mapping[str, Any] | None = None) -> None:
        """Switch on/off and/or replace rules (a rule set to None is removed); resets the buckets."""
        with self._lock:
            if enabled is not None:
                self.enabled = bool(enabled)
            for action, rule in (rules or {}).items():
                if rule is None:
                    self._rules.pop(action, None)
                else:
                    self._rules[action] = {"rate": float(rule["rate"]), "burst": float(rule["burst"])}
            self._buckets.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"enabled": self.enabled, "rules": {k: dict(v) for k, v in self._rules.items()}}

    def allow(self, account: str, region: str, action: str) -> bool:
        """Take a token for ``action``; False means "throttle this request"."""
        with self._lock:
            rule = self._rules.get(action)
            if not self.enabled or rule is None:
                return True
            now = self._clock()
            key = (account, region, action)
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = _Bucket(rule["rate"], rule["burst"], rule["burst"], now)
                self._buckets[key] = bucket
            bucket.tokens = min(bucket.burst, bucket.tokens + (now - bucket.stamp) * bucket.rate)
            bucket.stamp = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return True
            return False
