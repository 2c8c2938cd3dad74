"""EC2 Instance Connect backend: SendSSHPublicKey, for real.

moto's version accepts anything and returns a fixed RequestId (the stub style.md warns about).
Ours validates like AWS and *delivers*: the key is written to the instance's key store for that
OS user and accepted by the instance's sshd for ``ttl`` seconds (60 by default), then no more.
"""

from __future__ import annotations

import logging
from typing import Any

from ...hosts.eic import EicKeyStore
from ..core import RequestContext
from ..ec2 import ACCOUNT_ID, Ec2Adapter
from ..gate import Gate
from ..ssm.nodes import NodeRegistry
from .exceptions import EC2InstanceNotFoundException, EC2InstanceStateInvalidException, InvalidArgsException
from .keys import check_public_key

log = logging.getLogger("ec2ssm.sandbox.eic")


class Ec2InstanceConnectBackend:
    def __init__(self, ec2: Ec2Adapter, nodes: NodeRegistry, keys: EicKeyStore, gate: Gate) -> None:
        self.ec2 = ec2
        self.nodes = nodes
        self.keys = keys
        self.gate = gate

    def send_ssh_public_key(
        self,
        ctx: RequestContext,
        instance_id: str,
        os_user: str,
        public_key: str,
        availability_zone: str | None,
    ) -> dict[str, Any]:
        """Push ``public_key`` for ``os_user`` to ``instance_id`` for ``ttl`` seconds.

        Validates (after the model's checks: InstanceId ``^i-[a-f0-9]+$``, InstanceOSUser pattern,
        key length 80-4096, reported as InvalidArgsException): IAM
        ``ec2-instance-connect:SendSSHPublicKey`` on the instance ARN with the condition keys
        ``ec2:osuser`` and ``ec2:ResourceTag/<key>``; the rate limit; that the instance exists in
        this region (EC2InstanceNotFoundException) and is running
        (EC2InstanceStateInvalidException); the AvailabilityZone if given (InvalidArgsException);
        the key (ssh-rsa 2048-4096 bits or ssh-ed25519, parsed: InvalidArgsException). Like AWS it
        does not check that the OS user exists on the instance, nor that the EIC package is
        installed: an instance without it (``has_eic`` false) gets a successful push that its sshd
        never sees.
        """
        arn = f"arn:aws:ec2:{ctx.region}:{ACCOUNT_ID}:instance/{instance_id}"
        condition: dict[str, str | list[str]] = {"ec2:osuser": os_user}
        for key, value in self.ec2.tags(ctx.region, instance_id).items():
            condition[f"ec2:ResourceTag/{key}"] = value
            condition[f"aws:ResourceTag/{key}"] = value
        self.gate.check(ctx, "ec2-instance-connect:SendSSHPublicKey", [arn], condition)
        instance = self.ec2.instance(ctx.region, instance_id)
        if instance is None:
            raise EC2InstanceNotFoundException(instance_id)
        state = str(instance.state)
        if state != "running":
            raise EC2InstanceStateInvalidException(instance_id, state)
        if availability_zone is not None and availability_zone != instance.placement.zone:
            raise InvalidArgsException(
                f"Instance {instance_id} is not in availability zone {availability_zone}."
            )
        check_public_key(public_key)
        node = self.nodes.get(ctx.region, instance_id)
        if node is not None and not node.has_eic:
            log.info("%s has no EC2 Instance Connect: key for %s accepted and dropped", instance_id, os_user)
        else:
            self.keys.push(instance_id, os_user, public_key)
        return {"RequestId": ctx.request_id, "Success": True}
