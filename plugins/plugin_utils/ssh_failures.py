# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn a failed ssh/scp/sftp run (exit code 255) into one sentence that says what to do.

PRIVATE to this collection. Pure: ssh's stderr in, a :class:`Diagnosis` (or ``None``) out.

Three things can fail below Ansible, and each leaves its own trace in ssh's stderr:

1. **The tunnel helper** (our ProxyCommand) writes exactly one line starting with
   :data:`HELPER_PREFIX` and exits; ssh then adds "Connection closed by UNKNOWN port 65535" or
   similar. That line is already the sentence (``aws/errors.py`` wrote it).
2. **sshd refuses the key** after the helper pushed it: "Permission denied (publickey)". The
   tunnel and the push worked, so EC2 Instance Connect is not set up on the instance or the OS
   user is wrong.
3. **The host key changed**: ssh's "REMOTE HOST IDENTIFICATION HAS CHANGED" banner.

Whether retrying can help (``reconnection_retries``) is part of the diagnosis: denied access, an
unknown instance or bad credentials stay that way, so retrying them only delays the failure;
throttling, an instance that is not connected to SSM *yet* and network trouble may pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws.errors import (
    ACCESS_DENIED_CODES,
    CREDENTIAL_CODES,
    NOT_FOUND_CODES,
)

HELPER_PREFIX = "trek10.ec2ssm: "
"""Start of the tunnel helper's one-line failure report on stderr (the helper's contract)."""

PERMANENT_CODES = (
    ACCESS_DENIED_CODES
    | CREDENTIAL_CODES
    | NOT_FOUND_CODES
    | {
        "EC2InstanceStateInvalidException",
        "InvalidDocumentType",
        "InvalidParameters",
        "InvalidArgsException",
        "AuthException",
        "ValidationException",
        # botocore's local failures, named in the helper's line: settings, not luck
        "NoCredentialsError",
        "PartialCredentialsError",
        "ProfileNotFound",
        "NoRegionError",
        "InvalidConfigError",
        "ParamValidationError",
        "UnauthorizedSSOTokenError",
        "SSOTokenLoadError",
        "TokenRetrievalError",
    }
)
"""AWS error codes (and botocore exception names) after which another attempt within seconds
cannot succeed. Throttling, TargetNotConnected (an instance still booting), endpoint and
data-channel trouble are deliberately absent."""

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]+")
_PERMISSION_DENIED = re.compile(r"Permission denied \((?:[\w-]+,)*publickey")
_HOST_KEY_CHANGED = "REMOTE HOST IDENTIFICATION HAS CHANGED"
_HOST_KEY_FAILED = "Host key verification failed"
_BANNER_TIMEOUT = "Connection timed out during banner exchange"
_TRACEBACK = "Traceback (most recent call last):"


@dataclass(frozen=True)
class Diagnosis:
    message: str
    """The sentence for the task result."""
    permanent: bool
    """True when retrying the connection cannot help."""


@dataclass(frozen=True)
class Context:
    """What the sentences mention; all of it is already visible in the -vvv ssh command line."""

    instance_id: str
    os_user: str | None
    known_hosts_file: str
    eic_push: bool
    timeout: int | None = None


def helper_line(stderr: str) -> str | None:
    """The helper's failure line in ssh's stderr, if there is one (the last, if it retried)."""
    found = None
    for raw in stderr.splitlines():
        line = raw.strip("\r")
        if line.startswith(HELPER_PREFIX):
            found = line
    return found


def _python_crash(stderr: str) -> str | None:
    """The last line of a Python traceback in ``stderr`` (the helper died before it could write
    its own line: a broken install, a syntax error), else None."""
    lines = [raw.strip("\r") for raw in stderr.splitlines()]
    if _TRACEBACK not in lines:
        return None
    start = len(lines) - 1 - lines[::-1].index(_TRACEBACK)
    for line in lines[start + 1 :]:
        if line and not line.startswith((" ", "\t")):
            return line.strip()
    return None


def is_permanent_helper_failure(line: str) -> bool:
    """Whether a helper line names an error code or botocore error that retrying cannot fix."""
    return not PERMANENT_CODES.isdisjoint(_WORD.findall(line))


def diagnose(stderr: str, context: Context, helper_output: str = "") -> Diagnosis | None:
    """Explain a failed ssh run, or ``None`` when nothing here is ours to explain.

    ``stderr`` is ssh's; ``helper_output`` what the tunnel helper wrote during the run (only
    there is a Python traceback the helper's: in ssh's stderr it may be the remote command's).
    """
    line = helper_line(helper_output) or helper_line(stderr)
    if line is not None:
        return Diagnosis(line, permanent=is_permanent_helper_failure(line))
    iid = context.instance_id
    crash = _python_crash(helper_output)
    if crash is not None:
        return Diagnosis(
            f"{HELPER_PREFIX}{iid}: the tunnel helper could not run: {crash}. Check that the "
            "controller's Python has this collection and its requirements (boto3/botocore, "
            "websockets); -vvv shows the helper's whole output.",
            permanent=True,
        )
    if _HOST_KEY_CHANGED in stderr:
        return Diagnosis(
            f"{HELPER_PREFIX}{iid}: the SSH host key presented for {iid} differs from the one pinned "
            f"for it in {context.known_hosts_file}. Either the instance id now names a machine with "
            "new host keys (root volume replaced, instance rebuilt, keys regenerated, a re-registered "
            "hybrid node, or a known_hosts file shared with another account or a sandbox that reuses "
            "ids), or someone is intercepting the connection. Verify the instance's host key (for "
            "example from its console output) before trusting it; if the change is expected, remove "
            f"the old entry with: ssh-keygen -R {iid} -f {context.known_hosts_file}",
            permanent=True,
        )
    if _HOST_KEY_FAILED in stderr:
        return Diagnosis(
            f"{HELPER_PREFIX}{iid}: host key verification failed: {context.known_hosts_file} has no "
            f"pinned key for {iid} and host_key_policy is 'yes'. Add the instance's key to that file "
            "(keyed by instance id), or use host_key_policy: accept-new to pin it on first contact.",
            permanent=True,
        )
    if _PERMISSION_DENIED.search(stderr):
        user = context.os_user or "(not set)"
        if context.eic_push:
            text = (
                f"{HELPER_PREFIX}{iid}: the SSM tunnel is up and the key was pushed with EC2 Instance "
                f"Connect, but sshd on the instance refused it for OS user '{user}' (Permission denied "
                "(publickey)). Either EC2 Instance Connect is not installed or not configured on the "
                "instance (package ec2-instance-connect; its AuthorizedKeysCommand in sshd_config), or "
                f"'{user}' is not this image's login user (Amazon Linux and RHEL: ec2-user, Ubuntu: "
                "ubuntu, Debian: admin); set ansible_user to the right one."
            )
        else:
            text = (
                f"{HELPER_PREFIX}{iid}: the SSM tunnel is up but sshd refused the key for user "
                f"'{user}' (Permission denied (publickey)). With eic_push: false nothing is pushed, "
                "so the key (private_key_file) must already be authorized for that user on the "
                "instance."
            )
        return Diagnosis(text, permanent=True)
    if _BANNER_TIMEOUT in stderr:
        seconds = f"{context.timeout} s" if context.timeout else "the timeout"
        return Diagnosis(
            f"{HELPER_PREFIX}{iid}: no SSH banner within {seconds} through the SSM tunnel; the "
            "session may be slow to start. Raise the connection timeout (ansible_ssh_timeout, "
            "[ssh_connection] timeout).",
            permanent=False,
        )
    return None
