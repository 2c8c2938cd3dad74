# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one-sentence translation of every class of AWS failure, asserted as exact text.

The errors are real botocore exception objects, shaped the way botocore builds them from AWS
answers (``ClientError(response, operation_name)``) or raises them itself.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    ProfileNotFound,
    SSLError,
    UnauthorizedSSOTokenError,
)

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws.errors import (
    AwsCallError,
    from_client_error,
    from_transport_error,
    iam_action_for,
    one_line,
)

IID = "i-0123456789abcdef0"


def client_error(operation: str, code: str, message: str, *, retries: int = 0) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"RetryAttempts": retries}},
        operation,
    )


def test_access_denied_names_action_principal_resource_and_fix() -> None:
    error = from_client_error(
        client_error(
            "StartSession",
            "AccessDeniedException",
            "User: arn:aws:iam::123456789012:user/dev is not authorized to perform: ssm:StartSession on "
            "resource: arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0 because no "
            "identity-based policy allows the ssm:StartSession action",
        ),
        service="ssm",
        target=IID,
        region="eu-west-1",
    )
    assert error.kind == "access-denied"
    assert str(error) == (
        "i-0123456789abcdef0 (eu-west-1): ssm:StartSession was denied for arn:aws:iam::123456789012:user/dev "
        "on arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0 (AccessDeniedException) because "
        "no identity-based policy allows the ssm:StartSession action; allow ssm:StartSession on that "
        "resource in the caller's IAM policy (StartSession needs it on both the instance and the session "
        "document)"
    )


def test_access_denied_by_explicit_deny_says_to_change_the_deny() -> None:
    error = from_client_error(
        client_error(
            "SendSSHPublicKey",
            "AccessDeniedException",
            "User: arn:aws:sts::123456789012:assumed-role/ops/me is not authorized to perform: "
            "ec2-instance-connect:SendSSHPublicKey on resource: "
            "arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0 with an explicit deny in a "
            "service control policy",
        ),
        service="ec2-instance-connect",
        target=IID,
        region="eu-west-1",
        label="web1",
    )
    assert str(error) == (
        "web1 (i-0123456789abcdef0, eu-west-1): ec2-instance-connect:SendSSHPublicKey was denied for "
        "arn:aws:sts::123456789012:assumed-role/ops/me on "
        "arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0 (AccessDeniedException) with an "
        "explicit deny in a service control policy; an explicit deny blocks "
        "ec2-instance-connect:SendSSHPublicKey; change the policy that denies it"
    )


def test_access_denied_without_a_parsable_message_keeps_what_aws_said() -> None:
    error = from_client_error(
        client_error(
            "DescribeInstances", "UnauthorizedOperation", "You are not authorized to perform this operation."
        ),
        service="ec2",
        region="eu-west-1",
    )
    assert str(error) == (
        "AWS (eu-west-1): ec2:DescribeInstances was denied (UnauthorizedOperation); allow "
        "ec2:DescribeInstances in the caller's IAM policy. AWS said: You are not authorized to perform "
        "this operation."
    )


def test_persistent_throttling_reports_the_attempts() -> None:
    error = from_client_error(
        client_error("StartSession", "ThrottlingException", "Rate exceeded", retries=4),
        service="ssm",
        target=IID,
        region="eu-west-1",
    )
    assert error.kind == "throttled"
    assert error.attempts == 5
    assert str(error) == (
        "i-0123456789abcdef0 (eu-west-1): ssm:StartSession was still throttled by AWS after 5 attempts "
        "(ThrottlingException: Rate exceeded); lower the number of parallel connections (forks) or raise "
        "the retry budget (AWS_MAX_ATTEMPTS, AWS_RETRY_MODE=adaptive)"
    )


