# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""JSON payloads of the data channel (ssm-data-channel.md §1.4, §2.3, §4, §6.5).

PRIVATE to this collection. Stdlib only.

What we *write* (OpenDataChannel, acknowledge, HandshakeResponse) is byte-identical to what the
official Go client writes: compact JSON, Go's key order, Go's string escaping (``<``, ``>``,
``&``, U+2028 and U+2029 escaped; other non-ASCII raw UTF-8). That lets the tests compare our
frames with the recorded vectors byte for byte (vectors README, "JSON payloads").

What we *read* (acknowledge, HandshakeRequest, HandshakeComplete, channel_closed) is parsed
leniently in key order and strictly in the fields we rely on; a payload we cannot use raises
:class:`MalformedMessage` with ``field="payload"``.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import Mapping
from typing import Any

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.constants import (
    K_MESSAGE_SCHEMA_VERSION,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.errors import MalformedMessage

__all__ = [
    "Acknowledge",
    "ActionStatus",
    "ChannelClosedPayload",
    "HandshakeComplete",
    "HandshakeRequest",
    "HandshakeResponse",
    "OpenDataChannel",
    "ProcessedClientAction",
    "RequestedClientAction",
    "decode_flag",
    "encode_flag",
    "go_json",
]

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_FLAG = struct.Struct(">I")


def go_json(value: Any) -> bytes:
    """Serialize like Go's ``encoding/json.Marshal``: compact, insertion order, HTML-safe escapes.

    Only ``<``, ``>``, ``&`` and U+2028/U+2029 differ from Python's compact ``ensure_ascii=False``
    output; they can only occur inside JSON strings, so a plain replacement is exact.
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    for char, escape in _GO_ESCAPES.items():
        if char in text:
            text = text.replace(char, escape)
    return text.encode("utf-8")


def _load_object(payload: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedMessage(f"{what} payload is not JSON", field="payload") from None
    if not isinstance(value, dict):
        raise MalformedMessage(f"{what} payload is not a JSON object", field="payload")
    return value


def _get_str(obj: Mapping[str, Any], key: str, what: str, *, required: bool = True) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise MalformedMessage(f"{what}: {key} must be a string", field="payload")
    return value


def _get_int(obj: Mapping[str, Any], key: str, what: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedMessage(f"{what}: {key} must be an integer", field="payload")
    return value


# --- OpenDataChannel (§1.4) ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OpenDataChannel:
    """The first (TEXT) websocket frame. ``token_value`` is a bearer secret: repr redacts it."""

    request_id: str
    """Fresh lowercase UUIDv4 per (re)connect."""
    token_value: str = dataclasses.field(repr=False)
    """StartSession token, or the ResumeSession token after a reconnect."""
    client_id: str
    """UUIDv4 generated once per client and kept across reconnects."""
    client_version: str
    message_schema_version: str = K_MESSAGE_SCHEMA_VERSION

    def to_text(self) -> str:
        """The exact frame text, in the Go client's field order (§1.4)."""
        return go_json(
            {
                "MessageSchemaVersion": self.message_schema_version,
                "RequestId": self.request_id,
                "TokenValue": self.token_value,
                "ClientId": self.client_id,
                "ClientVersion": self.client_version,
            }
        ).decode("utf-8")


# --- acknowledge (§2.3) -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Acknowledge:
    """Payload of an ``acknowledge`` frame. Senders match only on the sequence number (§2.3)."""

    message_type: str
    message_id: str
    sequence_number: int
    is_sequential_message: bool = True

    def to_json(self) -> bytes:
        return go_json(
            {
                "AcknowledgedMessageType": self.message_type,
                "AcknowledgedMessageId": self.message_id,
                "AcknowledgedMessageSequenceNumber": self.sequence_number,
                "IsSequentialMessage": self.is_sequential_message,
            }
        )

    @classmethod
    def from_json(cls, payload: bytes) -> Acknowledge:
        obj = _load_object(payload, "acknowledge")
        sequential = obj.get("IsSequentialMessage", True)
        return cls(
            message_type=_get_str(obj, "AcknowledgedMessageType", "acknowledge", required=False),
            message_id=_get_str(obj, "AcknowledgedMessageId", "acknowledge", required=False),
            sequence_number=_get_int(obj, "AcknowledgedMessageSequenceNumber", "acknowledge"),
            is_sequential_message=bool(sequential),
        )


# --- Handshake (§4) ---------------------------------------------------------------------------------


class ActionStatus:
    """ProcessedClientAction.ActionStatus values (§4.2)."""

    SUCCESS = 1
    FAILED = 2
    UNSUPPORTED = 3


@dataclasses.dataclass(frozen=True, slots=True)
class RequestedClientAction:
    action_type: str
    parameters: Any
    """ActionParameters as parsed JSON (an object for the known actions)."""


@dataclasses.dataclass(frozen=True, slots=True)
class HandshakeRequest:
    """HandshakeRequest (agent -> client, PayloadType 5, §4.1)."""

    agent_version: str
    actions: tuple[RequestedClientAction, ...]

    @classmethod
    def from_json(cls, payload: bytes) -> HandshakeRequest:
        obj = _load_object(payload, "HandshakeRequest")
        agent_version = _get_str(obj, "AgentVersion", "HandshakeRequest", required=False)
        raw_actions = obj.get("RequestedClientActions")
        if raw_actions is None:
            raw_actions = []
        if not isinstance(raw_actions, list):
            raise MalformedMessage("HandshakeRequest: RequestedClientActions must be a list", field="payload")
        actions = []
        for raw in raw_actions:
            if not isinstance(raw, dict):
                raise MalformedMessage("HandshakeRequest: an action is not an object", field="payload")
            actions.append(
                RequestedClientAction(
                    action_type=_get_str(raw, "ActionType", "HandshakeRequest", required=False),
                    parameters=raw.get("ActionParameters"),
                )
            )
        return cls(agent_version=agent_version, actions=tuple(actions))


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessedClientAction:
    action_type: str
    action_status: int
    action_result: Any = None
    error: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class HandshakeResponse:
    """HandshakeResponse (client -> agent, PayloadType 6, §4.2)."""

    client_version: str
    actions: tuple[ProcessedClientAction, ...]
    errors: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        """Exact Go output: ``Errors`` is ``null`` when empty, one entry per requested action."""
        return go_json(
            {
                "ClientVersion": self.client_version,
                "ProcessedClientActions": [
                    {
                        "ActionType": action.action_type,
                        "ActionStatus": action.action_status,
                        "ActionResult": action.action_result,
                        "Error": action.error,
                    }
                    for action in self.actions
                ],
                "Errors": list(self.errors) if self.errors else None,
            }
        )


@dataclasses.dataclass(frozen=True, slots=True)
class HandshakeComplete:
    """HandshakeComplete (agent -> client, PayloadType 7, §4.3)."""

    time_to_complete_ns: int
    """A Go ``time.Duration``: integer nanoseconds (G8)."""
    customer_message: str

    @classmethod
    def from_json(cls, payload: bytes) -> HandshakeComplete:
        obj = _load_object(payload, "HandshakeComplete")
        raw = obj.get("HandshakeTimeToComplete", 0)
        # G8: the Go client needs an integer; we only report the value, so tolerate a float.
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise MalformedMessage(
                "HandshakeComplete: HandshakeTimeToComplete must be a number", field="payload"
            )
        return cls(
            time_to_complete_ns=int(raw),
            customer_message=_get_str(obj, "CustomerMessage", "HandshakeComplete", required=False),
        )


# --- channel_closed (§6.5) ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelClosedPayload:
    """Payload of ``channel_closed``. Every field is optional on input (the service is closed-source)."""

    output: str = ""
    session_id: str = ""
    destination_id: str = ""
    message_id: str = ""
    created_date: str = ""

    @classmethod
    def from_json(cls, payload: bytes) -> ChannelClosedPayload:
        obj = _load_object(payload, "channel_closed")

        def text(key: str) -> str:
            value = obj.get(key)
            if value is None:
                return ""
            return value if isinstance(value, str) else str(value)

        return cls(
            output=text("Output"),
            session_id=text("SessionId"),
            destination_id=text("DestinationId"),
            message_id=text("MessageId"),
            created_date=text("CreatedDate"),
        )


# --- Flags (§2.2) ------------------------------------------------------------------------------------


def encode_flag(value: int) -> bytes:
    """Payload of a PayloadType 10 message: uint32 big-endian."""
    return _FLAG.pack(value)


def decode_flag(payload: bytes) -> int:
    if len(payload) != _FLAG.size:
        raise MalformedMessage(f"flag payload has {len(payload)} bytes, expected 4", field="payload")
    value: int = _FLAG.unpack(payload)[0]
    return value
