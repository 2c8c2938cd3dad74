# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the connection e2e tests share: the sandbox handle and a private controller per test.

A :class:`Controller` is one "machine" running ansible-playbook: its own ControlPersist socket
directory, known_hosts file, local temporary directory and ansible.cfg, so tests never share SSH
masters with each other or with the user's ``~/.ansible``. Its masters are stopped at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ansible_collections.trek10.ec2ssm.tests.sandbox.config import SandboxConfig
from ansible_collections.trek10.ec2ssm.tests.sandbox.control.client import SandboxClient
from ansible_collections.trek10.ec2ssm.tests.sandbox.fixtures import SandboxHandle, start_sandbox
from ansible_collections.trek10.ec2ssm.tests.sandbox.hosts.users import PASSWORD_USER, SUDO_PASSWORD

PLAYBOOKS = Path(__file__).resolve().parent
CONNECTION = PLAYBOOKS / "connection.yml"
COUNTED = ("SendSSHPublicKey", "StartSession")
PLAYBOOK_TIMEOUT = 300
"""Seconds; far above a normal run (under 90 s on 2 cores), below pytest's own timeout."""
_RECAP_LINE = re.compile(r"^(?P<host>\S+)\s*:\s*(?P<stats>(?:\w+=\d+\s*)+)$")


@dataclass
class ConnectionSandbox:
    """The sandbox (``tests/sandbox/fixtures.py``) plus what these tests ask of it."""

    handle: SandboxHandle
    instances: list[dict[str, Any]]
    """The instances the sandbox started with (later launches are not added here)."""
    sudo_password_user: str = PASSWORD_USER
    sudo_password: str = SUDO_PASSWORD

    @property
    def client(self) -> SandboxClient:
        return self.handle.ctl

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables that select the sandbox."""
        return self.handle.aws_env

    def record(self, instance_id: str) -> dict[str, Any]:
        for record in self.client.instances():
            if record["instance_id"] == instance_id:
                return record
        raise KeyError(instance_id)

    def host_key(self, instance_id: str) -> str:
        """The instance's ed25519 host key as ``ssh-ed25519 AAAA...``."""
        return str(self.record(instance_id)["host_keys"]["ed25519"])

    @staticmethod
    def instance_id_of(host_vars: dict[str, Any]) -> str:
        return str(
            host_vars.get("ansible_ec2ssm_instance_id")
            or host_vars.get("ansible_aws_ssm_instance_id")
            or host_vars["ansible_host"]
        )

    def launch(self, **spec: Any) -> dict[str, Any]:
        (record,) = self.client.launch(**spec)
        return record

    def principal_denied(self, action: str) -> dict[str, str]:
        """A new IAM user allowed all but ``action``: ``{access_key_id, secret_access_key, arn}``."""
        name = f"e2e-deny-{uuid.uuid4().hex[:8]}"
        principal = self.client.add_principal(name)
        self.client.set_policy(
            name,
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "*", "Resource": "*"},
                    {"Effect": "Deny", "Action": action, "Resource": "*"},
                ],
            },
        )
        return principal

    def count(self, action: str, target: str, caller: str | None = None) -> int:
        return int(self.client.calls(action=action, target=target, caller=caller)["total"])  # type: ignore[arg-type]

    @contextlib.contextmanager
    def throttled(self, action: str) -> Iterator[None]:
        """Every ``action`` call is throttled (an empty bucket that never refills) until exit."""
        before = self.client.faults()["throttling"]
        self.client.set_faults(throttling={"enabled": True, "rules": {action: {"rate": 0.0, "burst": 0.0}}})
        try:
            yield
        finally:
            previous = before["rules"].get(action)
            self.client.set_faults(throttling={"enabled": before["enabled"], "rules": {action: previous}})


@contextlib.contextmanager
def connection_sandbox(state_dir: Path, instances: int) -> Iterator[ConnectionSandbox]:
    """A private sandbox for one test module, stopped at its end."""
    handle = start_sandbox(state_dir, SandboxConfig(instances=instances))
    try:
        yield ConnectionSandbox(handle, handle.ctl.instances())
    finally:
        handle.down()


@dataclass
class PlaybookResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return f"{self.stdout}\n{self.stderr}"

    def recap(self) -> dict[str, dict[str, int]]:
        """The PLAY RECAP as ``{host: {"ok": n, "failed": n, ...}}``."""
        text = self.stdout.split("PLAY RECAP", 1)[-1]
        stats: dict[str, dict[str, int]] = {}
        for line in text.splitlines():
            match = _RECAP_LINE.match(line.strip())
            if match:
                pairs = (item.split("=") for item in match.group("stats").split())
                stats[match.group("host")] = {key: int(value) for key, value in pairs}
        return stats


