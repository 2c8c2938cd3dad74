"""AgentMessage binary codec, agent side (ssm-data-channel.md §2).

Written from the spec for the sandbox only. The collection's client has its own codec under
``plugins/``; the two are kept apart on purpose so that a misreading of the spec cannot hide by
being shared (see the package docstring).

Rules of this file:

1. ``encode_message`` always writes HeaderLength 116, space-padded MessageType, the true
   PayloadLength and the SHA-256 of the payload (§2, G3).
2. ``decode_message`` returns an ``AgentMessage`` or raises ``MalformedFrame``; nothing else
   escapes it (no ``struct.error``/``IndexError``).
3. The decoder reads the fixed header offsets like both Go peers and slices the payload at
   ``HeaderLength + 4`` to the end of the websocket message; it does *not* check the digest
   (the real agent never does) but reports whether it matched, so the sandbox can count it.
"""

from __future__ import annotations

import hashlib
import os
import random
import struct
import uuid
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Final

K_HEADER_LENGTH: Final = 116
"""Value of the HeaderLength field: the offset of PayloadLength, excluding itself (§2)."""
K_PREFIX_SIZE: Final = K_HEADER_LENGTH + 4
"""Bytes before the payload: the full header including PayloadLength."""
K_MESSAGE_TYPE_LENGTH: Final = 32
K_FLAG_SYN: Final = 1
K_FLAG_FIN: Final = 2
K_EMPTY_DIGEST: Final = hashlib.sha256(b"").digest()

# Offsets and layout (§2). ">" = big-endian everywhere in the AgentMessage header.
_HEAD = struct.Struct(">I32sIQqQ16s32sII")
assert _HEAD.size == K_PREFIX_SIZE


class MessageType(StrEnum):
    """Wire values of the MessageType field (§2.1)."""

    INPUT_STREAM_DATA = "input_stream_data"
    OUTPUT_STREAM_DATA = "output_stream_data"
    ACKNOWLEDGE = "acknowledge"
    CHANNEL_CLOSED = "channel_closed"
    START_PUBLICATION = "start_publication"
    PAUSE_PUBLICATION = "pause_publication"
    AGENT_SESSION_STATE = "agent_session_state"


class PayloadType(IntEnum):
    """Wire values of the PayloadType field (§2.2)."""

    NONE = 0
    OUTPUT = 1
    ERROR = 2
    SIZE = 3
    PARAMETER = 4
    HANDSHAKE_REQUEST = 5
    HANDSHAKE_RESPONSE = 6
    HANDSHAKE_COMPLETE = 7
    ENC_CHALLENGE_REQUEST = 8
    ENC_CHALLENGE_RESPONSE = 9
    FLAG = 10
    STDERR = 11
    EXIT_CODE = 12


class Flag(IntEnum):
    """Values carried in a PayloadType FLAG payload as a 4-byte big-endian uint32 (§2.2)."""

    DISCONNECT_TO_PORT = 1
    TERMINATE_SESSION = 2
    CONNECT_TO_PORT_ERROR = 3


class MalformedFrame(ValueError):
    """The bytes are not an AgentMessage we can read; the frame is dropped without an ack."""

    def __init__(self, reason: str, *, offset: int | None = None) -> None:
        super().__init__(reason if offset is None else f"{reason} (offset {offset})")
        self.reason = reason
        self.offset = offset


@dataclass(frozen=True, slots=True)
class AgentMessage:
    """One decoded AgentMessage; ``str()`` is safe to log (no payload bytes beyond a prefix)."""

    message_type: str
    schema_version: int
    created_date: int
    sequence_number: int
    flags: int
    wire_id: bytes
    """MessageId as found on the wire (halves swapped); see ``message_id``."""
    payload_type: int
    payload: bytes
    header_length: int = K_HEADER_LENGTH
    payload_length: int = -1
    """The declared PayloadLength; -1 when the message was built rather than decoded."""
    payload_digest: bytes = b""
    """The digest as found on the wire (empty when built rather than decoded)."""

    @property
    def message_id(self) -> uuid.UUID:
        """The canonical UUID (computed on demand: acks never need it)."""
        return uuid_from_wire(self.wire_id)

    @property
    def message_id_text(self) -> str:
        """``str(self.message_id)`` (what an ack names, §2.3) straight from the wire bytes."""
        return wire_to_text(self.wire_id)

    @property
    def digest_ok(self) -> bool:
        """Whether the wire digest is the SHA-256 of the payload (§2 "Digest validation")."""
        return self.payload_digest == hashlib.sha256(self.payload).digest()

    @property
    def length_ok(self) -> bool:
        """Whether the declared PayloadLength agrees with the sliced payload (§2)."""
        return self.payload_length == len(self.payload)

    def __str__(self) -> str:
        return (
            f"{self.message_type} seq={self.sequence_number} pt={self.payload_type} "
            f"flags={self.flags} len={len(self.payload)}"
        )


_ids = random.Random(os.urandom(32))  # message ids need uniqueness, not secrecy


