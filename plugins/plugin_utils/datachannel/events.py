# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Events the data-channel core hands to its driver (aioquic style: past-tense nouns).

PRIVATE to this collection. Drivers pull them with :meth:`DataChannel.next_event`. Protocol
failure is an event (``HandshakeFailed``, ``ChannelClosed``, ``RetransmissionTimedOut``), not an
exception thrown across the I/O boundary.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

__all__ = [
    "ChannelClosed",
    "ConnectToPortError",
    "DataReceived",
    "Event",
    "HandshakeCompleted",
    "HandshakeFailed",
    "ProtocolWarning",
    "PublicationPaused",
    "PublicationResumed",
    "RetransmissionTimedOut",
    "SessionMode",
    "WindowFull",
    "WindowOpen",
]


class SessionMode(enum.StrEnum):
    """How port data is carried, decided from the HandshakeRequest (§5.1)."""

    STDIO = "stdio"
    """Standard stream: the tunnel *is* one TCP stream (AWS-StartSSHSession, no ``type``)."""
    BASIC = "basic"
    """One local TCP connection at a time; DisconnectToPort when it ends (§5.3)."""
    MUX = "mux"
    """smux v1 inside the payloads; many TCP connections (§5.4)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """Base class of all core events."""


@dataclasses.dataclass(frozen=True, slots=True)
class HandshakeCompleted(Event):
    """HandshakeComplete arrived after a successful HandshakeRequest: data may flow now (§4.3)."""

    mode: SessionMode
    agent_version: str
    session_type: str
    properties: Mapping[str, str]
    """The document's properties after substitution; values are strings (G8)."""
    customer_message: str = ""
    time_to_complete_ns: int = 0
    client_version: str = ""
    smux_keepalive: bool = False
    """True when the agent is too old to have its own keepalive off (<= 3.1.1511.0), so the smux
    client must send NOPs every 10 s (§5.1 point 3)."""
    terminate_flag_supported: bool = True
    """False for agents <= 2.3.722.0 (or unparsable versions, G12): call the TerminateSession API."""


@dataclasses.dataclass(frozen=True, slots=True)
class HandshakeFailed(Event):
    """We answered the HandshakeRequest with a failed action; the agent will cancel the session."""

    reason: str
    encryption_requested: bool = False
    """True when the failure is the KMSEncryption action, which port sessions never negotiate (§4.4)."""


@dataclasses.dataclass(frozen=True, slots=True)
class DataReceived(Event):
    """In-order port bytes from the agent (PayloadType 1), delivered exactly once."""

    data: bytes

    def __repr__(self) -> str:
        return f"DataReceived(len={len(self.data)})"


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectToPortError(Event):
    """Flag 3: the agent could not dial the destination for a new smux stream (§2.2, §5.4)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelClosed(Event):
    """The service sent ``channel_closed``: the session is over (§6.3, §6.5)."""

    output: str = ""
    session_id: str = ""
    destination_id: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class WindowFull(Event):
    """The outgoing window is full: stop reading local input until :class:`WindowOpen`."""

    unacked_messages: int = 0
    unacked_bytes: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class WindowOpen(Event):
    """Enough acks arrived (usage at or below half of both limits): local input may resume."""


@dataclasses.dataclass(frozen=True, slots=True)
class PublicationPaused(Event):
    """``pause_publication``: new data is held and nothing is resent until resumed (§2.1)."""


@dataclasses.dataclass(frozen=True, slots=True)
class PublicationResumed(Event):
    """``start_publication`` (or a reconnect) ended a pause; held data is being sent."""


@dataclasses.dataclass(frozen=True, slots=True)
class RetransmissionTimedOut(Event):
    """The oldest unacked message stayed unacked for ``give_up_after`` seconds of transmitting.

    The Go client calls the TerminateSession API in this case (§3.5, §6.3 point 3).
    """

    sequence_number: int
    resends: int
    seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class ProtocolWarning(Event):
    """Something was dropped or ignored (bad frame, unexpected type, ...). For logs and stats."""

    message: str
