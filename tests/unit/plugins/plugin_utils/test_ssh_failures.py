# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ssh's stderr (as OpenSSH 9 writes it) to one sentence; the e2e tests produce the real thing."""

from __future__ import annotations

import pytest

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws.errors import AwsCallError
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.ssh_failures import (
    HELPER_PREFIX,
    Context,
    diagnose,
    helper_line,
    is_permanent_helper_failure,
)

IID = "i-0123456789abcdef0"
KNOWN_HOSTS = "/home/u/.ansible/ec2ssm/known_hosts"
CONTEXT = Context(
    instance_id=IID, os_user="ec2-user", known_hosts_file=KNOWN_HOSTS, eic_push=True, timeout=30
)
SSH_CLOSED = (
    "kex_exchange_identification: Connection closed by remote host\r\n"
    "Connection closed by UNKNOWN port 65535\r\n"
)


def helper_failure(error: AwsCallError) -> str:
    return f"{HELPER_PREFIX}{error}\n{SSH_CLOSED}"


def aws_error(code: str, message: str = "something", action: str = "ssm:StartSession") -> AwsCallError:
    operation = action.split(":", 1)[1]
    return AwsCallError(operation=operation, iam_action=action, code=code, aws_message=message, target=IID)


@pytest.mark.parametrize(
    ("code", "permanent"),
    [
        ("AccessDeniedException", True),
        ("ExpiredTokenException", True),
        ("InvalidInstanceId", True),
        ("EC2InstanceNotFoundException", True),
        ("InvalidDocument", True),
        ("ThrottlingException", False),
        ("TargetNotConnected", False),
        ("InternalServerError", False),
    ],
)
def test_the_helpers_line_is_the_message(code: str, permanent: bool) -> None:
    error = aws_error(code)
    diagnosis = diagnose(helper_failure(error), CONTEXT)
    assert diagnosis is not None
    assert diagnosis.message == f"{HELPER_PREFIX}{error}"
    assert diagnosis.permanent is permanent


def test_the_last_helper_line_wins_and_debug_lines_are_not_failures() -> None:
    stderr = (
        "trek10.ec2ssm debug: > ssm:StartSession\r\n"
        "trek10.ec2ssm: first\r\n"
        "debug1: Executing proxy command: exec env ...\r\n"
        "trek10.ec2ssm: second (AccessDeniedException)\r\n"
    )
    assert helper_line(stderr) == "trek10.ec2ssm: second (AccessDeniedException)"
    assert helper_line("trek10.ec2ssm debug: only debug\n") is None


def test_local_botocore_failures_named_in_the_line_are_permanent() -> None:
    assert is_permanent_helper_failure(
        "trek10.ec2ssm: i-1 (eu-west-1): ssm:StartSession failed: NoCredentialsError: x"
    )
    assert not is_permanent_helper_failure(
        "trek10.ec2ssm: i-1: the SSM data channel failed: websocket closed"
    )


def test_refused_key_explains_eic_and_the_os_user() -> None:
    diagnosis = diagnose("ec2-user@i-0123456789abcdef0: Permission denied (publickey).\r\n", CONTEXT)
    assert diagnosis is not None
    assert diagnosis.permanent
    assert "EC2 Instance Connect is not installed" in diagnosis.message
    assert "'ec2-user' is not this image's login user" in diagnosis.message


def test_refused_key_without_push_says_the_key_must_be_authorized() -> None:
    context = Context(instance_id=IID, os_user="admin", known_hosts_file=KNOWN_HOSTS, eic_push=False)
    diagnosis = diagnose("admin@i-0123456789abcdef0: Permission denied (publickey,password).\r\n", context)
    assert diagnosis is not None
    assert "must already be authorized" in diagnosis.message


HOST_KEY_CHANGED = """@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Host key for i-0123456789abcdef0 has changed and you have requested strict checking.
Host key verification failed.
"""


def test_changed_host_key_explains_and_says_how_to_clear_it() -> None:
    diagnosis = diagnose(HOST_KEY_CHANGED, CONTEXT)
    assert diagnosis is not None
    assert diagnosis.permanent
    assert "intercepting" in diagnosis.message
    assert f"ssh-keygen -R {IID} -f {KNOWN_HOSTS}" in diagnosis.message


def test_unknown_host_key_under_policy_yes() -> None:
    stderr = "No ED25519 host key is known for i-0123456789abcdef0\r\nHost key verification failed.\r\n"
    diagnosis = diagnose(stderr, CONTEXT)
    assert diagnosis is not None
    assert "host_key_policy is 'yes'" in diagnosis.message


def test_banner_timeout_names_the_setting() -> None:
    diagnosis = diagnose("Connection timed out during banner exchange\r\n", CONTEXT)
    assert diagnosis is not None
    assert not diagnosis.permanent
    assert "30 s" in diagnosis.message
    assert "ansible_ssh_timeout" in diagnosis.message


@pytest.mark.parametrize(
    "stderr",
    ["", "bash: line 1: nope: command not found\n", "Shared connection to i-0123456789abcdef0 closed.\r\n"],
)
def test_other_failures_are_left_to_the_ssh_plugin(stderr: str) -> None:
    assert diagnose(stderr, CONTEXT) is None


def test_a_helper_that_crashed_before_its_own_report_is_named() -> None:
    """A broken install dies in Python's start-up, before the helper's handler exists."""
    stderr = (
        "Traceback (most recent call last):\n"
        '  File "<frozen runpy>", line 189, in _run_module_as_main\n'
        '  File "/c/ansible_collections/trek10/ec2ssm/plugins/plugin_utils/ssm_proxy.py", line 9\n'
        "    import websockets\n"
        "ModuleNotFoundError: No module named 'websockets'\n"
    )
    assert diagnose(stderr + SSH_CLOSED, CONTEXT) is None  # a remote command's traceback is not ours
    diagnosis = diagnose(SSH_CLOSED, CONTEXT, helper_output=stderr)
    assert diagnosis is not None
    assert diagnosis.permanent
    assert diagnosis.message.startswith(f"{HELPER_PREFIX}{IID}: the tunnel helper could not run: ")
    assert "ModuleNotFoundError: No module named 'websockets'" in diagnosis.message
