# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""trek10.ec2ssm.ssm_ssh end to end: real ansible-playbook, OpenSSH, tunnel helper and sandbox.

Each instance of the sandbox is a real sshd reachable only through the sandbox's SSM data plane,
with keys accepted only when pushed through its EC2 Instance Connect API. The sandbox counts
every API call, so "warm tasks make no AWS call" is checked by counting, not by timing.

Layout (style.md principle 15): one generic playbook (``connection/connection.yml``) runs over an
inventory whose hosts are *variants* of the connection; failures run one task over an inventory
whose hosts each fail in their own way, and the test reads every host's message.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.trek10.ec2ssm.tests.e2e.connection.support import (
    CONNECTION,
    PLAYBOOKS,
    ConnectionSandbox,
    Controller,
    calls_by_target,
    connection_sandbox,
    host_results,
    start_controller,
)

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnectionSandbox]:
    with connection_sandbox(tmp_path_factory.mktemp("sandbox"), instances=6) as handle:
        yield handle


@pytest.fixture
def controller(tmp_path: Path, sandbox: ConnectionSandbox) -> Iterator[Controller]:
    with start_controller(tmp_path, sandbox) as ctl:
        yield ctl


UNKNOWN_INSTANCE = "i-0000000000000000f"
HYBRID_NODE = "mi-0123456789abcdef0"


@pytest.mark.e2e_smoke
def test_the_generic_connection_playbook_runs_on_every_variant(
    sandbox: ConnectionSandbox, controller: Controller
) -> None:
    """Six private instances, forks 6, one host per connection variant."""
    al = [i for i in sandbox.instances if i["os_user"] == "ec2-user"]
    ubuntu = [i for i in sandbox.instances if i["os_user"] == "ubuntu"]
    own_key = controller.work / "own_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(own_key)], check=True)
    variants: dict[str, dict[str, Any]] = {
        "pipelining-sftp": {
            "ansible_host": al[0]["instance_id"],
            "ansible_user": "ec2-user",
            "ansible_pipelining": True,
            "ansible_ssh_transfer_method": "sftp",
        },
        "own-key-scp": {
            "ansible_host": al[1]["instance_id"],
            "ansible_user": "ec2-user",
            "ansible_ssh_private_key_file": str(own_key),
            "ansible_ssh_transfer_method": "scp",
            # OpenSSH 9 scp speaks SFTP and takes core's shell-quoted remote path literally, so a
            # fetch of a unicode name fails with the builtin ssh plugin too; the legacy protocol
            # (-O) without its strict name check (-T) is the known workaround.
            "ansible_scp_extra_args": "-O -T",
        },
        "piped-no-pipelining": {
            "ansible_host": al[2]["instance_id"],
            "ansible_user": "ec2-user",
            "ansible_pipelining": False,
            "ansible_ssh_transfer_method": "piped",
        },
        "become-password": {
            "ansible_host": al[3]["instance_id"],
            "ansible_user": sandbox.sudo_password_user,
            "ansible_become_password": sandbox.sudo_password,
        },
        "ubuntu-pipelining": {
            "ansible_host": ubuntu[0]["instance_id"],
            "ansible_user": "ubuntu",
            "ansible_pipelining": True,
        },
        "named-host-no-key-checking": {
            "ansible_host": "ubuntu-2.internal.example",
            "ansible_aws_ssm_instance_id": ubuntu[1]["instance_id"],
            "ansible_user": "ubuntu",
            "ansible_host_key_checking": False,
        },
    }
    names = list(variants)
    for index, name in enumerate(names):
        variants[name]["e2e_delegate_to"] = names[(index + 1) % len(names)]
    targets = [sandbox.instance_id_of(v) for v in variants.values()]
    before = calls_by_target(sandbox, targets)

    (controller.work / "ünï-çødé.bin").write_bytes(os.urandom(300_000))
    result = controller.playbook(
        CONNECTION, variants, "-e", f"e2e_local_dir={controller.work}", forks=len(variants)
    )

    assert result.returncode == 0, result.output
    recap = result.recap()
    assert set(recap) == set(variants)
    assert all(stats["failed"] == 0 and stats["unreachable"] == 0 for stats in recap.values()), recap
    # One master per host, plus one after reset_connection: two key pushes and two sessions each,
    # however many tasks, transfers, become, async polls and delegations ran in between.
    after = calls_by_target(sandbox, targets)
    for target in targets:
        assert after[target]["SendSSHPublicKey"] - before[target]["SendSSHPublicKey"] == 2, target
        assert after[target]["StartSession"] - before[target]["StartSession"] == 2, target
    # the host key of every instance was pinned under its instance id, except with checking off
    for name, host in variants.items():
        iid = sandbox.instance_id_of(host)
        if name != "named-host-no-key-checking":
            assert controller.pinned_key(iid) == sandbox.host_key(iid), name
    assert controller.local_tmp_is_empty()


