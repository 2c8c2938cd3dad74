"""EC2 (and STS, IAM) come from moto; this module is the sandbox's adapter to moto's backends.

moto runs in the same process in server mode: its WSGI app answers the EC2/STS query protocol on
our HTTPS port, and the SSM and EC2 Instance Connect services read the same in-memory backends
(instance state, tags, private address), so a ``StopInstances`` through the EC2 API is what SSM
and EIC see next. The sandbox launches its instances through moto's ``run_instances`` backend call
(the same code path as the RunInstances API, minus HTTP), in a VPC of its own per region whose
range is the sandbox's claimed 10.N.0.0/16, one subnet per availability zone.

Nothing of EC2 is re-implemented here: only lookups (O(1) by id, moto's own is a scan) and the
query-protocol error body for an IAM denial (EC2's ``UnauthorizedOperation``).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from ..config import Platform

ACCOUNT_ID = "123456789012"  # moto's default account; every sandbox caller lives in it
INSTANCE_PROFILE = "ec2ssm-sandbox-instance"
INSTANCE_ROLE = "ec2ssm-sandbox-instance-role"
AZ_SUFFIXES = ("a", "b")


def moto_app() -> Any:
    """moto's server-mode WSGI application (the one ThreadedMotoServer serves)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    install_moto_speedups()
    return DomainDispatcherApplication(create_backend_app)


def install_moto_speedups() -> None:
    """Make moto's per-resource tag lookup O(tags of that resource) instead of O(all tags).

    moto 5 answers ``resource.get_tags()`` by scanning every tag of the region with regular
    expressions, so DescribeInstances of N tagged instances costs O(N²): 3 s for 1,000
    instances here, minutes for 5,000. The replacement reads moto's own per-resource tag dict and
    returns the same records (key, value, resource id and type). Performance only: no answer
    changes, which the sandbox tests check by comparing with moto's DescribeTags.
    """
    from moto.ec2.models.core import TaggedEC2Resource
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

    if getattr(TaggedEC2Resource.get_tags, "_ec2ssm_fast", False):
        return

    def get_tags(self: Any) -> list[dict[str, str]]:
        resource_id = getattr(self, "id", None)
        if not resource_id:
            return []
        tags = self.ec2_backend.tags
        if resource_id not in tags:  # .get on the defaultdict, without inserting
            return []
        kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
        return [
            {"resource_id": resource_id, "key": key, "value": value, "resource_type": kind}
            for key, value in tags[resource_id].items()
        ]

    get_tags._ec2ssm_fast = True  # type: ignore[attr-defined]
    TaggedEC2Resource.get_tags = get_tags  # type: ignore[method-assign]


def _ec2_backend(region: str) -> Any:
    from moto.ec2.models import ec2_backends

    return ec2_backends[ACCOUNT_ID][region]


def _iam_backend() -> Any:
    from moto.iam.models import iam_backends

    return iam_backends[ACCOUNT_ID]["aws"]


@dataclass(frozen=True)
class Launched:
    instance_id: str
    region: str
    private_ip: str
    availability_zone: str


