# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""docs/iam/controller-policy.json is enough, and every statement in it is needed.

One sandbox (3 sshd instances: Amazon Linux and Ubuntu), one IAM user per scenario with exactly
the documented policy, or the documented policy minus one statement, as its only identity
policy (the sandbox evaluates identity policies as AWS does: implicit deny, wildcards,
``${aws:username}``, the ``ec2:osuser`` condition key).

- **The whole policy:** the demo (``examples/demo``: the inventory plugin, then the playbook over
  ssm_ssh) passes; AWS saw no denied call; every session ends with ``ssm:TerminateSession``.
- **Without a statement that the demo needs** (the two StartSession resources, the key push, the
  two listings) the demo fails with our one-line error naming the denied action and resource.
- **ssm:TerminateSession** is called when a tunnel ends, after ssh is done with it, so no playbook
  ever shows its failure (and OpenSSH discards a ProxyCommand's stderr under ControlPersist).
  Observed on the tunnel helper itself, stdin from a pipe: the tunnel carries sshd's banner, stdin
  ends, the helper calls TerminateSession. With the statement: exit 0 and the session is in the
  history. Without it: exit 5 (access denied), the one line naming ssm:TerminateSession and the
  session ARN, and the session is still open: it would stay open until Session Manager's idle
  timeout.
- **ssm:ResumeSession** is called when the websocket drops (network change, proxy timeout, AWS
  maintenance). Observed with plain ssh through the helper while the sandbox drops every
  websocket 2 s after it opens: with the statement the command outlives the drops; without it ssh
  fails and the helper's line on ssh's stderr names ssm:ResumeSession.
- **The ec2:osuser condition** limits the key push to the listed users: ``root`` is refused.
- **docs/iam/controller-policy-narrowed.json** (one region, tagged instances) lists the instances
  and opens a tunnel with a key push to each, and refuses an instance outside its tag condition.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.trek10.ec2ssm.tests.sandbox.config import SandboxConfig
from ansible_collections.trek10.ec2ssm.tests.sandbox.fixtures import SandboxHandle, start_sandbox

pytestmark = pytest.mark.sandbox

ROOT = Path(__file__).resolve().parents[2]
POLICY_FILE = ROOT / "docs" / "iam" / "controller-policy.json"
NARROWED_FILE = ROOT / "docs" / "iam" / "controller-policy-narrowed.json"
DEMO = ROOT / "examples" / "demo"
BIN = Path(sys.executable).parent
HELPER = "ansible_collections.trek10.ec2ssm.plugins.plugin_utils.ssm_proxy"
ACCOUNT = "123456789012"
REGION = "us-east-1"
TIMEOUT = 300
RECAP = re.compile(
    r"^(?P<host>\S+)\s*: ok=(?P<ok>\d+)\s+changed=\d+\s+unreachable=(?P<unreachable>\d+)\s+"
    r"failed=(?P<failed>\d+)",
    re.M,
)

# What removing each statement breaks, in the demo: (step, IAM action, resource of the denial).
# ``{iid}`` is the instance, ``{user}`` the IAM user.
DEMO_NEEDS = {
    "StartSessionsOnInstances": (
        "playbook",
        "ssm:StartSession",
        "arn:aws:ec2:{region}:{account}:instance/{iid}",
    ),
    "StartSessionsWithTheSshDocument": (
        "playbook",
        "ssm:StartSession",
        "arn:aws:ssm:{region}::document/AWS-StartSSHSession",
    ),
    "PushOneTimeKeysForLoginUsers": (
        "playbook",
        "ec2-instance-connect:SendSSHPublicKey",
        "arn:aws:ec2:{region}:{account}:instance/{iid}",
    ),
    "ListManagedNodes": ("inventory", "ssm:DescribeInstanceInformation", "*"),
    "ReadInstanceDetails": ("inventory", "ec2:DescribeInstances", "*"),
}
# Statements a demo run does not show failing; each has its own scenario below.
TUNNEL_END = "EndOwnSessions"
WEBSOCKET_DROP = "ResumeOwnSessions"


def documented_policy() -> dict[str, Any]:
    policy: dict[str, Any] = json.loads(POLICY_FILE.read_text())
    return policy


def without(sid: str) -> dict[str, Any]:
    policy = copy.deepcopy(documented_policy())
    policy["Statement"] = [s for s in policy["Statement"] if s["Sid"] != sid]
    assert len(policy["Statement"]) == len(documented_policy()["Statement"]) - 1, sid
    return policy


@dataclass
class Caller:
    """An IAM user of the sandbox with one identity policy, and a private HOME for its runs."""

    name: str
    arn: str
    env: dict[str, str]
    home: Path

    def run(self, argv: list[str], cwd: Path = DEMO, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
            **kwargs,
        )

    def inventory(self) -> subprocess.CompletedProcess[str]:
        return self.run([str(BIN / "ansible-inventory"), "-i", "demo.ssm_instances.yml", "--list"])

    def playbook(self) -> subprocess.CompletedProcess[str]:
        return self.run([str(BIN / "ansible-playbook"), "-i", "demo.ssm_instances.yml", "playbook.yml"])

    def stop_masters(self) -> None:
        control_dir = self.home / ".ansible" / "cp"
        for socket_path in control_dir.iterdir() if control_dir.is_dir() else []:
            subprocess.run(
                ["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "iam-e2e"],
                capture_output=True,
                check=False,
                timeout=30,
            )


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    handle = start_sandbox(tmp_path_factory.mktemp("iam-sandbox"), SandboxConfig(instances=3))
    try:
        yield handle
    finally:
        handle.down()


@pytest.fixture(scope="module")
def hosts(sandbox: SandboxHandle) -> dict[str, str]:
    """instance id -> OS user of the demo's hosts."""
    return {r["instance_id"]: r["os_user"] for r in sandbox.instances() if r["tags"].get("Fleet") == "hosts"}


@pytest.fixture
def make_caller(sandbox: SandboxHandle) -> Iterator[Any]:
    made: list[Caller] = []

    def make(name: str, policy: dict[str, Any]) -> Caller:
        keys = sandbox.ctl.add_principal(name)
        sandbox.ctl.set_policy(name, policy)
        # Short: ControlPersist sockets live under it (a Unix socket path has ~100 bytes).
        home = Path(tempfile.mkdtemp(prefix="ec2ssm-iam-"))
        env = sandbox.env(
            AWS_ACCESS_KEY_ID=keys["access_key_id"],
            AWS_SECRET_ACCESS_KEY=keys["secret_access_key"],
            HOME=str(home),  # ControlPersist sockets, known_hosts: nothing shared between callers
            ANSIBLE_HOME=str(home / ".ansible"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_INVENTORY_UNPARSED_FAILED="true",
        )
        for name_ in ("ANSIBLE_CONFIG", "ANSIBLE_SSH_CONTROL_PATH_DIR", "AWS_SESSION_TOKEN"):
            env.pop(name_, None)
        caller = Caller(name=name, arn=keys["arn"], env=env, home=home)
        made.append(caller)
        return caller

    yield make
    for caller in made:
        caller.stop_masters()
        sandbox.ctl.clear_policy(caller.name)
        shutil.rmtree(caller.home, ignore_errors=True)


def _one_line_error(text: str, action: str, caller: Caller, resource: str, host: str = "") -> str:
    """The collection's sentence for this denial (of ``host``'s connection), found in ``text``."""
    pattern = re.compile(
        r"trek10\.ec2ssm[.\w]*: "
        + (re.escape(host) + " " if host else "")
        + r"[^\n\"]*?"
        + re.escape(f"{action} was denied for {caller.arn} on {resource}")
        + r" \((?:AccessDeniedException|UnauthorizedOperation)\)[^\n\"]*"
    )
    found = pattern.search(text)
    assert found, f"no one-line denial of {action} on {resource} in:\n{text[-5000:]}"
    return found.group(0)


def _sessions(sandbox: SandboxHandle, state: str, **filters: str) -> list[dict[str, Any]]:
    kwargs: dict[str, Any] = {"State": state, "MaxResults": 200}
    if filters:
        kwargs["Filters"] = [{"key": k, "value": v} for k, v in filters.items()]
    return list(sandbox.client("ssm").describe_sessions(**kwargs)["Sessions"])


def _wait_until_ended(sandbox: SandboxHandle, owner: str) -> None:
    deadline = time.monotonic() + 60
    while _sessions(sandbox, "Active", Owner=owner) and time.monotonic() < deadline:
        time.sleep(0.5)


# --- the whole policy --------------------------------------------------------------------------


def test_every_statement_is_covered_by_a_scenario() -> None:
    sids = [s["Sid"] for s in documented_policy()["Statement"]]
    assert len(sids) == len(set(sids))
    assert set(sids) == {*DEMO_NEEDS, TUNNEL_END, WEBSOCKET_DROP}


def test_the_documented_policy_runs_the_demo(
    sandbox: SandboxHandle, make_caller: Any, hosts: dict[str, str]
) -> None:
    caller = make_caller("iam-full", documented_policy())
    inventory = caller.inventory()
    assert inventory.returncode == 0, inventory.stderr
    assert sorted(json.loads(inventory.stdout)["_meta"]["hostvars"]) == sorted(hosts)
    run = caller.playbook()
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    recap = {m["host"]: m for m in RECAP.finditer(run.stdout)}
    assert sorted(recap) == sorted(hosts)
    for line in recap.values():
        assert (line["failed"], line["unreachable"]) == ("0", "0")
    caller.stop_masters()
    _wait_until_ended(sandbox, caller.arn)
    calls = sandbox.ctl.calls(caller=caller.name)
    assert calls["denied"] == 0, calls
    started = sandbox.ctl.calls(caller=caller.name, action="StartSession", outcome="ok")["total"]
    assert started >= len(hosts)
    assert sandbox.ctl.calls(caller=caller.name, action="TerminateSession", outcome="ok")["total"] == started
    for action in ("SendSSHPublicKey", "DescribeInstanceInformation", "DescribeInstances"):
        assert sandbox.ctl.calls(caller=caller.name, action=action, outcome="ok")["total"] >= 1, action
    assert not _sessions(sandbox, "Active", Owner=caller.arn)


# --- one statement less: the demo fails and says which action --------------------------------------


@pytest.mark.parametrize("sid", sorted(DEMO_NEEDS))
def test_without_a_statement_the_demo_fails_naming_the_action(
    sandbox: SandboxHandle, make_caller: Any, hosts: dict[str, str], sid: str
) -> None:
    step, action, resource = DEMO_NEEDS[sid]
    caller = make_caller(f"iam-no-{sid}", without(sid))
    if step == "inventory":
        run = caller.inventory()
        assert run.returncode != 0
        _one_line_error(run.stderr, action, caller, resource)
        return
    run = caller.playbook()
    assert run.returncode != 0
    recap = {m["host"]: m for m in RECAP.finditer(run.stdout)}
    assert sorted(recap) == sorted(hosts)
    for iid in hosts:
        assert recap[iid]["unreachable"] == "1", run.stdout[-4000:]
        line = _one_line_error(
            run.stdout, action, caller, resource.format(region=REGION, account=ACCOUNT, iid=iid), iid
        )
        assert f"allow {action} on that resource" in line


# --- statements a playbook does not show: tunnel end and websocket drop ------------------------------


def _helper(caller: Caller, iid: str, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", HELPER, "--target", iid, "--port", "22", "--region", REGION, *extra],
        env=caller.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _tunnel_then_eof(caller: Caller, iid: str, *extra: str) -> tuple[int, str]:
    """Open a tunnel, read sshd's banner through it, end stdin: the helper then ends the session."""
    helper = _helper(caller, iid, *extra)
    assert helper.stdin is not None
    assert helper.stdout is not None
    banner = helper.stdout.readline()
    helper.stdin.close()
    helper.stdout.read()  # until the helper exits (pytest's timeout bounds a hang)
    assert helper.stderr is not None
    err = helper.stderr.read().decode()
    helper.wait(timeout=TIMEOUT)
    assert banner.startswith(b"SSH-2.0-"), (banner, err)
    return helper.returncode, err


def test_terminate_session_ends_the_tunnel_and_without_it_sessions_stay_open(
    sandbox: SandboxHandle, make_caller: Any, hosts: dict[str, str]
) -> None:
    iid = next(iter(sorted(hosts)))
    full = make_caller("iam-tunnel-end", documented_policy())
    code, err = _tunnel_then_eof(full, iid)
    assert (code, err) == (0, "")
    assert not _sessions(sandbox, "Active", Owner=full.arn)
    (ended,) = _sessions(sandbox, "History", Owner=full.arn)
    assert ended["Status"] == "Terminated"

    caller = make_caller(f"iam-no-{TUNNEL_END}", without(TUNNEL_END))
    code, err = _tunnel_then_eof(caller, iid)
    (still_open,) = _sessions(sandbox, "Active", Owner=caller.arn)
    try:
        assert code == 5, err  # access denied
        session_arn = f"arn:aws:ssm:{REGION}:{ACCOUNT}:session/{still_open['SessionId']}"
        line = _one_line_error(err, "ssm:TerminateSession", caller, session_arn)
        assert err == line + "\n"
        assert line.startswith(f"trek10.ec2ssm: {iid} ({REGION}): ")
    finally:
        sandbox.client("ssm").terminate_session(SessionId=still_open["SessionId"])


@pytest.fixture
def websocket_drops(sandbox: SandboxHandle) -> Iterator[None]:
    before = sandbox.ctl.faults()["dataplane"].get("ws_drop_every")
    sandbox.ctl.set_faults(dataplane={"ws_drop_every": 2.0})
    try:
        yield
    finally:
        sandbox.ctl.set_faults(dataplane={"ws_drop_every": before})


def _ssh_through_helper(
    caller: Caller, iid: str, os_user: str, command: str
) -> subprocess.CompletedProcess[str]:
    key = caller.home / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    proxy = (
        f"{sys.executable} -m {HELPER} --target %h --port %p --region {REGION} "
        f"--os-user %r --public-key-file {key}.pub"
    )
    return caller.run(
        [
            "ssh", "-F", "/dev/null",
            "-o", f"ProxyCommand={proxy}",
            "-o", "StrictHostKeyChecking=no",
            "-o", f"UserKnownHostsFile={caller.home / 'known_hosts'}",
            "-o", "IdentitiesOnly=yes",
            "-i", str(key),
            f"{os_user}@{iid}",
            command,
        ],
        cwd=caller.home,
    )  # fmt: skip


def test_resume_session_survives_websocket_drops_and_without_it_ssh_fails(
    sandbox: SandboxHandle, make_caller: Any, hosts: dict[str, str], websocket_drops: None
) -> None:
    iid, os_user = next(iter(sorted(hosts.items())))
    full = make_caller("iam-drops", documented_policy())
    run = _ssh_through_helper(full, iid, os_user, "sleep 7; echo still-here")
    assert (run.returncode, run.stdout) == (0, "still-here\n"), run.stderr
    assert sandbox.ctl.calls(caller=full.name, action="ResumeSession", outcome="ok")["total"] >= 2

    caller = make_caller(f"iam-no-{WEBSOCKET_DROP}", without(WEBSOCKET_DROP))
    run = _ssh_through_helper(caller, iid, os_user, "sleep 7; echo still-here")
    assert run.returncode == 255
    assert "still-here" not in run.stdout
    (session,) = _sessions(sandbox, "History", Owner=caller.arn)
    session_arn = f"arn:aws:ssm:{REGION}:{ACCOUNT}:session/{session['SessionId']}"
    line = _one_line_error(run.stderr, "ssm:ResumeSession", caller, session_arn)
    assert line.startswith(f"trek10.ec2ssm: {iid} ({REGION}): ")


def test_the_osuser_condition_refuses_other_users(
    sandbox: SandboxHandle, make_caller: Any, hosts: dict[str, str]
) -> None:
    iid = next(iter(sorted(hosts)))
    caller = make_caller("iam-osuser", documented_policy())
    key = caller.home / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    helper = _helper(caller, iid, "--os-user", "root", "--public-key-file", f"{key}.pub")
    _out, err = helper.communicate(timeout=TIMEOUT)
    assert helper.returncode == 5, err
    _one_line_error(
        err.decode(),
        "ec2-instance-connect:SendSSHPublicKey",
        caller,
        f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{iid}",
    )


# --- the narrowed example: one region, tagged instances (last: it launches an instance) ------------


def test_the_narrowed_example_allows_the_tagged_instances_and_refuses_others(
    sandbox: SandboxHandle, make_caller: Any, hosts: dict[str, str]
) -> None:
    narrowed = json.loads(NARROWED_FILE.read_text())
    tags = {iid: sandbox.instance(instance_id=iid)["tags"]["Environment"] for iid in hosts}
    assert set(tags.values()) <= {"dev", "prod"}, tags  # what the example's tag condition allows
    caller = make_caller("iam-narrowed", narrowed)
    inventory = caller.inventory()
    assert inventory.returncode == 0, inventory.stderr
    key = caller.home / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    for iid, os_user in hosts.items():  # key push, session, tunnel, TerminateSession
        push = ("--os-user", os_user, "--public-key-file", f"{key}.pub")
        assert _tunnel_then_eof(caller, iid, *push) == (0, ""), iid
    assert sandbox.ctl.calls(caller=caller.name)["denied"] == 0
    assert not _sessions(sandbox, "Active", Owner=caller.arn)

    (other,) = sandbox.ctl.launch(region=REGION, tags={"Environment": "restricted"})
    iid = other["instance_id"]
    try:
        instance_arn = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{iid}"
        helper = _helper(caller, iid)
        _out, err = helper.communicate(timeout=TIMEOUT)
        assert helper.returncode == 5, err
        _one_line_error(err.decode(), "ssm:StartSession", caller, instance_arn, iid)
        helper = _helper(caller, iid, "--os-user", "ec2-user", "--public-key-file", f"{key}.pub")
        _out, err = helper.communicate(timeout=TIMEOUT)
        assert helper.returncode == 5, err
        _one_line_error(err.decode(), "ec2-instance-connect:SendSSHPublicKey", caller, instance_arn, iid)
    finally:
        sandbox.ctl.terminate(iid)
