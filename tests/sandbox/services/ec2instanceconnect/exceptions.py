"""EC2 Instance Connect error codes (shape names in botocore's ec2-instance-connect model)."""

from __future__ import annotations

from ..core import ServiceException


class InvalidArgsException(ServiceException):
    code = "InvalidArgsException"


class EC2InstanceNotFoundException(ServiceException):
    code = "EC2InstanceNotFoundException"

    def __init__(self, instance_id: str) -> None:
        super().__init__(f"Instance {instance_id} not found")


class EC2InstanceStateInvalidException(ServiceException):
    code = "EC2InstanceStateInvalidException"

    def __init__(self, instance_id: str, state: str) -> None:
        super().__init__(
            f"Unable to connect to instance {instance_id} because it is in the {state} state. "
            "Connecting to a stopped or terminated instance is not supported."
        )