@dataclass
class Controller:
    work: Path
    env: dict[str, str]
    bin: Path = field(default_factory=lambda: Path(sys.executable).parent)

    @property
    def control_path_dir(self) -> Path:
        return self.work / "cp"

    @property
    def known_hosts_file(self) -> Path:
        return self.work / "known_hosts"

    @property
    def local_tmp(self) -> Path:
        return self.work / "local-tmp"

    @property
    def tree(self) -> Path:
        return self.work / "tree"

    def write_inventory(self, hosts: dict[str, dict[str, Any]]) -> Path:
        inventory = {
            "all": {
                "vars": {
                    "ansible_connection": "trek10.ec2ssm.ssm_ssh",
                    "ansible_python_interpreter": "auto_silent",
                },
                "hosts": hosts,
            }
        }
        path = self.work / f"inventory-{uuid.uuid4().hex[:8]}.yml"
        path.write_text(yaml.safe_dump(inventory, allow_unicode=True), encoding="utf-8")
        return path

    def playbook(
        self,
        playbook: Path,
        hosts: dict[str, dict[str, Any]],
        *extra: str,
        forks: int = 5,
        tree: bool = False,
        verbosity: int = 0,
        env: dict[str, str] | None = None,
    ) -> PlaybookResult:
        run_env = {**self.env, **(env or {})}
        if tree:
            run_env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.builtin.tree"
            run_env["ANSIBLE_CALLBACK_TREE_DIR"] = str(self.tree)
        command = [
            str(self.bin / "ansible-playbook"),
            "-i",
            str(self.write_inventory(hosts)),
            "-f",
            str(forks),
        ]
        if verbosity:
            command.append("-" + "v" * verbosity)
        # Output goes to files as it is written, so a run that hangs can be read afterwards.
        runs = len(list(self.work.glob("ansible-*.stdout")))
        stdout_path = self.work / f"ansible-{runs}.stdout"
        stderr_path = self.work / f"ansible-{runs}.stderr"
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            process = subprocess.Popen(
                [*command, *extra, str(playbook)], cwd=self.work, env=run_env, stdout=out, stderr=err
            )
            try:
                returncode = process.wait(timeout=PLAYBOOK_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                returncode = -9
        result = PlaybookResult(
            returncode,
            stdout_path.read_text(encoding="utf-8", errors="replace"),
            stderr_path.read_text(encoding="utf-8", errors="replace"),
        )
        if returncode == -9:
            raise AssertionError(f"ansible-playbook did not finish in {PLAYBOOK_TIMEOUT} s:\n{result.output}")
        return result

    def pinned_key(self, alias: str, known_hosts: Path | None = None) -> str | None:
        """The ed25519 key pinned for ``alias`` (hashed entries included), as ``type base64``."""
        found = subprocess.run(
            ["ssh-keygen", "-F", alias, "-f", str(known_hosts or self.known_hosts_file)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        for line in found.splitlines():
            fields = line.split()
            if len(fields) >= 3 and not line.startswith("#") and fields[1] == "ssh-ed25519":
                return f"{fields[1]} {fields[2]}"
        return None

    def local_tmp_is_empty(self) -> bool:
        """ansible removed its per-run directory, and with it the run's key pair."""
        return not self.local_tmp.exists() or not any(self.local_tmp.iterdir())

    def foreign_host_key(self) -> str:
        """A freshly generated ed25519 public key: a host key no instance has."""
        key = self.work / f"foreign-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        fields = key.with_suffix(".pub").read_text(encoding="ascii").split()
        return f"{fields[0]} {fields[1]}"

    def stop_masters(self) -> None:
        """``ssh -O exit`` every ControlPersist master this controller started."""
        if not self.control_path_dir.is_dir():
            return
        for socket_path in self.control_path_dir.iterdir():
            subprocess.run(
                ["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "ec2ssm-e2e"],
                capture_output=True,
                check=False,
                timeout=30,
            )


@contextlib.contextmanager
def start_controller(work: Path, sandbox: ConnectionSandbox | None = None) -> Iterator[Controller]:
    """A controller whose ansible talks to ``sandbox`` (standard AWS variables only)."""
    config = work / "ansible.cfg"
    config.write_text("[defaults]\n", encoding="utf-8")
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "ANSIBLE_"))}
    env.update(
        {
            "ANSIBLE_CONFIG": str(config),
            "ANSIBLE_COLLECTIONS_PATH": os.environ.get("ANSIBLE_COLLECTIONS_PATH", ""),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(work / "cp"),
            "ANSIBLE_EC2SSM_KNOWN_HOSTS_FILE": str(work / "known_hosts"),
            "ANSIBLE_LOCAL_TEMP": str(work / "local-tmp"),
            "ANSIBLE_HOME": str(work / "ansible-home"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_DEPRECATION_WARNINGS": "0",
        }
    )
    if sandbox is not None:
        env.update(sandbox.env)
    controller = Controller(work=work, env=env)
    try:
        yield controller
    finally:
        controller.stop_masters()


def calls_by_target(sandbox: ConnectionSandbox, targets: list[str]) -> dict[str, dict[str, int]]:
    """``{target: {"SendSSHPublicKey": n, "StartSession": n}}`` as the sandbox counted them."""
    return {target: {action: sandbox.count(action, target) for action in COUNTED} for target in targets}


def host_results(tree: Path) -> dict[str, dict[str, Any]]:
    """The last task result per host, as the tree callback wrote it."""
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in tree.iterdir()}
