# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sans-IO smux v1 client, the multiplexer of mux-mode port sessions (ssm-data-channel.md §5.4).

PRIVATE to this collection. Stdlib only, no clock (``now`` is passed in).

Rules of this file:

1. Frames are ``version u8 | cmd u8 | length u16 | stream id u32`` **little-endian** (G3), then
   ``length`` data bytes. Only PSH carries data; writers split data into frames of at most
   32 768 bytes, readers accept up to 65 535.
2. SSM message boundaries are unrelated to frame boundaries: :meth:`SmuxClient.receive_data`
   reassembles a continuous byte stream.
3. Stream ids opened by the client are odd and start at 3. The agent never opens streams: a SYN
   from it is ignored, as are PSH/FIN for unknown ids.
4. A wrong version byte or an unknown command is a protocol error that ends the mux
   (``MuxFailed``); everything after it is ignored.
5. Keepalive NOPs (stream 0, every 10 s) only when asked for, i.e. for agents <= 3.1.1511.0
   (§5.1 point 3). We never enforce an idle timeout ourselves (point 4).
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import struct

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.errors import (
    LocalProtocolError,
    MalformedMessage,
)

__all__ = [
    "K_SMUX_KEEPALIVE_INTERVAL",
    "K_SMUX_MAX_FRAME_SIZE",
    "K_SMUX_VERSION",
    "MuxFailed",
    "SmuxClient",
    "SmuxCommand",
    "SmuxEvent",
    "SmuxFrame",
    "StreamDataReceived",
    "StreamFinished",
    "parse_frames",
]

K_SMUX_VERSION = 1
K_SMUX_MAX_FRAME_SIZE = 32768
K_SMUX_KEEPALIVE_INTERVAL = 10.0
K_SMUX_FIRST_CLIENT_STREAM = 3
_HEADER = struct.Struct("<BBHI")


class SmuxCommand(enum.IntEnum):
    SYN = 0
    FIN = 1
    PSH = 2
    NOP = 3


_COMMANDS = frozenset(int(command) for command in SmuxCommand)


@dataclasses.dataclass(frozen=True, slots=True)
class SmuxFrame:
    command: SmuxCommand
    stream_id: int
    data: bytes = b""

    def encode(self) -> bytes:
        if len(self.data) > 0xFFFF:
            raise LocalProtocolError("smux frame data longer than 65535 bytes")
        return _HEADER.pack(K_SMUX_VERSION, self.command, len(self.data), self.stream_id) + self.data


def parse_frames(buffer: bytes | bytearray) -> tuple[list[SmuxFrame], int]:
    """Parse every complete frame at the start of ``buffer``.

    Returns the frames and the number of bytes they used; an incomplete trailing frame is left.

    Raises:
        MalformedMessage: wrong version or unknown command (rule 4).
    """
    frames: list[SmuxFrame] = []
    offset = 0
    while len(buffer) - offset >= _HEADER.size:
        version, command, length, stream_id = _HEADER.unpack_from(buffer, offset)
        if version != K_SMUX_VERSION:
            raise MalformedMessage(f"smux version {version}, expected 1", field="smux version", offset=offset)
        if command not in _COMMANDS:
            raise MalformedMessage(f"unknown smux command {command}", field="smux cmd", offset=offset + 1)
        end = offset + _HEADER.size + length
        if end > len(buffer):
            break
        frames.append(SmuxFrame(SmuxCommand(command), stream_id, bytes(buffer[offset + _HEADER.size : end])))
        offset = end
    return frames, offset


@dataclasses.dataclass(frozen=True, slots=True)
class SmuxEvent:
    """Base class of smux events."""


@dataclasses.dataclass(frozen=True, slots=True)
class StreamDataReceived(SmuxEvent):
    stream_id: int
    data: bytes

    def __repr__(self) -> str:
        return f"StreamDataReceived(stream_id={self.stream_id}, len={len(self.data)})"


@dataclasses.dataclass(frozen=True, slots=True)
class StreamFinished(SmuxEvent):
    """The agent sent FIN: the stream's destination connection is gone."""

    stream_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class MuxFailed(SmuxEvent):
    reason: str


@dataclasses.dataclass(slots=True)
class _Stream:
    local_fin: bool = False
    remote_fin: bool = False


