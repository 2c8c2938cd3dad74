"""Assumed-role callers and region conditions, as AWS treats them (issue #8).

- Temporary credentials (an assumed role's ``ASIA...`` access key) are accepted only with their
  session token; without it, or with another one, AWS answers "The security token included in the
  request is invalid" (JSON services: UnrecognizedClientException; EC2: AuthFailure).
- ``${aws:username}`` exists only for IAM users: for an assumed role a Resource using it matches
  nothing (the reason session ARNs of role callers need another policy than ``session/${aws:username}-*``).
- Every request carries ``aws:RequestedRegion``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ansible_collections.trek10.ec2ssm.tests.sandbox.fixtures import SandboxHandle
from ansible_collections.trek10.ec2ssm.tests.sandbox.iam import AuthzRequest, evaluate
from ansible_collections.trek10.ec2ssm.tests.sandbox.services.core import Caller

ACCOUNT = "123456789012"
ROLE_CALLER = Caller(
    "ASIAROLE",
    ACCOUNT,
    f"arn:aws:sts::{ACCOUNT}:assumed-role/deployer/awx-job-7",
    "AROADEPLOYER:awx-job-7",
)
USER_CALLER = Caller("AKIAALICE", ACCOUNT, f"arn:aws:iam::{ACCOUNT}:user/alice", "AIDAALICE")
OWN_SESSIONS = {
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["ssm:TerminateSession", "ssm:ResumeSession"],
            "Resource": "arn:aws:ssm:*:*:session/${aws:username}-*",
        }
    ]
}


def test_aws_username_has_no_value_for_an_assumed_role() -> None:
    role_session = f"arn:aws:ssm:us-east-1:{ACCOUNT}:session/awx-job-7-0123456789abcdef0"
    user_session = f"arn:aws:ssm:us-east-1:{ACCOUNT}:session/alice-0123456789abcdef0"
    assert (
        evaluate([OWN_SESSIONS], AuthzRequest(USER_CALLER, "ssm:TerminateSession", user_session)) == "allow"
    )
    assert (
        evaluate([OWN_SESSIONS], AuthzRequest(ROLE_CALLER, "ssm:TerminateSession", role_session))
        == "implicit"
    )
    condition = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "*",
                "Resource": "*",
                "Condition": {"StringLike": {"aws:username": "*"}},
            }
        ]
    }
    assert evaluate([condition], AuthzRequest(ROLE_CALLER, "x:Y", "r")) == "implicit"
    not_resource = {
        "Statement": [
            {"Effect": "Allow", "Action": "*", "NotResource": "arn:aws:ssm:*:*:session/${aws:username}-*"}
        ]
    }
    assert evaluate([not_resource], AuthzRequest(ROLE_CALLER, "x:Y", "r")) == "implicit"
    assert evaluate([not_resource], AuthzRequest(USER_CALLER, "x:Y", "r")) == "allow"


# --- live: a running sandbox ---------------------------------------------------------------------


def _client(handle: SandboxHandle, service: str, region: str = "us-east-1", **credentials: Any) -> Any:
    import boto3

    env = handle.aws_env
    return boto3.session.Session(region_name=region, **credentials).client(
        service, endpoint_url=env["AWS_ENDPOINT_URL_SSM"], verify=env["AWS_CA_BUNDLE"]
    )


@pytest.fixture
def role_session(sandbox: SandboxHandle) -> Iterator[dict[str, str]]:
    """Temporary credentials of an assumed role (RoleSessionName ``awx-<random>``)."""
    env = sandbox.aws_env
    admin = {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
    }
    name = f"awx-{uuid.uuid4().hex[:8]}"
    iam = _client(sandbox, "iam", **admin)
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({"Statement": []}))["Role"]
    creds = _client(sandbox, "sts", **admin).assume_role(RoleArn=role["Arn"], RoleSessionName=name)[
        "Credentials"
    ]
    yield {
        "name": name,
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }
    sandbox.ctl.clear_policy(name)


def _keys(role: dict[str, str], token: str | None) -> dict[str, str | None]:
    return {
        "aws_access_key_id": role["aws_access_key_id"],
        "aws_secret_access_key": role["aws_secret_access_key"],
        "aws_session_token": token,
    }


@pytest.mark.sandbox
def test_temporary_credentials_need_their_session_token(
    sandbox: SandboxHandle, role_session: dict[str, str]
) -> None:
    good = _keys(role_session, role_session["aws_session_token"])
    arn = _client(sandbox, "sts", **good).get_caller_identity()["Arn"]
    assert arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_session['name']}/{role_session['name']}"
    assert _client(sandbox, "ssm", **good).describe_instance_information()["InstanceInformationList"]
    assert "Reservations" in _client(sandbox, "ec2", **good).describe_instances()
    for token in (None, role_session["aws_session_token"][:-4] + "AAAA"):
        with pytest.raises(ClientError) as err:
            _client(sandbox, "ssm", **_keys(role_session, token)).describe_instance_information()
        assert err.value.response["Error"] == {
            "Code": "UnrecognizedClientException",
            "Message": "The security token included in the request is invalid.",
        }
        with pytest.raises(ClientError) as err:
            _client(sandbox, "ec2", **_keys(role_session, token)).describe_instances()
        assert err.value.response["Error"]["Code"] == "AuthFailure"


@pytest.mark.sandbox
def test_role_sessions_are_named_after_the_role_session_and_username_policies_miss_them(
    sandbox: SandboxHandle, role_session: dict[str, str]
) -> None:
    name = role_session["name"]
    target = sandbox.instance(region="us-east-1", sshd=True)["instance_id"]
    ssm = _client(sandbox, "ssm", **_keys(role_session, role_session["aws_session_token"]))
    session_id = ssm.start_session(
        Target=target, DocumentName="AWS-StartSSHSession", Parameters={"portNumber": ["22"]}
    )["SessionId"]
    assert session_id.startswith(f"{name}-")
    sandbox.ctl.set_policy(name, OWN_SESSIONS)
    with pytest.raises(ClientError) as err:
        ssm.terminate_session(SessionId=session_id)
    assert err.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "is not authorized to perform: ssm:TerminateSession" in err.value.response["Error"]["Message"]
    own_prefix = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "ssm:TerminateSession",
                "Resource": f"arn:aws:ssm:*:*:session/{name}-*",
            }
        ]
    }
    sandbox.ctl.set_policy(name, own_prefix)
    assert ssm.terminate_session(SessionId=session_id)["SessionId"] == session_id


@pytest.mark.sandbox
def test_requested_region_condition(sandbox: SandboxHandle, role_session: dict[str, str]) -> None:
    name = role_session["name"]
    sandbox.ctl.set_policy(
        name,
        {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["ssm:DescribeInstanceInformation", "ec2:DescribeInstances"],
                    "Resource": "*",
                    "Condition": {"StringEquals": {"aws:RequestedRegion": "us-west-2"}},
                }
            ]
        },
    )
    keys = _keys(role_session, role_session["aws_session_token"])
    assert (
        "InstanceInformationList"
        in _client(sandbox, "ssm", "us-west-2", **keys).describe_instance_information()
    )
    assert "Reservations" in _client(sandbox, "ec2", "us-west-2", **keys).describe_instances()
    with pytest.raises(ClientError) as err:
        _client(sandbox, "ssm", "us-east-1", **keys).describe_instance_information()
    assert err.value.response["Error"]["Code"] == "AccessDeniedException"
    with pytest.raises(ClientError) as err:
        _client(sandbox, "ec2", "us-east-1", **keys).describe_instances()
    assert err.value.response["Error"]["Code"] == "UnauthorizedOperation"
