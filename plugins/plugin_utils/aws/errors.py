# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one boundary where AWS failures become one clear sentence.

PRIVATE to this collection. Every AWS call the collection makes (tunnel helper, inventory) turns a
botocore failure into an :class:`AwsCallError` here, so a user always reads the same shape of
message: *which host*, *which AWS call* (as the IAM action they would have to allow), *what AWS
said*, and *what to do about it*. Nothing else in the collection formats AWS errors.

The sentence is always a single line (AWS messages and botocore's parameter-validation errors can
span lines; they are folded), so the tunnel helper can print it as the one line a user sees.

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
        "IncompleteSignature",
        "MissingAuthenticationToken",
    }
)

#: Codes that mean "the instance exists but cannot be reached right now" (stopped, agent offline).
NOT_CONNECTED_CODES = frozenset(
    {"TargetNotConnected", "EC2InstanceStateInvalidException", "EC2InstanceUnavailableException"}
)

#: Codes that mean "no such instance/document/session": the caller named something that isn't there.
NOT_FOUND_CODES = frozenset(
    {
        "InvalidInstanceId",
        "InvalidDocument",
        "EC2InstanceNotFoundException",
        "DoesNotExistException",
        "InvalidTarget",
    }
)

#: Operations whose IAM prefix is not the service of the client that raised them: botocore refreshes
#: assumed-role and SSO credentials lazily, inside a call on another client (e.g. ``ssm``).
_SERVICE_BY_OPERATION = {
    "AssumeRole": "sts",
    "AssumeRoleWithWebIdentity": "sts",
    "GetCallerIdentity": "sts",
    "GetRoleCredentials": "sso",
    "CreateToken": "sso-oidc",
}

# "User: arn:... is not authorized to perform: ssm:StartSession on resource: arn:... because ..."
_DENIED_MESSAGE = re.compile(
    r"(?:User|Principal):\s*(?P<principal>\S+)\s+is not authorized to perform:\s*(?P<action>[\w-]+:[\w*]+)"
    r"(?:\s+on resource:\s*(?P<resource>[^\s,;]+))?"
    r"(?:\s+(?P<reason>(?:because|with an explicit deny)[^.]*))?"
)

_EXPIRED_ADVICE = "the AWS credentials have expired; refresh them (e.g. 'aws sso login' or a new STS session)"

#: What to do, per error code, when the code alone says it. Keys are AWS error codes.
_ADVICE_BY_CODE = {
    "TargetNotConnected": (
        "the instance is not connected to Systems Manager right now (stopped, agent offline, or no "
        "network path to the SSM endpoints); check 'aws ssm describe-instance-information'"
    ),
    "InvalidInstanceId": "check the instance id and the region",
    "InvalidTarget": "check the instance id and the region",
    "InvalidDocument": (
        "check the SSM document name (default AWS-StartSSHSession) and that it exists in this region"
    ),
    "EC2InstanceNotFoundException": "check the instance id and the region",
    "EC2InstanceStateInvalidException": "the instance must be running to accept an EC2 Instance Connect key",
    "EC2InstanceUnavailableException": (
        "the instance is not available for EC2 Instance Connect right now; try again"
    ),
    "InvalidArgsException": "check the OS user (remote_user) and the public key",
    "AuthException": "EC2 Instance Connect rejected the request; check the OS user and the instance",
    "DoesNotExistException": "the session or instance no longer exists",
    "ExpiredToken": _EXPIRED_ADVICE,
    "ExpiredTokenException": _EXPIRED_ADVICE,
    "InvalidClientTokenId": "the AWS access key is not valid in this account/partition",
    "UnrecognizedClientException": "the AWS access key or session token is not valid",
    "InvalidSignatureException": "the AWS secret key does not match the access key",
    "SignatureDoesNotMatch": "the AWS secret key does not match the access key",
}

_CREDENTIALS_ADVICE = (
    "configure AWS credentials: AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN), "
    "SSO ('aws sso login') or an instance role"
)
_NETWORK_ADVICE = "check the network path to the AWS endpoint, HTTPS_PROXY and any AWS_ENDPOINT_URL_* setting"