def new_message_id() -> uuid.UUID:
    """A random version-4 UUID without a getrandom() call per message (throughput)."""
    return uuid.UUID(int=_ids.getrandbits(128), version=4)


_V4_BITS: Final = (0x4000 << 64) | (0x8000 << 48)
_V4_KEEP: Final = ~((0xF000 << 64) | (0xC000 << 48))


def new_wire_id() -> bytes:
    """``uuid_to_wire(new_message_id())`` without the UUID object (one per frame sent)."""
    value = (_ids.getrandbits(128) & _V4_KEEP) | _V4_BITS
    canonical = value.to_bytes(16, "big")
    return canonical[8:] + canonical[:8]


def wire_to_text(wire: bytes) -> str:
    """``str(uuid_from_wire(wire))``: the canonical hyphenated form of a wire MessageId."""
    text = (wire[8:16] + wire[0:8]).hex()
    return "-".join((text[0:8], text[8:12], text[12:16], text[16:20], text[20:32]))


def uuid_to_wire(message_id: uuid.UUID) -> bytes:
    """The MessageId on the wire: the two 8-byte halves of the RFC 4122 bytes swapped (§2)."""
    raw = message_id.bytes
    return raw[8:] + raw[:8]


def uuid_from_wire(wire: bytes) -> uuid.UUID:
    """Inverse of ``uuid_to_wire``."""
    return uuid.UUID(bytes=wire[8:16] + wire[0:8])


def encode_message(
    message_type: str,
    *,
    payload: bytes,
    created_date: int,
    message_id: uuid.UUID | None = None,
    wire_id: bytes | None = None,
    sequence_number: int = 0,
    flags: int = 0,
    payload_type: int = 0,
    schema_version: int = 1,
    digest: bytes | None = None,
) -> bytes:
    """Serialise one AgentMessage.

    The MessageId is ``message_id``, or ``wire_id`` when it is already in wire order (16 bytes,
    halves swapped; ``new_wire_id``). ``digest`` exists only so the fault injector can send a
    deliberately wrong digest; normal callers leave it to be computed.
    """
    if wire_id is None:
        if message_id is None:
            raise ValueError("encode_message needs message_id or wire_id")
        wire_id = uuid_to_wire(message_id)
    elif len(wire_id) != 16:
        raise ValueError("wire_id must be 16 bytes")
    name = message_type.encode("ascii")
    if len(name) > K_MESSAGE_TYPE_LENGTH:
        raise ValueError(f"MessageType longer than {K_MESSAGE_TYPE_LENGTH} bytes: {message_type!r}")
    head = _HEAD.pack(
        K_HEADER_LENGTH,
        name.ljust(K_MESSAGE_TYPE_LENGTH, b" "),
        schema_version,
        created_date,
        sequence_number,
        flags,
        wire_id,
        hashlib.sha256(payload).digest() if digest is None else digest,
        payload_type,
        len(payload),
    )
    return head + payload


def decode_message(data: bytes) -> AgentMessage:
    """Parse one websocket binary message into an ``AgentMessage``.

    Raises ``MalformedFrame`` for anything the agent could not read: a frame shorter than the
    header, a HeaderLength other than 116 (a writer must always emit 116, and any other value
    would shift the payload), a MessageType that is not ASCII or is empty, or CreatedDate 0
    (the agent's ``Validate``).
    """
    if len(data) < K_PREFIX_SIZE:
        raise MalformedFrame(f"frame of {len(data)} bytes is shorter than the {K_PREFIX_SIZE}-byte header")
    (
        header_length,
        raw_type,
        schema_version,
        created_date,
        sequence_number,
        flags,
        wire_id,
        digest,
        payload_type,
        payload_length,
    ) = _HEAD.unpack_from(data)
    if header_length != K_HEADER_LENGTH:
        raise MalformedFrame(f"HeaderLength is {header_length}, expected {K_HEADER_LENGTH}", offset=0)
    try:
        message_type = raw_type.decode("ascii").strip("\x00").strip()
    except UnicodeDecodeError as exc:
        raise MalformedFrame("MessageType is not ASCII", offset=4) from exc
    if not message_type:
        raise MalformedFrame("MessageType is empty", offset=4)
    if created_date == 0:
        raise MalformedFrame("CreatedDate is 0", offset=40)
    return AgentMessage(
        message_type=message_type,
        schema_version=schema_version,
        created_date=created_date,
        sequence_number=sequence_number,
        flags=flags,
        wire_id=wire_id,
        payload_type=payload_type,
        payload=bytes(data[K_PREFIX_SIZE:]),
        header_length=header_length,
        payload_length=payload_length,
        payload_digest=digest,
    )


def flag_payload(flag: Flag) -> bytes:
    """Payload of a PayloadType FLAG message (§2.2)."""
    return struct.pack(">I", int(flag))


def parse_flag(payload: bytes) -> int | None:
    """The flag value of a FLAG payload (its first 4 bytes, as the agent reads it), or None."""
    if len(payload) < 4:
        return None
    value: int = struct.unpack_from(">I", payload)[0]
    return value