class Ec2Adapter:
    """Launch and look up instances in moto's EC2 backends, per region."""

    def __init__(self, cidr: str, subnet_cidrs: list[str]) -> None:
        self.cidr = cidr
        self.subnet_cidrs = subnet_cidrs
        self._lock = threading.Lock()
        self._subnets: dict[str, list[tuple[str, str]]] = {}
        self._index: dict[tuple[str, str], Any] = {}
        self._profile_ready = False

    # --- setup ---------------------------------------------------------------------------------

    def _ensure_network(self, region: str) -> list[tuple[str, str]]:
        if region not in self._subnets:
            backend = _ec2_backend(region)
            vpc = backend.create_vpc(self.cidr)
            backend.create_tags([vpc.id], {"Name": "ec2ssm-sandbox"})
            subnets = []
            for cidr, suffix in zip(self.subnet_cidrs, AZ_SUFFIXES, strict=False):
                az = region + suffix
                subnet = backend.create_subnet(vpc_id=vpc.id, cidr_block=cidr, availability_zone=az)
                backend.create_tags([subnet.id], {"Name": f"ec2ssm-sandbox-private-{suffix}"})
                subnets.append((subnet.id, az))
            self._subnets[region] = subnets
        return self._subnets[region]

    def _ensure_instance_profile(self) -> None:
        if self._profile_ready:
            return
        iam = _iam_backend()
        if INSTANCE_PROFILE not in iam.instance_profiles:
            trust = (
                '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
                '"Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}'
            )
            iam.create_role(INSTANCE_ROLE, trust, "/", None, "SSM managed instance role", [], None)
            iam.create_instance_profile(INSTANCE_PROFILE, "/", [INSTANCE_ROLE], [])
        self._profile_ready = True

    def ensure_principal(self, user_name: str) -> tuple[str, str]:
        """An IAM user with one access key in moto (so STS GetCallerIdentity names it)."""
        iam = _iam_backend()
        with self._lock:
            if user_name not in iam.users:
                iam.create_user("us-east-1", user_name)
            user = iam.users[user_name]
            key = user.access_keys[0] if user.access_keys else iam.create_access_key(user_name)
        return key.access_key_id, key.secret_access_key

    # --- launch --------------------------------------------------------------------------------

    def run_instances(
        self,
        *,
        region: str,
        platform: Platform,
        count: int,
        instance_type: str,
        tags: dict[str, str],
        instance_profile: str | None,
        subnet_index: int = 0,
    ) -> list[Launched]:
        """RunInstances (moto backend) ``count`` instances with the same tags, in one subnet."""
        with self._lock:
            subnets = self._ensure_network(region)
            subnet_id, az = subnets[subnet_index % len(subnets)]
            backend = _ec2_backend(region)
            reservation = backend.run_instances(
                platform.image_id,
                count,
                None,
                [],
                instance_type=instance_type,
                is_instance_type_default=False,
                region_name=region,
                subnet_id=subnet_id,
                tags={"instance": dict(tags)},
                client_token=str(uuid.uuid4()),
            )
            launched = []
            for instance in reservation.instances:
                self._index[(region, instance.id)] = instance
                launched.append(Launched(instance.id, region, instance.private_ip, az))
            if instance_profile:
                self._ensure_instance_profile()
                for instance in reservation.instances:
                    backend.associate_iam_instance_profile(
                        instance_id=instance.id, iam_instance_profile_name=instance_profile
                    )
        return launched

    def tag(self, region: str, instance_id: str, tags: dict[str, str]) -> None:
        _ec2_backend(region).create_tags([instance_id], tags)

    # --- lookups -------------------------------------------------------------------------------

    def instance(self, region: str, instance_id: str) -> Any | None:
        """moto's Instance object, or None if it never existed in ``region``."""
        found = self._index.get((region, instance_id))
        if found is None:
            try:
                found = _ec2_backend(region).get_instance(instance_id)
            except Exception:  # noqa: BLE001 - moto raises its own InvalidInstanceIdError
                return None
            self._index[(region, instance_id)] = found
        return found

    def state(self, region: str, instance_id: str) -> str | None:
        instance = self.instance(region, instance_id)
        return None if instance is None else str(instance.state)

    def tags(self, region: str, instance_id: str) -> dict[str, str]:
        # moto's TagBackend keeps a dict per resource id; its describe_tags() scans every tag
        return dict(_ec2_backend(region).tags.get(instance_id, {}))

    def instance_profile_arn(self, region: str, instance_id: str) -> str | None:
        backend = _ec2_backend(region)
        association = backend.iam_instance_profile_associations.get(instance_id)
        return None if association is None else association.instance_profile.arn

    # --- lifecycle (the same backend calls the EC2 API makes) ---------------------------------------

    def stop(self, region: str, ids: Iterable[str]) -> None:
        _ec2_backend(region).stop_instances(list(ids))

    def start(self, region: str, ids: Iterable[str]) -> None:
        _ec2_backend(region).start_instances(list(ids))

    def terminate(self, region: str, ids: Iterable[str]) -> None:
        _ec2_backend(region).terminate_instances(list(ids))


def unauthorized_operation_xml(message: str, request_id: str) -> bytes:
    """EC2's query-protocol error body for an IAM denial."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<Response><Errors><Error><Code>UnauthorizedOperation</Code>"
        f"<Message>{escape(message)}</Message></Error></Errors>"
        f"<RequestID>{request_id}</RequestID></Response>"
    ).encode()


def query_error_xml(code: str, message: str, request_id: str) -> bytes:
    """The EC2 query-protocol error body (throttling, malformed requests)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{escape(code)}</Code>"
        f"<Message>{escape(message)}</Message></Error></Errors>"
        f"<RequestID>{request_id}</RequestID></Response>"
    ).encode()
