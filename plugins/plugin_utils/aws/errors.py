# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one boundary where AWS failures become one clear sentence.

PRIVATE to this collection. Every AWS call the collection makes (tunnel helper, inventory) turns a
botocore failure into an :class:`AwsCallError` here, so a user always reads the same shape of
message: *which host*, *which AWS call* (as the IAM action they would have to allow), *what AWS
said*, and *what to do about it*. Nothing else in the collection formats AWS errors.

This module imports no third-party package: it reads botocore exceptions by attribute (duck
typing), so it can be imported on paths where botocore must not be (the per-task path).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: Error codes that mean "slow down"; botocore's retry modes retry them, and we only report them
#: when they persist after those retries.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
        "RequestThrottled",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)

ACCESS_DENIED_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess"}
)

CREDENTIAL_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "AuthFailure",
    }
)

# "User: arn:... is not authorized to perform: ssm:StartSession on resource: arn:... because ..."
_DENIED_MESSAGE = re.compile(
    r"(?:User|Principal):\s*(?P<principal>\S+)\s+is not authorized to perform:\s*(?P<action>[\w-]+:[\w*]+)"
    r"(?:\s+on resource:\s*(?P<resource>\S+))?"
)

#: What to do, per error code, when the code alone says it. Keys are AWS error codes.
_ADVICE_BY_CODE = {
    "TargetNotConnected": (
        "the instance is not connected to Systems Manager right now (stopped, agent offline, or no "
        "network path to the SSM endpoints); check 'aws ssm describe-instance-information'"
    ),
    "InvalidInstanceId": "check the instance id and the region",
    "InvalidDocument": "check the SSM document name (default AWS-StartSSHSession) and that it exists in this region",
    "EC2InstanceNotFoundException": "check the instance id and the region",
    "EC2InstanceStateInvalidException": "the instance must be running to accept an EC2 Instance Connect key",
    "EC2InstanceUnavailableException": "the instance is not available for EC2 Instance Connect right now; try again",
    "InvalidArgsException": "check the OS user (remote_user) and the public key",
    "AuthException": "EC2 Instance Connect rejected the request; check the OS user and the instance",
    "DoesNotExistException": "the session or instance no longer exists",
    "ExpiredToken": "the AWS credentials have expired; refresh them (e.g. 'aws sso login' or a new STS session)",
    "ExpiredTokenException": "the AWS credentials have expired; refresh them (e.g. 'aws sso login' or a new STS session)",
    "InvalidClientTokenId": "the AWS access key is not valid in this account/partition",
    "UnrecognizedClientException": "the AWS access key or session token is not valid",
}


@dataclass(eq=False)
class AwsCallError(Exception):
    """An AWS API call failed; ``str()`` is the one sentence shown to users.

    A plain (not frozen) dataclass: the interpreter and test tools set ``__traceback__`` and
    friends on exceptions, which a frozen dataclass would refuse.
    """

    operation: str
    """API operation name as botocore names it, e.g. ``StartSession``."""
    iam_action: str
    """The IAM action for the operation, e.g. ``ssm:StartSession``."""
    code: str
    """AWS error code, e.g. ``AccessDeniedException``; ``""`` for transport failures."""
    aws_message: str
    """What AWS said, verbatim (never contains credentials)."""
    target: str | None = None
    """The host the call was for (instance id or inventory host name), if any."""
    region: str | None = None
    principal: str | None = None
    resource: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.operation, self.code, self.aws_message)

    @property
    def is_access_denied(self) -> bool:
        return self.code in ACCESS_DENIED_CODES

    @property
    def is_throttling(self) -> bool:
        return self.code in THROTTLING_CODES

    @property
    def kind(self) -> str:
        """A short, stable category name (used for exit codes and tests)."""
        if self.is_access_denied:
            return "access-denied"
        if self.is_throttling:
            return "throttled"
        if self.code in CREDENTIAL_CODES:
            return "credentials"
        if self.code == "TargetNotConnected":
            return "not-connected"
        if not self.code:
            return "transport"
        return "aws-error"

    def __str__(self) -> str:
        where = self.target or "AWS"
        if self.region:
            where = f"{where} ({self.region})"
        if self.is_access_denied:
            who = f" for {self.principal}" if self.principal else ""
            on = f" on {self.resource}" if self.resource else ""
            return (
                f"{where}: {self.iam_action} was denied{who}{on} ({self.code}); "
                f"allow {self.iam_action} on that resource in the caller's IAM policy. AWS said: {self.aws_message}"
            )
        if self.is_throttling:
            return (
                f"{where}: {self.iam_action} is still throttled by AWS after retries ({self.code}): "
                f"{self.aws_message}; lower forks, or raise the retry budget (AWS_MAX_ATTEMPTS / "
                f"AWS_RETRY_MODE=adaptive)"
            )
        what = f"{self.iam_action} failed"
        detail = f" ({self.code}): {self.aws_message}" if self.code else f": {self.aws_message}"
        advice = _ADVICE_BY_CODE.get(self.code)
        return f"{where}: {what}{detail}" + (f"; {advice}" if advice else "")


def iam_action_for(service: str, operation: str) -> str:
    """IAM action for an API operation: ``("ssm", "StartSession") -> "ssm:StartSession"``.

    ``service`` is the botocore signing name (``ssm``, ``ec2``, ``ec2-instance-connect``,
    ``sts``), which is also the IAM service prefix for every service this collection calls.
    """
    return f"{service}:{operation}"


def from_client_error(
    error: Any, *, service: str, target: str | None = None, region: str | None = None
) -> AwsCallError:
    """Translate a ``botocore.exceptions.ClientError`` into an :class:`AwsCallError`."""
    response = getattr(error, "response", None) or {}
    details = response.get("Error", {}) if isinstance(response, dict) else {}
    code = str(details.get("Code", "") or "")
    message = str(details.get("Message", "") or error)
    operation = str(getattr(error, "operation_name", "") or "unknown")
    principal = resource = None
    match = _DENIED_MESSAGE.search(message)
    action = iam_action_for(service, operation)
    if match:
        principal = match.group("principal")
        resource = match.group("resource")
        action = match.group("action") or action
    return AwsCallError(
        operation=operation,
        iam_action=action,
        code=code,
        aws_message=message,
        target=target,
        region=region,
        principal=principal,
        resource=resource,
    )


def from_transport_error(
    error: BaseException, *, service: str, operation: str, target: str | None = None, region: str | None = None
) -> AwsCallError:
    """Translate a botocore transport/credential failure (no AWS error code) into an AwsCallError."""
    return AwsCallError(
        operation=operation,
        iam_action=iam_action_for(service, operation),
        code="",
        aws_message=f"{type(error).__name__}: {error}",
        target=target,
        region=region,
    )
