# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""AgentMessage: the binary frame of the SSM data channel (ssm-data-channel.md §2).

PRIVATE to this collection. Pure functions and a frozen dataclass; stdlib only.

Rules of this file:

1. :func:`encode` writes exactly what the official serializers write: HeaderLength 116, the
   MessageType space-padded to 32 bytes, big-endian integers, SHA-256 of the payload, and the
   MessageId with its two 8-byte halves swapped (G3). Re-encoding a decoded official frame gives
   the same bytes.
2. :func:`decode` raises :class:`MalformedMessage` for every input it rejects and nothing else:
   short frames, HeaderLength other than 116 (the Go reader panics on a HeaderLength that points
   past the end, G17), unknown or non-ASCII MessageType, CreatedDate 0, digest mismatch. Any other
   exception escaping it is a bug (the Hypothesis tests check this).
3. The payload is everything after byte 120, as the official readers slice it; PayloadLength is
   only cross-checked and a disagreement is reported as a warning, not a rejection (§2).
4. ``start_publication``/``pause_publication`` skip the CreatedDate and digest checks, as the Go
   client does: the service may send them without valid header fields (§6.6, plugin issue #22).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import os
import random
import struct
import uuid

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.constants import (
    K_HEADER_LENGTH,
    K_HEADER_SIZE,
    K_MESSAGE_TYPE_SIZE,
    K_SCHEMA_VERSION,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.errors import (
    LocalProtocolError,
    MalformedMessage,
)

__all__ = [
    "AgentMessage",
    "Flag",
    "MessageIdSource",
    "MessageType",
    "PayloadType",
    "decode",
    "encode",
    "encode_fields",
    "uuid_to_wire",
    "wire_id_to_str",
]


class MessageType(enum.StrEnum):
    """MessageType values; the enum value is the wire string (§2.1)."""

    INPUT_STREAM_DATA = "input_stream_data"
    OUTPUT_STREAM_DATA = "output_stream_data"
    ACKNOWLEDGE = "acknowledge"
    CHANNEL_CLOSED = "channel_closed"
    START_PUBLICATION = "start_publication"
    PAUSE_PUBLICATION = "pause_publication"
    AGENT_SESSION_STATE = "agent_session_state"


_UNVALIDATED_TYPES = frozenset({MessageType.START_PUBLICATION, MessageType.PAUSE_PUBLICATION})
_WIRE_TYPES = {t: t.value.encode("ascii").ljust(K_MESSAGE_TYPE_SIZE, b" ") for t in MessageType}
"""§2: the writer fills all 32 bytes with spaces, then writes the name (G3)."""
_TYPES_BY_WIRE = {wire: t for t, wire in _WIRE_TYPES.items()}
"""The common case of :func:`_parse_message_type` (space padding, as every official writer emits)
as one dict lookup; anything else takes the general path."""


class PayloadType(enum.IntEnum):
    """PayloadType values (§2.2). ``NONE`` (0) is what acks and control messages carry."""

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


class Flag(enum.IntEnum):
    """Payload of a PayloadType 10 message: a 4-byte big-endian uint32 (§2.2)."""

    DISCONNECT_TO_PORT = 1
    TERMINATE_SESSION = 2
    CONNECT_TO_PORT_ERROR = 3


# HeaderLength, MessageType, SchemaVersion, CreatedDate, SequenceNumber, Flags, MessageId (raw),
# PayloadDigest, PayloadType, PayloadLength -- §2 table, all big-endian (G3).
_PAYLOAD_TYPE_CLASSES = (int, PayloadType)
_HEADER = struct.Struct(">I32sIQqQ16s32sII")
if _HEADER.size != K_HEADER_SIZE:  # pragma: no cover - guards an edit of the format string
    raise AssertionError("AgentMessage header layout must be 120 bytes")

_UINT32_MAX = 2**32 - 1
_UINT64_MAX = 2**64 - 1
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_LOG_PREVIEW = 16


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class AgentMessage:
    """One decoded AgentMessage. Equality compares every field including the payload.

    ``payload_type`` is a plain ``int`` so that an unknown value from the peer survives a
    round trip; compare it with :class:`PayloadType` members.
    """

    message_type: MessageType
    """Wire MessageType (padding stripped)."""
    created_date: int
    """Unix epoch milliseconds (UTC); receivers reject 0 except for publication messages."""
    message_id: uuid.UUID
    """Canonical UUID (the half swap is undone on decode and redone on encode)."""
    sequence_number: int = 0
    """Stream sequence for ``*_stream_data``; 0 for acks and control messages."""
    flags: int = 0
    """Bitfield (bit0 SYN, bit1 FIN); nobody inspects it on receipt (§2)."""
    payload_type: int = PayloadType.NONE
    payload: bytes = b""
    schema_version: int = K_SCHEMA_VERSION

    def __post_init__(self) -> None:
        # Validate that every field fits its wire slot, so that encode() cannot fail later. One
        # combined test keeps the common case cheap (this runs for every message, both ways).
        # Exact type checks on purpose: bool and other int subclasses take _explain_invalid's path.
        if (  # pylint: disable=unidiomatic-typecheck
            type(self.message_type) is MessageType
            and type(self.message_id) is uuid.UUID
            and type(self.payload) is bytes
            and type(self.schema_version) is int
            and type(self.created_date) is int
            and type(self.sequence_number) is int
            and type(self.flags) is int
            and type(self.payload_type) in _PAYLOAD_TYPE_CLASSES
            and 0 <= self.schema_version <= _UINT32_MAX
            and 0 <= self.created_date <= _UINT64_MAX
            and _INT64_MIN <= self.sequence_number <= _INT64_MAX
            and 0 <= self.flags <= _UINT64_MAX
            and 0 <= self.payload_type <= _UINT32_MAX
            and len(self.payload) <= _UINT32_MAX
        ):
            return
        self._explain_invalid()

    def _explain_invalid(self) -> None:
        if not isinstance(self.message_type, MessageType):
            raise LocalProtocolError(f"message_type must be a MessageType, got {self.message_type!r}")
        if not isinstance(self.message_id, uuid.UUID):
            raise LocalProtocolError("message_id must be a uuid.UUID")
        if not isinstance(self.payload, bytes):
            raise LocalProtocolError("payload must be bytes")
        _check_range("schema_version", self.schema_version, 0, _UINT32_MAX)
        _check_range("created_date", self.created_date, 0, _UINT64_MAX)
        _check_range("sequence_number", self.sequence_number, _INT64_MIN, _INT64_MAX)
        _check_range("flags", self.flags, 0, _UINT64_MAX)
        _check_range("payload_type", self.payload_type, 0, _UINT32_MAX)
        _check_range("payload length", len(self.payload), 0, _UINT32_MAX)
        raise LocalProtocolError("AgentMessage field of an unsupported type")

    def __repr__(self) -> str:
        """Log-safe: type, sequence, payload type and length; a short payload prefix only for
        control payloads (acks/handshake JSON), never for port data."""
        try:
            pt_name = PayloadType(self.payload_type).name
        except ValueError:
            pt_name = str(self.payload_type)
        text = (
            f"AgentMessage({self.message_type.value} seq={self.sequence_number} pt={pt_name} "
            f"len={len(self.payload)} id={self.message_id})"
        )
        if self.payload_type not in (PayloadType.OUTPUT, PayloadType.FLAG) and self.payload:
            preview = self.payload[:_LOG_PREVIEW].decode("ascii", "backslashreplace")
            ellipsis = "..." if len(self.payload) > _LOG_PREVIEW else ""
            text = f"{text[:-1]} payload={preview!r}{ellipsis})"
        return text

    __str__ = __repr__


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise LocalProtocolError(f"{name} out of range for its wire field: {value!r}")


def _uuid_to_wire(value: uuid.UUID) -> bytes:
    # ssm-data-channel.md §2 "UUID quirk": second half first, each half big-endian.
    raw = value.bytes
    return raw[8:16] + raw[0:8]


def _uuid_from_wire(raw: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=raw[8:16] + raw[0:8])


def wire_id_to_str(raw: bytes) -> str:
    """Canonical string of a MessageId given in wire order (16 bytes, halves swapped, §2).

    Equal to ``str(_uuid_from_wire(raw))`` without building a UUID: this runs once per ack.
    """
    h = raw.hex()
    # canonical hex = h[16:32] + h[0:16]; then the 8-4-4-4-12 grouping
    return f"{h[16:24]}-{h[24:28]}-{h[28:32]}-{h[0:4]}-{h[4:16]}"


_LOW64 = (1 << 64) - 1
# uuid.UUID(int=..., version=4): clear the variant and version bits, then set RFC 4122 / 4.
_V4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_V4_SET = (0x8000 << 48) | (4 << 76)


class MessageIdSource:
    """Random version-4 MessageIds, produced directly in wire order (§2 "UUID quirk").

    MessageIds only need to be unique, not secret (the peer echoes them in acks, and they travel
    next to the payload they name), so they come from a Mersenne Twister seeded with 256 bits from
    ``os.urandom`` instead of one ``getrandom()`` syscall plus a ``uuid.UUID`` object per message:
    with per-message acks that was several percent of the tunnel's CPU time.
    """

    __slots__ = ("_bits",)

    def __init__(self, seed: bytes | None = None) -> None:
        self._bits = random.Random(seed if seed is not None else os.urandom(32)).getrandbits  # noqa: S311 - ids, not secrets

    def wire(self) -> bytes:
        """16 bytes for the MessageId field: a v4 UUID with its two halves swapped."""
        value = (self._bits(128) & _V4_CLEAR) | _V4_SET
        return ((value & _LOW64) << 64 | value >> 64).to_bytes(16, "big")


def encode_fields(  # noqa: PLR0917 - positional on purpose: it runs for every frame
    wire_type: bytes,
    created_date: int,
    sequence_number: int,
    flags: int,
    wire_id: bytes,
    payload_type: int,
    payload: bytes,
) -> bytes:
    """:func:`encode` for callers that already hold valid wire values (the session's hot paths).

    ``wire_type`` is the 32-byte space-padded MessageType (:data:`WIRE_TYPES`) and ``wire_id`` the
    MessageId in wire order (:meth:`MessageIdSource.wire`). Produces the same bytes as
    :func:`encode` of the equivalent :class:`AgentMessage`; no range checks are made here.
    """
    return (
        _HEADER.pack(
            K_HEADER_LENGTH,
            wire_type,
            K_SCHEMA_VERSION,
            created_date,
            sequence_number,
            flags,
            wire_id,
            hashlib.sha256(payload).digest(),
            payload_type,
            len(payload),
        )
        + payload
    )


WIRE_TYPES = _WIRE_TYPES
"""MessageType -> its 32 space-padded wire bytes, for :func:`encode_fields`."""
uuid_to_wire = _uuid_to_wire
HEADER = _HEADER
"""The 120-byte header layout (``struct``), for the session's decoding fast path."""
TYPES_BY_WIRE = _TYPES_BY_WIRE


def encode(message: AgentMessage) -> bytes:
    """Serialize ``message`` exactly as the official peers do (§2).

    HeaderLength, PayloadLength and PayloadDigest are computed here, never taken from the caller.
    Unlike the official serializers (G18) an empty payload is allowed.
    """
    header = _HEADER.pack(
        K_HEADER_LENGTH,
        _WIRE_TYPES[message.message_type],
        message.schema_version,
        message.created_date,
        message.sequence_number,
        message.flags,
        _uuid_to_wire(message.message_id),
        hashlib.sha256(message.payload).digest(),
        message.payload_type,
        len(message.payload),
    )
    return header + message.payload


def decode(frame: bytes | bytearray | memoryview, *, warnings: list[str] | None = None) -> AgentMessage:
    """Parse one websocket binary message into an :class:`AgentMessage`.

    Args:
        frame: the whole websocket message (exactly one AgentMessage, §1.4).
        warnings: if given, non-fatal findings (a PayloadLength that disagrees with the frame
            length) are appended as text; the frame is still accepted (§2).

    Raises:
        MalformedMessage: for every rejected frame (see the rules at the top of this module).
    """
    data = bytes(frame)
    if len(data) < K_HEADER_SIZE:
        raise MalformedMessage(
            f"frame of {len(data)} bytes is shorter than the {K_HEADER_SIZE}-byte header",
            field="header",
            offset=len(data),
        )
    (
        header_length,
        raw_type,
        schema_version,
        created_date,
        sequence_number,
        flags,
        raw_id,
        digest,
        payload_type,
        payload_length,
    ) = _HEADER.unpack_from(data)
    if header_length != K_HEADER_LENGTH:
        # §2 "Bounds-check HeaderLength": never slice by an untrusted HeaderLength.
        raise MalformedMessage(
            f"HeaderLength is {header_length}, expected 116", field="HeaderLength", offset=0
        )
    message_type = _parse_message_type(raw_type)
    payload = data[K_HEADER_SIZE:]
    if message_type not in _UNVALIDATED_TYPES:
        if created_date == 0:
            raise MalformedMessage("CreatedDate is 0", field="CreatedDate", offset=40)
        if hashlib.sha256(payload).digest() != digest:
            raise MalformedMessage(
                "PayloadDigest does not match the payload", field="PayloadDigest", offset=80
            )
    if payload_length != len(payload) and warnings is not None:
        warnings.append(
            f"PayloadLength {payload_length} disagrees with the {len(payload)} payload bytes received"
        )
    return AgentMessage(
        message_type=message_type,
        schema_version=schema_version,
        created_date=created_date,
        sequence_number=sequence_number,
        flags=flags,
        message_id=_uuid_from_wire(raw_id),
        payload_type=payload_type,
        payload=payload,
    )


def _parse_message_type(raw: bytes) -> MessageType:
    known = _TYPES_BY_WIRE.get(raw)
    if known is not None:
        return known
    # §2: writers pad with spaces; readers strip NULs, then whitespace, so accept either.
    stripped = raw.strip(b"\x00").strip()
    try:
        name = stripped.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedMessage("MessageType is not ASCII", field="MessageType", offset=4) from None
    try:
        return MessageType(name)
    except ValueError:
        raise MalformedMessage(f"unknown MessageType {name[:32]!r}", field="MessageType", offset=4) from None
