"""JSON payloads the agent and the service exchange with the client (§1.4, §2.3, §4, §6.5).

Builders emit compact JSON in the key order the Go peers use, so the bytes match the reference
vectors; parsers accept any key order and raise ``PayloadError`` on anything unusable. Each
parser is strict about types where the spec says a Go peer would silently misbehave (G8), so a
client bug shows up here instead of as a mystery against AWS.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any


class PayloadError(ValueError):
    """A JSON payload the agent cannot use; the message carrying it is treated as malformed."""


def go_json(value: Any) -> bytes:
    """Compact JSON like Go's ``encoding/json``: no spaces, UTF-8, HTML characters escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, escaped)
    return text.encode("utf-8")


def _load_object(payload: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"{what} payload is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise PayloadError(f"{what} payload is not a JSON object")
    return value


# --- acknowledge (§2.3) -------------------------------------------------------------------


def ack_payload(acked_type: str, acked_id: uuid.UUID | str, acked_seq: int) -> bytes:
    """The acknowledge content for one stream message, in Go's field order.

    ``acked_id`` may be the canonical string already (``AgentMessage.message_id_text``)."""
    return (
        b'{"AcknowledgedMessageType":"'
        + acked_type.encode("ascii")
        + b'","AcknowledgedMessageId":"'
        + str(acked_id).encode("ascii")
        + b'","AcknowledgedMessageSequenceNumber":'
        + str(acked_seq).encode("ascii")
        + b',"IsSequentialMessage":true}'
    )


# §2.3 shows the one shape every peer emits: compact, Go's key order. Such a payload is parsed
# by this pattern; any other spelling of the same JSON goes through json.loads below. The
# strings are restricted to printable ASCII without quote or backslash and the number to 18 digits, so
# whatever matches is valid JSON whose AcknowledgedMessageSequenceNumber is that integer.
_COMPACT_ACK = re.compile(
    rb'\{"AcknowledgedMessageType":"[ !#-\[\]-~]*","AcknowledgedMessageId":"[ !#-\[\]-~]*",'
    rb'"AcknowledgedMessageSequenceNumber":(?P<seq>-?(?:0|[1-9][0-9]{0,17})),'
    rb'"IsSequentialMessage":(?:true|false)\}'
)


def parse_ack(payload: bytes) -> int:
    """The acknowledged sequence number; senders match acks on nothing else (§2.3)."""
    compact = _COMPACT_ACK.fullmatch(payload)
    if compact is not None:
        return int(compact["seq"])
    content = _load_object(payload, "acknowledge")
    seq = content.get("AcknowledgedMessageSequenceNumber")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise PayloadError("acknowledge has no integer AcknowledgedMessageSequenceNumber")
    return seq


# --- handshake (§4) -----------------------------------------------------------------------


def handshake_request_payload(
    agent_version: str, properties: dict[str, str], session_type: str = "Port"
) -> bytes:
    """HandshakeRequest with one SessionType action; Properties sorted like a Go map (§4.1)."""
    for key, value in properties.items():
        if not isinstance(value, str):
            # G8: a non-string value silently derails the Go client; refuse to emit one.
            raise TypeError(f"handshake property {key!r} must be a string, not {type(value).__name__}")
    request = {
        "AgentVersion": agent_version,
        "RequestedClientActions": [
            {
                "ActionType": "SessionType",
                "ActionParameters": {
                    "SessionType": session_type,
                    "Properties": dict(sorted(properties.items())),
                },
            }
        ],
    }
    return go_json(request)


@dataclass(frozen=True)
class ProcessedAction:
    """One entry of ``ProcessedClientActions`` in a HandshakeResponse (§4.2)."""

    action_type: str
    action_status: int
    error: str = ""


@dataclass(frozen=True)
class HandshakeResponse:
    """What the agent reads from the client's HandshakeResponse (§4.2)."""

    client_version: str
    actions: tuple[ProcessedAction, ...]
    errors: tuple[str, ...] = field(default=())

    def failure(self) -> str | None:
        """The agent's reason to cancel the session, or None: any ActionStatus other than 1 fails."""
        for action in self.actions:
            if action.action_status != 1:
                return (
                    f"{action.action_type} failed on client with status {action.action_status} "
                    f"error: {action.error}"
                )
        return None


def parse_handshake_response(payload: bytes) -> HandshakeResponse:
    """Parse a HandshakeResponse, insisting on the types the Go agent's decoder needs."""
    content = _load_object(payload, "HandshakeResponse")
    client_version = content.get("ClientVersion", "")
    if not isinstance(client_version, str):
        raise PayloadError("HandshakeResponse ClientVersion is not a string")
    raw_actions = content.get("ProcessedClientActions") or []
    if not isinstance(raw_actions, list):
        raise PayloadError("HandshakeResponse ProcessedClientActions is not a list")
    actions = []
    for raw in raw_actions:
        if not isinstance(raw, dict):
            raise PayloadError("HandshakeResponse action is not an object")
        status = raw.get("ActionStatus", 0)
        if not isinstance(status, int) or isinstance(status, bool):
            raise PayloadError("HandshakeResponse ActionStatus is not an integer")
        error = raw.get("Error", "")
        actions.append(
            ProcessedAction(
                action_type=str(raw.get("ActionType", "")),
                action_status=status,
                error=error if isinstance(error, str) else json.dumps(error),
            )
        )
    raw_errors = content.get("Errors") or []
    if not isinstance(raw_errors, list):
        raise PayloadError("HandshakeResponse Errors is neither null nor a list")
    return HandshakeResponse(client_version, tuple(actions), tuple(str(e) for e in raw_errors))


def handshake_complete_payload(time_to_complete_ns: int, customer_message: str = "") -> bytes:
    """HandshakeComplete; the duration is an integer of nanoseconds (Go time.Duration, G8)."""
    return go_json({"HandshakeTimeToComplete": int(time_to_complete_ns), "CustomerMessage": customer_message})


# --- channel_closed (§6.5) ----------------------------------------------------------------


def channel_closed_payload(
    *, message_id: uuid.UUID, created_ms: int, destination_id: str, session_id: str, output: str
) -> bytes:
    """The service's channel_closed content, keys in the plugin struct's order."""
    return go_json(
        {
            "MessageId": str(message_id),
            "CreatedDate": str(created_ms),
            "DestinationId": destination_id,
            "SessionId": session_id,
            "MessageType": "channel_closed",
            "SchemaVersion": 1,
            "Output": output,
        }
    )


# --- OpenDataChannel (§1.4) ---------------------------------------------------------------


@dataclass(frozen=True)
class OpenDataChannel:
    """The client's first text frame. ``repr`` never shows the token."""

    token_value: str = field(repr=False)
    client_id: str
    request_id: str
    schema_version: str
    client_version: str | None

    def shape_problems(self) -> list[str]:
        """Deviations from the shape the official client sends; reported, not fatal."""
        problems = []
        if self.schema_version != "1.0":
            problems.append(f"MessageSchemaVersion is {self.schema_version!r}, expected '1.0'")
        for name, value in (("RequestId", self.request_id), ("ClientId", self.client_id)):
            try:
                uuid.UUID(value)
            except ValueError:
                problems.append(f"{name} is not a UUID")
        return problems


def parse_open_data_channel(text: str) -> OpenDataChannel:
    """Parse the OpenDataChannel JSON; raises ``PayloadError`` without echoing its content."""
    try:
        content = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError("OpenDataChannel is not JSON") from exc
    if not isinstance(content, dict):
        raise PayloadError("OpenDataChannel is not a JSON object")
    token = content.get("TokenValue")
    if not isinstance(token, str) or not token:
        raise PayloadError("OpenDataChannel has no TokenValue")
    client_version = content.get("ClientVersion")
    return OpenDataChannel(
        token_value=token,
        client_id=str(content.get("ClientId", "")),
        request_id=str(content.get("RequestId", "")),
        schema_version=str(content.get("MessageSchemaVersion", "")),
        client_version=client_version if isinstance(client_version, str) else None,
    )


# --- versions (§5.1) ----------------------------------------------------------------------


def compare_versions(this: str, other: str) -> int:
    """Negative, zero or positive like the agent's ``versionutil.Compare`` (strict sort).

    Components compare numerically when both are integers, as text otherwise; on a common
    prefix the version with fewer components is the smaller one.
    """
    mine, theirs = this.split("."), other.split(".")
    for a, b in zip(mine, theirs, strict=False):
        if a.isdigit() and b.isdigit():
            if int(a) != int(b):
                return -1 if int(a) < int(b) else 1
        elif a != b:
            return -1 if a < b else 1
    return len(mine) - len(theirs)