def test_target_not_connected() -> None:
    error = from_client_error(
        client_error("StartSession", "TargetNotConnected", "i-0123456789abcdef0 is not connected."),
        service="ssm",
        target=IID,
        region="eu-west-1",
    )
    assert error.kind == "not-connected"
    assert str(error) == (
        "i-0123456789abcdef0 (eu-west-1): ssm:StartSession failed (TargetNotConnected): i-0123456789abcdef0 "
        "is not connected; the instance is not connected to Systems Manager right now (stopped, agent "
        "offline, or no network path to the SSM endpoints); check 'aws ssm describe-instance-information'"
    )


@pytest.mark.parametrize(
    ("service", "operation", "code", "message", "advice"),
    [
        ("ec2-instance-connect", "SendSSHPublicKey", "EC2InstanceNotFoundException", "Instance not found",
         "check the instance id and the region"),
        ("ssm", "StartSession", "InvalidDocument", "Document AWS-Nope does not exist",
         "check the SSM document name (default AWS-StartSSHSession) and that it exists in this region"),
        ("ssm", "ResumeSession", "DoesNotExistException", "Session tester-1 does not exist",
         "the session or instance no longer exists"),
    ],
)  # fmt: skip
def test_not_found(service: str, operation: str, code: str, message: str, advice: str) -> None:
    error = from_client_error(client_error(operation, code, message), service=service, target=IID)
    assert error.kind == "not-found"
    assert str(error) == f"i-0123456789abcdef0: {service}:{operation} failed ({code}): {message}; {advice}"


def test_expired_credentials() -> None:
    error = from_client_error(
        client_error(
            "StartSession", "ExpiredTokenException", "The security token included in the request is expired"
        ),
        service="ssm",
        target=IID,
        region="eu-west-1",
    )
    assert error.kind == "credentials"
    assert str(error) == (
        "i-0123456789abcdef0 (eu-west-1): ssm:StartSession failed (ExpiredTokenException): The security "
        "token included in the request is expired; the AWS credentials have expired; refresh them (e.g. "
        "'aws sso login' or a new STS session)"
    )


def test_other_aws_error_has_code_and_message() -> None:
    error = from_client_error(
        client_error("StartSession", "InternalServerError", "Internal failure"), service="ssm", target=IID
    )
    assert error.kind == "aws-error"
    assert (
        str(error) == "i-0123456789abcdef0: ssm:StartSession failed (InternalServerError): Internal failure"
    )


def test_assume_role_failure_inside_another_call_is_attributed_to_sts() -> None:
    """botocore refreshes assumed-role credentials inside e.g. an ssm call; the IAM action is sts's."""
    error = from_client_error(
        client_error(
            "AssumeRole",
            "AccessDenied",
            "User: arn:aws:iam::123456789012:user/dev is not authorized to perform: sts:AssumeRole on "
            "resource: arn:aws:iam::210987654321:role/ops",
        ),
        service="ssm",
        target=IID,
    )
    assert error.iam_action == "sts:AssumeRole"
    assert str(error) == (
        "i-0123456789abcdef0: sts:AssumeRole was denied for arn:aws:iam::123456789012:user/dev on "
        "arn:aws:iam::210987654321:role/ops (AccessDenied); allow sts:AssumeRole on that resource in the "
        "caller's IAM policy"
    )


def test_no_credentials() -> None:
    error = from_transport_error(
        NoCredentialsError(), service="ssm", operation="StartSession", target=IID, region="eu-west-1"
    )
    assert error.kind == "credentials"
    assert str(error) == (
        "i-0123456789abcdef0 (eu-west-1): ssm:StartSession failed: NoCredentialsError: Unable to locate "
        "credentials; configure AWS credentials: AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (+ "
        "AWS_SESSION_TOKEN), SSO ('aws sso login') or an instance role"
    )


def test_sso_login_needed() -> None:
    error = from_transport_error(
        UnauthorizedSSOTokenError(), service="ssm", operation="StartSession", target=IID
    )
    assert error.kind == "credentials"
    assert str(error).endswith("; log in again with 'aws sso login' for this profile")


