"""The AWS JSON 1.1 protocol, server side: body → validated params → operation → reply.

A service registers its operations as ``name → handler(ctx, params) -> dict``. This module parses
the body, checks it against botocore's model (``validation.py``), calls the handler and turns
``ServiceException`` into AWS's error body. Responses only parse and dispatch (moto's rule); the
backends never see HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import validation
from .core import (
    RequestContext,
    SerializationException,
    ServiceException,
    error_reply,
    json_reply,
)

Handler = Callable[[RequestContext, dict[str, Any]], dict[str, Any]]


class UnknownOperation(ServiceException):
    code = "UnknownOperationException"


@dataclass
class JsonService:
    """One JSON 1.1 service: its botocore name, target prefix and operations."""

    service_name: str
    """botocore's name, e.g. ``ssm``; also the IAM action prefix unless ``iam_prefix`` says otherwise."""
    target_prefix: str
    operations: dict[str, Handler]
    target_params: dict[str, str]
    """operation → the parameter naming what the call is about (for the call log)."""
    validation_error: type[ServiceException] | None = None
    """Raise this instead of ValidationException for model violations (EIC uses InvalidArgsException)."""

    def parse(self, body: bytes) -> dict[str, Any]:
        if not body.strip():
            return {}
        try:
            params = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SerializationException("Malformed JSON in the request body.") from exc
        if not isinstance(params, dict):
            raise SerializationException("Start of structure or map found where not expected.")
        return params

    def target_of(self, operation: str, params: dict[str, Any]) -> str:
        name = self.target_params.get(operation)
        value = params.get(name) if name else None
        return value if isinstance(value, str) else ""

    def call(
        self, operation: str, params: dict[str, Any], ctx: RequestContext
    ) -> tuple[int, dict[str, str], bytes]:
        """Validate and run ``operation``; any ServiceException becomes AWS's error reply."""
        try:
            handler = self.operations.get(operation)
            if handler is None:
                raise UnknownOperation(f"Operation {operation} is not supported by the sandbox.")
            try:
                validation.validate(self.service_name, operation, params)
            except ServiceException as exc:
                if self.validation_error is not None and exc.code == "ValidationException":
                    raise self.validation_error(exc.message) from exc
                raise
            result = handler(ctx, params)
        except ServiceException as exc:
            return error_reply(exc, ctx.request_id)
        return json_reply(result, 200, ctx.request_id)
