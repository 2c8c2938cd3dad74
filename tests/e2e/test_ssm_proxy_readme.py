# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""README "Use from plain ssh": the ~/.ssh/config examples work as written, against the sandbox.

The examples are read from README.md (section "Use from plain ssh"). Until that section exists the
text proposed for it (``PROPOSED_SECTION`` below, kept identical to what was handed to the README's
owner) is tested instead. The collection is "installed" the way ansible-galaxy installs it, under
``$HOME/.ansible/collections``; ``python3`` is a Python with the collection's requirements.
Only the home directory is substituted (OpenSSH expands ``~`` from the password database, not
from ``$HOME``), nothing else.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.trek10.ec2ssm.tests.sandbox.config import SandboxConfig
from ansible_collections.trek10.ec2ssm.tests.sandbox.fixtures import SandboxHandle, start_sandbox

pytestmark = pytest.mark.sandbox

ROOT = Path(__file__).resolve().parents[2]
HELPER = "python3 -m ansible_collections.trek10.ec2ssm.plugins.plugin_utils.ssm_proxy"
PROPOSED_SECTION = f"""\
## Use from plain ssh

```
# ~/.ssh/config: SSH over Session Manager, without the AWS CLI or session-manager-plugin
Host i-* mi-*
    ProxyCommand env PYTHONPATH=$HOME/.ansible/collections {HELPER} --target %h --port %p
```

```
# ~/.ssh/config: the same, and push a one-time key with EC2 Instance Connect on every connection
Host i-*
    User ec2-user
    IdentityFile ~/.ssh/id_ed25519
    ProxyCommand env PYTHONPATH=$HOME/.ansible/collections {HELPER} --target %h --port %p --os-user %r --public-key-file ~/.ssh/id_ed25519.pub
```
"""  # noqa: E501 - ssh_config lines are long


def readme_section() -> str:
    readme = ROOT / "README.md"
    text = readme.read_text() if readme.exists() else ""
    match = re.search(r"^## Use from plain ssh\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    return match.group(0) if match else PROPOSED_SECTION


def ssh_config_blocks(section: str) -> list[str]:
    """The fenced code blocks of the section that are ssh_config (they have a ProxyCommand)."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", section, re.M | re.S)
    return [b for b in blocks if "ProxyCommand" in b]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    handle = start_sandbox(tmp_path_factory.mktemp("readme-sandbox"), SandboxConfig(instances=1))
    try:
        yield handle
    finally:
        handle.down()


@pytest.fixture
def home(tmp_path: Path, sandbox: SandboxHandle) -> Path:
    """A user's home: the collection installed under ~/.ansible/collections, a key pair, known hosts."""
    home = tmp_path / "home"
    collection = home / ".ansible" / "collections" / "ansible_collections" / "trek10" / "ec2ssm"
    collection.parent.mkdir(parents=True)
    collection.symlink_to(ROOT, target_is_directory=True)
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh / "id_ed25519")], check=True)
    known = [
        f"{r['instance_id']} {k}"
        for r in sandbox.ctl.instances()
        for k in (r.get("host_keys") or {}).values()
    ]
    (ssh / "known_hosts").write_text("\n".join(known) + "\n")
    return home


def user_env(sandbox: SandboxHandle, home: Path) -> dict[str, str]:
    """The sandbox's AWS environment, HOME, and a PATH whose python3 has botocore and websockets
    (nothing of this checkout on PYTHONPATH: the config's own PYTHONPATH must do it)."""
    env = sandbox.env(HOME=str(home))
    env.pop("PYTHONPATH", None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def ssh(home: Path, config: str, env: dict[str, str], destination: str) -> subprocess.CompletedProcess[str]:
    path = home / ".ssh" / "config"
    path.write_text(config.replace("~/", f"{home}/"))
    return subprocess.run(
        [
            "ssh", "-F", str(path), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={home / '.ssh' / 'known_hosts'}", destination, "echo via-readme",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip


def test_the_section_has_both_examples() -> None:
    blocks = ssh_config_blocks(readme_section())
    assert len(blocks) == 2
    assert "--target %h --port %p" in blocks[0]
    assert "aws " not in " ".join(blocks)  # no AWS CLI anywhere


def test_the_aws_docs_equivalent_with_an_already_authorized_key(sandbox: SandboxHandle, home: Path) -> None:
    record: dict[str, Any] = sandbox.instance(sshd=True, state="running")
    iid, user = record["instance_id"], record["os_user"]
    config = ssh_config_blocks(readme_section())[0]
    # "Already authorized": give the key to the instance out of band (EC2 Instance Connect, by hand).
    public_key = (home / ".ssh" / "id_ed25519.pub").read_text().strip()
    sandbox.client("ec2-instance-connect").send_ssh_public_key(
        InstanceId=iid, InstanceOSUser=user, SSHPublicKey=public_key
    )
    config += f"    User {user}\n    IdentityFile ~/.ssh/id_ed25519\n"
    result = ssh(home, config, user_env(sandbox, home), iid)
    assert (result.returncode, result.stdout) == (0, "via-readme\n"), result.stderr


@pytest.mark.e2e_smoke
def test_the_instance_connect_example(sandbox: SandboxHandle, home: Path) -> None:
    record: dict[str, Any] = sandbox.instance(sshd=True, state="running", os_user="ec2-user")
    iid = record["instance_id"]
    pushes = sandbox.ctl.count("SendSSHPublicKey", target=iid)
    result = ssh(home, ssh_config_blocks(readme_section())[1], user_env(sandbox, home), iid)
    assert (result.returncode, result.stdout) == (0, "via-readme\n"), result.stderr
    assert sandbox.ctl.count("SendSSHPublicKey", target=iid) == pushes + 1
