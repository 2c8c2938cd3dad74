# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An AWX job, reproduced with the real ansible-runner (process isolation off) against the sandbox.

What AWX does for a job template whose inventory is "Sourced from a Project" and which carries an
"Amazon Web Services" credential, step by step, and what this test does for each:

1. **Inventory update.** AWX writes the credential into the environment (its injector sets
   ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and, for an STS token, ``AWS_SECURITY_TOKEN``)
   and runs ``ansible-inventory --list --export -i project/<source> --output
   artifacts/<id>/output.json --playbook-dir project/<dir>`` with ansible-runner in the execution
   environment, with ``ANSIBLE_INVENTORY_UNPARSED_FAILED=True`` and friends; it then imports
   output.json into its database. Here: the same command line through
   ``ansible_runner.run_command``, a private data dir whose ``env/envvars`` holds exactly the
   credential variables, and examples/awx as the project.
2. **Job.** AWX writes the imported inventory back as an executable script ``inventory/hosts``
   that prints the JSON, the extra variables (``awx_job_id``, ``tower_job_id``, ...) to
   ``env/extravars``, the credential variables to the environment, and runs the playbook with
   ansible-runner. Here: ``ansible-runner run <pdd> -p site.yml`` with the same files.

The execution environment's own environment (sandbox endpoints, CA bundle, region: what an EE
image or AWX's "Extra environment variables" would carry) is the runner's process environment;
credentials are only in ``env/envvars``. No ``AWS_SESSION_TOKEN``, no profile.

Checked: rc 0 and a clean PLAY RECAP; no secret (secret key, session token) in the job's stdout,
job events or any other artifact except ``artifacts/<id>/command``, where ansible-runner writes the
full environment in clear (asserted, so docs/awx.md stays true); no secret in the argv of any
process the run started (sampled from /proc during the run: ansible-playbook, its workers, ssh with
its ProxyCommand, the tunnel helper); and the Session Manager audit trail: every session the job
opened carries the Reason ``ansible-playbook site.yml (AWX job 4242)`` and the credential's
identity as Owner, and the playbook's final ``meta: reset_connection`` ends each one
(TerminateSession) before the job finishes, as it must under AWX, whose job containers go away.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.trek10.ec2ssm.tests.sandbox.config import SandboxConfig
from ansible_collections.trek10.ec2ssm.tests.sandbox.fixtures import SandboxHandle, start_sandbox

pytestmark = pytest.mark.sandbox

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "examples" / "awx"
INVENTORY_SOURCE = "inventory/ec2ssm.ssm_instances.yml"
PLAYBOOK = "site.yml"
BIN = Path(sys.executable).parent
JOB_ID = "4242"
INVENTORY_UPDATE_ID = "4241"
RUN_TIMEOUT = 600
EXPECTED_REASON = f"ansible-playbook {PLAYBOOK} (AWX job {JOB_ID})"
# awx/main/constants.py STANDARD_INVENTORY_UPDATE_ENV
STANDARD_INVENTORY_UPDATE_ENV = {
    "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
    "ANSIBLE_INVENTORY_EXPORT": "True",
    "ANSIBLE_VERBOSE_TO_STDERR": "True",
    "ANSIBLE_HOST_PATTERN_MISMATCH": "error",
}
RECAP = re.compile(
    r"^(?P<host>\S+)\s*: ok=(?P<ok>\d+)\s+changed=\d+\s+unreachable=(?P<unreachable>\d+)\s+"
    r"failed=(?P<failed>\d+)",
    re.M,
)

# Runs inside the "execution environment" (a subprocess with its environment): the inventory
# update with AWX's command line, through ansible-runner.
INVENTORY_UPDATE_DRIVER = """\
import json, sys
import ansible_runner
config = json.loads(sys.argv[1])
out, err, rc = ansible_runner.run_command(
    executable_cmd="ansible-inventory",
    cmdline_args=config["args"],
    private_data_dir=config["private_data_dir"],
    ident=config["ident"],
    host_cwd=config["cwd"],
    quiet=True,
)
print(json.dumps({"rc": rc, "stdout": out, "stderr": err}))
"""


@dataclass
class AwxCredential:
    """What AWX's "Amazon Web Services" credential injects, and which values are secret."""

    kind: str
    env: dict[str, str]
    secrets: list[str]
    owner_arn: str


