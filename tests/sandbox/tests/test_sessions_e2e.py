"""Whole sessions with unmodified AWS tools: OpenSSH, the pip AWS CLI and the official
session-manager-plugin (the classic ``ProxyCommand=aws ssm start-session ...`` recipe), through the
sandbox's control plane, its data plane and an instance's sshd."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.trek10.ec2ssm.tests.sandbox.fixtures import SandboxHandle
from ansible_collections.trek10.ec2ssm.tests.sandbox.tests.helpers import KeyPair, wait_for

pytestmark = [pytest.mark.sandbox, pytest.mark.official_plugin]


def plugin_env(handle: SandboxHandle) -> dict[str, str]:
    env = handle.official_plugin_env()
    if env is None:
        pytest.skip("the official session-manager-plugin is not installed under /opt/session-manager-plugin")
    return env


def ssh_via_ssm(key: KeyPair, user: str, target: str, region: str, command: str) -> list[str]:
    aws = str(Path(sys.executable).parent / "aws")
    proxy = (
        f"{aws} ssm start-session --region {region} --target %h "
        "--document-name AWS-StartSSHSession --parameters portNumber=%p"
    )
    return [
        "ssh", "-F", "/dev/null", "-i", str(key.private), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
        "-o", "ConnectTimeout=60", "-o", f"ProxyCommand={proxy}", f"{user}@{target}", command,
    ]  # fmt: skip


def test_ssh_over_ssm_to_every_host_at_once(sandbox: SandboxHandle, keypair: KeyPair) -> None:
    env = plugin_env(sandbox)
    hosts = [r for r in sandbox.ctl.instances() if r["sshd"] and r["has_eic"] and r["state"] == "running"]
    assert len(hosts) >= 4
    sandbox.ctl.reset_calls()
    for host in hosts:
        sandbox.client("ec2-instance-connect", region=host["region"]).send_ssh_public_key(
            InstanceId=host["instance_id"], InstanceOSUser=host["os_user"], SSHPublicKey=keypair.public
        )
    command = "hostname; echo payload-$((6*7))"
    argvs = [ssh_via_ssm(keypair, h["os_user"], h["instance_id"], h["region"], command) for h in hosts]
    runs = [
        subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for a in argvs
    ]
    for host, run in zip(hosts, runs, strict=True):
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        assert out.split() == [host["hostname"], "payload-42"]
    for host in hosts:
        assert sandbox.ctl.count("SendSSHPublicKey", target=host["instance_id"]) == 1
        assert sandbox.ctl.count("StartSession", target=host["instance_id"]) == 1
    history = sandbox.client("ssm").describe_sessions(State="History")["Sessions"]
    east = {h["instance_id"] for h in hosts if h["region"] == "us-east-1"}
    assert east <= {s["Target"] for s in history if s["Status"] == "Terminated"}


def test_stopping_the_instance_ends_the_session(sandbox: SandboxHandle, keypair: KeyPair) -> None:
    env = plugin_env(sandbox)
    (record,) = sandbox.ctl.launch(region="us-east-1", tags={"Name": "stopped-mid-session"})
    target = record["instance_id"]
    try:
        sandbox.client("ec2-instance-connect").send_ssh_public_key(
            InstanceId=target, InstanceOSUser="ec2-user", SSHPublicKey=keypair.public
        )
        run = subprocess.Popen(
            ssh_via_ssm(keypair, "ec2-user", target, "us-east-1", "echo started; sleep 300"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        assert run.stdout is not None
        assert run.stdout.readline().strip() == "started"
        sandbox.ctl.stop(target)
        run.communicate(timeout=120)
        assert run.returncode == 255  # ssh: the connection went away under it
        ssm = sandbox.client("ssm")

        def ended() -> bool:
            sessions = ssm.describe_sessions(State="History", Filters=[{"key": "Target", "value": target}])
            return [s["Status"] for s in sessions["Sessions"]] == ["Terminated"]

        wait_for(ended, "the session to be recorded as Terminated")
    finally:
        sandbox.ctl.terminate(target)