@pytest.mark.parametrize(
    ("error", "kind", "expected"),
    [
        (NoRegionError(), "config",
         "i-0123456789abcdef0: ssm:StartSession failed: NoRegionError: You must specify a region; pass "
         "--region, or set AWS_REGION or the profile's region"),
        (ProfileNotFound(profile="nope"), "config",
         "i-0123456789abcdef0: ssm:StartSession failed: ProfileNotFound: The config profile (nope) could not "
         "be found; check --profile / AWS_PROFILE against ~/.aws/config"),
        (EndpointConnectionError(endpoint_url="https://ssm.eu-west-1.amazonaws.com/"), "transport",
         'i-0123456789abcdef0: ssm:StartSession failed: EndpointConnectionError: Could not connect to the '
         'endpoint URL: "https://ssm.eu-west-1.amazonaws.com/"; check the network path to the AWS endpoint, '
         "HTTPS_PROXY and any AWS_ENDPOINT_URL_* setting"),
        (SSLError(endpoint_url="https://ssm.eu-west-1.amazonaws.com/", error="certificate verify failed"),
         "transport",
         "i-0123456789abcdef0: ssm:StartSession failed: SSLError: SSL validation failed for "
         "https://ssm.eu-west-1.amazonaws.com/ certificate verify failed; TLS verification of the AWS "
         "endpoint failed; check AWS_CA_BUNDLE / the profile's ca_bundle"),
    ],
)  # fmt: skip
def test_transport_and_config_failures(error: Exception, kind: str, expected: str) -> None:
    translated = from_transport_error(error, service="ssm", operation="StartSession", target=IID)
    assert translated.kind == kind
    assert str(translated) == expected


def test_multiline_parameter_validation_is_folded_to_one_line() -> None:
    error = from_transport_error(
        ParamValidationError(
            report="Invalid length for parameter SSHPublicKey, value: 12, valid min length: 80"
        ),
        service="ec2-instance-connect",
        operation="SendSSHPublicKey",
        target=IID,
    )
    text = str(error)
    assert "\n" not in text
    assert error.kind == "config"
    assert text == (
        "i-0123456789abcdef0: ec2-instance-connect:SendSSHPublicKey failed: ParamValidationError: Parameter "
        "validation failed: Invalid length for parameter SSHPublicKey, value: 12, valid min length: 80"
    )


def test_newlines_in_aws_messages_never_break_the_line() -> None:
    error = from_client_error(client_error("StartSession", "InternalServerError", "line one\nline two\r\n"),
                              service="ssm")  # fmt: skip
    assert str(error) == "AWS: ssm:StartSession failed (InternalServerError): line one line two"


def test_is_an_exception_with_stable_fields() -> None:
    error = AwsCallError(operation="StartSession", iam_action="ssm:StartSession", code="X", aws_message="m")
    with pytest.raises(AwsCallError):
        raise error
    assert (
        iam_action_for("ec2-instance-connect", "SendSSHPublicKey") == "ec2-instance-connect:SendSSHPublicKey"
    )
    assert iam_action_for("ssm", "GetRoleCredentials") == "sso:GetRoleCredentials"
    assert one_line("  a \n\t b  ") == "a b"


def test_a_stopped_instance_is_not_connected_for_instance_connect_too() -> None:
    error = from_client_error(
        client_error(
            "SendSSHPublicKey",
            "EC2InstanceStateInvalidException",
            "Unable to connect to instance i-0123456789abcdef0 because it is in the stopped state.",
        ),
        service="ec2-instance-connect",
        target=IID,
    )
    assert error.kind == "not-connected"
    assert str(error) == (
        "i-0123456789abcdef0: ec2-instance-connect:SendSSHPublicKey failed "
        "(EC2InstanceStateInvalidException): Unable to connect to instance i-0123456789abcdef0 because it "
        "is in the stopped state; the instance must be running to accept an EC2 Instance Connect key"
    )
