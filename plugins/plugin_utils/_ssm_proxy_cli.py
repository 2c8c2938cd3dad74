# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure parts of the tunnel helper: command line, exit codes, failure lines, redaction.

PRIVATE to this collection; the helper itself is ``ssm_proxy.py`` (its docstring is the user
reference). Nothing here does I/O beyond reading ``os.environ`` when asked, and nothing imports a
third-party package, so these parts are unit-tested without AWS, botocore or a network.
"""

from __future__ import annotations

import argparse
import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws.errors import one_line
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws.sessions import (
    PORT_FORWARD_DOCUMENT,
    REMOTE_HOST_DOCUMENT,
    SSH_DOCUMENT,
)

#: Every failure line starts with this; the connection plugin finds it in ssh's stderr.
PREFIX = "trek10.ec2ssm: "
#: Debug lines use a different lead-in, so they are never mistaken for the failure line.
DEBUG_PREFIX = "trek10.ec2ssm debug: "
#: Lead-in of the port-forward mode's "listening on 127.0.0.1:N" line (not a failure).
PORT_FORWARD_PREFIX = "trek10.ec2ssm port-forward: "
#: Set to 1/true/yes to get debug lines on stderr without ``--debug`` (e.g. from ssh_config).
DEBUG_ENV = "TREK10_EC2SSM_DEBUG"
#: Default for ``--chunk-size`` (max payload bytes per data message), e.g. set by the controller.
CHUNK_SIZE_ENV = "TREK10_EC2SSM_CHUNK_SIZE"
#: ``--chunk-size`` bounds. 1024 (the default, datachannel.constants.K_DEFAULT_CHUNK_SIZE) is what
#: the official peers send; larger values are not known to be safe against AWS (see there).
MIN_CHUNK_SIZE = 1
MAX_CHUNK_SIZE = 65536


class ExitCode(enum.IntEnum):
    """Process exit codes, one per kind of failure (documented in ``ssm_proxy``'s docstring)."""

    OK = 0
    USAGE = 2
    CONFIG = 3
    CREDENTIALS = 4
    ACCESS_DENIED = 5
    THROTTLED = 6
    NOT_CONNECTED = 7
    NOT_FOUND = 8
    AWS_ERROR = 9
    NETWORK = 10
    TUNNEL = 11
    DEPENDENCY = 12
    INTERNAL = 70
    SIGNAL_BASE = 128


#: ``AwsCallError.kind`` -> exit code.
EXIT_BY_KIND: Mapping[str, ExitCode] = {
    "config": ExitCode.CONFIG,
    "credentials": ExitCode.CREDENTIALS,
    "access-denied": ExitCode.ACCESS_DENIED,
    "throttled": ExitCode.THROTTLED,
    "not-connected": ExitCode.NOT_CONNECTED,
    "not-found": ExitCode.NOT_FOUND,
    "aws-error": ExitCode.AWS_ERROR,
    "transport": ExitCode.NETWORK,
    "tunnel": ExitCode.TUNNEL,
    "dependency": ExitCode.DEPENDENCY,
    "usage": ExitCode.USAGE,
    "internal": ExitCode.INTERNAL,
}


class HelperFailure(Exception):
    """A failure that is not an AWS call's (bad arguments, key file, data channel, missing library).

    ``str()`` is the sentence (without the prefix); ``kind`` selects the exit code.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def exit_code(self) -> ExitCode:
        return EXIT_BY_KIND.get(self.kind, ExitCode.INTERNAL)


class UsageError(HelperFailure):
    def __init__(self, message: str) -> None:
        super().__init__("usage", message)


def exit_code_for(kind: str) -> ExitCode:
    return EXIT_BY_KIND.get(kind, ExitCode.INTERNAL)


def failure_line(message: str, redactor: Redactor | None = None) -> str:
    """The one stderr line for a failure: prefix + a single-line, redacted sentence + newline."""
    text = one_line(message)
    if redactor is not None:
        text = redactor(text)
    return f"{PREFIX}{text}\n"


# -- redaction --------------------------------------------------------------------------------

_REDACTED = "<redacted>"
# JSON or header forms that carry a secret, whatever its value.
_SECRET_PATTERNS = (
    re.compile(
        r'("?\b(?:TokenValue|SessionToken|SecretAccessKey|secret_key|token)\b"?\s*[:=]\s*"?)([^"\s,}]+)', re.I
    ),
    re.compile(r"((?:X-Amz-Security-Token|Authorization)\s*[:=]\s*)(\S+)", re.I),
)
#: Environment variables whose values are secrets wherever they appear.
SECRET_ENV_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


class Redactor:
    """Removes known secret values (tokens, env credentials) and secret-looking fields from text.

    Callable: ``redactor(text) -> text``. Secrets learned later (a ResumeSession token) are added
    with :meth:`add`. Values shorter than 8 characters are ignored (they would redact ordinary words).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Redactor:
        return cls(environ.get(name, "") for name in SECRET_ENV_VARS)

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 8:
            self._secrets.add(secret)

    def __call__(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, _REDACTED)
        for pattern in _SECRET_PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + _REDACTED, text)
        return text


