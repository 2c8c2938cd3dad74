"""EC2 Instance Connect requests (``AWSEC2InstanceConnectService.<Operation>``). Parsing only."""

from __future__ import annotations

from typing import Any

from ..core import RequestContext
from ..jsonproto import JsonService
from .exceptions import InvalidArgsException
from .models import Ec2InstanceConnectBackend


def eic_service(backend: Ec2InstanceConnectBackend) -> JsonService:
    def send_ssh_public_key(ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return backend.send_ssh_public_key(
            ctx,
            instance_id=p["InstanceId"],
            os_user=p["InstanceOSUser"],
            public_key=p["SSHPublicKey"],
            availability_zone=p.get("AvailabilityZone"),
        )

    return JsonService(
        service_name="ec2-instance-connect",
        target_prefix="AWSEC2InstanceConnectService",
        operations={"SendSSHPublicKey": send_ssh_public_key},
        target_params={"SendSSHPublicKey": "InstanceId"},
        validation_error=InvalidArgsException,
    )