@pytest.mark.e2e_smoke
def test_warm_tasks_make_no_aws_calls(sandbox: ConnectionSandbox, controller: Controller) -> None:
    """20 tasks on 5 hosts: one SendSSHPublicKey and one StartSession per host, nothing else."""
    hosts = {
        f"warm-{n}": {"ansible_host": instance["instance_id"], "ansible_user": instance["os_user"]}
        for n, instance in enumerate(sandbox.instances[:5])
    }
    targets = [h["ansible_host"] for h in hosts.values()]
    before = calls_by_target(sandbox, targets)

    result = controller.playbook(PLAYBOOKS / "warm.yml", hosts, "-e", "awx_job_id=4242", forks=5)

    assert result.returncode == 0, result.output
    assert result.recap() == {
        name: {**result.recap()[name], "ok": 20, "failed": 0, "unreachable": 0} for name in hosts
    }
    after = calls_by_target(sandbox, targets)
    total = 0
    for target in targets:
        pushes = after[target]["SendSSHPublicKey"] - before[target]["SendSSHPublicKey"]
        starts = after[target]["StartSession"] - before[target]["StartSession"]
        assert (pushes, starts) == (1, 1), target
        total += pushes + starts
    assert total <= 10
    assert controller.local_tmp_is_empty()  # the run's key pair went with ansible's run directory
    # each session says what opened it (the default session_reason)
    reasons = {s.get("Reason") for s in sandbox.client.sessions()["sessions"] if s["Target"] in targets}
    assert "ansible-playbook warm.yml (AWX job 4242)" in reasons