# -- command line -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HelperOptions:
    """The parsed command line. No secrets: credentials only ever come from the environment/config."""

    target: str
    port: int
    os_user: str | None = None
    public_key_file: str | None = None
    region: str | None = None
    profile: str | None = None
    assume_role_arn: str | None = None
    role_session_name: str | None = None
    document_name: str | None = None
    reason: str | None = None
    local_port: int | None = None
    remote_host: str | None = None
    host_label: str | None = None
    debug: bool = False
    chunk_size: int | None = None
    """Max payload bytes per data message; None keeps the data channel's default (1024)."""

    @property
    def port_forward(self) -> bool:
        """``--local-port`` given: listen locally instead of bridging stdin/stdout."""
        return self.local_port is not None

    @property
    def document(self) -> str:
        """The SSM document: ``--document-name``, else the one matching the mode."""
        if self.document_name:
            return self.document_name
        if self.remote_host:
            return REMOTE_HOST_DOCUMENT
        return PORT_FORWARD_DOCUMENT if self.port_forward else SSH_DOCUMENT

    @property
    def session_parameters(self) -> dict[str, list[str]]:
        """StartSession ``Parameters`` (lists of strings, ssm-data-channel.md §1.1)."""
        params = {"portNumber": [str(self.port)]}
        if self.port_forward:
            params["localPortNumber"] = [str(self.local_port)]
        if self.remote_host:
            params["host"] = [self.remote_host]
        return params


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing a multi-line usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"invalid arguments: {message} (see --help)")


