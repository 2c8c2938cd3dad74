"""Managed nodes: what SSM knows about each instance (``i-*``) and hybrid node (``mi-*``).

A node's *agent* status (Online / ConnectionLost) is the sandbox's to set; its *EC2* state comes
live from moto. Like AWS, DescribeInstanceInformation does not list EC2 instances that are
stopped or terminated (API reference), and a ConnectionLost node is listed with that status.
"""

from __future__ import annotations

import datetime
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ...config import DEFAULT_AGENT_VERSION, Platform

LATEST_AGENT_VERSION = DEFAULT_AGENT_VERSION


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def hybrid_id() -> str:
    return "mi-" + "".join(random.choices("0123456789abcdef", k=17))


@dataclass
class ManagedNode:
    instance_id: str
    region: str
    resource_type: str
    """``EC2Instance`` or ``ManagedInstance``."""
    platform: Platform
    agent_version: str
    address: str
    computer_name: str
    has_eic: bool = True
    sshd: bool = False
    agent_status: str = "Online"
    iam_role: str | None = None
    activation_id: str | None = None
    name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    """SSM tags (hybrid nodes only; EC2 instances carry EC2 tags, read from moto)."""
    registration_date: datetime.datetime = field(default_factory=utcnow)
    status_since: datetime.datetime = field(default_factory=utcnow)
    deregistered: bool = False

    @property
    def is_hybrid(self) -> bool:
        return self.resource_type == "ManagedInstance"

    def arn(self, account_id: str) -> str:
        if self.is_hybrid:
            return f"arn:aws:ssm:{self.region}:{account_id}:managed-instance/{self.instance_id}"
        return f"arn:aws:ec2:{self.region}:{account_id}:instance/{self.instance_id}"

    def set_agent_status(self, status: str) -> None:
        if status != self.agent_status:
            self.agent_status = status
            self.status_since = utcnow()

    def last_ping(self) -> datetime.datetime:
        """Online agents ping every few minutes; a lost one last pinged when it was lost."""
        if self.agent_status == "Online":
            now = utcnow()
            return now - datetime.timedelta(seconds=(now - self.registration_date).total_seconds() % 300)
        return self.status_since

    def describe(self, ec2_tags: dict[str, str] | None = None) -> dict[str, Any]:
        """The node as an ``InstanceInformation`` structure (botocore member names)."""
        item: dict[str, Any] = {
            "InstanceId": self.instance_id,
            "PingStatus": self.agent_status,
            "LastPingDateTime": self.last_ping(),
            "AgentVersion": self.agent_version,
            "IsLatestVersion": self.agent_version == LATEST_AGENT_VERSION,
            "PlatformType": self.platform.type,
            "PlatformName": self.platform.name,
            "PlatformVersion": self.platform.version,
            "ResourceType": self.resource_type,
            "IPAddress": self.address,
            "ComputerName": self.computer_name,
            "SourceId": self.instance_id,
            "SourceType": "AWS::SSM::ManagedInstance" if self.is_hybrid else "AWS::EC2::Instance",
        }
        if self.is_hybrid:
            item["ActivationId"] = self.activation_id
            item["RegistrationDate"] = self.registration_date
            if self.iam_role:
                item["IamRole"] = self.iam_role
            if self.name:
                item["Name"] = self.name
        return item


class NodeRegistry:
    """Every managed node, per region, in registration order (the order listings use)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[str, dict[str, ManagedNode]] = {}

    def add(self, node: ManagedNode) -> None:
        with self._lock:
            self._nodes.setdefault(node.region, {})[node.instance_id] = node

    def get(self, region: str, instance_id: str) -> ManagedNode | None:
        with self._lock:
            return self._nodes.get(region, {}).get(instance_id)

    def find(self, instance_id: str) -> ManagedNode | None:
        with self._lock:
            for nodes in self._nodes.values():
                if instance_id in nodes:
                    return nodes[instance_id]
        return None

    def in_region(self, region: str) -> list[ManagedNode]:
        with self._lock:
            return list(self._nodes.get(region, {}).values())

    def __iter__(self) -> Iterator[ManagedNode]:
        with self._lock:
            every = [n for nodes in self._nodes.values() for n in nodes.values()]
        return iter(every)

    def by_address(self, region: str, address: str) -> ManagedNode | None:
        with self._lock:
            for node in self._nodes.get(region, {}).values():
                if address in (node.address, node.computer_name, node.computer_name.split(".")[0]):
                    return node
        return None


# --- DescribeInstanceInformation filters ---------------------------------------------------------

STRING_FILTER_KEYS = (
    "ActivationIds",
    "AgentVersion",
    "AssociationStatus",
    "IamRole",
    "InstanceIds",
    "PingStatus",
    "PlatformTypes",
    "ResourceType",
    "SourceIds",
    "SourceTypes",
)
ENUM_VALUES = {
    "PingStatus": ("Online", "ConnectionLost", "Inactive"),
    "PlatformTypes": ("Windows", "Linux", "MacOS"),
    "ResourceType": ("EC2Instance", "ManagedInstance"),
    "SourceTypes": (
        "AWS::EC2::Instance",
        "AWS::IoT::Thing",
        "AWS::SSM::ManagedInstance",
        "Microsoft.Compute/virtualMachines",
        "compute.googleapis.com/Instance",
    ),
    "AssociationStatus": ("Success", "Pending", "Failed"),
}

Predicate = Callable[[ManagedNode, dict[str, str]], bool]


def attribute_predicate(key: str, values: list[str]) -> Predicate:
    """A node test for one non-tag filter (values ORed)."""
    wanted = set(values)

    def attr(node: ManagedNode) -> str | None:
        return {
            "ActivationIds": node.activation_id,
            "AgentVersion": node.agent_version,
            "AssociationStatus": None,  # the sandbox runs no associations
            "IamRole": node.iam_role,
            "InstanceIds": node.instance_id,
            "PingStatus": node.agent_status,
            "PlatformTypes": node.platform.type,
            "ResourceType": node.resource_type,
            "SourceIds": node.instance_id,
            "SourceTypes": "AWS::SSM::ManagedInstance" if node.is_hybrid else "AWS::EC2::Instance",
        }[key]

    return lambda node, tags: attr(node) in wanted


def tag_predicate(key: str, values: list[str]) -> Predicate:
    """``tag:Name`` (key with one of the values) or ``tag-key`` (one of the keys present)."""
    if key == "tag-key":
        keys = set(values)
        return lambda node, tags: any(k in tags for k in keys)
    tag = key[len("tag:") :]
    wanted = set(values)
    return lambda node, tags: tags.get(tag) in wanted
