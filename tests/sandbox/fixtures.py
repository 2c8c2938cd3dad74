"""pytest fixtures that run a sandbox for a test session (or several, with the factory).

Use from a conftest.py::

    from ansible_collections.trek10.ec2ssm.tests.sandbox.fixtures import (  # noqa: F401
        sandbox, sandbox_config, sandbox_factory,
    )

or ``pytest -p ansible_collections.trek10.ec2ssm.tests.sandbox.fixtures``. Override
``sandbox_config`` (session scope) in a conftest to change what the shared ``sandbox`` launches;
call ``sandbox_factory(SandboxConfig(...))`` for a separate one (torn down at session end).

The sandbox runs as its own process (``up``/``down``, as ``make sandbox`` does), in a
temporary state directory, tied to the test process: if the session is killed before its
teardown, the sandbox notices and removes itself (``up(owner_pid=...)``). The handle gives the
standard AWS environment, a control-API client, boto3 clients that use exactly that environment,
and helpers to reach an instance's sshd without SSM. Tests do not change ``os.environ``: they
pass ``handle.env()`` to subprocesses and use ``handle.client(...)`` for boto3.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .config import SandboxConfig
from .control.client import SandboxClient
from .lifecycle import down, up

OFFICIAL_PLUGIN_DIRS = (
    Path("/opt/session-manager-plugin/bin-release-version"),
    Path("/opt/session-manager-plugin/bin"),
)


@dataclass
class SandboxHandle:
    state_dir: Path
    info: dict[str, Any]
    ctl: SandboxClient = field(init=False)
    _clients: dict[tuple[str, str | None, str], Any] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.ctl = SandboxClient(self.info["endpoint"], self.info["ca_bundle"])

    @property
    def aws_env(self) -> dict[str, str]:
        """The standard AWS variables of env.sh."""
        return dict(self.info["env"])

    @property
    def isolated(self) -> bool:
        return bool(self.info.get("isolated"))

    @property
    def prefix(self) -> str:
        return str(self.info["prefix"])

    def env(self, base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
        """``base`` (default: os.environ) without AWS_* settings, plus the sandbox's, plus ``extra``."""
        source = dict(os.environ if base is None else base)
        clean = {k: v for k, v in source.items() if not k.startswith("AWS_")}
        clean.update(self.aws_env)
        clean.setdefault("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
        clean.update(extra)
        return clean

    def client(self, service: str, region: str | None = None, **config: Any) -> Any:
        """A boto3 client configured only by this sandbox's standard environment (cached)."""
        key = (service, region, repr(sorted(config.items())))
        if key not in self._clients:
            self._clients[key] = self._new_client(service, region, **config)
        return self._clients[key]

    def _new_client(self, service: str, region: str | None = None, **config: Any) -> Any:
        import boto3
        from botocore.config import Config

        env = self.aws_env
        session = boto3.session.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=region or env["AWS_REGION"],
        )
        variable = "AWS_ENDPOINT_URL_" + service.upper().replace("-", "_")
        return session.client(
            service,
            endpoint_url=env.get(variable, env["AWS_ENDPOINT_URL_EC2"]),
            verify=env["AWS_CA_BUNDLE"],
            config=Config(**config) if config else None,
        )

    def instances(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = json.loads((self.state_dir / "instances.json").read_text())
        return records

    def instance(self, **match: Any) -> dict[str, Any]:
        """The first instance whose fields equal ``match`` (e.g. ``sshd=True, platform="ubuntu"``)."""
        for record in self.ctl.instances():
            if all(record.get(k) == v for k, v in match.items()):
                return record
        raise LookupError(f"no sandbox instance with {match}")

    def ssh_proxy_command(self, instance_id: str) -> str:
        """ProxyCommand that reaches the instance's sshd directly (no SSM), for tests and baselines."""
        record = next(r for r in self.ctl.instances() if r["instance_id"] == instance_id)
        netcat = [sys.executable, "-m", "ansible_collections.trek10.ec2ssm.tests.sandbox.hosts.netcat"]
        if record.get("netns"):
            return shlex.join(["ip", "netns", "exec", record["netns"], *netcat, "127.0.0.1", "22"])
        return shlex.join([*netcat, "127.0.0.1", str(record["ssh_port"])])

    def official_plugin_env(self, base: dict[str, str] | None = None) -> dict[str, str] | None:
        """Environment in which ``aws ssm start-session`` uses the official plugin, or None.

        The Go plugin trusts the system roots plus ``SSL_CERT_FILE``; it does not read
        AWS_CA_BUNDLE, so the sandbox CA is given to it that way (only in this environment).
        """
        for directory in OFFICIAL_PLUGIN_DIRS:
            if (directory / "session-manager-plugin").exists():
                env = self.env(base)
                venv_bin = str(Path(sys.executable).parent)
                env["PATH"] = os.pathsep.join([str(directory), venv_bin, env.get("PATH", "")])
                env["SSL_CERT_FILE"] = env["AWS_CA_BUNDLE"]
                return env
        return None

    def down(self) -> None:
        down(self.state_dir)


def start_sandbox(state_dir: Path, config: SandboxConfig, timeout: float = 180.0) -> SandboxHandle:
    """A sandbox that lives at most as long as this process (it cleans up after a killed run too)."""
    return SandboxHandle(state_dir.resolve(), up(config, state_dir, timeout=timeout, owner_pid=os.getpid()))


@pytest.fixture(scope="session")
def sandbox_config() -> SandboxConfig:
    """What the shared ``sandbox`` launches; override in a conftest to change it."""
    return SandboxConfig(instances=3)


@pytest.fixture(scope="session")
def sandbox_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., SandboxHandle]]:
    started: list[SandboxHandle] = []

    def make(config: SandboxConfig, name: str = "sandbox") -> SandboxHandle:
        handle = start_sandbox(tmp_path_factory.mktemp(name), config)
        started.append(handle)
        return handle

    yield make
    for handle in reversed(started):
        handle.down()


@pytest.fixture(scope="session")
def sandbox(sandbox_factory: Callable[..., SandboxHandle], sandbox_config: SandboxConfig) -> SandboxHandle:
    """A running sandbox for the whole test session."""
    return sandbox_factory(sandbox_config)
