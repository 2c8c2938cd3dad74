# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Client side of the handshake and the mode decision (ssm-data-channel.md §4, §5.1).

PRIVATE to this collection. Pure functions plus one small state holder.

Rules of this file:

1. Exactly one processed action per requested action, in order (§4.2).
2. ``SessionType`` succeeds only for ``Port``: this client carries no shell (§6.6 "unknown
   SessionType" -> Failed).
3. ``KMSEncryption`` is answered with ActionStatus 2 (Failed) and an Error text, which also goes
   to ``Errors``; port sessions never negotiate it (§4.4, G13). Unknown actions get ActionStatus 3
   (Unsupported) plus an Error, not the Go client's ``ActionResult: 3`` (§4.2).
4. Version comparisons follow the Go client: both versions must have the same number of dotted
   numeric components, otherwise the feature counts as unsupported (G12).
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from typing import Any

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.constants import (
    K_LOCAL_PORT_FORWARDING,
    K_MUX_AFTER_AGENT_VERSION,
    K_PORT_SESSION_TYPE,
    K_SMUX_KEEPALIVE_OFF_AFTER_AGENT_VERSION,
    K_TERMINATE_FLAG_AFTER_AGENT_VERSION,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.events import (
    HandshakeCompleted,
    SessionMode,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.payloads import (
    ActionStatus,
    HandshakeComplete,
    HandshakeRequest,
    HandshakeResponse,
    ProcessedClientAction,
)

__all__ = [
    "ENCRYPTION_NOT_SUPPORTED",
    "HandshakeState",
    "RequestOutcome",
    "compare_versions",
    "completed_event",
    "is_version_greater",
    "process_request",
    "select_mode",
]

ENCRYPTION_NOT_SUPPORTED = "encryption not supported for port sessions"
_VERSION_PART = re.compile(r"[0-9]+")


class HandshakeState(enum.Enum):
    AWAIT_REQUEST = "await_request"
    AWAIT_COMPLETE = "await_complete"
    COMPLETE = "complete"
    FAILED = "failed"


def compare_versions(left: str, right: str) -> int | None:
    """-1/0/1 like Go's ``version.compare``; None when the two are not comparable (G12)."""
    left_parts = left.split(".")
    right_parts = right.split(".")
    if not left or not right or len(left_parts) != len(right_parts):
        return None
    for a, b in zip(left_parts, right_parts, strict=True):
        if not (_VERSION_PART.fullmatch(a) and _VERSION_PART.fullmatch(b)):
            return None
        if int(a) != int(b):
            return 1 if int(a) > int(b) else -1
    return 0


def is_version_greater(version: str, threshold: str) -> bool:
    """True iff ``version`` > ``threshold``; incomparable versions count as "not greater"."""
    return compare_versions(version, threshold) == 1


def select_mode(properties: Mapping[str, str], agent_version: str) -> SessionMode:
    """§5.1 client rule: mux iff ``type == LocalPortForwarding`` and agent > 3.0.196.0 (4-part)."""
    if properties.get("type") != K_LOCAL_PORT_FORWARDING:
        return SessionMode.STDIO
    if is_version_greater(agent_version, K_MUX_AFTER_AGENT_VERSION):
        return SessionMode.MUX
    return SessionMode.BASIC


@dataclasses.dataclass(frozen=True, slots=True)
class RequestOutcome:
    """What processing one HandshakeRequest produced."""

    response: HandshakeResponse
    session_type: str
    properties: Mapping[str, str]
    failure: str | None
    """None on success, else the reason the session cannot proceed."""
    encryption_requested: bool
    warnings: tuple[str, ...]


def _string_properties(raw: Any, warnings: list[str]) -> dict[str, str]:
    # G8: every Properties value must be a JSON string. The Go client would silently fall back to
    # empty fields; we keep the value as text and say so.
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        warnings.append("HandshakeRequest Properties is not an object; ignored")
        return {}
    result: dict[str, str] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            result[key] = value
        else:
            warnings.append(f"HandshakeRequest property {key!r} is not a string")
            result[key] = "" if value is None else str(value)
    return result


def process_request(request: HandshakeRequest, client_version: str) -> RequestOutcome:
    """Build the HandshakeResponse for ``request`` (rules 1-3 of this module)."""
    processed: list[ProcessedClientAction] = []
    errors: list[str] = []
    warnings: list[str] = []
    session_type = ""
    properties: dict[str, str] = {}
    failure: str | None = None
    encryption = False
    saw_session_type = False
    for action in request.actions:
        params = action.parameters if isinstance(action.parameters, dict) else {}
        if action.action_type == "SessionType":
            saw_session_type = True
            requested = params.get("SessionType")
            session_type = requested if isinstance(requested, str) else ""
            if session_type == K_PORT_SESSION_TYPE:
                properties = _string_properties(params.get("Properties"), warnings)
                processed.append(ProcessedClientAction("SessionType", ActionStatus.SUCCESS))
                continue
            error = f"Failed to process action SessionType: Unknown session type {session_type}"
            processed.append(ProcessedClientAction("SessionType", ActionStatus.FAILED, None, error))
            errors.append(error)
            failure = failure or f"session type {session_type!r} is not supported (only Port)"
        elif action.action_type == "KMSEncryption":
            encryption = True
            error = f"Failed to process action KMSEncryption: {ENCRYPTION_NOT_SUPPORTED}"
            processed.append(ProcessedClientAction("KMSEncryption", ActionStatus.FAILED, None, error))
            errors.append(error)
            failure = failure or ENCRYPTION_NOT_SUPPORTED
        else:
            error = f"Unsupported action {action.action_type}"
            processed.append(ProcessedClientAction(action.action_type, ActionStatus.UNSUPPORTED, None, error))
            errors.append(error)
            failure = failure or f"the agent requested an unsupported action {action.action_type!r}"
    if not saw_session_type and failure is None:
        failure = "the HandshakeRequest carries no SessionType action"
    response = HandshakeResponse(
        client_version=client_version, actions=tuple(processed), errors=tuple(errors)
    )
    return RequestOutcome(
        response=response,
        session_type=session_type,
        properties=properties,
        failure=failure,
        encryption_requested=encryption,
        warnings=tuple(warnings),
    )


def completed_event(
    request: HandshakeRequest, outcome: RequestOutcome, complete: HandshakeComplete, client_version: str
) -> HandshakeCompleted:
    """The event for a HandshakeComplete that follows a successful request."""
    agent_version = request.agent_version
    return HandshakeCompleted(
        mode=select_mode(outcome.properties, agent_version),
        agent_version=agent_version,
        session_type=outcome.session_type,
        properties=dict(outcome.properties),
        customer_message=complete.customer_message,
        time_to_complete_ns=complete.time_to_complete_ns,
        client_version=client_version,
        # §5.1 point 3: NOPs only when the agent does not switch its own keepalive off.
        smux_keepalive=not is_version_greater(agent_version, K_SMUX_KEEPALIVE_OFF_AFTER_AGENT_VERSION),
        terminate_flag_supported=is_version_greater(agent_version, K_TERMINATE_FLAG_AFTER_AGENT_VERSION),
    )