class SmuxClient:
    """smux v1 client session: local streams in, one byte stream out (and back)."""

    def __init__(
        self,
        *,
        keepalive_interval: float | None = None,
        now: float = 0.0,
        max_frame_size: int = K_SMUX_MAX_FRAME_SIZE,
    ) -> None:
        """Args:
        keepalive_interval: seconds between NOPs, or None for no keepalive (rule 5).
        now: start of the keepalive clock.
        max_frame_size: largest PSH data per frame (smux default 32768).
        """
        if not 1 <= max_frame_size <= 0xFFFF:
            raise ValueError("max_frame_size must be within 1..65535")
        self.max_frame_size = max_frame_size
        self.keepalive_interval = keepalive_interval
        self._next_keepalive = now + keepalive_interval if keepalive_interval else None
        self._next_id = K_SMUX_FIRST_CLIENT_STREAM
        self._streams: dict[int, _Stream] = {}
        self._inbuf = bytearray()
        self._outbuf = bytearray()
        self._events: collections.deque[SmuxEvent] = collections.deque()
        self._failed = False
        self.ignored_frames = 0
        """PSH/FIN for unknown streams, and agent SYNs: ignored per rule 3."""

    @property
    def failed(self) -> bool:
        return self._failed

    @property
    def pending_output(self) -> int:
        """Bytes queued for the data channel (the driver's backpressure gauge)."""
        return len(self._outbuf)

    @property
    def open_streams(self) -> frozenset[int]:
        return frozenset(self._streams)

    def open_stream(self) -> int:
        """Open a stream (queues SYN) and return its id: 3, 5, 7, ..."""
        self._check_usable()
        stream_id = self._next_id
        self._next_id += 2
        self._streams[stream_id] = _Stream()
        self._queue(SmuxFrame(SmuxCommand.SYN, stream_id))
        return stream_id

    def send(self, stream_id: int, data: bytes | bytearray | memoryview) -> None:
        """Queue PSH frames of at most ``max_frame_size`` bytes."""
        self._check_usable()
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_fin:
            raise LocalProtocolError(f"smux stream {stream_id} is not open for sending")
        view = memoryview(data).cast("B")
        for start in range(0, len(view), self.max_frame_size):
            self._queue(
                SmuxFrame(SmuxCommand.PSH, stream_id, bytes(view[start : start + self.max_frame_size]))
            )

    def close_stream(self, stream_id: int) -> None:
        """Queue FIN for a stream (idempotent). Incoming data is still delivered until the agent's
        FIN, so nothing already in flight is lost."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_fin or self._failed:
            return
        stream.local_fin = True
        self._queue(SmuxFrame(SmuxCommand.FIN, stream_id))
        if stream.remote_fin:
            del self._streams[stream_id]

    def forget_stream(self, stream_id: int) -> None:
        """Drop local state of a stream whose local socket is gone (after :meth:`close_stream`)."""
        self._streams.pop(stream_id, None)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the data channel (any split, rule 2)."""
        if self._failed:
            return
        self._inbuf += data
        try:
            frames, used = parse_frames(self._inbuf)
        except MalformedMessage as exc:
            self._failed = True
            self._inbuf.clear()
            self._events.append(MuxFailed(str(exc)))
            return
        del self._inbuf[:used]
        for frame in frames:
            self._on_frame(frame)

    def next_event(self) -> SmuxEvent | None:
        return self._events.popleft() if self._events else None

    def data_to_send(self) -> bytes:
        """Bytes to send through the data channel. Clears the buffer."""
        data = bytes(self._outbuf)
        self._outbuf.clear()
        return data

    def get_timer(self) -> float | None:
        return None if self._failed else self._next_keepalive

    def handle_timer(self, now: float) -> None:
        if self._failed or self._next_keepalive is None or self.keepalive_interval is None:
            return
        if now >= self._next_keepalive:
            self._queue(SmuxFrame(SmuxCommand.NOP, 0))
            self._next_keepalive = now + self.keepalive_interval

    def _check_usable(self) -> None:
        if self._failed:
            raise LocalProtocolError("the smux session failed")

    def _queue(self, frame: SmuxFrame) -> None:
        self._outbuf += frame.encode()

    def _on_frame(self, frame: SmuxFrame) -> None:
        stream = self._streams.get(frame.stream_id)
        if frame.command is SmuxCommand.NOP:
            return
        if frame.command is SmuxCommand.SYN or stream is None or stream.remote_fin:
            self.ignored_frames += 1
            return
        if frame.command is SmuxCommand.PSH:
            if frame.data:
                self._events.append(StreamDataReceived(frame.stream_id, frame.data))
            return
        # FIN
        stream.remote_fin = True
        self._events.append(StreamFinished(frame.stream_id))
        if stream.local_fin:
            del self._streams[frame.stream_id]