@pytest.mark.e2e_smoke
def test_every_failure_names_its_cause(sandbox: ConnectionSandbox, controller: Controller) -> None:
    base = sandbox.instances
    offline = sandbox.launch(platform="amazon-linux")
    sandbox.client.set_ping_status(offline["instance_id"], "ConnectionLost")
    no_eic = sandbox.launch(platform="amazon-linux", has_eic=False)
    denied = sandbox.principal_denied("ssm:StartSession")
    changed_kh = controller.work / "changed_known_hosts"
    changed_kh.write_text(f"{base[3]['instance_id']} {controller.foreign_host_key()}\n", encoding="utf-8")
    hosts: dict[str, dict[str, Any]] = {
        "missing-user": {"ansible_host": base[0]["instance_id"]},
        "not-an-instance": {"ansible_host": "192.0.2.10", "ansible_user": "ec2-user"},
        "hybrid-node": {"ansible_host": HYBRID_NODE, "ansible_user": "ec2-user"},
        "unknown-instance": {"ansible_host": UNKNOWN_INSTANCE, "ansible_user": "ec2-user"},
        "not-connected": {"ansible_host": offline["instance_id"], "ansible_user": "ec2-user"},
        "access-denied": {
            "ansible_host": base[1]["instance_id"],
            "ansible_user": base[1]["os_user"],
            "ansible_ec2ssm_access_key": denied["access_key_id"],
            "ansible_ec2ssm_secret_key": denied["secret_access_key"],
        },
        "no-eic": {"ansible_host": no_eic["instance_id"], "ansible_user": "ec2-user"},
        "wrong-os-user": {"ansible_host": base[2]["instance_id"], "ansible_user": "nobody-here"},
        "host-key-changed": {
            "ansible_host": base[3]["instance_id"],
            "ansible_user": base[3]["os_user"],
            "ansible_ec2ssm_known_hosts_file": str(changed_kh),
        },
        "host-key-not-pinned": {
            "ansible_host": base[4]["instance_id"],
            "ansible_user": base[4]["os_user"],
            "ansible_ec2ssm_host_key_policy": "yes",
            "ansible_ec2ssm_known_hosts_file": str(controller.work / "empty_known_hosts"),
        },
    }
    before = calls_by_target(sandbox, [base[0]["instance_id"]])

    result = controller.playbook(PLAYBOOKS / "failures.yml", hosts, forks=len(hosts), tree=True)

    assert result.returncode != 0
    messages = {name: res.get("msg", "") for name, res in host_results(controller.tree).items()}
    assert set(messages) == set(hosts), result.output
    print(json.dumps(messages, indent=1, ensure_ascii=False))  # shown when the test fails
    for name, message in messages.items():
        assert "trek10.ec2ssm: " in message, (name, message)  # core 2.19+ leads with "Task failed: "
        assert "Failed to connect to the host via ssh" not in message, (name, message)
    expect = {
        "missing-user": ["remote_user is not set", "ansible_user"],
        "not-an-instance": ["cannot tell which instance to connect to", "192.0.2.10"],
        "hybrid-node": [HYBRID_NODE, "not supported yet", "eic_push: false"],
        "unknown-instance": [UNKNOWN_INSTANCE, "check the instance id"],
        "not-connected": [offline["instance_id"], "TargetNotConnected"],
        "access-denied": ["ssm:StartSession was denied", denied["arn"]],
        "no-eic": [no_eic["instance_id"], "EC2 Instance Connect is not installed", "'ec2-user'"],
        "wrong-os-user": ["refused it for OS user 'nobody-here'", "set ansible_user"],
        "host-key-changed": [
            "differs from the one pinned",
            "intercepting",
            f"ssh-keygen -R {base[3]['instance_id']} -f {changed_kh}",
        ],
        "host-key-not-pinned": ["host_key_policy is 'yes'", base[4]["instance_id"]],
    }
    for name, fragments in expect.items():
        for fragment in fragments:
            assert fragment in messages[name], (name, fragment, messages[name])
    for secret in (denied["secret_access_key"],):
        assert secret not in result.output
    # caught before connecting: no AWS call was made for the host without an OS user
    after = calls_by_target(sandbox, [base[0]["instance_id"]])
    assert after == before

    # The advice for a changed host key works: clear the entry, connect, and the real key is pinned.
    subprocess.run(
        ["ssh-keygen", "-R", base[3]["instance_id"], "-f", str(changed_kh)], check=True, capture_output=True
    )
    retry = controller.playbook(PLAYBOOKS / "failures.yml", {"host-key-changed": hosts["host-key-changed"]})
    assert retry.returncode == 0, retry.output
    assert controller.pinned_key(base[3]["instance_id"], changed_kh) == sandbox.host_key(
        base[3]["instance_id"]
    )


def test_a_tunnel_lost_under_a_running_task_is_explained(
    sandbox: ConnectionSandbox, controller: Controller
) -> None:
    """The master's helper reports the loss after the run that started it has ended: its words
    still reach the task that was running (one stderr file per destination, read by offset)."""
    target = sandbox.launch(platform="amazon-linux")
    hosts = {
        "stops-mid-task": {
            "ansible_host": target["instance_id"],
            "ansible_user": "ec2-user",
            "sandbox_state_dir": str(sandbox.handle.state_dir),
        }
    }

    result = controller.playbook(PLAYBOOKS / "midplay.yml", hosts, tree=True)

    assert result.returncode != 0
    assert result.recap()["stops-mid-task"]["ok"] == 2, result.output
    message = host_results(controller.tree)["stops-mid-task"]["msg"]
    assert "trek10.ec2ssm: " in message, message
    assert target["instance_id"] in message, message
    assert "the instance side ended session" in message, message
    assert "Failed to connect to the host via ssh" not in message, message


