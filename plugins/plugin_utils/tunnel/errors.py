# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Exceptions of the tunnel drivers (private to this collection).

Importable without ``websockets`` so that callers (the ProxyCommand helper, the AWS layer) can
catch them on any path. The tree::

    TunnelError
    ├── MissingDependency        the websockets library (>= 15) is not importable
    ├── TlsConfigError           the CA bundle cannot be loaded
    ├── WebSocketFailed          could not open (or re-open) the websocket
    ├── HandshakeFailed          the data-channel handshake failed or timed out
    ├── SessionGone              ResumeSession says the session no longer exists
    ├── ChannelClosedByService   ``channel_closed`` arrived (carries its Output)
    ├── PeerUnresponsive         a message stayed unacked for ``give_up_after`` seconds
    └── TunnelClosed             the tunnel was closed locally (aclose/terminate)
"""

from __future__ import annotations

__all__ = [
    "ChannelClosedByService",
    "HandshakeFailed",
    "MissingDependency",
    "PeerUnresponsive",
    "SessionGone",
    "TlsConfigError",
    "TunnelClosed",
    "TunnelError",
    "WebSocketFailed",
]


class TunnelError(Exception):
    """Base class of every error raised by the tunnel drivers. ``str()`` is one clear sentence."""


class MissingDependency(TunnelError):
    """The ``websockets`` Python library (>= 15) is required for the data channel."""


class TlsConfigError(TunnelError):
    """The CA bundle given for the websocket TLS context could not be used."""


class WebSocketFailed(TunnelError):
    """The websocket could not be opened, or re-opened within the retry budget (§6.4)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """HTTP status of a rejected websocket upgrade, when there was one."""


class HandshakeFailed(TunnelError):
    """The agent's HandshakeRequest could not be satisfied, or no HandshakeComplete arrived."""

    def __init__(self, message: str, *, encryption_requested: bool = False) -> None:
        super().__init__(message)
        self.encryption_requested = encryption_requested
        """True when the agent asked for KMS encryption, which port sessions never use (§4.4)."""


class SessionGone(TunnelError):
    """ResumeSession returned no token: the session timed out or was terminated (§1.1, §6.3)."""


class ChannelClosedByService(TunnelError):
    """The service closed the channel (``channel_closed``); ``output`` is its Output text."""

    def __init__(self, message: str, *, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class PeerUnresponsive(TunnelError):
    """Our oldest message stayed unacked too long; the Go client terminates the session here (§3.5)."""


class TunnelClosed(TunnelError):
    """The tunnel was closed by our side; no more writes are possible."""
