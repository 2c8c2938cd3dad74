# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reliability building blocks: RTO estimator, outgoing window, reorder buffer (§3).

PRIVATE to this collection. Pure data structures; time is always a parameter.

Theory of operation. Each peer numbers its own stream messages from 0 (§3.1). The receiver acks
every message individually and selectively (§2.3, G5): an ack removes exactly one entry from the
sender's outgoing window. Messages that arrive early are buffered and acked at once; the receiver
delivers strictly in order (§3.2). The sender resends its oldest unacked message once it has been
outstanding longer than the RTO (§3.5), which is estimated from ack round trips (§3.4).

Where we deliberately differ from the official Go client (G10):

* the outgoing window is **bounded and never evicts**: when it is full the session refuses new
  bytes (backpressure) instead of dropping the oldest unacked message;
* a resend updates ``last_sent`` (the agent's behaviour), so an overdue message is resent every
  RTO rather than every 100 ms tick.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.constants import (
    K_CLOCK_GRANULARITY,
    K_INITIAL_RTO,
    K_INITIAL_RTTVAR,
    K_INITIAL_SRTT,
    K_RTO_MAX,
    K_RTT_ALPHA,
    K_RTT_BETA,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.message import AgentMessage

__all__ = [
    "Arrival",
    "OutgoingEntry",
    "OutgoingWindow",
    "ReorderBuffer",
    "RtoEstimator",
]


@dataclasses.dataclass(slots=True)
class RtoEstimator:
    """Jacobson/Karels RTO exactly as both official peers compute it (§3.4).

    There is no minimum beyond the clock granularity and Karn's rule is *not* applied: a sample is
    taken even for a resent message, measured from its latest send.
    """

    srtt: float = K_INITIAL_SRTT
    rttvar: float = K_INITIAL_RTTVAR
    rto: float = K_INITIAL_RTO

    def update(self, sample: float) -> None:
        """Fold one round-trip sample (seconds) into the estimate."""
        sample = max(sample, 0.0)
        # ssm-data-channel.md §3.4: RTTVAR first (it uses the previous SRTT), then SRTT, then RTO.
        self.rttvar = (1 - K_RTT_BETA) * self.rttvar + K_RTT_BETA * abs(self.srtt - sample)
        self.srtt = (1 - K_RTT_ALPHA) * self.srtt + K_RTT_ALPHA * sample
        self.rto = min(self.srtt + max(K_CLOCK_GRANULARITY, 4 * self.rttvar), K_RTO_MAX)


@dataclasses.dataclass(slots=True)
class OutgoingEntry:
    """One sent-but-unacked stream message. ``frame`` is resent byte for byte (§3.5)."""

    sequence_number: int
    wire_id: bytes
    """MessageId in wire order (§2): what the peer's ack names, for logs."""
    frame: bytes
    size: int
    """Payload bytes counted against the window."""
    counted: bool
    """False for flags, which bypass the window limits (they must go out even when it is full)."""
    last_sent: float | None = None
    """When it was last handed to the transport; None while held back (disconnected/paused)."""
    first_sent: float | None = None
    """Start of the current "stall clock" used for giving up (reset on reconnect/resume)."""
    resends: int = 0


class OutgoingWindow:
    """Unacked messages in sequence order, bounded by count and payload bytes.

    The bound is enforced by :meth:`can_add`, which the session consults before creating a message:
    entries are never evicted (G10). Flags are added uncounted so that TerminateSession can always
    be sent.
    """

    def __init__(self, *, max_messages: int, max_bytes: int) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("window limits must be positive")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._entries: dict[int, OutgoingEntry] = {}
        self._count = 0
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[OutgoingEntry]:
        return iter(self._entries.values())

    def __contains__(self, sequence_number: int) -> bool:
        return sequence_number in self._entries

    @property
    def counted_messages(self) -> int:
        return self._count

    @property
    def counted_bytes(self) -> int:
        return self._bytes

    def can_add(self, size: int) -> bool:
        """Whether a counted message of ``size`` payload bytes fits now. An empty window always
        accepts one message, whatever its size, so a byte limit below one chunk cannot deadlock."""
        if self._count >= self.max_messages:
            return False
        return self._count == 0 or self._bytes + size <= self.max_bytes

    def below_low_water(self) -> bool:
        """True once usage is at most half of both limits: the hysteresis point for WindowOpen."""
        return self._count * 2 <= self.max_messages and self._bytes * 2 <= self.max_bytes

    def add(self, entry: OutgoingEntry) -> None:
        if entry.sequence_number in self._entries:
            raise ValueError(f"sequence number {entry.sequence_number} already in the window")
        self._entries[entry.sequence_number] = entry
        if entry.counted:
            self._count += 1
            self._bytes += entry.size

    def acknowledge(self, sequence_number: int) -> OutgoingEntry | None:
        """Remove and return the entry for an ack; None for an unknown (or repeated) ack (§3.3)."""
        entry = self._entries.pop(sequence_number, None)
        if entry is not None and entry.counted:
            self._count -= 1
            self._bytes -= entry.size
        return entry

    def head(self) -> OutgoingEntry | None:
        """The oldest unacked message (dicts keep insertion order, and seqs are inserted ascending)."""
        return next(iter(self._entries.values()), None)


class Arrival(enum.Enum):
    """Where an incoming sequence number falls relative to ``expected`` (§3.2 table rows)."""

    DUPLICATE = "duplicate"
    NEXT = "next"
    EARLY = "early"
    TOO_FAR = "too_far"


class ReorderBuffer:
    """Incoming-side state: the next expected sequence number and early messages by seq (§3.2)."""

    def __init__(self, *, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("reorder capacity must be positive")
        self.capacity = capacity
        self.expected = 0
        self._early: dict[int, AgentMessage] = {}

    def __len__(self) -> int:
        return len(self._early)

    def classify(self, sequence_number: int) -> Arrival:
        if sequence_number < self.expected:
            return Arrival.DUPLICATE
        if sequence_number == self.expected:
            return Arrival.NEXT
        if sequence_number - self.expected >= self.capacity:
            return Arrival.TOO_FAR
        return Arrival.EARLY

    def is_stored(self, sequence_number: int) -> bool:
        return sequence_number in self._early

    def store(self, message: AgentMessage) -> None:
        self._early[message.sequence_number] = message

    def pop_expected(self) -> AgentMessage | None:
        """Remove and return the buffered message for ``expected``, if it arrived early."""
        return self._early.pop(self.expected, None)

    def put_back(self, message: AgentMessage) -> None:
        """Re-buffer a message popped by :meth:`pop_expected` that could not be consumed yet."""
        self._early[message.sequence_number] = message

    def advance(self) -> None:
        self.expected += 1
