# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tunnel helper end to end: real OpenSSH through the helper to a real sshd in the sandbox.

Every instance of the sandbox is an sshd in its own network namespace, reachable only through the
sandbox's SSM data plane, accepting only keys pushed through its EC2 Instance Connect API. The
sandbox counts every API call, so "TerminateSession was called" is a counter, not a guess; host
keys are pinned from the sandbox's records, so the bytes really come from that instance's sshd.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from ansible_collections.trek10.ec2ssm.tests.sandbox.config import SandboxConfig
from ansible_collections.trek10.ec2ssm.tests.sandbox.fixtures import SandboxHandle, start_sandbox

pytestmark = pytest.mark.sandbox

MODULE = "ansible_collections.trek10.ec2ssm.plugins.plugin_utils.ssm_proxy"
PREFIX = "trek10.ec2ssm: "
MIB = 1024 * 1024
#: Throttling defaults of the sandbox (restored after the throttling test).
START_SESSION_RULE = {"rate": 5.0, "burst": 20.0}
#: The data plane without faults (restored after each fault test).
NO_FAULTS = {"ws_drop_every": None, "reorder": 0.0, "ack_delay": 0.0, "duplicate": 0.0, "ack_loss": 0.0}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    handle = start_sandbox(tmp_path_factory.mktemp("ssm-proxy-sandbox"), SandboxConfig(instances=2))
    try:
        yield handle
    finally:
        handle.down()


@pytest.fixture(scope="module")
def instance(sandbox: SandboxHandle) -> dict[str, Any]:
    return sandbox.instance(sshd=True, state="running", os_user="ec2-user")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, sandbox: SandboxHandle) -> Path:
    """A key pair and a known_hosts file pinning every sandbox instance's host key."""
    work = tmp_path_factory.mktemp("ssm-proxy-work")
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "id_ed25519")], check=True
    )
    lines = [
        f"{record['instance_id']} {key}"
        for record in sandbox.ctl.instances()
        for key in (record.get("host_keys") or {}).values()
    ]
    (work / "known_hosts").write_text("\n".join(lines) + "\n")
    return work


def proxy_command(work: Path, *extra: str) -> str:
    return shlex.join(
        [
            sys.executable, "-m", MODULE, "--target", "%h", "--port", "%p", "--os-user", "%r",
            "--public-key-file", str(work / "id_ed25519.pub"), *extra,
        ]
    )  # fmt: skip


def ssh_argv(work: Path, target: str, user: str, *command: str, proxy: str | None = None) -> list[str]:
    return [
        "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={work / 'known_hosts'}", "-o", "IdentitiesOnly=yes",
        "-i", str(work / "id_ed25519"), "-o", "ConnectTimeout=60", "-o", "Compression=no",
        "-o", f"ProxyCommand={proxy or proxy_command(work)}", f"{user}@{target}", *command,
    ]  # fmt: skip


def helper_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with_marker = marker in " ".join(proc.info["cmdline"] or [])
        if with_marker and proc.pid != os.getpid():
            found.append(proc)
    return found


