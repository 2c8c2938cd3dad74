"""The sandbox's instances across services: launch, stop, start, terminate, agent status.

An instance exists in up to three places: EC2 (moto, for ``i-*``), SSM (a ``ManagedNode``) and this
machine (an sshd in a namespace, for sshd-backed ones). ``Fleet`` keeps them consistent, whichever
way a change arrives: the control API, or the EC2 API itself (``StopInstances`` through boto3 is
seen by ``sync_from_ec2`` after moto has answered), and tells the data plane to end the sessions of
an instance that stops, terminates or loses its agent.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import PLATFORMS, InstanceSpec
from .hosts.manager import HostManager
from .services.ec2 import Ec2Adapter
from .services.ssm.nodes import ManagedNode, NodeRegistry, hybrid_id

log = logging.getLogger("ec2ssm.sandbox.fleet")


class UnknownInstance(KeyError):
    pass


@dataclass
class _Group:
    region: str
    spec: InstanceSpec
    names: list[str]


def computer_name(address: str, region: str) -> str:
    host = "ip-" + address.replace(".", "-")
    return f"{host}.ec2.internal" if region == "us-east-1" else f"{host}.{region}.compute.internal"


class Fleet:
    def __init__(
        self,
        *,
        regions: list[str],
        ec2: Ec2Adapter,
        nodes: NodeRegistry,
        hosts: HostManager | None,
        hybrid_subnet: str,
        end_sessions: Callable[[str, str, str], None],
    ) -> None:
        """``end_sessions(region, instance_id, output)`` ends a node's sessions (SSM + data plane)."""
        self.regions = regions
        self.ec2 = ec2
        self.nodes = nodes
        self.hosts = hosts
        self._end_sessions = end_sessions
        self._lock = threading.RLock()
        self._round_robin = itertools.cycle(regions)
        self._counters = {
            "hosts": itertools.count(1),
            "scale": itertools.count(1),
            "hybrid": itertools.count(1),
        }
        self._hybrid_addresses = ipaddress.ip_network(hybrid_subnet).hosts()
        next(self._hybrid_addresses)  # .1 is the "router", as in a VPC

    # --- launch --------------------------------------------------------------------------------

    def launch(self, specs: list[InstanceSpec]) -> list[ManagedNode]:
        """Launch every spec (count already expanded or not); sshd-backed ones start listening."""
        with self._lock:
            expanded = [InstanceSpec(**{**vars(s), "count": 1}) for s in specs for _ in range(s.count)]
            launched: list[ManagedNode] = []
            host_specs: list[tuple[str, str, str, str, bool]] = []
            groups: dict[tuple[Any, ...], _Group] = {}
            hybrids: list[tuple[str, InstanceSpec]] = []
            for spec in expanded:
                if self.hosts is None and spec.sshd:
                    raise ValueError("this sandbox runs without sshd hosts; launch API-only instances")
                region = spec.region or next(self._round_robin)
                if spec.kind == "hybrid":
                    hybrids.append((region, spec))
                    continue
                family = "hosts" if spec.sshd else "scale"
                name = (
                    spec.tags.get("Name")
                    or f"{'sandbox' if spec.sshd else 'scale'}-{next(self._counters[family])}"
                )
                key = (
                    region,
                    spec.platform,
                    spec.instance_type,
                    spec.iam_instance_profile,
                    spec.sshd,
                    spec.has_eic,
                    spec.agent_version,
                    spec.ping_status,
                    tuple(sorted((k, v) for k, v in spec.tags.items() if k != "Name")),
                )
                group = groups.setdefault(key, _Group(region, spec, []))
                group.names.append(name)
            for index, group in enumerate(groups.values()):
                spec = group.spec
                platform = PLATFORMS[spec.platform]
                tags = {k: v for k, v in spec.tags.items() if k != "Name"}
                tags["ec2ssm:sandbox"] = "true"
                results = self.ec2.run_instances(
                    region=group.region,
                    platform=platform,
                    count=len(group.names),
                    instance_type=spec.instance_type,
                    tags=tags,
                    instance_profile=spec.iam_instance_profile,
                    subnet_index=index,
                )
                for result, name in zip(results, group.names, strict=True):
                    self.ec2.tag(group.region, result.instance_id, {"Name": name})
                    node = ManagedNode(
                        instance_id=result.instance_id,
                        region=group.region,
                        resource_type="EC2Instance",
                        platform=platform,
                        agent_version=spec.agent_version,
                        address=result.private_ip,
                        computer_name=computer_name(result.private_ip, group.region),
                        has_eic=spec.has_eic,
                        sshd=spec.sshd,
                        agent_status=spec.ping_status,
                    )
                    self.nodes.add(node)
                    launched.append(node)
                    if spec.sshd:
                        host_specs.append(
                            (
                                node.instance_id,
                                node.address,
                                node.computer_name,
                                platform.os_user,
                                spec.has_eic,
                            )
                        )
            for region, spec in hybrids:
                node = self._register_hybrid(region, spec)
                launched.append(node)
                if spec.sshd:
                    host_specs.append(
                        (
                            node.instance_id,
                            node.address,
                            node.computer_name,
                            node.platform.os_user,
                            spec.has_eic,
                        )
                    )
            if host_specs and self.hosts is not None:
                self.hosts.add_many(host_specs)
            return launched

    def _register_hybrid(self, region: str, spec: InstanceSpec) -> ManagedNode:
        number = next(self._counters["hybrid"])
        address = str(next(self._hybrid_addresses))
        tags = {k: v for k, v in spec.tags.items()}
        name = tags.get("Name") or f"hybrid-{number}"
        tags.setdefault("Name", name)
        import uuid

        node = ManagedNode(
            instance_id=hybrid_id(),
            region=region,
            resource_type="ManagedInstance",
            platform=PLATFORMS[spec.platform],
            agent_version=spec.agent_version,
            address=address,
            computer_name=f"{name}.onprem.internal",
            has_eic=spec.has_eic,
            sshd=spec.sshd,
            agent_status=spec.ping_status,
            iam_role="ec2ssm-sandbox-hybrid-role",
            activation_id=str(uuid.uuid4()),
            name=name,
            tags=tags,
        )
        self.nodes.add(node)
        return node

    # --- lifecycle -----------------------------------------------------------------------------

    def node(self, instance_id: str) -> ManagedNode:
        node = self.nodes.find(instance_id)
        if node is None:
            raise UnknownInstance(instance_id)
        return node

    def stop(self, instance_id: str) -> None:
        node = self.node(instance_id)
        if node.is_hybrid:
            node.set_agent_status("ConnectionLost")
            self._host_down(node, remove=False, output="")
            return
        self.ec2.stop(node.region, [instance_id])
        self.sync_from_ec2(node.region, [instance_id])

    def start(self, instance_id: str) -> None:
        node = self.node(instance_id)
        if node.is_hybrid:
            node.set_agent_status("Online")
            if node.sshd and self.hosts is not None:
                self.hosts.start_host(instance_id)
            return
        self.ec2.start(node.region, [instance_id])
        self.sync_from_ec2(node.region, [instance_id])

    def terminate(self, instance_id: str) -> None:
        node = self.node(instance_id)
        if node.is_hybrid:
            node.deregistered = True
            self._host_down(node, remove=True, output="")
            return
        self.ec2.terminate(node.region, [instance_id])
        self.sync_from_ec2(node.region, [instance_id])

    def set_ping_status(self, instance_id: str, status: str) -> None:
        """Agent Online / ConnectionLost: SSM status only; a lost agent ends its sessions."""
        node = self.node(instance_id)
        node.set_agent_status(status)
        if status != "Online":
            self._end_sessions(node.region, instance_id, "")

    def sync_from_ec2(self, region: str, instance_ids: list[str]) -> None:
        """Make hosts and sessions follow moto's EC2 state (after any lifecycle call)."""
        for instance_id in instance_ids:
            node = self.nodes.get(region, instance_id)
            if node is None:
                continue
            state = self.ec2.state(region, instance_id)
            if state in ("stopping", "stopped", "shutting-down", "terminated"):
                self._host_down(node, remove=state in ("shutting-down", "terminated"), output="")
            elif (
                state == "running"
                and node.sshd
                and self.hosts is not None
                and instance_id in self.hosts.hosts
            ):
                self.hosts.start_host(instance_id)

    def _host_down(self, node: ManagedNode, remove: bool, output: str) -> None:
        self._end_sessions(node.region, node.instance_id, output)
        if node.sshd and self.hosts is not None:
            if remove:
                self.hosts.remove_host(node.instance_id)
            else:
                self.hosts.stop_host(node.instance_id)

    def peer(self, from_instance: str, host: str) -> str | None:
        """The instance that answers to ``host`` in ``from_instance``'s VPC (same region)."""
        me = self.nodes.find(from_instance)
        if me is None:
            return None
        peer = self.nodes.by_address(me.region, host)
        return None if peer is None else peer.instance_id

    # --- reporting -----------------------------------------------------------------------------

    def describe(self) -> list[dict[str, Any]]:
        """One record per instance, as written to instances.json."""
        out = []
        for node in self.nodes:
            host = self.hosts.hosts.get(node.instance_id) if self.hosts else None
            record: dict[str, Any] = {
                "instance_id": node.instance_id,
                "region": node.region,
                "kind": "hybrid" if node.is_hybrid else "ec2",
                "resource_type": node.resource_type,
                "platform": node.platform.key,
                "platform_name": node.platform.name,
                "platform_version": node.platform.version,
                "os_user": node.platform.os_user,
                "agent_version": node.agent_version,
                "ping_status": node.agent_status,
                "has_eic": node.has_eic,
                "sshd": node.sshd,
                "private_address": node.address,
                "hostname": node.computer_name,
                "tags": node.tags if node.is_hybrid else self.ec2.tags(node.region, node.instance_id),
                "state": "deregistered"
                if node.deregistered
                else ("running" if node.is_hybrid else self.ec2.state(node.region, node.instance_id)),
                "netns": host.netns if host else None,
                "ssh_port": host.port if host else None,
                "host_keys": host.host_keys if host else {},
            }
            if not node.is_hybrid:
                instance = self.ec2.instance(node.region, node.instance_id)
                record["availability_zone"] = instance.placement.zone if instance is not None else None
                record["instance_type"] = instance.instance_type if instance is not None else None
            out.append(record)
        return out
