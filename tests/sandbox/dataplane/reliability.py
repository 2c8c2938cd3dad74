"""Agent-side reliability state: outgoing buffer, incoming reorder buffer, RTO (§3).

Sans-IO: every method that needs the time takes ``now`` (seconds, monotonic). The constants
are the agent's (``agent/session/config/config.go`` as summarised in §3.1 and §3.4); the
client's differ only in buffer sizes, and its resend bug (G10) is deliberately not copied.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

K_SRTT_INITIAL: Final = 0.1
K_RTTVAR_INITIAL: Final = 0.0
K_RTO_INITIAL: Final = 0.2
K_ALPHA: Final = 1 / 8
K_BETA: Final = 1 / 4
K_CLOCK_GRANULARITY: Final = 0.01
K_RTO_MAX: Final = 1.0
K_RESEND_INTERVAL: Final = 0.1
"""The agent's resend scheduler looks at the head of the outgoing buffer this often (§3.5)."""
K_OUTGOING_CAPACITY: Final = 100_000
K_INCOMING_CAPACITY: Final = 100_000


class RtoEstimator:
    """Jacobson/Karels estimator exactly as §3.4 (no Karn's rule, cap 1 s, floor G)."""

    def __init__(self) -> None:
        self.srtt = K_SRTT_INITIAL
        self.rttvar = K_RTTVAR_INITIAL
        self.rto = K_RTO_INITIAL

    def update(self, sample: float) -> None:
        """Fold one round-trip sample (seconds) into the estimate."""
        self.rttvar = (1 - K_BETA) * self.rttvar + K_BETA * abs(self.srtt - sample)
        self.srtt = (1 - K_ALPHA) * self.srtt + K_ALPHA * sample
        self.rto = min(self.srtt + max(K_CLOCK_GRANULARITY, 4 * self.rttvar), K_RTO_MAX)


@dataclass(slots=True)
class Unacked:
    """One sent stream message waiting for its ack; ``data`` is resent byte for byte."""

    seq: int
    data: bytes
    last_sent: float


class OutgoingBuffer:
    """Unacked messages in send order; acks are selective, matched on seq only (§3.3)."""

    def __init__(self, capacity: int = K_OUTGOING_CAPACITY) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[int, Unacked] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, seq: int, data: bytes, now: float) -> bool:
        """Buffer a message; False when full (the agent then sends it unbuffered, §3.1)."""
        if len(self._entries) >= self.capacity:
            return False
        self._entries[seq] = Unacked(seq, data, now)
        return True

    def ack(self, seq: int, now: float) -> float | None:
        """Remove ``seq``; returns the RTT sample, or None for an unknown seq (ignored)."""
        entry = self._entries.pop(seq, None)
        if entry is None:
            return None
        return now - entry.last_sent

    def head(self) -> Unacked | None:
        """The oldest unacked message: the only one the resend scheduler ever looks at."""
        for entry in self._entries.values():
            return entry
        return None


class IncomingBuffer:
    """Messages that arrived ahead of ``expected``, keyed by seq (§3.2)."""

    def __init__(self, capacity: int = K_INCOMING_CAPACITY) -> None:
        self.capacity = capacity
        self._entries: dict[int, tuple[int, bytes]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def store(self, seq: int, payload_type: int, payload: bytes) -> bool:
        """Keep an early message; False (and nothing stored) when the buffer is full."""
        if seq not in self._entries and len(self._entries) >= self.capacity:
            return False
        self._entries[seq] = (payload_type, payload)
        return True

    def peek(self, seq: int) -> tuple[int, bytes] | None:
        return self._entries.get(seq)

    def remove(self, seq: int) -> None:
        self._entries.pop(seq, None)
