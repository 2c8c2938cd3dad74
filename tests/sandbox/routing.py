"""One HTTPS port, routed the way AWS's endpoints would be told apart.

- ``/_sandbox/...``: the control API (AWS never uses that path);
- ``X-Amz-Target: AmazonSSM.<Op>``: our SSM service;
- ``X-Amz-Target: AWSEC2InstanceConnectService.<Op>``: our EC2 Instance Connect service;
- anything else (form-encoded ``Action=...`` of EC2, STS, IAM): moto's server-mode app, which picks
  the service from the SigV4 credential scope.

Every AWS call is authenticated (unsigned → ``MissingAuthenticationTokenException``), attributed to
its caller (moto's STS view of the access key), checked against IAM policies and rate limits
(EC2 too: an identity policy without ``ec2:DescribeInstances`` gets ``UnauthorizedOperation``), and
counted in the call log with its outcome.
"""

from __future__ import annotations

import http
import io
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from .auth import parse_authorization
from .control import api as control_api
from .iam import AuthzRequest
from .services.core import (
    AccessDenied,
    Caller,
    MissingAuthenticationToken,
    RequestContext,
    ServiceException,
    UnrecognizedClient,
    error_reply,
)
from .services.ec2 import query_error_xml, unauthorized_operation_xml
from .services.jsonproto import JsonService

if TYPE_CHECKING:
    from .server import Sandbox

log = logging.getLogger("ec2ssm.sandbox.http")

StartResponse = Callable[..., Any]
_LIFECYCLE = {"StopInstances", "StartInstances", "TerminateInstances", "RebootInstances"}
_CODE = re.compile(rb"<Code>([^<]+)</Code>")
_MOTO_DEFAULT_USER_ID = "AKIAIOSFODNN7EXAMPLE"


def _status_line(status: int) -> str:
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