#: botocore exceptions without an AWS error code, by class name: (category, advice).
#: Matched by name (and base-class names) so this module needs no botocore import.
_TRANSPORT_BY_CLASS: dict[str, tuple[str, str | None]] = {
    "NoCredentialsError": ("credentials", _CREDENTIALS_ADVICE),
    "PartialCredentialsError": ("credentials", _CREDENTIALS_ADVICE),
    "CredentialRetrievalError": ("credentials", "check the profile's credential_process / credential source"),
    "UnauthorizedSSOTokenError": ("credentials", "log in again with 'aws sso login' for this profile"),
    "SSOTokenLoadError": ("credentials", "log in again with 'aws sso login' for this profile"),
    "TokenRetrievalError": ("credentials", "log in again with 'aws sso login' for this profile"),
    "InvalidConfigError": ("config", "check ~/.aws/config for this profile"),
    "ProfileNotFound": ("config", "check --profile / AWS_PROFILE against ~/.aws/config"),
    "NoRegionError": ("config", "pass --region, or set AWS_REGION or the profile's region"),
    "ParamValidationError": ("config", None),
    "SSLError": (
        "transport",
        "TLS verification of the AWS endpoint failed; check AWS_CA_BUNDLE / the profile's ca_bundle",
    ),
    "ProxyConnectionError": ("transport", "check HTTPS_PROXY / NO_PROXY"),
    "EndpointConnectionError": ("transport", _NETWORK_ADVICE),
    "ConnectTimeoutError": ("transport", _NETWORK_ADVICE),
    "ReadTimeoutError": ("transport", _NETWORK_ADVICE),
    "ConnectionClosedError": ("transport", _NETWORK_ADVICE),
}

_WHITESPACE = re.compile(r"\s+")


def one_line(text: str) -> str:
    """Fold all whitespace runs (newlines included) into single spaces: a sentence is one line."""
    return _WHITESPACE.sub(" ", text).strip()


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
    label: str | None = None
    """A friendlier name for ``target`` (e.g. the inventory host name), shown first when it differs."""
    attempts: int | None = None
    """How many attempts botocore made (its retry handler's count), when AWS answered."""
    category: str | None = None
    """Overrides :attr:`kind` for failures without an AWS code (set by :func:`from_transport_error`)."""
    advice: str | None = None
    """Overrides the per-code advice (set by :func:`from_transport_error`)."""
    reason: str | None = None
    """For AccessDenied: AWS's "because ..." / "with an explicit deny ..." clause, if it gave one."""

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
        """A short, stable category name (used for exit codes and tests).

        One of ``access-denied``, ``throttled``, ``credentials``, ``not-connected``, ``not-found``,
        ``config``, ``transport``, ``aws-error``.
        """
        if self.category:
            return self.category
        if self.is_access_denied:
            return "access-denied"
        if self.is_throttling:
            return "throttled"
        if self.code in CREDENTIAL_CODES:
            return "credentials"
        if self.code in NOT_CONNECTED_CODES:
            return "not-connected"
        if self.code in NOT_FOUND_CODES:
            return "not-found"
        if not self.code:
            return "transport"
        return "aws-error"

    @property
    def where(self) -> str:
        """``label (target, region)``, ``target (region)`` or ``AWS (region)``."""
        name = self.label or self.target or "AWS"
        inner = [
            p for p in (self.target if self.label and self.label != self.target else None, self.region) if p
        ]
        return f"{name} ({', '.join(inner)})" if inner else name

    def __str__(self) -> str:
        return one_line(self._sentence())

    def _sentence(self) -> str:
        where, action, message = self.where, self.iam_action, self.aws_message
        if self.is_access_denied:
            if self.principal:
                on = f" on {self.resource}" if self.resource else ""
                because = f" {self.reason}" if self.reason else ""
                if self.reason and "explicit deny" in self.reason:
                    fix = f"an explicit deny blocks {action}; change the policy that denies it"
                else:
                    what = "that resource" if self.resource else "it"
                    fix = f"allow {action} on {what} in the caller's IAM policy"
                return (
                    f"{where}: {action} was denied for {self.principal}{on} ({self.code}){because}; {fix}"
                    + (_extra_access_advice(action))
                )
            return (
                f"{where}: {action} was denied ({self.code}); allow {action} in the caller's IAM policy"
                f"{_extra_access_advice(action)}. AWS said: {message}"
            )
        if self.is_throttling:
            after = f"after {self.attempts} attempts" if self.attempts else "after retries"
            return (
                f"{where}: {action} was still throttled by AWS {after} ({self.code}: {message}); lower the "
                f"number of parallel connections (forks) or raise the retry budget (AWS_MAX_ATTEMPTS, "
                f"AWS_RETRY_MODE=adaptive)"
            )
        advice = self.advice or _ADVICE_BY_CODE.get(self.code)
        if advice:
            message = message.rstrip(".")  # "... is not connected; the instance ..." reads as one sentence
        detail = f" ({self.code}): {message}" if self.code else f": {message}"
        return f"{where}: {action} failed{detail}" + (f"; {advice}" if advice else "")