@dataclass
class ProcessWatch:
    """Samples /proc for processes whose environment carries ``marker``: the processes the run
    started, including ssh masters and their ProxyCommand helpers after they daemonize."""

    marker: str
    interval: float = 0.05
    argvs: set[tuple[str, ...]] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> ProcessWatch:
        self._thread = threading.Thread(target=self._loop, name="process-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        needle = self.marker.encode()
        ours: set[int] = set()
        seen_other: set[int] = set()
        own = os.getpid()
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                pid = int(entry.name)
                if pid == own or pid in seen_other:
                    continue
                try:
                    if pid not in ours:
                        with open(f"/proc/{pid}/environ", "rb") as handle:
                            if needle not in handle.read().split(b"\0"):
                                seen_other.add(pid)
                                continue
                        ours.add(pid)
                    with open(f"/proc/{pid}/cmdline", "rb") as handle:
                        raw = handle.read()
                except OSError:  # gone, or a kernel thread
                    continue
                if raw:
                    self.argvs.add(tuple(part.decode("utf-8", "replace") for part in raw.split(b"\0")[:-1]))
            self._stop.wait(self.interval)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    handle = start_sandbox(tmp_path_factory.mktemp("awx-sandbox"), SandboxConfig(instances=3))
    try:
        yield handle
    finally:
        handle.down()


def _sts_credential(sandbox: SandboxHandle) -> AwxCredential:
    """Temporary credentials of an assumed role: AWX's credential with its "STS Token" field."""
    role_name = f"awx-{uuid.uuid4().hex[:8]}"
    iam = sandbox.client("iam")
    role = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps({"Statement": []}))
    creds = sandbox.client("sts").assume_role(RoleArn=role["Role"]["Arn"], RoleSessionName="awx-credential")
    keys = creds["Credentials"]
    return AwxCredential(
        kind="sts-token",
        env={
            "AWS_ACCESS_KEY_ID": keys["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": keys["SecretAccessKey"],
            "AWS_SECURITY_TOKEN": keys["SessionToken"],
        },
        secrets=[keys["SecretAccessKey"], keys["SessionToken"]],
        owner_arn=creds["AssumedRoleUser"]["Arn"],
    )


def _access_key_credential(sandbox: SandboxHandle) -> AwxCredential:
    """An IAM user's access key: AWX's credential without an STS token."""
    keys = sandbox.ctl.add_principal(f"awx-{uuid.uuid4().hex[:8]}")
    return AwxCredential(
        kind="access-keys",
        env={"AWS_ACCESS_KEY_ID": keys["access_key_id"], "AWS_SECRET_ACCESS_KEY": keys["secret_access_key"]},
        secrets=[keys["secret_access_key"]],
        owner_arn=keys["arn"],
    )


def _execution_environment(sandbox: SandboxHandle, home: Path, marker: str) -> dict[str, str]:
    """The EE's own environment: no credentials, the sandbox's endpoints, CA bundle and region."""
    env = {
        "PATH": os.pathsep.join([str(BIN), "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        # The collections installed in the image (here: this checkout's development install).
        "ANSIBLE_COLLECTIONS_PATH": os.environ.get("ANSIBLE_COLLECTIONS_PATH", ""),
        "ANSIBLE_NOCOLOR": "1",
        "EC2SSM_AWX_TEST_MARKER": marker,
    }
    env.update(
        {
            name: value
            for name, value in sandbox.aws_env.items()
            if name not in {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
        }
    )
    return env


def _write_private_data_dir(pdd: Path, envvars: dict[str, str], extravars: dict[str, Any] | None) -> None:
    shutil.copytree(PROJECT, pdd / "project")
    (pdd / "inventory").mkdir()
    (pdd / "env").mkdir()
    (pdd / "env" / "envvars").write_text(yaml.safe_dump(envvars))
    (pdd / "env" / "settings").write_text(yaml.safe_dump({"process_isolation": False}))
    if extravars is not None:
        (pdd / "env" / "extravars").write_text(yaml.safe_dump(extravars))


def _inventory_update(pdd: Path, ee_env: dict[str, str], credential: AwxCredential) -> dict[str, Any]:
    envvars = {
        **credential.env,
        **STANDARD_INVENTORY_UPDATE_ENV,
        "INVENTORY_SOURCE_ID": "7",
        "INVENTORY_UPDATE_ID": INVENTORY_UPDATE_ID,
    }
    _write_private_data_dir(pdd, envvars, None)
    source = pdd / "project" / INVENTORY_SOURCE
    output = pdd / "artifacts" / INVENTORY_UPDATE_ID / "output.json"
    args = [
        "--list",
        "--export",
        "-i",
        str(source),
        "--output",
        str(output),
        "--playbook-dir",
        str(source.parent),
    ]
    config = {
        "args": args,
        "private_data_dir": str(pdd),
        "ident": INVENTORY_UPDATE_ID,
        "cwd": str(pdd / "project"),
    }
    run = subprocess.run(
        [sys.executable, "-c", INVENTORY_UPDATE_DRIVER, json.dumps(config)],
        env=ee_env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["rc"] == 0, f"ansible-inventory failed:\n{result['stderr']}\n{result['stdout']}"
    data: dict[str, Any] = json.loads(output.read_text())
    return data


def _plain(value: Any) -> Any:
    """A value of ``ansible-inventory --list`` JSON without its ``{"__ansible_unsafe": ...}`` wrapper.

    AWX stores and re-emits that JSON as it is; the script inventory plugin reads the wrapper back
    as an untrusted string, so values from AWS stay untemplated through the import.
    """
    if isinstance(value, dict) and set(value) == {"__ansible_unsafe"}:
        return value["__ansible_unsafe"]
    return value


def _write_awx_inventory_script(pdd: Path, data: dict[str, Any]) -> None:
    """AWX's job inventory: an executable script printing the imported inventory as JSON."""
    script = pdd / "inventory" / "hosts"
    script.write_text(f"#! /usr/bin/env python3\n# -*- coding: utf-8 -*-\nprint({json.dumps(data)!r})\n")
    script.chmod(0o700)


def _stop_masters(home: Path) -> None:
    control_dir = home / ".ansible" / "cp"
    if not control_dir.is_dir():
        return
    for socket_path in control_dir.iterdir():
        subprocess.run(
            ["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "awx-e2e"],
            capture_output=True,
            check=False,
            timeout=30,
        )


def _sessions(sandbox: SandboxHandle, state: str, owner: str) -> list[dict[str, Any]]:
    ssm = sandbox.client("ssm")
    found: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"State": state, "Filters": [{"key": "Owner", "value": owner}]}
    while True:
        page = ssm.describe_sessions(**kwargs)
        found.extend(page["Sessions"])
        if not page.get("NextToken"):
            return found
        kwargs["NextToken"] = page["NextToken"]


def _wait_until_no_active_session(sandbox: SandboxHandle, owner: str) -> None:
    """The masters exit asynchronously after reset_connection; their helpers then end the sessions."""
    deadline = time.monotonic() + 60
    while _sessions(sandbox, "Active", owner) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _sessions(sandbox, "Active", owner)


def _files_with_secret(directory: Path, secrets: list[str]) -> list[str]:
    hits = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        text = path.read_bytes().decode("utf-8", "replace")
        if any(secret in text for secret in secrets):
            hits.append(str(path.relative_to(directory)))
    return hits


@pytest.mark.parametrize("credential_kind", ["access-keys", "sts-token"])
def test_awx_job_with_project_inventory_source_and_aws_credential(
    sandbox: SandboxHandle, tmp_path: Path, credential_kind: str
) -> None:
    credential = (_sts_credential if credential_kind == "sts-token" else _access_key_credential)(sandbox)
    home = tmp_path / "home"
    home.mkdir()
    marker = uuid.uuid4().hex
    ee_env = _execution_environment(sandbox, home, marker)
    hosts = sorted(r["instance_id"] for r in sandbox.instances() if r["tags"].get("Fleet") == "hosts")
    job_dir = tmp_path / "job"
    try:
        with ProcessWatch(f"EC2SSM_AWX_TEST_MARKER={marker}") as watch:
            # 1. the inventory update, as AWX runs it for a "Sourced from a Project" source
            inventory = _inventory_update(tmp_path / "inventory-update", ee_env, credential)
            hostvars = inventory["_meta"]["hostvars"]
            assert sorted(hostvars) == hosts
            for variables in hostvars.values():
                assert _plain(variables["ansible_connection"]) == "trek10.ec2ssm.ssm_ssh"
                assert _plain(variables["ansible_host"]) in hosts

            # 2. the job, with the imported inventory, AWX's extra vars and the credential again
            extravars = {
                "awx_job_id": int(JOB_ID),
                "tower_job_id": int(JOB_ID),
                "awx_job_template_name": "ec2ssm demo",
                "awx_job_launch_type": "manual",
                "awx_user_name": "admin",
            }
            _write_private_data_dir(job_dir, dict(credential.env), extravars)
            _write_awx_inventory_script(job_dir, inventory)
            run = subprocess.run(
                [str(BIN / "ansible-runner"), "run", str(job_dir), "-p", PLAYBOOK, "--ident", JOB_ID, "-vvv"],
                env=ee_env,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT,
                check=False,
            )
            artifacts = job_dir / "artifacts" / JOB_ID
            stdout = (artifacts / "stdout").read_text() if (artifacts / "stdout").exists() else run.stdout
            assert run.returncode == 0, stdout[-6000:] + run.stderr[-3000:]
            assert (artifacts / "rc").read_text().strip() == "0"
            assert (artifacts / "status").read_text().strip() == "successful"
        recap = {m["host"]: m for m in RECAP.finditer(stdout)}
        assert sorted(recap) == hosts, stdout[-4000:]
        for line in recap.values():
            assert (line["failed"], line["unreachable"]) == ("0", "0")
            assert int(line["ok"]) >= 5

        # the audit trail: one session per host, named after the playbook and the AWX job; the
        # playbook's final reset_connection ended each (TerminateSession), nothing is left open
        _wait_until_no_active_session(sandbox, credential.owner_arn)
        history = _sessions(sandbox, "History", credential.owner_arn)
        assert {s["Target"] for s in history} == set(hosts)
        for session in history:
            assert session["Reason"] == EXPECTED_REASON
            assert session["DocumentName"] == "AWS-StartSSHSession"
            assert session["Status"] == "Terminated"
        caller = credential.owner_arn.rsplit("/", 1)[-1]
        started = sandbox.ctl.calls(caller=caller, action="StartSession", outcome="ok")["total"]
        ended = sandbox.ctl.calls(caller=caller, action="TerminateSession", outcome="ok")["total"]
        assert started == ended == len(history) >= len(hosts)

        # no secret in what the job shows or keeps, except runner's own "command" file
        job_events = sorted((artifacts / "job_events").glob("*.json"))
        assert job_events
        assert any("PLAY RECAP" in p.read_text() for p in job_events)
        leaked = _files_with_secret(job_dir / "artifacts", credential.secrets)
        leaked += [
            f"inventory-update/{p}"
            for p in _files_with_secret(tmp_path / "inventory-update" / "artifacts", credential.secrets)
        ]
        assert sorted(leaked) == sorted(
            [f"{JOB_ID}/command", f"inventory-update/{INVENTORY_UPDATE_ID}/command"]
        )
        assert not any(secret in run.stdout + run.stderr for secret in credential.secrets)
        command = json.loads((artifacts / "command").read_text())
        assert command["env"]["AWS_SECRET_ACCESS_KEY"] == credential.env["AWS_SECRET_ACCESS_KEY"]
        assert oct((artifacts / "command").stat().st_mode & 0o777) == "0o600"

        # ... and none in any process's argv; the ProxyCommand was there and was looked at
        assert not [argv for argv in watch.argvs if any(s in " ".join(argv) for s in credential.secrets)]
        programs = {Path(word).name for argv in watch.argvs for word in argv[:2]}  # python scripts too
        assert {"ansible-inventory", "ansible-playbook", "ssh"} <= programs, programs
        proxy_commands = [
            arg
            for argv in watch.argvs
            for arg in argv
            if arg.startswith("ProxyCommand=") and "ssm_proxy" in arg
        ]
        helpers = [
            argv
            for argv in watch.argvs
            if "ansible_collections.trek10.ec2ssm.plugins.plugin_utils.ssm_proxy" in argv
        ]
        assert proxy_commands
        assert helpers
        assert "ProxyCommand=" in stdout  # -vvv shows the ssh command line, and it holds no secret
    finally:
        _stop_masters(home)  # none should be left; a failed run may leave some
