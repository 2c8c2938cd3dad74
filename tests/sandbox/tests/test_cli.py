"""The command line and lifecycle: status, ctl, idempotent up, and down cleaning up after a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ansible_collections.trek10.ec2ssm.tests.sandbox.config import SandboxConfig
from ansible_collections.trek10.ec2ssm.tests.sandbox.fixtures import SandboxHandle
from ansible_collections.trek10.ec2ssm.tests.sandbox.hosts import netns
from ansible_collections.trek10.ec2ssm.tests.sandbox.lifecycle import up
from ansible_collections.trek10.ec2ssm.tests.sandbox.state import pid_alive

pytestmark = pytest.mark.sandbox
MODULE = "ansible_collections.trek10.ec2ssm.tests.sandbox"


def cli(handle: SandboxHandle, *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", MODULE, *words[:1], "--state-dir", str(handle.state_dir), *words[1:]],
        capture_output=True, text=True, env=handle.env(), timeout=120, check=False,
    )  # fmt: skip


def test_status_and_ctl(sandbox: SandboxHandle) -> None:
    status = cli(sandbox, "status")
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["isolated"] is True
    assert info["regions"] == ["us-east-1", "us-west-2"]
    sandbox.ctl.reset_calls()
    sandbox.client("ssm").describe_instance_information()
    calls = cli(sandbox, "ctl", "calls", "action", "DescribeInstanceInformation")
    assert calls.returncode == 0, calls.stderr
    assert json.loads(calls.stdout)["total"] == 1
    listing = json.loads(cli(sandbox, "ctl", "instances").stdout)
    assert {r["instance_id"] for r in listing} == {r["instance_id"] for r in sandbox.instances()}
    env_sh = (sandbox.state_dir / "env.sh").read_text()
    for name in ("AWS_ENDPOINT_URL_SSM", "AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT",
                 "AWS_ENDPOINT_URL_STS", "AWS_CA_BUNDLE", "AWS_REGION", "AWS_DEFAULT_REGION",
                 "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # fmt: skip
        assert f"export {name}=" in env_sh


def test_up_again_is_a_no_op(sandbox: SandboxHandle, sandbox_config: SandboxConfig) -> None:
    again = up(sandbox_config, sandbox.state_dir)
    assert again["already_running"] is True
    assert again["pid"] == sandbox.info["pid"]


def test_down_cleans_up_after_a_crash(sandbox_factory: Callable[..., SandboxHandle]) -> None:
    handle = sandbox_factory(SandboxConfig(instances=2, regions=["us-east-1"]), name="crash")
    names = netns.list_names(handle.prefix + "-")
    assert len(names) == 2
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout
    assert f"unreachable {handle.info['address_range']}" in routes
    os.kill(handle.info["pid"], signal.SIGKILL)
    while pid_alive(handle.info["pid"]):
        pass
    assert netns.list_names(handle.prefix + "-") == names  # a crash leaves them behind
    handle.down()
    assert netns.list_names(handle.prefix + "-") == []
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout
    assert handle.info["address_range"] not in routes
    assert not Path(handle.info["run_dir"]).exists()
    handle.down()  # idempotent
