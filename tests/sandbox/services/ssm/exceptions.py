"""SSM error codes, one class each (the shape names in botocore's ssm model)."""

from __future__ import annotations

from ..core import ServiceException, ValidationException

__all__ = [
    "DoesNotExistException",
    "InvalidDocument",
    "InvalidFilterKey",
    "InvalidInstanceId",
    "InvalidInstanceInformationFilterValue",
    "InvalidNextToken",
    "InvalidResourceId",
    "InvalidResourceType",
    "TargetNotConnected",
    "TooManyTagsError",
    "ValidationException",
]


class InvalidInstanceId(ServiceException):
    code = "InvalidInstanceId"

    def __init__(self, instance_ids: list[str], account_id: str) -> None:
        listed = ", ".join(instance_ids)
        super().__init__(f"Instances [[{listed}]] not in a valid state for account {account_id}")


class InvalidFilterKey(ServiceException):
    code = "InvalidFilterKey"


class InvalidInstanceInformationFilterValue(ServiceException):
    code = "InvalidInstanceInformationFilterValue"
    message_member = "message"


class InvalidNextToken(ServiceException):
    code = "InvalidNextToken"

    def __init__(self) -> None:
        super().__init__("The specified token isn't valid.")


class TargetNotConnected(ServiceException):
    code = "TargetNotConnected"

    def __init__(self, target: str) -> None:
        super().__init__(f"{target} is not connected.")


class InvalidDocument(ServiceException):
    code = "InvalidDocument"


class DoesNotExistException(ServiceException):
    code = "DoesNotExistException"


class InvalidResourceType(ServiceException):
    code = "InvalidResourceType"


class InvalidResourceId(ServiceException):
    code = "InvalidResourceId"


class TooManyTagsError(ServiceException):
    code = "TooManyTagsError"