def _extra_access_advice(action: str) -> str:
    if action == "ssm:StartSession":
        return " (StartSession needs it on both the instance and the session document)"
    return ""


def iam_action_for(service: str, operation: str) -> str:
    """IAM action for an API operation: ``("ssm", "StartSession") -> "ssm:StartSession"``.

    ``service`` is the botocore signing name (``ssm``, ``ec2``, ``ec2-instance-connect``,
    ``sts``), which is also the IAM service prefix for every service this collection calls.
    Operations that botocore runs on our behalf inside another client's call (credential
    refresh: ``AssumeRole``, SSO) are attributed to their own service.
    """
    return f"{_SERVICE_BY_OPERATION.get(operation, service)}:{operation}"


def _attempts(response: Any) -> int | None:
    meta = response.get("ResponseMetadata") if isinstance(response, dict) else None
    retries = meta.get("RetryAttempts") if isinstance(meta, dict) else None
    return retries + 1 if isinstance(retries, int) else None


def from_client_error(
    error: Any,
    *,
    service: str,
    target: str | None = None,
    region: str | None = None,
    label: str | None = None,
) -> AwsCallError:
    """Translate a ``botocore.exceptions.ClientError`` into an :class:`AwsCallError`."""
    response = getattr(error, "response", None) or {}
    details = response.get("Error", {}) if isinstance(response, dict) else {}
    code = str(details.get("Code", "") or "")
    message = one_line(str(details.get("Message", "") or error))
    operation = str(getattr(error, "operation_name", "") or "unknown")
    principal = resource = reason = None
    match = _DENIED_MESSAGE.search(message)
    action = iam_action_for(service, operation)
    if match:
        principal = match.group("principal")
        resource = match.group("resource")
        reason = match.group("reason")
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
        label=label,
        attempts=_attempts(response),
        reason=reason,
    )


def _transport_class(error: BaseException) -> tuple[str, str | None] | None:
    for klass in type(error).__mro__:
        found = _TRANSPORT_BY_CLASS.get(klass.__name__)
        if found:
            return found
    return None


def from_transport_error(
    error: BaseException,
    *,
    service: str,
    operation: str,
    target: str | None = None,
    region: str | None = None,
    label: str | None = None,
) -> AwsCallError:
    """Translate a botocore transport/credential/config failure (no AWS error code) into an AwsCallError.

    The category (``credentials``, ``config`` or ``transport``) and the advice come from the
    exception's class name, e.g. ``NoCredentialsError`` -> ``credentials``.
    """
    category, advice = _transport_class(error) or ("transport", None)
    return AwsCallError(
        operation=operation,
        iam_action=iam_action_for(service, operation),
        code="",
        aws_message=one_line(f"{type(error).__name__}: {error}"),
        target=target,
        region=region,
        label=label,
        category=category,
        advice=advice,
    )
