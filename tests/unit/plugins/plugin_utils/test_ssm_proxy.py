# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The helper as a real process (``python -m ...ssm_proxy``) against a scripted AWS endpoint.

Covers everything up to the data channel: key push and StartSession (run concurrently), the one
failure line and exit code per kind of failure, TerminateSession after a late failure or a signal,
and that debug output never shows a token or a secret. The data channel itself is exercised end to
end against the sandbox (tests/e2e/test_ssm_proxy*.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils import ssm_proxy
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils._ssm_proxy_runtime import SignalGuard
from ansible_collections.trek10.ec2ssm.tests.unit.plugins.plugin_utils.aws.fake_aws import (
    SECRET_KEY,
    START_SESSION_REPLY,
    FakeAws,
    serve,
)

IID = "i-0123456789abcdef0"
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
MODULE = "ansible_collections.trek10.ec2ssm.plugins.plugin_utils.ssm_proxy"
DENIED = (
    "User: arn:aws:iam::123456789012:user/dev is not authorized to perform: ssm:StartSession on resource: "
    "arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0 because no identity-based policy allows "
    "the ssm:StartSession action"
)


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeAws]:
    yield from serve(monkeypatch, tmp_path)


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    path = tmp_path / "id_ed25519.pub"
    path.write_text(ED25519 + "\n")
    return str(path)


#: The collections root this checkout is imported from (ansible-test runs without PYTHONPATH).
COLLECTIONS_ROOT = str(Path(ssm_proxy.__file__).parents[5])


