"""EC2 Instance Connect and the instances' sshd: validations, the key window, OS users, sudo,
isolation between instances, and that an instance's address is unreachable from here."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from ansible_collections.trek10.ec2ssm.tests.sandbox.fixtures import SandboxHandle
from ansible_collections.trek10.ec2ssm.tests.sandbox.hosts.users import PASSWORD_USER, SUDO_PASSWORD
from ansible_collections.trek10.ec2ssm.tests.sandbox.tests.helpers import KeyPair, make_key, ssh, wait_for

pytestmark = pytest.mark.sandbox


def push(handle: SandboxHandle, instance_id: str, user: str, key: KeyPair, **extra: str) -> dict[str, object]:
    region = next(r["region"] for r in handle.ctl.instances() if r["instance_id"] == instance_id)
    return handle.client("ec2-instance-connect", region=region).send_ssh_public_key(
        InstanceId=instance_id, InstanceOSUser=user, SSHPublicKey=key.public, **extra
    )


def code_of(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


@pytest.fixture(scope="module")
def al(sandbox: SandboxHandle) -> str:
    return str(sandbox.instance(region="us-east-1", sshd=True, platform="amazon-linux")["instance_id"])


@pytest.fixture(scope="module")
def ubuntu(sandbox: SandboxHandle) -> str:
    return str(sandbox.instance(sshd=True, platform="ubuntu")["instance_id"])


def test_pushed_key_logs_in_and_answers_success(sandbox: SandboxHandle, al: str, keypair: KeyPair) -> None:
    answer = push(sandbox, al, "ec2-user", keypair)
    assert answer["Success"] is True
    assert answer["RequestId"]
    result = ssh(sandbox, al, "ec2-user", keypair, "hostname; id -un; sudo -n id -u")
    assert result.returncode == 0, result.stderr
    hostname = sandbox.instance(instance_id=al)["hostname"]
    assert result.stdout.split() == [hostname, "ec2-user", "0"]


def test_without_a_push_sshd_refuses(sandbox: SandboxHandle, al: str, tmp_path: Path) -> None:
    result = ssh(sandbox, al, "ec2-user", make_key(tmp_path), "true")
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr


def test_key_window_expires(sandbox: SandboxHandle, al: str, keypair: KeyPair, tmp_path: Path) -> None:
    """A pushed key works while its window is open, and no more once it has closed.

    Each half waits for an event, not for the clock: the login inside the window uses the normal
    60 s window (a slow machine must not turn "within 3 s" into a failure), and the refused login
    comes after the control API no longer lists the short-lived key.
    """
    push(sandbox, al, "ec2-user", keypair)
    assert keypair.public.split()[1] in " ".join(sandbox.ctl.eic_keys(al, "ec2-user"))
    assert ssh(sandbox, al, "ec2-user", keypair, "true").returncode == 0
    (tmp_path / "short").mkdir()
    short = make_key(tmp_path / "short")
    sandbox.ctl.set_faults(eic_key_ttl=1)
    try:
        push(sandbox, al, "ec2-user", short)
        wait_for(
            lambda: short.public.split()[1] not in " ".join(sandbox.ctl.eic_keys(al, "ec2-user")), "expiry"
        )
        late = ssh(sandbox, al, "ec2-user", short, "true")
        assert late.returncode == 255
        assert "Permission denied (publickey)" in late.stderr
    finally:
        sandbox.ctl.set_faults(eic_key_ttl=60)
    assert sandbox.ctl.faults()["eic_key_ttl"] == 60


def test_key_is_for_that_user_only(sandbox: SandboxHandle, al: str, keypair: KeyPair) -> None:
    push(sandbox, al, "ec2-user", keypair)
    other = ssh(sandbox, al, PASSWORD_USER, keypair, "true")
    assert other.returncode == 255


def test_os_users_follow_the_platform(sandbox: SandboxHandle, al: str, ubuntu: str, keypair: KeyPair) -> None:
    push(sandbox, ubuntu, "ubuntu", keypair)
    ok = ssh(sandbox, ubuntu, "ubuntu", keypair, "id -un; sudo -n true && echo sudo-ok")
    assert ok.stdout.split() == ["ubuntu", "sudo-ok"], ok.stderr
    push(sandbox, ubuntu, "ec2-user", keypair)  # EIC accepts any valid user name, as AWS does...
    refused = ssh(sandbox, ubuntu, "ec2-user", keypair, "true")
    assert refused.returncode == 255  # ...but an Ubuntu AMI has no ec2-user
    push(sandbox, al, "ubuntu", keypair)
    assert ssh(sandbox, al, "ubuntu", keypair, "true").returncode == 255


def test_sudo_with_a_password(sandbox: SandboxHandle, al: str, keypair: KeyPair) -> None:
    push(sandbox, al, PASSWORD_USER, keypair)
    no_password = ssh(sandbox, al, PASSWORD_USER, keypair, "sudo -n id -u")
    assert no_password.returncode != 0
    assert "password is required" in no_password.stderr
    with_password = ssh(
        sandbox, al, PASSWORD_USER, keypair, "sudo -S -p '' id -u", stdin=SUDO_PASSWORD + "\n"
    )
    assert with_password.stdout.strip() == "0", with_password.stderr


def test_instances_do_not_share_files(sandbox: SandboxHandle, al: str, keypair: KeyPair) -> None:
    other = next(
        r["instance_id"]
        for r in sandbox.ctl.instances()
        if r["sshd"]
        and r["platform"] == "amazon-linux"
        and r["instance_id"] != al
        and r["state"] == "running"
    )
    for instance in (al, other):
        push(sandbox, instance, "ec2-user", keypair)
    assert ssh(sandbox, al, "ec2-user", keypair, f"echo {al} > /tmp/who; echo {al} > ~/who").returncode == 0
    seen = ssh(sandbox, other, "ec2-user", keypair, "cat /tmp/who ~/who 2>&1; hostname")
    assert al not in seen.stdout
    assert sandbox.instance(instance_id=other)["hostname"] in seen.stdout
    again = ssh(sandbox, al, "ec2-user", keypair, "cat /tmp/who ~/who")
    assert again.stdout.split() == [al, al]


def test_private_address_is_unreachable_from_the_controller(sandbox: SandboxHandle, al: str) -> None:
    if not sandbox.isolated:
        pytest.skip("no network namespaces")
    address = sandbox.instance(instance_id=al)["private_address"]
    direct = subprocess.run(
        ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
         f"ec2-user@{address}", "true"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert direct.returncode == 255
    assert "No route to host" in direct.stderr


def test_instance_without_eic(sandbox: SandboxHandle, keypair: KeyPair) -> None:
    (record,) = sandbox.ctl.launch(region="us-east-1", has_eic=False, tags={"Name": "no-eic"})
    assert record["has_eic"] is False
    answer = push(sandbox, record["instance_id"], "ec2-user", keypair)
    assert answer["Success"] is True
    refused = ssh(sandbox, record["instance_id"], "ec2-user", keypair, "true")
    assert refused.returncode == 255
    assert "Permission denied (publickey)" in refused.stderr
    sandbox.ctl.terminate(record["instance_id"])


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"InstanceId": "i-0123456789abcdef0"}, "EC2InstanceNotFoundException"),
        ({"InstanceId": "mi-0123456789abcdef0"}, "InvalidArgsException"),
        ({"InstanceOSUser": "bad user!"}, "InvalidArgsException"),
        ({"AvailabilityZone": "us-east-1z"}, "InvalidArgsException"),
        ({"key": ("ecdsa", 256)}, "InvalidArgsException"),
        ({"key": ("rsa", 1024)}, "InvalidArgsException"),
    ],
)
def test_send_ssh_public_key_validations(
    sandbox: SandboxHandle, al: str, tmp_path: Path, change: dict[str, object], code: str
) -> None:
    kind, bits = change.pop("key", ("ed25519", 0))  # type: ignore[misc]
    key = make_key(tmp_path, str(kind), int(bits) or 2048)
    params: dict[str, object] = {"InstanceId": al, "InstanceOSUser": "ec2-user", "SSHPublicKey": key.public}
    params.update(change)
    eic = sandbox.client("ec2-instance-connect")
    with pytest.raises(ClientError) as err:
        eic.send_ssh_public_key(**params)
    assert code_of(err) == code


def test_wrong_region_is_not_found(sandbox: SandboxHandle, keypair: KeyPair) -> None:
    west = sandbox.instance(region="us-west-2", sshd=True)["instance_id"]
    with pytest.raises(ClientError) as err:
        sandbox.client("ec2-instance-connect", region="us-east-1").send_ssh_public_key(
            InstanceId=west, InstanceOSUser="ec2-user", SSHPublicKey=keypair.public
        )
    assert code_of(err) == "EC2InstanceNotFoundException"
