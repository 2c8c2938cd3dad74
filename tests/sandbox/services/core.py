"""What every sandbox service shares: the error base class, the request context, JSON replies.

Errors follow moto's ``ServiceException`` idea: one small class per AWS error code, carrying the
code (the error shape's name in botocore's model), the HTTP status and the message. The JSON 1.1
error body is what AWS sends and what botocore's JSON parser reads::

    {"__type": "InvalidInstanceId", "Message": "..."}

botocore takes the code from ``__type`` (after any ``#``) and the message from ``message`` or
``Message``; we use the member name the model declares for that error shape.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

JSON_11 = "application/x-amz-json-1.1"


class ServiceException(Exception):
    """An AWS error reply. Subclasses set ``code`` (the AWS error code) and maybe ``status``."""

    code = "InternalServerError"
    status = 400
    #: the member that carries the text in this error's shape ("Message" or "message")
    message_member = "Message"

    def __init__(self, message: str = "", **members: Any) -> None:
        super().__init__(message)
        self.message = message
        self.members = members

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"__type": self.code}
        if self.message:
            out[self.message_member] = self.message
        out.update(self.members)
        return out


class InternalServerError(ServiceException):
    code = "InternalServerError"
    status = 500


class ValidationException(ServiceException):
    code = "ValidationException"


class SerializationException(ServiceException):
    code = "SerializationException"


class MissingAuthenticationToken(ServiceException):
    code = "MissingAuthenticationTokenException"
    message_member = "message"
    status = 400

    def __init__(self) -> None:
        super().__init__("Missing Authentication Token")


class UnrecognizedClient(ServiceException):
    code = "UnrecognizedClientException"
    message_member = "message"

    def __init__(self) -> None:
        super().__init__("The security token included in the request is invalid.")


class AccessDenied(ServiceException):
    """IAM denial in the shape AWS's authorization layer uses for JSON services."""

    code = "AccessDeniedException"


class Throttling(ServiceException):
    code = "ThrottlingException"

    def __init__(self, message: str = "Rate exceeded") -> None:
        super().__init__(message)


@dataclass(frozen=True)
class Caller:
    """Who signed the request, as STS GetCallerIdentity would say (moto's view, so they agree)."""

    access_key_id: str
    account_id: str
    arn: str
    user_id: str

    @property
    def name(self) -> str:
        """The user name (IAM user) or role session name (assumed role): the last ARN segment."""
        return self.arn.rsplit("/", 1)[-1]


@dataclass
class RequestContext:
    """What a backend operation may know about the HTTP request: caller, region, request id."""

    caller: Caller
    region: str
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))


def json_reply(
    payload: dict[str, Any], status: int = 200, request_id: str = ""
) -> tuple[int, dict[str, str], bytes]:
    """Serialise a JSON 1.1 reply (body, status, the headers AWS sends)."""
    body = json.dumps(payload, separators=(",", ":"), default=_json_default).encode()
    headers = {
        "Content-Type": JSON_11,
        "x-amzn-RequestId": request_id or str(uuid.uuid4()),
        "Content-Length": str(len(body)),
    }
    return status, headers, body


def error_reply(err: ServiceException, request_id: str = "") -> tuple[int, dict[str, str], bytes]:
    status, headers, body = json_reply(err.body(), err.status, request_id)
    headers["x-amzn-ErrorType"] = err.code
    return status, headers, body


def _json_default(value: Any) -> Any:
    # Timestamps travel as epoch seconds (floats) in the JSON protocols.
    timestamp = getattr(value, "timestamp", None)
    if callable(timestamp):
        return round(float(timestamp()), 3)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