def _port(value: str, *, allow_zero: bool = False) -> int:
    try:
        port = int(value, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {value}")
    return port


def _local_port(value: str) -> int:
    return _port(value, allow_zero=True)


def _chunk_size(value: str) -> int:
    try:
        size = int(value, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of bytes: {value!r}") from None
    if not MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE:
        raise argparse.ArgumentTypeError(f"chunk size not in {MIN_CHUNK_SIZE}-{MAX_CHUNK_SIZE}: {value}")
    return size


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python3 -m ansible_collections.trek10.ec2ssm.plugins.plugin_utils.ssm_proxy",
        description=(
            "Open an SSM Session Manager tunnel to one instance (OpenSSH ProxyCommand, or a local "
            "port forward with --local-port). Credentials come only from the standard AWS "
            "environment/config, never from the command line."
        ),
        allow_abbrev=False,
    )
    parser.add_argument("--target", required=True, help="instance id (i-... or mi-...), e.g. ssh's %%h")
    parser.add_argument("--port", required=True, type=_port, help="port on the instance, e.g. ssh's %%p")
    parser.add_argument("--os-user", help="OS user for the EC2 Instance Connect key, e.g. ssh's %%r")
    parser.add_argument("--public-key-file", help="OpenSSH public key to push with EC2 Instance Connect")
    parser.add_argument("--region", help="AWS region (default: AWS_REGION / the profile's region)")
    parser.add_argument("--profile", help="AWS config profile (default: AWS_PROFILE / default chain)")
    parser.add_argument("--assume-role-arn", help="assume this IAM role for all calls (cross-account)")
    parser.add_argument("--role-session-name", help="RoleSessionName for --assume-role-arn")
    parser.add_argument("--document-name", help="SSM document (default depends on the mode)")
    parser.add_argument("--reason", help="StartSession Reason (shown in the SSM session history)")
    parser.add_argument(
        "--local-port",
        type=_local_port,
        help="port-forward mode: listen on 127.0.0.1:N (0 = any free port, printed on stderr)",
    )
    parser.add_argument(
        "--remote-host", help="port-forward mode: forward to HOST:--port through the instance"
    )
    parser.add_argument("--host-label", help="host name to show in messages (e.g. the inventory name)")
    parser.add_argument("--debug", action="store_true", help=f"debug lines on stderr (also {DEBUG_ENV}=1)")
    parser.add_argument(
        "--chunk-size",
        type=_chunk_size,
        help=(
            f"max payload bytes per data message sent ({MIN_CHUNK_SIZE}-{MAX_CHUNK_SIZE}, default 1024 "
            f"like the official client; also {CHUNK_SIZE_ENV}). Larger is faster where the service "
            "accepts it; untested against AWS"
        ),
    )
    return parser


_TARGET = re.compile(r"^\S{1,400}$")


def parse_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> HelperOptions:
    """Parse and cross-check the command line.

    Raises:
        UsageError: with a one-line message.
    """
    ns = build_parser().parse_args(list(argv))
    if not _TARGET.match(ns.target):
        raise UsageError(f"invalid arguments: --target must be one word (got {ns.target!r})")
    if bool(ns.os_user) != bool(ns.public_key_file):
        raise UsageError(
            "invalid arguments: --os-user and --public-key-file go together (the key is pushed for that user)"
        )
    if ns.remote_host and ns.local_port is None:
        raise UsageError("invalid arguments: --remote-host needs --local-port (it is a port-forward option)")
    if ns.reason is not None and not 1 <= len(ns.reason) <= 256:
        raise UsageError("invalid arguments: --reason must be 1 to 256 characters")
    if ns.role_session_name and not ns.assume_role_arn:
        raise UsageError("invalid arguments: --role-session-name needs --assume-role-arn")
    chunk_size = ns.chunk_size
    if chunk_size is None:
        chunk_size = chunk_size_from_env(environ or {})
    return HelperOptions(
        target=ns.target,
        port=ns.port,
        os_user=ns.os_user,
        public_key_file=ns.public_key_file,
        region=ns.region or None,
        profile=ns.profile or None,
        assume_role_arn=ns.assume_role_arn or None,
        role_session_name=ns.role_session_name or None,
        document_name=ns.document_name or None,
        reason=ns.reason,
        local_port=ns.local_port,
        remote_host=ns.remote_host or None,
        host_label=ns.host_label or None,
        debug=bool(ns.debug) or debug_from_env(environ or {}),
        chunk_size=chunk_size,
    )


def debug_from_env(environ: Mapping[str, str]) -> bool:
    return environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def chunk_size_from_env(environ: Mapping[str, str]) -> int | None:
    """``TREK10_EC2SSM_CHUNK_SIZE``, if set (empty means unset).

    Raises:
        UsageError: the value is not a number in range.
    """
    raw = environ.get(CHUNK_SIZE_ENV, "").strip()
    if not raw:
        return None
    try:
        return _chunk_size(raw)
    except argparse.ArgumentTypeError as error:
        raise UsageError(f"invalid {CHUNK_SIZE_ENV}: {error}") from None
