# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""AwsAccess with real botocore against a scripted local endpoint: credentials from the standard
environment (AWX's AWS_SECURITY_TOKEN alone included), profiles, assume-role, retries, and the
translation of every failure at the call boundary."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws.clients import (
    DEFAULT_MAX_ATTEMPTS,
    AwsAccess,
    AwsSettings,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws.errors import AwsCallError
from ansible_collections.trek10.ec2ssm.tests.unit.plugins.plugin_utils.aws.fake_aws import (
    ACCESS_KEY,
    FakeAws,
    sts_credentials_xml,
    sts_error_xml,
)

IID = "i-0123456789abcdef0"


def access(**settings: object) -> AwsAccess:
    return AwsAccess(AwsSettings(**settings), target=IID)  # type: ignore[arg-type]


def terminate(aws: AwsAccess) -> dict[str, object]:
    return aws.call("ssm", "TerminateSession", SessionId="s-1")


@pytest.mark.parametrize("token_var", ["AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"])
def test_env_credentials_with_either_token_variable(
    fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch, token_var: str
) -> None:
    """Older AWX injects only AWS_SECURITY_TOKEN; the request must carry it as the session token."""
    monkeypatch.setenv(token_var, "FQoGZXIvYXdzEAwaDFAKESESSIONTOKEN")
    fake_aws.reply("TerminateSession", {"SessionId": "s-1"})
    assert terminate(access())["SessionId"] == "s-1"
    (request,) = fake_aws.calls("TerminateSession")
    assert request.access_key == ACCESS_KEY
    assert request.security_token == "FQoGZXIvYXdzEAwaDFAKESESSIONTOKEN"
    assert request.body == {"SessionId": "s-1"}


def test_profile_from_config_files(
    fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--profile wins over environment credentials, like the AWS CLI's --profile."""
    (tmp_path / "aws-credentials").write_text(
        "[ops]\naws_access_key_id = AKIAPROFILEKEY000002\naws_secret_access_key = profile-secret\n"
    )
    (tmp_path / "aws-config").write_text("[profile ops]\nregion = ap-southeast-2\n")
    monkeypatch.delenv("AWS_REGION")
    fake_aws.reply("TerminateSession", {"SessionId": "s-1"})
    aws = access(profile="ops")
    terminate(aws)
    assert aws.region == "ap-southeast-2"
    (request,) = fake_aws.calls("TerminateSession")
    assert request.access_key == "AKIAPROFILEKEY000002"
    assert "ap-southeast-2" in request.headers["authorization"]


def test_explicit_region_wins(fake_aws: FakeAws) -> None:
    fake_aws.reply("TerminateSession", {"SessionId": "s-1"})
    aws = access(region="us-west-2")
    terminate(aws)
    assert aws.region == "us-west-2"
    assert "/us-west-2/ssm/" in fake_aws.calls("TerminateSession")[0].headers["authorization"]


def test_assume_role_signs_calls_with_the_role(fake_aws: FakeAws) -> None:
    """assume_role_arn: STS is called with the env credentials, SSM with the role's."""
    fake_aws.reply(
        "AssumeRole",
        sts_credentials_xml("ASIAROLEKEY000000003", "role-secret", "ROLE-TOKEN-xyz", "2099-01-01T00:00:00Z"),
    )
    fake_aws.reply("TerminateSession", {"SessionId": "s-1"})
    aws = access(assume_role_arn="arn:aws:iam::210987654321:role/ops", role_session_name="web1")
    aws.resolve_credentials("ssm", "StartSession")
    terminate(aws)
    (sts,) = fake_aws.calls("AssumeRole")
    assert sts.access_key == ACCESS_KEY
    assert sts.body["RoleArn"] == "arn:aws:iam::210987654321:role/ops"
    assert sts.body["RoleSessionName"] == "web1"
    (ssm,) = fake_aws.calls("TerminateSession")
    assert ssm.access_key == "ASIAROLEKEY000000003"
    assert ssm.security_token == "ROLE-TOKEN-xyz"


def test_assume_role_denied_is_reported_as_sts_assume_role(fake_aws: FakeAws) -> None:
    fake_aws.reply(
        "AssumeRole",
        sts_error_xml(
            "AccessDenied",
            "User: arn:aws:iam::123456789012:user/dev is not authorized to perform: sts:AssumeRole on "
            "resource: arn:aws:iam::210987654321:role/ops",
        ),
        status=403,
    )
    aws = access(assume_role_arn="arn:aws:iam::210987654321:role/ops")
    with pytest.raises(AwsCallError) as caught:
        aws.resolve_credentials("ssm", "StartSession")
    assert caught.value.kind == "access-denied"
    assert str(caught.value) == (
        "i-0123456789abcdef0 (eu-west-1): sts:AssumeRole was denied for arn:aws:iam::123456789012:user/dev "
        "on arn:aws:iam::210987654321:role/ops (AccessDenied); allow sts:AssumeRole on that resource in the "
        "caller's IAM policy"
    )
    assert not fake_aws.calls("TerminateSession")


def test_throttling_is_retried_then_succeeds(fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_aws.error("TerminateSession", "ThrottlingException", "Rate exceeded")
    fake_aws.reply("TerminateSession", {"SessionId": "s-1"})
    terminate(access())
    assert len(fake_aws.calls("TerminateSession")) == 2


def test_persistent_throttling_is_reported_with_the_attempt_count(
    fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # keep the test short: one jittered sleep of <= 1 s
    fake_aws.error("StartSession", "ThrottlingException", "Rate exceeded")
    with pytest.raises(AwsCallError) as caught:
        access().call("ssm", "StartSession", Target=IID)
    assert len(fake_aws.calls("StartSession")) == 2
    assert caught.value.kind == "throttled"
    assert str(caught.value) == (
        "i-0123456789abcdef0 (eu-west-1): ssm:StartSession was still throttled by AWS after 2 attempts "
        "(ThrottlingException: Rate exceeded); lower the number of parallel connections (forks) or raise "
        "the retry budget (AWS_MAX_ATTEMPTS, AWS_RETRY_MODE=adaptive)"
    )


def test_access_denied_is_not_retried(fake_aws: FakeAws) -> None:
    fake_aws.error(
        "StartSession",
        "AccessDeniedException",
        "User: arn:aws:iam::123456789012:user/dev is not authorized to perform: ssm:StartSession on "
        "resource: arn:aws:ssm:eu-west-1::document/AWS-StartSSHSession because no identity-based policy "
        "allows the ssm:StartSession action",
    )
    with pytest.raises(AwsCallError) as caught:
        access().call("ssm", "StartSession", Target=IID)
    assert len(fake_aws.calls("StartSession")) == 1
    assert caught.value.resource == "arn:aws:ssm:eu-west-1::document/AWS-StartSSHSession"
    assert caught.value.kind == "access-denied"


def test_retry_defaults_and_user_overrides(fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch) -> None:
    retries = access().client("ssm").meta.config.retries
    assert retries["mode"] == "standard"
    assert retries["total_max_attempts"] == DEFAULT_MAX_ATTEMPTS
    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "9")
    retries = access().client("ssm").meta.config.retries
    assert retries == {"mode": "adaptive", "total_max_attempts": 9}


def test_no_credentials(fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(AwsCallError) as caught:
        access().call("ssm", "StartSession", Target=IID)
    assert caught.value.kind == "credentials"
    assert str(caught.value).startswith(
        "i-0123456789abcdef0 (eu-west-1): ssm:StartSession failed: NoCredentialsError: Unable to locate "
        "credentials;"
    )
    assert not fake_aws.requests


def test_unknown_profile(fake_aws: FakeAws) -> None:
    with pytest.raises(AwsCallError) as caught:
        access(profile="nope").call("ssm", "StartSession", Target=IID)
    assert caught.value.kind == "config"
    assert str(caught.value) == (
        "i-0123456789abcdef0 (eu-west-1): ssm:StartSession failed: ProfileNotFound: The config profile "
        "(nope) could not be found; check --profile / AWS_PROFILE against ~/.aws/config"
    )


def test_no_region(fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_ENDPOINT_URL_SSM")  # a region-less client would otherwise use the endpoint
    with pytest.raises(AwsCallError) as caught:
        access().call("ssm", "StartSession", Target=IID)
    assert caught.value.kind == "config"
    assert str(caught.value) == (
        "i-0123456789abcdef0: ssm:StartSession failed: NoRegionError: You must specify a region; pass "
        "--region, or set AWS_REGION or the profile's region"
    )


def test_unreachable_endpoint(fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(AwsCallError) as caught:
        access().call("ssm", "StartSession", Target=IID)
    assert caught.value.kind == "transport"
    assert str(caught.value) == (
        "i-0123456789abcdef0 (eu-west-1): ssm:StartSession failed: EndpointConnectionError: Could not "
        f'connect to the endpoint URL: "http://127.0.0.1:{port}/"; check the network path to the AWS '
        "endpoint, HTTPS_PROXY and any AWS_ENDPOINT_URL_* setting"
    )


def test_ca_bundle_comes_from_the_standard_config(
    fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert access().ca_bundle() is None
    assert access().verify_path()  # botocore's default bundle
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(bundle))
    assert access().ca_bundle() == str(bundle)
    assert access().verify_path() == str(bundle)


def test_a_malformed_setting_is_a_config_error(fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "many")
    with pytest.raises(AwsCallError) as caught:
        access().call("ssm", "StartSession", Target=IID)
    assert caught.value.kind == "config"
    assert str(caught.value) == (
        "i-0123456789abcdef0: ssm:StartSession failed: ValueError: invalid literal for int() with base 10: "
        "'many'; check the AWS_* environment variables and the profile's settings"
    )
