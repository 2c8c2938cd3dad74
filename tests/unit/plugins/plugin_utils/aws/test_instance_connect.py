# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""EC2 Instance Connect key push: local checks, and the real request botocore sends."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws.clients import AwsAccess, AwsSettings
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws.errors import AwsCallError
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws.instance_connect import (
    InstanceConnectError,
    check_target,
    push_public_key,
    read_public_key,
)
from ansible_collections.trek10.ec2ssm.tests.unit.plugins.plugin_utils.aws.fake_aws import FakeAws

IID = "i-0123456789abcdef0"
# An ed25519 OpenSSH public key is exactly 80 characters without its comment (the API's minimum).
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def test_ed25519_key_without_comment_is_exactly_the_api_minimum() -> None:
    assert len(ED25519) == 80


def test_read_public_key_returns_the_first_line(tmp_path: Path) -> None:
    key = tmp_path / "id.pub"
    key.write_text(f"{ED25519} me@laptop\n")
    assert read_public_key(str(key)) == f"{ED25519} me@laptop"


def test_read_public_key_expands_the_home_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "k.pub").write_text(ED25519)
    assert read_public_key("~/k.pub") == ED25519


def test_a_private_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    with pytest.raises(InstanceConnectError) as caught:
        read_public_key(str(key))
    assert str(caught.value) == f"{key} holds a private key; pass the public key (.pub) instead"
    assert "b3BlbnNzaC1rZXktdjEAAAAA" not in str(caught.value)


def test_not_a_key(tmp_path: Path) -> None:
    key = tmp_path / "notes.txt"
    key.write_text("hello\n")
    with pytest.raises(InstanceConnectError) as caught:
        read_public_key(str(key))
    assert str(caught.value) == (
        f"{key} is not an OpenSSH public key (expected one line starting with one of: ssh-ed25519, ssh-rsa, "
        "ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, ecdsa-sha2-nistp521)"
    )


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(InstanceConnectError) as caught:
        read_public_key(str(tmp_path / "nope.pub"))
    assert (
        str(caught.value) == f"cannot read the public key file {tmp_path}/nope.pub: No such file or directory"
    )


def test_managed_nodes_cannot_use_instance_connect() -> None:
    with pytest.raises(InstanceConnectError) as caught:
        check_target("mi-0123456789abcdef0")
    assert str(caught.value) == (
        "EC2 Instance Connect (ec2-instance-connect:SendSSHPublicKey) cannot push keys to managed (hybrid) "
        "nodes (mi-*), only to EC2 instances (i-*); drop --public-key-file and use a key that is already "
        "authorized on the node"
    )
    with pytest.raises(InstanceConnectError):
        check_target("web1.example.com")
    check_target(IID)
    check_target("i-0abc1234")


def test_push_sends_the_key_for_the_user(fake_aws: FakeAws) -> None:
    fake_aws.reply("SendSSHPublicKey", {"RequestId": "r-1", "Success": True})
    push_public_key(
        AwsAccess(AwsSettings(), target=IID), instance_id=IID, os_user="ec2-user", public_key=ED25519
    )
    (request,) = fake_aws.calls("SendSSHPublicKey")
    assert request.headers["x-amz-target"] == "AWSEC2InstanceConnectService.SendSSHPublicKey"
    assert request.body == {"InstanceId": IID, "InstanceOSUser": "ec2-user", "SSHPublicKey": ED25519}


def test_push_answered_without_success_is_an_error(fake_aws: FakeAws) -> None:
    fake_aws.reply("SendSSHPublicKey", {"RequestId": "r-1", "Success": False})
    with pytest.raises(AwsCallError) as caught:
        push_public_key(
            AwsAccess(AwsSettings(), target=IID), instance_id=IID, os_user="ec2-user", public_key=ED25519
        )
    assert str(caught.value) == (
        "i-0123456789abcdef0 (eu-west-1): ec2-instance-connect:SendSSHPublicKey failed: AWS answered "
        "Success=False"
    )


def test_unknown_instance(fake_aws: FakeAws) -> None:
    fake_aws.error("SendSSHPublicKey", "EC2InstanceNotFoundException", "Instance not found", status=400)
    with pytest.raises(AwsCallError) as caught:
        push_public_key(
            AwsAccess(AwsSettings(), target=IID, label="web1"),
            instance_id=IID,
            os_user="ec2-user",
            public_key=ED25519,
        )
    assert caught.value.kind == "not-found"
    assert str(caught.value) == (
        "web1 (i-0123456789abcdef0, eu-west-1): ec2-instance-connect:SendSSHPublicKey failed "
        "(EC2InstanceNotFoundException): Instance not found; check the instance id and the region"
    )