def helper(*args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (COLLECTIONS_ROOT, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", MODULE, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def run(*args: str) -> tuple[int, bytes, str]:
    proc = helper(*args)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err.decode()


def test_access_denied(fake_aws: FakeAws) -> None:
    fake_aws.error("StartSession", "AccessDeniedException", DENIED)
    code, out, err = run("--target", IID, "--port", "22")
    assert (code, out) == (5, b"")
    assert err == (
        "trek10.ec2ssm: i-0123456789abcdef0 (eu-west-1): ssm:StartSession was denied for "
        "arn:aws:iam::123456789012:user/dev on "
        "arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0 (AccessDeniedException) "
        "because no identity-based policy allows the ssm:StartSession action; allow ssm:StartSession "
        "on that resource in the caller's IAM policy (StartSession needs it on both the instance and "
        "the session document)\n"
    )
    assert not fake_aws.calls("TerminateSession")


def test_target_not_connected_with_host_label(fake_aws: FakeAws) -> None:
    fake_aws.error("StartSession", "TargetNotConnected", f"{IID} is not connected.")
    code, out, err = run("--target", IID, "--port", "22", "--host-label", "web1", "--region", "eu-west-1")
    assert (code, out) == (7, b"")
    assert err == (
        "trek10.ec2ssm: web1 (i-0123456789abcdef0, eu-west-1): ssm:StartSession failed (TargetNotConnected): "
        "i-0123456789abcdef0 is not connected; the instance is not connected to Systems Manager right now "
        "(stopped, agent offline, or no network path to the SSM endpoints); check 'aws ssm "
        "describe-instance-information'\n"
    )


def test_key_push_failure_terminates_the_session_started_meanwhile(fake_aws: FakeAws, key_file: str) -> None:
    fake_aws.error("SendSSHPublicKey", "EC2InstanceNotFoundException", "Instance not found")
    fake_aws.reply("StartSession", START_SESSION_REPLY)
    fake_aws.reply("TerminateSession", {"SessionId": START_SESSION_REPLY["SessionId"]})
    code, out, err = run(
        "--target", IID, "--port", "22", "--os-user", "ec2-user", "--public-key-file", key_file
    )
    assert (code, out) == (8, b"")
    assert err == (
        "trek10.ec2ssm: i-0123456789abcdef0 (eu-west-1): ec2-instance-connect:SendSSHPublicKey failed "
        "(EC2InstanceNotFoundException): Instance not found; check the instance id and the region\n"
    )
    (push,) = fake_aws.calls("SendSSHPublicKey")
    assert push.body == {"InstanceId": IID, "InstanceOSUser": "ec2-user", "SSHPublicKey": ED25519}
    (terminate,) = fake_aws.calls("TerminateSession")
    assert terminate.body == {"SessionId": START_SESSION_REPLY["SessionId"]}


def test_managed_node_with_a_key_push_fails_before_any_call(fake_aws: FakeAws, key_file: str) -> None:
    code, out, err = run(
        "--target",
        "mi-0123456789abcdef0",
        "--port",
        "22",
        "--os-user",
        "ec2-user",
        "--public-key-file",
        key_file,
    )
    assert (code, out) == (3, b"")
    assert err == (
        "trek10.ec2ssm: mi-0123456789abcdef0: EC2 Instance Connect (ec2-instance-connect:SendSSHPublicKey) "
        "cannot push keys to managed (hybrid) nodes (mi-*), only to EC2 instances (i-*); drop "
        "--public-key-file and use a key that is already authorized on the node\n"
    )
    assert not fake_aws.requests


def test_persistent_throttling(fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    fake_aws.error("StartSession", "ThrottlingException", "Rate exceeded")
    code, out, err = run("--target", IID, "--port", "22")
    assert (code, out) == (6, b"")
    assert err == (
        "trek10.ec2ssm: i-0123456789abcdef0 (eu-west-1): ssm:StartSession was still throttled by AWS after 2 "
        "attempts (ThrottlingException: Rate exceeded); lower the number of parallel connections (forks) or "
        "raise the retry budget (AWS_MAX_ATTEMPTS, AWS_RETRY_MODE=adaptive)\n"
    )
    assert len(fake_aws.calls("StartSession")) == 2


def test_no_credentials(fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, out, err = run("--target", IID, "--port", "22")
    assert (code, out) == (4, b"")
    assert err.startswith(
        "trek10.ec2ssm: i-0123456789abcdef0 (eu-west-1): ssm:StartSession failed: NoCredentialsError"
    )
    assert err.count("\n") == 1


def test_security_token_alone_reaches_aws(fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch) -> None:
    """AWX (older) sets AWS_SECURITY_TOKEN only; the helper's calls must carry it."""
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "FQoGZXIvYXdzEAwaDAWXONLYTOKEN")
    fake_aws.error("StartSession", "TargetNotConnected", f"{IID} is not connected.")
    code, out, _err = run("--target", IID, "--port", "22")
    assert (code, out) == (7, b"")
    assert fake_aws.calls("StartSession")[0].security_token == "FQoGZXIvYXdzEAwaDAWXONLYTOKEN"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_data_channel_failure_terminates_and_debug_output_is_redacted(
    fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch, key_file: str
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "FQoGZXIvYXdzEAwaDSESSIONTOKEN")
    port = closed_port()
    reply = {
        **START_SESSION_REPLY,
        "StreamUrl": f"ws://127.0.0.1:{port}/v1/data-channel/tester-0123456789abcdef0",
    }
    fake_aws.reply("SendSSHPublicKey", {"RequestId": "r-1", "Success": True})
    fake_aws.reply("StartSession", reply)
    fake_aws.reply("TerminateSession", {"SessionId": reply["SessionId"]})
    code, out, err = run(
        "--target", IID, "--port", "22", "--os-user", "ec2-user", "--public-key-file", key_file, "--debug"
    )
    assert (code, out) == (11, b"")
    failures = [line for line in err.splitlines() if line.startswith("trek10.ec2ssm: ")]
    assert failures == [
        "trek10.ec2ssm: i-0123456789abcdef0 (eu-west-1): cannot open the data channel websocket for session "
        f"tester-0123456789abcdef0 at ws://127.0.0.1:{port}/v1/data-channel/tester-0123456789abcdef0: "
        f"[Errno 111] Connect call failed ('127.0.0.1', {port})"
    ]
    debug = [line for line in err.splitlines() if line.startswith("trek10.ec2ssm debug: ")]
    assert len(debug) + 1 == len(err.splitlines())
    assert any("ssm:StartSession" in line for line in debug)
    for secret in (START_SESSION_REPLY["TokenValue"], SECRET_KEY, "FQoGZXIvYXdzEAwaDSESSIONTOKEN"):
        assert secret not in err
    assert len(fake_aws.calls("TerminateSession")) == 1


def test_without_debug_a_failure_is_the_only_output(fake_aws: FakeAws) -> None:
    port = closed_port()
    fake_aws.reply("StartSession", {**START_SESSION_REPLY, "StreamUrl": f"ws://127.0.0.1:{port}/x"})
    fake_aws.reply("TerminateSession", {"SessionId": START_SESSION_REPLY["SessionId"]})
    code, out, err = run("--target", IID, "--port", "22")
    assert (code, out) == (11, b"")
    assert err.count("\n") == 1
    assert err.startswith("trek10.ec2ssm: i-0123456789abcdef0 (eu-west-1): cannot open the data channel")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_during_start_session_still_terminates_it(fake_aws: FakeAws, signum: int) -> None:
    hold = threading.Event()
    fake_aws.reply("StartSession", START_SESSION_REPLY, hold=hold)
    fake_aws.reply("TerminateSession", {"SessionId": START_SESSION_REPLY["SessionId"]})
    proc = helper("--target", IID, "--port", "22", "--debug")
    lines: list[str] = []
    stopping = threading.Event()

    def read_stderr() -> None:
        if proc.stderr is None:
            return
        for raw in proc.stderr:
            lines.append(raw.decode())
            if "stopping on signal" in lines[-1]:
                stopping.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while not fake_aws.calls("StartSession"):  # wait until the call is in flight
            assert proc.poll() is None, "the helper exited before calling StartSession"
            assert time.monotonic() < deadline, "the helper never called StartSession"
            time.sleep(0.02)
        proc.send_signal(signum)
        assert stopping.wait(30), "the helper did not react to the signal"
        hold.set()  # only now does AWS answer StartSession
        out, _stderr = proc.communicate(timeout=30)
        reader.join(10)
    finally:
        hold.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out) == (128 + signum, b"")
    assert not [line for line in lines if line.startswith("trek10.ec2ssm: ")]  # a signal is not a failure
    (terminate,) = fake_aws.calls("TerminateSession")
    assert terminate.body == {"SessionId": START_SESSION_REPLY["SessionId"]}


def test_signal_guard_stops_through_the_loop_when_it_responds() -> None:
    seen: list[int] = []
    exits: list[int] = []

    async def responsive() -> None:
        guard = SignalGuard(
            asyncio.get_running_loop(),
            seen.append,
            lambda: exits.append(-1),
            log=lambda _line: None,
            response_timeout=30,
            exit_process=exits.append,
        ).install()
        try:
            signal.raise_signal(signal.SIGTERM)
            while not seen:
                await asyncio.sleep(0.01)
        finally:
            guard.finished()

    asyncio.run(responsive())
    assert seen == [signal.SIGTERM]
    assert exits == []


def test_a_stuck_event_loop_cannot_keep_the_helper_alive() -> None:
    """If the loop never runs again (a driver bug), the watchdog terminates and exits anyway."""
    seen: list[int] = []
    emergencies: list[str] = []
    exits: list[int] = []

    async def stuck() -> None:
        guard = SignalGuard(
            asyncio.get_running_loop(),
            seen.append,
            lambda: emergencies.append("terminate"),
            log=lambda _line: None,
            response_timeout=0.1,
            exit_process=exits.append,
        ).install()
        try:
            signal.raise_signal(signal.SIGHUP)
            deadline = time.monotonic() + 30
            while not exits and time.monotonic() < deadline:
                time.sleep(0.01)  # blocks the loop: the scheduled stop cannot run
        finally:
            guard.finished()

    asyncio.run(stuck())
    assert emergencies == ["terminate"]
    assert exits == [128 + signal.SIGHUP]
    assert seen == [signal.SIGHUP]  # the loop ran the stop once it was free again
