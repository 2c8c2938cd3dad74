# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ground every scenario stands on: a sandbox, a direct route to its sshds, keys, host keys.

The product reaches an instance's sshd only through the sandbox's Session Manager data plane.
The baseline ("plain ssh") must reach the *same* sshd as directly as a controller ever could, so
:class:`DirectRoutes` gives it a veth pair into each instance's network namespace: ssh then
connects straight to port 22 over TCP, with no ProxyCommand and no relay process in between.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ansible_collections.trek10.ec2ssm.tests.sandbox.config import SandboxConfig
from ansible_collections.trek10.ec2ssm.tests.sandbox.fixtures import SandboxHandle, start_sandbox

REPO = Path(__file__).resolve().parents[1]
CALLBACK_DIR = REPO / "bench" / "callback_plugins"
#: The same ssh_args for the product and the baseline: the ssm_ssh plugin's own default.
SSH_ARGS = "-C -o ControlMaster=auto -o ControlPersist=10m"
LIVE_SESSION_STATES = ("Connecting", "Connected", "Disconnected", "Terminating")


@contextlib.contextmanager
def sandbox(work: Path, config: SandboxConfig) -> Iterator[SandboxHandle]:
    """A private sandbox for one scenario, removed afterwards (also if this process is killed)."""
    handle = start_sandbox(work / "sandbox", config, timeout=1800.0)
    try:
        yield handle
    finally:
        handle.down()


def sshd_instances(handle: SandboxHandle, count: int) -> list[dict[str, Any]]:
    """The first ``count`` sshd-backed instances, in launch order."""
    records = [r for r in handle.ctl.instances() if r.get("sshd") and r.get("state") == "running"]
    if len(records) < count:
        raise RuntimeError(f"the sandbox has {len(records)} sshd instances, {count} needed")
    return records[:count]


def keypair(path: Path) -> Path:
    """A fresh ed25519 key pair at ``path`` (and ``path.pub``); returns ``path``."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def write_known_hosts(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    """Host keys keyed by instance id (the HostKeyAlias both routes use), so both check host keys
    strictly and neither pays for learning them."""
    lines = [f"{r['instance_id']} {key}" for r in records for key in (r.get("host_keys") or {}).values()]
    path.write_text("\n".join(lines) + "\n")
    return path


def push_keys(handle: SandboxHandle, records: Iterable[dict[str, Any]], public_key: Path) -> None:
    """EC2 Instance Connect push for the baseline (it has no helper to do it); valid 60 s.

    Standard retries: a push of 100 keys runs into the sandbox's default SendSSHPublicKey limit
    (10/s, burst 40), as it would on AWS.
    """
    client = handle.client("ec2-instance-connect", retries={"mode": "standard", "max_attempts": 20})
    text = public_key.read_text()
    for record in records:
        client.send_ssh_public_key(
            InstanceId=record["instance_id"], InstanceOSUser=record["os_user"], SSHPublicKey=text
        )


class DirectRoutes:
    """veth pairs from the controller into instance network namespaces (the baseline's route).

    Addresses come from the top of the sandbox's own ``10.N.0.0/16`` (claimed by that sandbox
    alone, so two benches at once never collide): instance ``i`` gets ``10.N.(255-i//64).(i%64*4)/30``
    (controller ``.1``, instance ``.2``). The more specific /30 wins over the sandbox's
    ``unreachable`` route for the range. Deleting the host end (or the namespace) removes the pair.
    """

    def __init__(self, handle: SandboxHandle) -> None:
        self.handle = handle
        network = ipaddress.ip_network(handle.ctl.status()["address_range"])
        self._base = int(network.network_address) + network.num_addresses
        self._token = secrets.token_hex(2)
        self._links: list[str] = []
        self._next = 0

    def add(self, record: dict[str, Any]) -> tuple[str, int]:
        """Make the instance's sshd reachable; returns the (address, port) to ssh to."""
        if not record.get("netns"):  # sandbox without namespaces: its sshds are loopback ports
            return "127.0.0.1", int(record["ssh_port"])
        index = self._next
        self._next += 1
        block = self._base - 256 * (index // 64 + 1) + (index % 64) * 4
        host_ip, inst_ip = ipaddress.ip_address(block + 1), ipaddress.ip_address(block + 2)
        host_if, inst_if = f"eb{self._token}h{index}", f"eb{self._token}n{index}"
        netns = record["netns"]
        commands = [
            ["ip", "link", "add", host_if, "type", "veth", "peer", "name", inst_if],
            ["ip", "link", "set", inst_if, "netns", netns],
            ["ip", "addr", "add", f"{host_ip}/30", "dev", host_if],
            ["ip", "link", "set", host_if, "up"],
            ["ip", "netns", "exec", netns, "ip", "addr", "add", f"{inst_ip}/30", "dev", inst_if],
            ["ip", "netns", "exec", netns, "ip", "link", "set", inst_if, "up"],
        ]
        self._links.append(host_if)
        for command in commands:
            subprocess.run(command, check=True, capture_output=True, text=True)
        return str(inst_ip), int(record.get("ssh_port") or 22)

    def close(self) -> None:
        for link in self._links:
            subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
        self._links.clear()

    def __enter__(self) -> DirectRoutes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ansible_env(handle: SandboxHandle, work: Path, **extra: str) -> dict[str, str]:
    """Environment for ansible-playbook: the sandbox's AWS settings, none of the caller's
    ANSIBLE_* settings (so a developer's ansible.cfg cannot tilt a result), the timing callback."""
    cfg = work / "ansible.cfg"
    if not cfg.exists():
        cfg.write_text("[defaults]\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    collections = os.environ.get("ANSIBLE_COLLECTIONS_PATH") or str(
        Path(sys.executable).parents[1] / "collections"
    )
    env = handle.env(base)
    env.update(
        {
            "ANSIBLE_CONFIG": str(cfg),
            "ANSIBLE_COLLECTIONS_PATH": collections,
            "PYTHONPATH": collections,
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "false",
            "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACK_DIR),
            "ANSIBLE_CALLBACKS_ENABLED": "bench_timing",
            "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp"),
        }
    )
    env.update(extra)
    return env


def close_masters(control_path_dir: Path) -> None:
    """End every ControlPersist master under ``control_path_dir`` (their helpers then call
    TerminateSession and exit), so nothing from one measurement lingers into the next."""
    if not control_path_dir.exists():
        return
    for sock in control_path_dir.iterdir():
        subprocess.run(
            ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "bench"],
            capture_output=True,
            timeout=30,
            check=False,
        )


def sandbox_config(**overrides: Any) -> SandboxConfig:
    """The bench's sandbox: default throttling on (AWS-like), one region."""
    return SandboxConfig(**{"instances": 0, **overrides})


def wait_sessions_ended(handle: SandboxHandle, timeout: float = 120.0) -> int:
    """Wait until the sandbox has no live Session Manager session (the helpers of closed masters
    call TerminateSession on their way out); returns how many were still live at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        live = [s for s in handle.ctl.sessions()["sessions"] if s.get("Status") in LIVE_SESSION_STATES]
        if not live or time.monotonic() > deadline:
            return len(live)
        time.sleep(0.5)
