# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SSM Session Manager control plane: StartSession, ResumeSession, TerminateSession.

PRIVATE to this collection. See ``ssm-data-channel.md`` §1.1 (the calls and their fields) and §6.4
(ResumeSession: only the new TokenValue is used; the original StreamUrl is dialled again).

``TokenValue`` is a bearer secret for the data channel: :class:`SessionInfo` never shows it in
``repr()``/``str()``, and nothing in this module logs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws.errors import AwsCallError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws.clients import AwsAccess

SERVICE = "ssm"
SSH_DOCUMENT = "AWS-StartSSHSession"
PORT_FORWARD_DOCUMENT = "AWS-StartPortForwardingSession"
REMOTE_HOST_DOCUMENT = "AWS-StartPortForwardingSessionToRemoteHost"


@dataclass(frozen=True)
class SessionInfo:
    """What StartSession returned. ``token_value`` is secret: it is left out of ``repr()``."""

    session_id: str
    stream_url: str
    token_value: str = field(repr=False)

    def __str__(self) -> str:
        return f"session {self.session_id}"


def _missing(aws: AwsAccess, operation: str, what: str) -> AwsCallError:
    return AwsCallError(
        operation=operation,
        iam_action=f"{SERVICE}:{operation}",
        code="",
        aws_message=f"the response has no {what}",
        target=aws.target,
        region=aws.region,
        label=aws.label,
        category="aws-error",
    )


def start_session(
    aws: AwsAccess,
    *,
    target: str,
    document_name: str = SSH_DOCUMENT,
    parameters: Mapping[str, Sequence[str]] | None = None,
    reason: str | None = None,
) -> SessionInfo:
    """``ssm:StartSession``. Parameter values are lists of strings (§1.1), e.g.
    ``{"portNumber": ["22"]}``.

    Raises:
        AwsCallError: AWS refused or the response lacks SessionId/TokenValue/StreamUrl.
    """
    params: dict[str, Any] = {"Target": target, "DocumentName": document_name}
    if parameters:
        params["Parameters"] = {key: [str(v) for v in values] for key, values in parameters.items()}
    if reason:
        params["Reason"] = reason
    response = aws.call(SERVICE, "StartSession", **params)
    for key in ("SessionId", "TokenValue", "StreamUrl"):
        if not response.get(key):
            raise _missing(aws, "StartSession", key)
    return SessionInfo(
        session_id=str(response["SessionId"]),
        stream_url=str(response["StreamUrl"]),
        token_value=str(response["TokenValue"]),
    )


def resume_session(aws: AwsAccess, session_id: str) -> str | None:
    """``ssm:ResumeSession``: the new TokenValue, or ``None`` when the session is gone (§1.1: an
    empty token means the session timed out; DoesNotExist means it ended)."""
    try:
        response = aws.call(SERVICE, "ResumeSession", SessionId=session_id)
    except AwsCallError as error:
        if error.code == "DoesNotExistException":
            return None
        raise
    token = response.get("TokenValue")
    return str(token) if token else None


def terminate_session(aws: AwsAccess, session_id: str) -> None:
    """``ssm:TerminateSession``. Idempotent on AWS's side (terminating an ended session succeeds)."""
    aws.call(SERVICE, "TerminateSession", SessionId=session_id)
