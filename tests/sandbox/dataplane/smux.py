"""smux protocol version 1 framing, sans-IO (§5.4).

The agent runs an smux *server* over the byte stream carried by the data channel. SSM message
boundaries have nothing to do with smux frame boundaries, so ``SmuxParser`` reassembles a
continuous byte stream and yields whole frames. Header fields are little-endian (G3).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

K_SMUX_VERSION: Final = 1
K_HEADER_SIZE: Final = 8
K_MAX_FRAME_SIZE: Final = 32_768
"""What smux writers put in one PSH frame (``MaxFrameSize``); readers accept up to 65 535."""
K_MAX_RECEIVE_BUFFER: Final = 4 * 1024 * 1024
"""The session-wide receive bucket; the reader stops while it is exhausted (§5.4)."""
K_KEEPALIVE_INTERVAL: Final = 10.0
K_KEEPALIVE_TIMEOUT: Final = 30.0

_HEADER = struct.Struct("<BBHI")


class Command(IntEnum):
    SYN = 0
    FIN = 1
    PSH = 2
    NOP = 3


class SmuxProtocolError(ValueError):
    """A version or command smux v1 does not know; it closes the whole mux."""


@dataclass(frozen=True, slots=True)
class SmuxFrame:
    cmd: Command
    stream_id: int
    data: bytes = b""


def encode_frame(cmd: Command, stream_id: int, data: bytes = b"") -> bytes:
    """One frame; only PSH carries data."""
    if len(data) > 0xFFFF:
        raise ValueError("smux frame data longer than 65535 bytes")
    return _HEADER.pack(K_SMUX_VERSION, cmd, len(data), stream_id) + data


def encode_data(stream_id: int, data: bytes, max_frame: int = K_MAX_FRAME_SIZE) -> bytes:
    """PSH frames for ``data``, split like an smux writer (at most ``max_frame`` each)."""
    view = memoryview(data)
    return b"".join(
        encode_frame(Command.PSH, stream_id, bytes(view[i : i + max_frame]))
        for i in range(0, len(data), max_frame)
    )


class SmuxParser:
    """Incremental parser: ``feed`` bytes, get the frames completed by them."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[SmuxFrame]:
        """Raises ``SmuxProtocolError`` on a bad version or command (the mux is then dead)."""
        self._buffer += data
        frames: list[SmuxFrame] = []
        buffer = self._buffer
        offset = 0
        while len(buffer) - offset >= K_HEADER_SIZE:
            version, cmd, length, stream_id = _HEADER.unpack_from(buffer, offset)
            if version != K_SMUX_VERSION:
                raise SmuxProtocolError(f"smux version {version}, expected {K_SMUX_VERSION}")
            if cmd > Command.NOP:
                raise SmuxProtocolError(f"unknown smux command {cmd}")
            command = Command(cmd)
            # Only PSH has a body; the length of other commands is ignored, like smux does.
            body = length if command is Command.PSH else 0
            end = offset + K_HEADER_SIZE + body
            if end > len(buffer):
                break
            frames.append(SmuxFrame(command, stream_id, bytes(buffer[offset + K_HEADER_SIZE : end])))
            offset = end
        del buffer[:offset]
        return frames