def wait_until_gone(marker: str, timeout: float = 30.0) -> list[psutil.Process]:
    """Processes with ``marker`` still alive after ``timeout`` (polling; not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while (left := helper_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def sessions_of(sandbox: SandboxHandle, target: str) -> dict[str, dict[str, Any]]:
    return {s["SessionId"]: s for s in sandbox.ctl.sessions()["sessions"] if s["Target"] == target}


def failure_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(PREFIX)]


@pytest.mark.e2e_smoke
def test_ssh_runs_a_command_and_the_helper_cleans_up(
    sandbox: SandboxHandle, instance: dict[str, Any], work: Path
) -> None:
    iid = instance["instance_id"]
    marker = f"proxy-{uuid.uuid4().hex}"
    before = sessions_of(sandbox, iid)
    pushes = sandbox.ctl.count("SendSSHPublicKey", target=iid)
    result = subprocess.run(
        ssh_argv(
            work,
            iid,
            "ec2-user",
            "echo hello; id -un; hostname",
            proxy=proxy_command(work, "--host-label", marker),
        ),
        env=sandbox.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, f"hello\nec2-user\n{instance['hostname']}\n"), (
        result.stderr
    )
    assert not failure_lines(result.stderr)
    # Process hygiene: once ssh has exited, the helper is gone too, and so is anything it started.
    assert wait_until_gone(marker) == []
    (session_id,) = set(sessions_of(sandbox, iid)) - set(before)
    assert sandbox.ctl.count("SendSSHPublicKey", target=iid) == pushes + 1
    assert sandbox.ctl.count("TerminateSession", target=session_id, outcome="ok") == 1
    assert sessions_of(sandbox, iid)[session_id]["Status"] == "Terminated"


def test_stdin_eof_alone_ends_the_helper(
    sandbox: SandboxHandle, instance: dict[str, Any], work: Path
) -> None:
    """Without ssh (so without its SIGHUP): stdin EOF ends the stream; TerminateSession, exit 0."""
    iid = instance["instance_id"]
    before = sessions_of(sandbox, iid)
    proc = subprocess.Popen(
        [sys.executable, "-m", MODULE, "--target", iid, "--port", "22"],
        env=sandbox.env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # Speak just enough SSH to get sshd's banner, then hang up on it.
        if proc.stdout is None or proc.stdin is None:
            raise AssertionError("pipes expected")
        banner = proc.stdout.readline()
        proc.stdin.close()
        proc.stdin = None  # communicate() must not flush it
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert banner.startswith(b"SSH-2.0-OpenSSH")
    assert (proc.returncode, out, err) == (0, b"", b"")
    (session_id,) = set(sessions_of(sandbox, iid)) - set(before)
    assert sandbox.ctl.count("TerminateSession", target=session_id, outcome="ok") == 1


@pytest.mark.slow
def test_64_mib_round_trip_survives_drops_reordering_and_delayed_acks(
    sandbox: SandboxHandle, instance: dict[str, Any], work: Path, tmp_path: Path
) -> None:
    iid = instance["instance_id"]
    payload = tmp_path / "payload.bin"
    digest = hashlib.sha256()
    with payload.open("wb") as handle:
        for _block in range(64):
            block = os.urandom(MIB)
            digest.update(block)
            handle.write(block)
    before = sessions_of(sandbox, iid)
    sandbox.ctl.set_faults(
        dataplane={"seed": 7, "ws_drop_every": 4.0, "reorder": 0.05, "ack_delay": 0.005, "duplicate": 0.01}
    )
    try:
        with payload.open("rb") as stdin:
            proc = subprocess.Popen(
                ssh_argv(work, iid, "ec2-user", "cat"),
                env=sandbox.env(),
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            received = hashlib.sha256()
            size = 0
            errors: list[bytes] = []
            drain = threading.Thread(target=lambda: errors.append(proc.stderr.read() if proc.stderr else b""))
            drain.start()
            if proc.stdout is None:
                raise AssertionError("stdout pipe expected")
            while chunk := proc.stdout.read(MIB):
                received.update(chunk)
                size += len(chunk)
            proc.wait(timeout=120)
            drain.join(30)
    finally:
        sandbox.ctl.set_faults(dataplane=NO_FAULTS)
    assert proc.returncode == 0, errors
    assert size == 64 * MIB
    assert received.hexdigest() == digest.hexdigest()
    (session_id,) = set(sessions_of(sandbox, iid)) - set(before)
    # The websocket really was dropped mid-transfer, and resumed each time.
    assert sandbox.ctl.count("ResumeSession", target=session_id, outcome="ok") >= 1
    assert sandbox.ctl.count("TerminateSession", target=session_id, outcome="ok") == 1


@pytest.mark.e2e_smoke
def test_access_denied_through_ssh(sandbox: SandboxHandle, instance: dict[str, Any], work: Path) -> None:
    """What the connection plugin sees: ssh's stderr carries the helper's one line."""
    iid = instance["instance_id"]
    user = f"no-ssm-{uuid.uuid4().hex[:8]}"
    principal = sandbox.ctl.add_principal(user)
    sandbox.ctl.set_policy(
        user,
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "ec2-instance-connect:SendSSHPublicKey", "Resource": "*"}
            ],
        },
    )
    env = sandbox.env(
        AWS_ACCESS_KEY_ID=principal["access_key_id"], AWS_SECRET_ACCESS_KEY=principal["secret_access_key"]
    )
    result = subprocess.run(
        ssh_argv(work, iid, "ec2-user", "true"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 255
    assert failure_lines(result.stderr) == [
        f"trek10.ec2ssm: {iid} (us-east-1): ssm:StartSession was denied for {principal['arn']} on "
        f"arn:aws:ec2:us-east-1:123456789012:instance/{iid} (AccessDeniedException) because no "
        "identity-based policy allows the ssm:StartSession action; allow ssm:StartSession on that resource "
        "in the caller's IAM policy (StartSession needs it on both the instance and the session document)"
    ]


def run_helper(sandbox: SandboxHandle, *args: str, **env: str) -> tuple[int, bytes, str]:
    result = subprocess.run(
        [sys.executable, "-m", MODULE, *args],
        env=sandbox.env(**env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        check=False,
    )
    return result.returncode, result.stdout, result.stderr.decode()


def test_unknown_instance(sandbox: SandboxHandle, work: Path) -> None:
    iid = "i-0000000000000000f"
    assert run_helper(sandbox, "--target", iid, "--port", "22") == (
        7,
        b"",
        f"trek10.ec2ssm: {iid} (us-east-1): ssm:StartSession failed (TargetNotConnected): {iid} is not "
        "connected; the instance is not connected to Systems Manager right now (stopped, agent offline, or "
        "no network path to the SSM endpoints); check 'aws ssm describe-instance-information'\n",
    )
    key = str(work / "id_ed25519.pub")
    assert run_helper(
        sandbox, "--target", iid, "--port", "22", "--os-user", "ec2-user", "--public-key-file", key
    ) == (
        8,
        b"",
        f"trek10.ec2ssm: {iid} (us-east-1): ec2-instance-connect:SendSSHPublicKey failed "
        f"(EC2InstanceNotFoundException): Instance {iid} not found; check the instance id and the region\n",
    )


def test_target_not_connected(sandbox: SandboxHandle) -> None:
    record = sandbox.instance(sshd=True, state="running", os_user="ec2-user")
    iid = record["instance_id"]
    sandbox.ctl.set_ping_status(iid, "ConnectionLost")
    try:
        code, out, err = run_helper(sandbox, "--target", iid, "--port", "22", "--host-label", "web1")
    finally:
        sandbox.ctl.set_ping_status(iid, "Online")
    assert (code, out) == (7, b"")
    assert err == (
        f"trek10.ec2ssm: web1 ({iid}, us-east-1): ssm:StartSession failed (TargetNotConnected): {iid} is not "
        "connected; the instance is not connected to Systems Manager right now (stopped, agent offline, or "
        "no network path to the SSM endpoints); check 'aws ssm describe-instance-information'\n"
    )


def test_persistent_throttling(sandbox: SandboxHandle, instance: dict[str, Any]) -> None:
    iid = instance["instance_id"]
    sandbox.ctl.set_faults(
        throttling={"enabled": True, "rules": {"ssm:StartSession": {"rate": 0.001, "burst": 0}}}
    )
    try:
        code, out, err = run_helper(sandbox, "--target", iid, "--port", "22", AWS_MAX_ATTEMPTS="3")
    finally:
        sandbox.ctl.set_faults(throttling={"rules": {"ssm:StartSession": START_SESSION_RULE}})
    assert (code, out) == (6, b"")
    assert err == (
        f"trek10.ec2ssm: {iid} (us-east-1): ssm:StartSession was still throttled by AWS after 3 attempts "
        "(ThrottlingException: Rate exceeded); lower the number of parallel connections (forks) or raise the "
        "retry budget (AWS_MAX_ATTEMPTS, AWS_RETRY_MODE=adaptive)\n"
    )


def test_throttling_that_passes_is_not_reported(
    sandbox: SandboxHandle, instance: dict[str, Any], work: Path
) -> None:
    """A short burst of ThrottlingException is retried with backoff and never shown.

    The burst is made by events, not by timing: StartSession gets one token that never refills, so
    the second helper to ask is throttled however the four calls are spread in time; once the
    sandbox has answered ThrottlingException, the bucket opens and the retries pass. (A bucket that
    refills at a low rate instead lets a helper lose all its attempts now and then, with full
    jitter, or lets four slow-starting helpers all pass unthrottled.)
    """
    iid = instance["instance_id"]
    throttled_before = sandbox.ctl.count("StartSession", target=iid, outcome="ThrottlingException")
    sandbox.ctl.set_faults(
        throttling={"enabled": True, "rules": {"ssm:StartSession": {"rate": 0.0, "burst": 1}}}
    )
    try:
        runs = [
            subprocess.Popen(
                ssh_argv(work, iid, "ec2-user", "true"),
                # more attempts than the default 5: the bucket opens a control-API round trip after
                # the first ThrottlingException, and full jitter can make 4 retries that quick
                env=sandbox.env(AWS_MAX_ATTEMPTS="10"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _run in range(4)
        ]
        deadline = time.monotonic() + 120
        while (
            sandbox.ctl.count("StartSession", target=iid, outcome="ThrottlingException") == throttled_before
        ):
            assert time.monotonic() < deadline, "no StartSession was throttled"
            time.sleep(0.05)
        sandbox.ctl.set_faults(throttling={"rules": {"ssm:StartSession": START_SESSION_RULE}})
        results = [(proc.wait(timeout=120), proc.communicate()[1]) for proc in runs]
    finally:
        sandbox.ctl.set_faults(throttling={"rules": {"ssm:StartSession": START_SESSION_RULE}})
    assert [code for code, _err in results] == [0, 0, 0, 0], results
    assert not [line for _code, err in results for line in failure_lines(err)]
    assert sandbox.ctl.count("StartSession", target=iid, outcome="ThrottlingException") > throttled_before


def test_port_forward_mode(sandbox: SandboxHandle, instance: dict[str, Any], work: Path) -> None:
    """--local-port: listen locally (AWS-StartPortForwardingSession); ssh through the listener works."""
    iid = instance["instance_id"]
    before = sessions_of(sandbox, iid)
    proc = subprocess.Popen(
        [
            sys.executable, "-m", MODULE, "--target", iid, "--port", "22", "--local-port", "0",
            "--os-user", "ec2-user", "--public-key-file", str(work / "id_ed25519.pub"),
        ],
        env=sandbox.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        if proc.stderr is None:
            raise AssertionError("stderr pipe expected")
        line = proc.stderr.readline()
        assert line.startswith("trek10.ec2ssm port-forward: listening on 127.0.0.1:"), line
        port = int(line.split("127.0.0.1:", 1)[1].split()[0])
        assert f"-> {iid}:22 (session " in line
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            assert conn.recv(64).startswith(b"SSH-2.0-OpenSSH")
        result = subprocess.run(
            [
                "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "HostKeyAlias=" + iid,
                "-o", f"UserKnownHostsFile={work / 'known_hosts'}", "-o", "IdentitiesOnly=yes",
                "-i", str(work / "id_ed25519"), "-p", str(port), "ec2-user@127.0.0.1", "echo forwarded",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )  # fmt: skip
        assert (result.returncode, result.stdout) == (0, "forwarded\n"), result.stderr
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out) == (128 + signal.SIGINT, "")
    assert not failure_lines(err)
    (session_id,) = set(sessions_of(sandbox, iid)) - set(before)
    assert sessions_of(sandbox, iid)[session_id]["DocumentName"] == "AWS-StartPortForwardingSession"
    assert sandbox.ctl.count("TerminateSession", target=session_id, outcome="ok") == 1


def test_port_forward_to_a_remote_host(sandbox: SandboxHandle, instance: dict[str, Any]) -> None:
    """--remote-host: AWS-StartPortForwardingSessionToRemoteHost, to another instance's sshd via this
    one; a destination that refuses is reported on stderr (not as a failure: the session goes on)."""
    iid = instance["instance_id"]
    other = next(r for r in sandbox.ctl.instances() if r["instance_id"] != iid and r.get("sshd"))
    proc = subprocess.Popen(
        [
            sys.executable, "-m", MODULE, "--target", iid, "--port", "22", "--local-port", "0",
            "--remote-host", other["private_address"],
        ],
        env=sandbox.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        if proc.stderr is None:
            raise AssertionError("stderr pipe expected")
        line = proc.stderr.readline()
        assert f"-> {other['private_address']}:22 (session " in line, line
        port = int(line.split("127.0.0.1:", 1)[1].split()[0])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            assert conn.recv(64).startswith(b"SSH-2.0-OpenSSH")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out) == (128 + signal.SIGTERM, "")
    assert not failure_lines(err)
