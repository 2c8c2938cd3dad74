"""Sandbox configuration: what to launch and which switches start in which position.

Everything here can come from a JSON or YAML file (``--config``), from CLI flags (``up --instances
N --api-only N --hybrid N --regions a,b``), or from code (the pytest fixture). Switches that may
change while running (faults, throttling, IAM, instance lifecycle) are then driven through the
control API. Example file::

    regions: [us-east-1, us-west-2]
    instances: 3            # sshd-backed EC2 instances, default platform mix, round-robin regions
    api_only: 1000          # EC2 + SSM only (inventory scale); no sshd
    hybrid: 2               # mi-* managed nodes (SSM only)
    eic_key_ttl: 60         # seconds a pushed key is accepted (tests shorten it)
    specs:                  # extra instances with explicit attributes
      - {platform: ubuntu, region: us-west-2, has_eic: false, tags: {Name: no-eic}}
      - {agent_version: "3.0.196.0", count: 2}
    throttling: {enabled: true, rules: {"ssm:StartSession": {rate: 5, burst: 20}}}
    iam: {policies: {alice: {Version: "2012-10-17", Statement: [...]}}}
    dataplane: {}           # initial data-plane faults, passed to DataPlane.set_faults()
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Platform:
    """What SSM reports about an OS, and the OS user its AMI has (EC2 Instance Connect's user)."""

    key: str
    name: str
    type: str
    version: str
    os_user: str
    image_id: str
    image_name: str


PLATFORMS: dict[str, Platform] = {
    "amazon-linux": Platform(
        "amazon-linux",
        "Amazon Linux",
        "Linux",
        "2023",
        "ec2-user",
        "ami-760aaa0f",
        "al2023-ami-kernel-6.1-x86_64",
    ),
    "ubuntu": Platform(
        "ubuntu", "Ubuntu", "Linux", "22.04", "ubuntu", "ami-785db401", "ubuntu-jammy-22.04-amd64-server"
    ),
}

DEFAULT_AGENT_VERSION = "3.3.987.0"
PING_STATUSES = ("Online", "ConnectionLost", "Inactive")


@dataclass
class InstanceSpec:
    """One kind of instance to launch, ``count`` times."""

    kind: str = "ec2"
    """``ec2`` (an ``i-*`` instance in EC2 and SSM) or ``hybrid`` (an ``mi-*`` managed node, SSM only)."""
    sshd: bool = True
    """Back it with a real sshd in its own network namespace; False = API-only."""
    region: str | None = None
    """None = round-robin over the configured regions."""
    platform: str = "amazon-linux"
    agent_version: str = DEFAULT_AGENT_VERSION
    ping_status: str = "Online"
    has_eic: bool = True
    """False: SendSSHPublicKey succeeds but sshd never sees the key (EIC package not installed)."""
    instance_type: str = "t3.micro"
    iam_instance_profile: str | None = "ec2ssm-sandbox-instance"
    tags: dict[str, str] = field(default_factory=dict)
    count: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("ec2", "hybrid"):
            raise ValueError(f"instance kind must be ec2 or hybrid, not {self.kind!r}")
        if self.platform not in PLATFORMS:
            raise ValueError(f"unknown platform {self.platform!r}; known: {', '.join(PLATFORMS)}")
        if self.ping_status not in PING_STATUSES:
            raise ValueError(f"ping_status must be one of {PING_STATUSES}")
        parts = self.agent_version.split(".")
        if len(parts) != 4 or not all(p.isdigit() for p in parts):
            raise ValueError(f"agent_version must have 4 numeric parts, not {self.agent_version!r}")
        if self.count < 0:
            raise ValueError("count must be >= 0")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InstanceSpec:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown instance spec keys: {', '.join(sorted(unknown))}")
        return cls(**data)


@dataclass
class SandboxConfig:
    regions: list[str] = field(default_factory=lambda: ["us-east-1"])
    instances: int = 3
    api_only: int = 0
    hybrid: int = 0
    specs: list[InstanceSpec] = field(default_factory=list)
    eic_key_ttl: float = 60.0
    throttling: dict[str, Any] = field(default_factory=lambda: {"enabled": True, "rules": {}})
    iam: dict[str, Any] = field(default_factory=lambda: {"policies": {}})
    dataplane: dict[str, Any] = field(default_factory=dict)
    listen_host: str = "127.0.0.1"
    port: int = 0
    dataplane_port: int = 0
    netns: str = "auto"
    """``auto`` (namespaces when root), ``on`` (fail if impossible), ``off`` (loopback ports)."""

    def __post_init__(self) -> None:
        if not self.regions:
            raise ValueError("at least one region")
        if self.netns not in ("auto", "on", "off"):
            raise ValueError("netns must be auto, on or off")
        self.specs = [s if isinstance(s, InstanceSpec) else InstanceSpec.from_dict(s) for s in self.specs]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SandboxConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown sandbox config keys: {', '.join(sorted(unknown))}")
        return cls(**data)

    @classmethod
    def load(cls, path: Path) -> SandboxConfig:
        text = path.read_text()
        if path.suffix in (".yml", ".yaml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> str:
        """Stable hash of the configuration: ``up`` with the same one is a no-op."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def launch_plan(self) -> list[InstanceSpec]:
        """Expand the counts into specs: default host mix, API-only, hybrid, then explicit specs."""
        plan: list[InstanceSpec] = []
        for index in range(self.instances):
            plan.append(_default_spec(index, sshd=True))
        for index in range(self.api_only):
            plan.append(_default_spec(index, sshd=False))
        for index in range(self.hybrid):
            spec = _default_spec(index, sshd=False)
            spec.kind = "hybrid"
            spec.iam_instance_profile = None
            plan.append(spec)
        for spec in self.specs:
            plan.extend(InstanceSpec(**{**asdict(spec), "count": 1}) for _ in range(spec.count))
        return plan


_ENVIRONMENTS = ("dev", "prod")
_ROLES = ("web", "db", "app")


def _default_spec(index: int, sshd: bool) -> InstanceSpec:
    """The default mix: every third instance Ubuntu, tags that make tag filters interesting."""
    return InstanceSpec(
        sshd=sshd,
        platform="ubuntu" if index % 3 == 2 else "amazon-linux",
        tags={
            "Environment": _ENVIRONMENTS[index % 2],
            "Role": _ROLES[index % 3],
            "Fleet": "hosts" if sshd else "scale",
        },
    )
