# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The demo: a playbook that uses only the inventory file, over trek10.ec2ssm.ssm_ssh.

``examples/demo/demo.ssm_instances.yml`` and ``examples/demo/playbook.yml`` run unchanged against
private sandbox instances (real sshd in network namespaces, reachable only through the SSM data
plane). No host vars, group vars or ansible.cfg: the only settings are the standard AWS
variables of the sandbox's env.sh.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.trek10.ec2ssm.tests.sandbox.control.client import SandboxClient

pytestmark = [pytest.mark.sandbox, pytest.mark.e2e_smoke]

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "demo"
BIN = Path(sys.executable).parent
SANDBOX = "ansible_collections.trek10.ec2ssm.tests.sandbox"
RECAP = re.compile(
    r"^(?P<host>\S+)\s*: ok=(?P<ok>\d+)\s+changed=\d+\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.M,
)


def sandbox_env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    for line in (state / "env.sh").read_text().splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "export":
            for word in words[1:]:
                key, _sep, value = word.partition("=")
                env[key] = value
        elif words and words[0] == "unset":
            for key in words[1:]:
                env.pop(key, None)
    return env


def test_demo_playbook_runs_over_ssm_ssh_with_only_the_inventory_file(tmp_path: Path):
    state = tmp_path / "sandbox"
    command = [sys.executable, "-m", SANDBOX, "up", "--instances", "3", "--state-dir", str(state)]
    command += ["--owner-pid", str(os.getpid())]  # a killed test run takes its sandbox with it
    up = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert up.returncode == 0, up.stderr + up.stdout
    try:
        instances = SandboxClient.from_state(state).instances()
        env = {
            **sandbox_env(state),
            "HOME": str(tmp_path / "home"),  # known_hosts, ControlPath sockets: nothing of the user's
            "ANSIBLE_HOME": str(tmp_path / "home" / ".ansible"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
        }
        (tmp_path / "home").mkdir()
        run = subprocess.run(
            [str(BIN / "ansible-playbook"), "-i", "demo.ssm_instances.yml", "playbook.yml"],
            cwd=DEMO,
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
        recap = {m["host"]: m for m in RECAP.finditer(run.stdout)}
        expected = sorted(r["instance_id"] for r in instances if r["tags"].get("Fleet") == "hosts")
        assert sorted(recap) == expected
        for host in recap.values():
            assert (host["failed"], host["unreachable"]) == ("0", "0")
            assert int(host["ok"]) >= 5
        # the platform decided the user: every Ubuntu instance was reached as ubuntu
        for record in instances:
            assert f"{record['instance_id']} is {record['platform_name']}" in run.stdout
            assert f"user {record['os_user']}," in run.stdout
    finally:
        subprocess.run(
            [sys.executable, "-m", SANDBOX, "down", "--state-dir", str(state)], timeout=300, check=False
        )