def test_only_transient_failures_are_retried(sandbox: ConnectionSandbox, controller: Controller) -> None:
    """With reconnection_retries, a denied call is made once, an instance not yet Online again."""
    offline = sandbox.launch(platform="amazon-linux")
    sandbox.client.set_ping_status(offline["instance_id"], "ConnectionLost")
    denied = sandbox.principal_denied("ssm:StartSession")
    target = sandbox.instances[1]
    hosts = {
        "denied-with-retries": {
            "ansible_host": target["instance_id"],
            "ansible_user": target["os_user"],
            "ansible_ec2ssm_access_key": denied["access_key_id"],
            "ansible_ec2ssm_secret_key": denied["secret_access_key"],
            "ansible_ssh_retries": 2,
        },
        "offline-with-retries": {
            "ansible_host": offline["instance_id"],
            "ansible_user": "ec2-user",
            "ansible_ssh_retries": 1,
        },
    }
    before = calls_by_target(sandbox, [target["instance_id"], offline["instance_id"]])

    result = controller.playbook(PLAYBOOKS / "failures.yml", hosts, tree=True)

    assert result.returncode != 0
    after = calls_by_target(sandbox, [target["instance_id"], offline["instance_id"]])
    started = {iid: after[iid]["StartSession"] - before[iid]["StartSession"] for iid in after}
    assert started[target["instance_id"]] == 1  # AccessDenied: not retried
    assert started[offline["instance_id"]] == 2  # TargetNotConnected: one retry
    messages = {name: res["msg"] for name, res in host_results(controller.tree).items()}
    assert "was denied" in messages["denied-with-retries"]
    assert "TargetNotConnected" in messages["offline-with-retries"]


def test_persistent_throttling_is_reported_after_retries(
    sandbox: ConnectionSandbox, controller: Controller
) -> None:
    target = sandbox.instances[0]
    hosts = {"throttled": {"ansible_host": target["instance_id"], "ansible_user": target["os_user"]}}
    with sandbox.throttled("ssm:StartSession"):
        result = controller.playbook(
            PLAYBOOKS / "failures.yml", hosts, tree=True, env={"AWS_MAX_ATTEMPTS": "2"}
        )
    assert result.returncode != 0
    message = host_results(controller.tree)["throttled"]["msg"]
    assert "ssm:StartSession was still throttled by AWS" in message
    assert "lower the number of parallel connections" in message


def test_credentials_from_variables_work_and_stay_secret(
    sandbox: ConnectionSandbox, controller: Controller
) -> None:
    """Keys given as host variables reach the helper (the sandbox sees that caller) but never the output."""
    principal = sandbox.client.add_principal("e2e-connection-vars")
    target = sandbox.instances[5]
    hosts = {
        "with-keys": {
            "ansible_host": target["instance_id"],
            "ansible_user": target["os_user"],
            "ansible_ec2ssm_access_key": principal["access_key_id"],
            "ansible_ec2ssm_secret_key": principal["secret_access_key"],
        }
    }
    before = sandbox.count("StartSession", target["instance_id"], caller="e2e-connection-vars")
    result = controller.playbook(PLAYBOOKS / "failures.yml", hosts, verbosity=4)
    assert result.returncode == 0, result.output
    assert principal["secret_access_key"] not in result.output
    assert "ProxyCommand=" in result.output  # the -vvvv output did show the command line
    assert sandbox.count("StartSession", target["instance_id"], caller="e2e-connection-vars") == before + 1


@pytest.mark.e2e_smoke
def test_ansible_doc_shows_every_option(tmp_path: Path) -> None:
    with start_controller(tmp_path) as controller:
        check_ansible_doc(controller)


def check_ansible_doc(controller: Controller) -> None:
    out = subprocess.run(
        [str(controller.bin / "ansible-doc"), "--json", "-t", "connection", "trek10.ec2ssm.ssm_ssh"],
        check=True,
        capture_output=True,
        text=True,
        env=controller.env,
    ).stdout
    options = json.loads(out)["trek10.ec2ssm.ssm_ssh"]["doc"]["options"]
    builtin = subprocess.run(
        [str(controller.bin / "ansible-doc"), "--json", "-t", "connection", "ansible.builtin.ssh"],
        check=True,
        capture_output=True,
        text=True,
        env=controller.env,
    ).stdout
    assert set(json.loads(builtin)["ansible.builtin.ssh"]["doc"]["options"]) < set(options)
    for ours in (
        "instance_id",
        "region",
        "eic_push",
        "known_hosts_file",
        "host_key_policy",
        "session_reason",
    ):
        assert ours in options
    text = subprocess.run(
        [str(controller.bin / "ansible-doc"), "-t", "connection", "trek10.ec2ssm.ssm_ssh"],
        check=True,
        capture_output=True,
        text=True,
        env=controller.env,
    ).stdout
    assert "EC2 Instance Connect" in text
