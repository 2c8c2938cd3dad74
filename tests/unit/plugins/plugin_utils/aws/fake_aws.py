# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A scripted local AWS endpoint for unit tests that exercise *real* botocore.

It speaks just enough of the wire formats botocore uses for the calls we make: JSON 1.1
(``X-Amz-Target: AmazonSSM.<Op>`` / ``AWSEC2InstanceConnectService.<Op>``) and the STS query
protocol (``Action=AssumeRole``, XML answer). Each operation answers from a script (a queue of
responses, the last one repeating), and every request is recorded with its headers, so tests can
assert what botocore actually sent (signing key, security token, retries, bodies).

Not a sandbox: no state, no validation beyond what a test scripts. The full local AWS lives in
``tests/sandbox`` and is used by the e2e tests.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

ACCESS_KEY = "AKIAFAKEFAKEFAKE0001"
SECRET_KEY = "fake-secret-key-do-not-print-0123456789"


@dataclass
class Reply:
    status: int = 200
    body: dict[str, Any] | str = field(default_factory=dict)
    content_type: str = "application/x-amz-json-1.1"
    hold: threading.Event | None = None
    """If set, the answer waits until the test sets it (a call "in flight")."""


@dataclass
class Request:
    operation: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def access_key(self) -> str:
        """The access key id the request was signed with (from the SigV4 Authorization header)."""
        auth = self.headers.get("authorization", "")
        return auth.split("Credential=", 1)[1].split("/", 1)[0] if "Credential=" in auth else ""

    @property
    def security_token(self) -> str | None:
        return self.headers.get("x-amz-security-token")


def sts_credentials_xml(access_key: str, secret: str, token: str, expiration: str) -> str:
    return (
        '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>'
        f"<Credentials><AccessKeyId>{access_key}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>"
        f"<SessionToken>{token}</SessionToken><Expiration>{expiration}</Expiration></Credentials>"
        "<AssumedRoleUser><Arn>arn:aws:sts::210987654321:assumed-role/ops/trek10-ec2ssm</Arn>"
        "<AssumedRoleId>AROAEXAMPLE:trek10-ec2ssm</AssumedRoleId></AssumedRoleUser>"
        "</AssumeRoleResult><ResponseMetadata><RequestId>req-1</RequestId></ResponseMetadata></AssumeRoleResponse>"
    )


def sts_error_xml(code: str, message: str) -> str:
    return (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>req-2</RequestId></ErrorResponse>"
    )


class FakeAws:
    """``with FakeAws() as aws: aws.reply("StartSession", ...); ... aws.requests``."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._script: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                headers = {k.lower(): v for k, v in self.headers.items()}
                target = headers.get("x-amz-target", "")
                if target:
                    operation = target.rsplit(".", 1)[-1]
                    body: dict[str, Any] = json.loads(raw or "{}")
                else:  # query protocol (STS)
                    form = urllib.parse.parse_qs(raw)
                    body = {k: v[0] for k, v in form.items()}
                    operation = body.get("Action", "?")
                reply = fake._next(operation, Request(operation, headers, body))
                if reply.hold is not None:
                    reply.hold.wait(30)
                payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
                data = payload.encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeAws:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # -- scripting ----------------------------------------------------------------------------

    def reply(
        self,
        operation: str,
        body: dict[str, Any] | str | None = None,
        *,
        status: int = 200,
        hold: threading.Event | None = None,
    ) -> FakeAws:
        content_type = "text/xml" if isinstance(body, str) else "application/x-amz-json-1.1"
        with self._lock:
            self._script.setdefault(operation, []).append(Reply(status, body or {}, content_type, hold))
        return self

    def error(self, operation: str, code: str, message: str, *, status: int = 400) -> FakeAws:
        return self.reply(operation, {"__type": code, "message": message}, status=status)

    def calls(self, operation: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.operation == operation]

    def _next(self, operation: str, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            queue = self._script.get(operation)
            if not queue:
                return Reply(501, {"__type": "NotScripted", "message": f"{operation} is not scripted"})
            return queue.pop(0) if len(queue) > 1 else queue[0]


#: A StartSession answer as AWS shapes it (the token is a recognisable fake secret).
START_SESSION_REPLY = {
    "SessionId": "tester-0123456789abcdef0",
    "TokenValue": "SECRET-TOKEN-0123456789-abcdefghij",
    "StreamUrl": "wss://ssmmessages.eu-west-1.amazonaws.com/v1/data-channel/tester-0123456789abcdef0"
    "?role=publish_subscribe&cell-number=AAEAAQ+/=",
}


def isolate_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    """No user config, no IMDS, no inherited AWS_* variables: only what the test sets."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "TREK10_EC2SSM_")) or name.upper() in {"HTTPS_PROXY", "HTTP_PROXY"}:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", f"{tmp_path}/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", f"{tmp_path}/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def serve(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Iterator[FakeAws]:
    """Body of a ``fake_aws`` fixture: a FakeAws with every service we call pointed at it,
    region eu-west-1 and static env credentials."""
    isolate_aws_env(monkeypatch, tmp_path)
    with FakeAws() as aws:
        for service in ("SSM", "EC2_INSTANCE_CONNECT", "STS"):
            monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", aws.url)
        monkeypatch.setenv("AWS_REGION", "eu-west-1")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        yield aws
