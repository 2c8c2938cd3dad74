"""Fault and limit switches, each with the client-visible behaviour AWS would produce:
IAM denials, throttling, instance stop/start/terminate (control API and EC2 API), lost agents,
data-plane switches, and the API call counters tests rely on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ansible_collections.trek10.ec2ssm.tests.sandbox.control.client import ControlApiError
from ansible_collections.trek10.ec2ssm.tests.sandbox.fixtures import SandboxHandle
from ansible_collections.trek10.ec2ssm.tests.sandbox.hosts import netns
from ansible_collections.trek10.ec2ssm.tests.sandbox.tests.helpers import KeyPair, ssh

pytestmark = pytest.mark.sandbox
ACCOUNT = "123456789012"


def listed(handle: SandboxHandle, instance_id: str, region: str = "us-east-1") -> list[dict[str, Any]]:
    ssm = handle.client("ssm", region=region)
    return ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": [instance_id]}])[
        "InstanceInformationList"
    ]


def error_of(err: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    return err.value.response["Error"]["Code"], err.value.response["Error"]["Message"]


@pytest.fixture
def alice(sandbox: SandboxHandle) -> Iterator[dict[str, str]]:
    keys = sandbox.ctl.add_principal("alice")
    yield keys
    sandbox.ctl.clear_policy("alice")


def client_as(handle: SandboxHandle, keys: dict[str, str], service: str, region: str = "us-east-1") -> Any:
    import boto3

    env = handle.aws_env
    return boto3.session.Session(
        aws_access_key_id=keys["access_key_id"],
        aws_secret_access_key=keys["secret_access_key"],
        region_name=region,
    ).client(service, endpoint_url=env["AWS_ENDPOINT_URL_SSM"], verify=env["AWS_CA_BUNDLE"])


@pytest.fixture
def fresh(sandbox: SandboxHandle) -> Iterator[str]:
    """A new sshd-backed instance this test may stop, start and terminate."""
    (record,) = sandbox.ctl.launch(region="us-east-1", tags={"Name": "lifecycle"})
    yield record["instance_id"]
    sandbox.ctl.terminate(record["instance_id"])


# --- IAM --------------------------------------------------------------------------------------


def test_identity_policy_denials_name_action_and_resource(
    sandbox: SandboxHandle, alice: dict[str, str], keypair: KeyPair
) -> None:
    target = sandbox.instance(region="us-east-1", sshd=True)["instance_id"]
    instance_arn = f"arn:aws:ec2:us-east-1:{ACCOUNT}:instance/{target}"
    sandbox.ctl.set_policy(
        "alice",
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "ssm:DescribeInstanceInformation", "Resource": "*"},
                {"Effect": "Allow", "Action": "ssm:StartSession", "Resource": "arn:aws:ec2:*:*:instance/*"},
                {
                    "Effect": "Allow",
                    "Action": "ec2-instance-connect:SendSSHPublicKey",
                    "Resource": "arn:aws:ec2:*:*:instance/*",
                    "Condition": {"StringEquals": {"ec2:osuser": "ec2-user"}},
                },
            ],
        },
    )
    sts = client_as(sandbox, alice, "sts")
    assert sts.get_caller_identity()["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/alice"
    assert client_as(sandbox, alice, "ssm").describe_instance_information()["InstanceInformationList"]
    with pytest.raises(ClientError) as err:
        client_as(sandbox, alice, "ssm").start_session(Target=target, DocumentName="AWS-StartSSHSession")
    document = "arn:aws:ssm:us-east-1::document/AWS-StartSSHSession"
    assert error_of(err) == (
        "AccessDeniedException",
        f"User: arn:aws:iam::{ACCOUNT}:user/alice is not authorized to perform: ssm:StartSession "
        f"on resource: {document} because no identity-based policy allows the ssm:StartSession action",
    )
    eic = client_as(sandbox, alice, "ec2-instance-connect")
    assert eic.send_ssh_public_key(InstanceId=target, InstanceOSUser="ec2-user", SSHPublicKey=keypair.public)[
        "Success"
    ]
    with pytest.raises(ClientError) as err:
        eic.send_ssh_public_key(InstanceId=target, InstanceOSUser="root", SSHPublicKey=keypair.public)
    assert error_of(err) == (
        "AccessDeniedException",
        f"User: arn:aws:iam::{ACCOUNT}:user/alice is not authorized to perform: "
        f"ec2-instance-connect:SendSSHPublicKey on resource: {instance_arn} "
        "because no identity-based policy allows the ec2-instance-connect:SendSSHPublicKey action",
    )
    with pytest.raises(ClientError) as err:
        client_as(sandbox, alice, "ec2").describe_instances()
    code, message = error_of(err)
    assert code == "UnauthorizedOperation"
    assert "is not authorized to perform: ec2:DescribeInstances" in message
    assert sandbox.ctl.calls(caller="alice")["denied"] == 3


def test_explicit_deny_wins(sandbox: SandboxHandle, alice: dict[str, str]) -> None:
    sandbox.ctl.set_policy(
        "alice",
        {"Statement": [{"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}]},
        {"Statement": [{"Effect": "Deny", "Action": "ssm:Describe*", "Resource": "*"}]},
    )
    with pytest.raises(ClientError) as err:
        client_as(sandbox, alice, "ssm").describe_instance_information()
    assert error_of(err)[1].endswith("on resource: * with an explicit deny in an identity-based policy")


# --- throttling -------------------------------------------------------------------------------


def test_throttling_answers_rate_exceeded(sandbox: SandboxHandle) -> None:
    action = "ssm:DescribeInstanceInformation"
    default = sandbox.ctl.faults()["throttling"]["rules"][action]
    sandbox.ctl.set_faults(throttling={"rules": {action: {"rate": 0.001, "burst": 2}}})
    try:
        sandbox.ctl.reset_calls()
        ssm = sandbox.client("ssm", retries={"total_max_attempts": 1, "mode": "standard"})
        ssm.describe_instance_information()
        ssm.describe_instance_information()
        with pytest.raises(ClientError) as err:
            ssm.describe_instance_information()
        assert error_of(err) == ("ThrottlingException", "Rate exceeded")
        counted = sandbox.ctl.calls(action="DescribeInstanceInformation")
        assert (counted["ok"], counted["throttled"]) == (2, 1)
    finally:
        sandbox.ctl.set_faults(throttling={"rules": {action: default}})


def test_throttling_defaults_are_on(sandbox: SandboxHandle) -> None:
    throttling = sandbox.ctl.faults()["throttling"]
    assert throttling["enabled"] is True
    assert {"ssm:StartSession", "ec2-instance-connect:SendSSHPublicKey"} <= set(throttling["rules"])


# --- instance lifecycle -----------------------------------------------------------------------


def test_stop_start_terminate(sandbox: SandboxHandle, fresh: str, keypair: KeyPair) -> None:
    ssm = sandbox.client("ssm")
    eic = sandbox.client("ec2-instance-connect")
    eic.send_ssh_public_key(InstanceId=fresh, InstanceOSUser="ec2-user", SSHPublicKey=keypair.public)
    assert ssh(sandbox, fresh, "ec2-user", keypair, "true").returncode == 0
    sandbox.ctl.stop(fresh)
    assert listed(sandbox, fresh) == []
    with pytest.raises(ClientError) as err:
        ssm.start_session(Target=fresh, DocumentName="AWS-StartSSHSession")
    assert error_of(err)[0] == "TargetNotConnected"
    with pytest.raises(ClientError) as err:
        eic.send_ssh_public_key(InstanceId=fresh, InstanceOSUser="ec2-user", SSHPublicKey=keypair.public)
    assert error_of(err)[0] == "EC2InstanceStateInvalidException"
    assert ssh(sandbox, fresh, "ec2-user", keypair, "true").returncode == 255  # sshd is gone
    sandbox.ctl.start(fresh)
    assert [i["PingStatus"] for i in listed(sandbox, fresh)] == ["Online"]
    assert ssh(sandbox, fresh, "ec2-user", keypair, "true").returncode == 0
    namespace = sandbox.instance(instance_id=fresh)["netns"]
    sandbox.ctl.terminate(fresh)
    assert sandbox.instance(instance_id=fresh)["state"] == "terminated"
    if namespace:
        assert namespace not in netns.list_names(sandbox.prefix)
    with pytest.raises(ClientError) as err:
        eic.send_ssh_public_key(InstanceId=fresh, InstanceOSUser="ec2-user", SSHPublicKey=keypair.public)
    assert error_of(err)[0] == "EC2InstanceStateInvalidException"


def test_ec2_api_stop_is_seen_by_ssm_and_the_host(
    sandbox: SandboxHandle, fresh: str, keypair: KeyPair
) -> None:
    ec2 = sandbox.client("ec2")
    ec2.stop_instances(InstanceIds=[fresh])
    assert listed(sandbox, fresh) == []
    assert ssh(sandbox, fresh, "ec2-user", keypair, "true").returncode == 255
    ec2.start_instances(InstanceIds=[fresh])
    sandbox.client("ec2-instance-connect").send_ssh_public_key(
        InstanceId=fresh, InstanceOSUser="ec2-user", SSHPublicKey=keypair.public
    )
    assert ssh(sandbox, fresh, "ec2-user", keypair, "true").returncode == 0
    state = ec2.describe_instances(InstanceIds=[fresh])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "running"


def test_agent_connection_lost(sandbox: SandboxHandle, fresh: str) -> None:
    sandbox.ctl.set_ping_status(fresh, "ConnectionLost")
    assert [i["PingStatus"] for i in listed(sandbox, fresh)] == ["ConnectionLost"]
    with pytest.raises(ClientError) as err:
        sandbox.client("ssm").start_session(Target=fresh, DocumentName="AWS-StartSSHSession")
    assert error_of(err) == ("TargetNotConnected", f"{fresh} is not connected.")
    sandbox.ctl.set_ping_status(fresh, "Online")
    started = sandbox.client("ssm").start_session(Target=fresh, DocumentName="AWS-StartSSHSession")
    sandbox.client("ssm").terminate_session(SessionId=started["SessionId"])


# --- data plane switches and counters ------------------------------------------------------------


def test_dataplane_switches_pass_through(sandbox: SandboxHandle) -> None:
    before = sandbox.ctl.faults()["dataplane"]
    assert "ws_drop_every" in before
    try:
        after = sandbox.ctl.set_faults(dataplane={"ws_drop_every": 5.0, "ack_loss": 0.1})["dataplane"]
        assert (after["ws_drop_every"], after["ack_loss"]) == (5.0, 0.1)
    finally:
        sandbox.ctl.set_faults(
            dataplane={"ws_drop_every": before["ws_drop_every"], "ack_loss": before["ack_loss"]}
        )
    with pytest.raises(ControlApiError) as err:
        sandbox.ctl.set_faults(dataplane={"no_such_switch": 1})
    assert err.value.status == 400


def test_call_counters(sandbox: SandboxHandle, keypair: KeyPair) -> None:
    target = sandbox.instance(region="us-east-1", sshd=True)["instance_id"]
    sandbox.ctl.reset_calls()
    sandbox.client("ec2-instance-connect").send_ssh_public_key(
        InstanceId=target, InstanceOSUser="ec2-user", SSHPublicKey=keypair.public
    )
    sandbox.client("ssm").describe_instance_information()
    assert sandbox.ctl.count("SendSSHPublicKey", target=target) == 1
    assert sandbox.ctl.count("DescribeInstanceInformation") == 1
    assert sandbox.ctl.count("StartSession") == 0
    rows = sandbox.ctl.calls(action="SendSSHPublicKey")["rows"]
    assert rows == [
        {
            "service": "ec2-instance-connect",
            "action": "SendSSHPublicKey",
            "region": "us-east-1",
            "caller": "ec2ssm-sandbox",
            "target": target,
            "outcome": "ok",
            "count": 1,
        }
    ]
