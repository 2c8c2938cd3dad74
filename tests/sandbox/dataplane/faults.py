"""Fault and limit switches of the data plane, changeable while it runs (issue #4 item 4).

``DataPlaneFaults`` is immutable; ``DataPlane.set_faults`` swaps in a new instance, and every
decision reads the current one, so a change applies to the next frame or tick of every
session. Random decisions come from one ``random.Random`` per session seeded from
``seed`` and the session id, so a run is reproducible whatever other sessions do.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any, Final

from .codec import K_PREFIX_SIZE

K_IDLE_TIMEOUT_OUTPUT: Final = "Your session timed out due to inactivity and has been terminated."
"""Seen verbatim in public reports (amazon-ssm-agent issue #261)."""
K_MAX_DURATION_OUTPUT: Final = "Your session has reached its maximum duration and has been terminated."
"""[inferred] wording; the real text is not in any public source we found."""


@dataclass(frozen=True)
class DataPlaneFaults:
    """Switches; defaults reproduce AWS without faults. Probabilities are 0..1 per frame."""

    seed: int = 0
    """Seed of the per-session random generators (combined with the session id)."""
    ws_drop_every: float | None = None
    """Close each client websocket with 1000 "Bye" this many seconds after it opened (G16)."""
    ack_delay: float = 0.0
    """Hold every agent ack back this long before sending it."""
    ack_loss: float = 0.0
    """Drop an agent ack (the client must resend its message)."""
    client_ack_loss: float = 0.0
    """Ignore a client ack (the agent resends; the official client never re-acks a duplicate,
    so with it this can stall the agent's resend head for good, G5)."""
    duplicate: float = 0.0
    """Send an agent stream frame twice."""
    reorder: float = 0.0
    """Hold an agent stream frame back and send it after the next one."""
    reorder_hold: float = 0.05
    """Longest a held frame waits for a successor before it is sent anyway."""
    corrupt_digest: float = 0.0
    """Send an agent stream frame or ack with a wrong PayloadDigest; the buffered copy stays
    intact, so the resend repairs it (the client must drop the bad one without an ack)."""
    idle_timeout: float | None = 20 * 60.0
    """End a session after this long without port data in either direction (AWS default 20 min)."""
    max_duration: float | None = None
    """End a session this long after it was created (AWS: optional, 1..1440 min)."""
    publication_pause_every: float | None = None
    """Send pause_publication to each client this often ...; the agent itself keeps sending."""
    publication_pause_for: float = 1.0
    """... and start_publication this long after it."""
    chunk_size: int = 1024
    """Largest agent->client payload; the real agent reads 1024 bytes per message (§3.1)."""
    token_ttl: float = 60.0
    """A TokenValue must be presented within this many seconds of being issued."""
    handshake_timeout: float = 15.0
    """How long the agent waits for the HandshakeResponse after the session is created (§4.2)."""
    close_linger: float = 2.0
    """On session end, wait up to this long for outstanding acks before channel_closed
    (the agent's ``PrepareToCloseChannel``)."""

    def replace(self, **changes: Any) -> DataPlaneFaults:
        """A copy with ``changes``; unknown names and out-of-range values raise ValueError."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown fault switch(es): {', '.join(unknown)}")
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    def validate(self) -> None:
        for name in ("ack_loss", "client_ack_loss", "duplicate", "reorder", "corrupt_digest"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability between 0 and 1, not {value}")
        for name in ("ws_drop_every", "idle_timeout", "max_duration", "publication_pause_every"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None, not {value}")
        for name in ("ack_delay", "reorder_hold", "publication_pause_for", "close_linger"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        if self.token_ttl <= 0 or self.handshake_timeout <= 0:
            raise ValueError("token_ttl and handshake_timeout must be positive")


def session_rng(faults: DataPlaneFaults, session_id: str) -> random.Random:
    """The generator for one session: same seed and id, same decisions."""
    return random.Random(f"{faults.seed}:{session_id}")


def corrupt_digest(frame: bytes) -> bytes:
    """A copy of ``frame`` with one PayloadDigest byte flipped (header offset 80)."""
    if len(frame) < K_PREFIX_SIZE:
        return frame
    return frame[:80] + bytes([frame[80] ^ 0xFF]) + frame[81:]