class SandboxApp:
    """The WSGI application behind the sandbox's HTTPS port."""

    def __init__(self, sandbox: Sandbox, services: list[JsonService], moto: Any) -> None:
        self.sandbox = sandbox
        self.services = {s.target_prefix: s for s in services}
        self.moto = moto

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        body = _read_body(environ)
        if path.startswith(control_api.PREFIX + "/") or path == control_api.PREFIX:
            return self._control(environ, start_response, path, body)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        prefix, _, operation = target.partition(".")
        service = self.services.get(prefix)
        if service is not None:
            return self._json(environ, start_response, service, operation, body)
        return self._moto(environ, start_response, body)

    # --- control -------------------------------------------------------------------------------

    def _control(
        self, environ: dict[str, Any], start_response: StartResponse, path: str, body: bytes
    ) -> list[bytes]:
        import json

        status, answer = control_api.handle(
            self.sandbox, environ.get("REQUEST_METHOD", "GET"), path, environ.get("QUERY_STRING", ""), body
        )
        data = json.dumps(answer, default=str).encode()
        start_response(
            _status_line(status), [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        )
        return [data]

    # --- identity ------------------------------------------------------------------------------

    def identify(self, access_key_id: str, region: str, security_token: str | None = None) -> Caller:
        """The caller as STS GetCallerIdentity (moto) would name it; unknown keys per config.

        Temporary credentials (an assumed role's ``ASIA...`` key) are valid only with their session
        token (``X-Amz-Security-Token``), as on AWS: without it, or with another one, the request
        is refused as AWS refuses it ("The security token included in the request is invalid").
        """
        user_id, arn, account = self.sandbox.caller_identity(access_key_id, region)
        if (
            user_id == _MOTO_DEFAULT_USER_ID
            and self.sandbox.config.iam.get("unknown_access_keys") == "reject"
        ):
            raise UnrecognizedClient()
        expected = self.sandbox.session_token_of(access_key_id)
        if expected is not None and security_token != expected:
            raise UnrecognizedClient()
        return Caller(access_key_id=access_key_id, account_id=account, arn=arn, user_id=user_id)

    # --- JSON services -----------------------------------------------------------------------------

    def _json(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        service: JsonService,
        operation: str,
        body: bytes,
    ) -> list[bytes]:
        request_id = str(uuid.uuid4())
        scope = parse_authorization(environ.get("HTTP_AUTHORIZATION"))
        region = scope.region if scope else ""
        caller_name = ""
        target = ""
        try:
            if scope is None:
                raise MissingAuthenticationToken()
            caller = self.identify(
                scope.access_key_id, scope.region, environ.get("HTTP_X_AMZ_SECURITY_TOKEN")
            )
            caller_name = caller.name
            params = service.parse(body)
            target = service.target_of(operation, params)
            ctx = RequestContext(caller=caller, region=scope.region, request_id=request_id)
            status, headers, data = service.call(operation, params, ctx)
        except ServiceException as exc:
            status, headers, data = error_reply(exc, request_id)
        outcome = headers.get("x-amzn-ErrorType", "ok")
        self.sandbox.calls.record(service.service_name, operation, region, caller_name, target, outcome)
        if outcome != "ok":
            log.info("%s.%s %s %s -> %s", service.service_name, operation, caller_name, target, outcome)
        start_response(_status_line(status), list(headers.items()))
        return [data]

    # --- moto (EC2, STS, ...) ----------------------------------------------------------------------

    def _moto(self, environ: dict[str, Any], start_response: StartResponse, body: bytes) -> Iterable[bytes]:
        scope = parse_authorization(environ.get("HTTP_AUTHORIZATION"))
        form: dict[str, list[str]] = {}
        if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            form = parse_qs(body.decode("utf-8", "replace"))
        action = (form.get("Action") or parse_qs(environ.get("QUERY_STRING", "")).get("Action") or [""])[0]
        if scope is None:
            return self._forward(environ, start_response, "", action, "", "", form)
        service = scope.service
        request_id = str(uuid.uuid4())
        try:
            caller = self.identify(
                scope.access_key_id, scope.region, environ.get("HTTP_X_AMZ_SECURITY_TOKEN")
            )
        except ServiceException as exc:
            data = query_error_xml("AuthFailure", exc.message, request_id)
            self.sandbox.calls.record(service, action, scope.region, "", "", "AuthFailure")
            start_response(
                _status_line(401), [("Content-Type", "text/xml"), ("Content-Length", str(len(data)))]
            )
            return [data]
        target = (form.get("InstanceId.1") or [""])[0]
        if service != "sts" and action:
            iam_action = f"{service}:{action}"
            try:
                self.sandbox.policies.authorize(
                    AuthzRequest(caller, iam_action, "*", {"aws:RequestedRegion": scope.region})
                )
            except AccessDenied as exc:
                data = unauthorized_operation_xml(
                    "You are not authorized to perform this operation. " + exc.message, request_id
                )
                self.sandbox.calls.record(
                    service, action, scope.region, caller.name, target, "UnauthorizedOperation"
                )
                start_response(
                    _status_line(403), [("Content-Type", "text/xml"), ("Content-Length", str(len(data)))]
                )
                return [data]
            if not self.sandbox.throttler.allow(caller.account_id, scope.region, iam_action):
                data = query_error_xml("RequestLimitExceeded", "Request limit exceeded.", request_id)
                self.sandbox.calls.record(
                    service, action, scope.region, caller.name, target, "RequestLimitExceeded"
                )
                start_response(
                    _status_line(503), [("Content-Type", "text/xml"), ("Content-Length", str(len(data)))]
                )
                return [data]
        return self._forward(environ, start_response, service, action, scope.region, caller.name, form)

    def _forward(  # noqa: PLR0917 - private plumbing
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        service: str,
        action: str,
        region: str,
        caller: str,
        form: dict[str, list[str]],
    ) -> list[bytes]:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"] = int(status.split(maxsplit=1)[0])
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        chunks = list(self.moto(environ, capture))
        data = b"".join(chunks)
        status = captured.get("status", 500)
        outcome = "ok"
        if status >= 400:
            match = _CODE.search(data)
            outcome = match.group(1).decode() if match else str(status)
        ids = [v[0] for k, v in form.items() if k.startswith("InstanceId.")]
        self.sandbox.calls.record(service, action, region, caller, ids[0] if len(ids) == 1 else "", outcome)
        if service == "ec2" and action in _LIFECYCLE and status == 200 and ids:
            self.sandbox.fleet.sync_from_ec2(region, ids)
            self.sandbox.write_instances_file()
        return [data]
