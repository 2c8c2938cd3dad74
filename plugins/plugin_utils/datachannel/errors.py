# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Exceptions of the sans-IO data-channel core (private to this collection).

The tree::

    DataChannelError
    ├── MalformedMessage      bytes from the peer that cannot be a valid AgentMessage/payload
    ├── LocalProtocolError    our caller asked for something the protocol forbids
    └── RemoteProtocolError   the peer broke the protocol in a way that ends the session

Peer bytes never make :class:`DataChannel.receive_frame` raise: a malformed frame is dropped
and counted (ssm-data-channel.md §6.6), because one bad frame must never stop the reader (G17).
:class:`MalformedMessage` is what the pure codec functions raise, so that callers (and the
Hypothesis tests) can tell "rejected input" apart from a bug; any other exception escaping
:func:`decode` is a bug.
"""

from __future__ import annotations

__all__ = [
    "DataChannelError",
    "LocalProtocolError",
    "MalformedMessage",
    "RemoteProtocolError",
]


class DataChannelError(Exception):
    """Base class of every error raised by the data-channel core."""


class MalformedMessage(DataChannelError):
    """A frame or payload from the peer could not be parsed or failed validation.

    ``field`` names the offending header field (or ``"payload"``) and ``offset`` its byte
    offset in the frame, when that is meaningful, so that log lines point at the problem.
    """

    def __init__(self, reason: str, *, field: str | None = None, offset: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        """Human-readable reason; never contains payload bytes."""
        self.field = field
        """Header field name (``"HeaderLength"``, ``"MessageType"``, ...) or ``"payload"``."""
        self.offset = offset
        """Byte offset of ``field`` in the frame, if applicable."""

    def __str__(self) -> str:
        where = ""
        if self.field is not None:
            where = f" [{self.field}"
            if self.offset is not None:
                where += f" @ {self.offset}"
            where += "]"
        return f"{self.reason}{where}"


class LocalProtocolError(DataChannelError):
    """The caller misused the core, e.g. sent data before HandshakeComplete (G7) or after close."""


class RemoteProtocolError(DataChannelError):
    """The peer violated the protocol in a way that cannot be recovered by dropping a frame."""
