# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inventories and playbooks for the product and its baseline, and running ansible-playbook.

Both routes get the same hosts (the same sshds, by instance id), the same ssh_args, pipelining,
interpreter and host-key checking; they differ only in how ssh reaches port 22.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from ansible_collections.trek10.ec2ssm.bench import testbed
from ansible_collections.trek10.ec2ssm.bench.proctree import TreeSampler

SUBREAPER = testbed.REPO / "bench" / "wrappers" / "subreaper_exec.py"
#: The task mix of the warm and scale playbooks, in this order, repeated.
MIX = ("command", "copy", "template")
TEMPLATE = "{{ bench_nonce }} task {{ bench_task }} on {{ inventory_hostname }} ({{ ansible_host }})\n"


def common_vars(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "ansible_user": record["os_user"],
        "ansible_pipelining": True,
        "ansible_ssh_args": testbed.SSH_ARGS,
        # A fixed interpreter: discovery would add a round trip per host and run to both routes.
        "ansible_python_interpreter": "/usr/bin/python3",
    }


def ssm_inventory(path: Path, records: list[dict[str, Any]], known_hosts: Path) -> Path:
    """Hosts named by instance id, reached with trek10.ec2ssm.ssm_ssh (key push, SSM tunnel)."""
    hosts = {
        r["instance_id"]: {
            **common_vars(r),
            "ansible_connection": "trek10.ec2ssm.ssm_ssh",
            "ansible_ec2ssm_region": r["region"],
            "ansible_ec2ssm_known_hosts_file": str(known_hosts),
        }
        for r in records
    }
    path.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    return path


def direct_inventory(
    path: Path,
    records: list[dict[str, Any]],
    addresses: dict[str, tuple[str, int]],
    key: Path,
    known_hosts: Path,
) -> Path:
    """The same hosts with the builtin ssh plugin, straight to each sshd over the direct route."""
    hosts = {}
    for r in records:
        address, port = addresses[r["instance_id"]]
        hosts[r["instance_id"]] = {
            **common_vars(r),
            "ansible_connection": "ansible.builtin.ssh",
            "ansible_host": address,
            "ansible_port": port,
            "ansible_ssh_private_key_file": str(key),
            "ansible_ssh_common_args": (
                f"-o HostKeyAlias={r['instance_id']} -o UserKnownHostsFile={known_hosts} "
                "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
            ),
        }
    path.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    return path


def mixed_playbook(path: Path, tasks: int) -> Path:
    """``tasks`` tasks cycling command / copy / template. copy and template write content that
    changes every run (``bench_nonce``), so each really transfers a file."""
    template = path.parent / "bench.j2"
    template.write_text(TEMPLATE)
    body: list[dict[str, Any]] = []
    for number in range(tasks):
        kind = MIX[number % len(MIX)]
        name = f"{kind} {number}"
        if kind == "command":
            body.append({"name": name, "ansible.builtin.command": "true", "changed_when": False})
        elif kind == "copy":
            body.append(
                {
                    "name": name,
                    "ansible.builtin.copy": {
                        "content": f"{{{{ bench_nonce }}}} copy {number}\n",
                        "dest": f"/tmp/bench-copy-{number}",
                        "mode": "0644",
                    },
                }
            )
        else:
            body.append(
                {
                    "name": name,
                    "ansible.builtin.template": {
                        "src": str(template),
                        "dest": f"/tmp/bench-template-{number}",
                        "mode": "0644",
                    },
                    "vars": {"bench_task": number},
                }
            )
    play = [{"name": "bench", "hosts": "all", "gather_facts": False, "tasks": body}]
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    return path


@dataclass
class PlaybookRun:
    """One ansible-playbook run: wall time, the callback's events and recap, optional memory."""

    launched: float
    wall: float
    events: list[dict[str, Any]]
    recap: dict[str, dict[str, int]]
    output: str
    memory: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def failed_hosts(self) -> list[str]:
        return sorted(h for h, s in self.recap.items() if s.get("failures") or s.get("unreachable"))

    def failure_reasons(self) -> dict[str, int]:
        """Distinct failure messages (instance ids and numbers masked) with how many hosts had each."""
        reasons: dict[str, int] = {}
        for event in self.events:
            if event["event"] in ("failed", "unreachable"):
                text = re.sub(r"\b(?:m?i-[0-9a-f]+|[0-9a-f]{8,}|\d+(?:\.\d+)*)\b", "N", event.get("msg", ""))
                key = f"{event['event']}: {' '.join(text.split())[:300]}"
                reasons[key] = reasons.get(key, 0) + 1
        return reasons

    def task_starts(self) -> list[float]:
        return [e["t"] for e in self.events if e["event"] == "task_start"]

    def end(self) -> float:
        return float(next(e["t"] for e in self.events if e["event"] == "stats"))

    def tasks_span(self) -> float:
        """From the first task's start to the end of the play: the tasks, without start-up."""
        return self.end() - self.task_starts()[0]

    def task_durations(self) -> list[dict[str, Any]]:
        """Per task: name, action and seconds until the next task started (or the play ended)."""
        starts = [e for e in self.events if e["event"] == "task_start"]
        ends = [e["t"] for e in starts[1:]] + [self.end()]
        return [
            {"task": s["task"], "action": s["action"], "seconds": end - s["t"]}
            for s, end in zip(starts, ends, strict=True)
        ]

    def first_result(self) -> float:
        """From the first task's start to its first result (ok, failed or unreachable)."""
        first = next(e["t"] for e in self.events if e["event"] in ("ok", "failed", "unreachable"))
        return float(first - self.task_starts()[0])


def run_playbook(
    playbook: Path,
    inventory: Path,
    env: dict[str, str],
    work: Path,
    *,
    forks: int | None = None,
    sample_memory: bool = False,
    allow_failures: bool = False,
    timeout: float = 1800.0,
) -> PlaybookRun:
    """Run ansible-playbook (under a subreaper when sampling memory) and collect its timings.

    Raises if any host failed, unless ``allow_failures`` (the scale scenario counts them).
    """
    timing = work / f"timing-{secrets.token_hex(4)}.json"
    argv = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        str(inventory),
        str(playbook),
        "-e",
        f"bench_nonce={secrets.token_hex(8)}",
    ]
    if forks is not None:
        argv += ["--forks", str(forks)]
    if sample_memory:
        argv = [sys.executable, str(SUBREAPER), *argv]
    run_env = {**env, "BENCH_TIMING_FILE": str(timing)}
    launched = time.time()
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    memory = None
    if sample_memory:
        with TreeSampler(proc.pid) as sampler:
            output, _ = proc.communicate(timeout=timeout)
        memory = sampler.result()
    else:
        output, _ = proc.communicate(timeout=timeout)
    wall = time.perf_counter() - started
    if not timing.exists():
        raise RuntimeError(f"ansible-playbook exited {proc.returncode} without a recap:\n{output[-4000:]}")
    data = json.loads(timing.read_text())
    timing.unlink()
    run = PlaybookRun(launched, wall, data["events"], data["recap"], output, memory)
    if (proc.returncode != 0 or run.failed_hosts()) and not allow_failures:
        raise RuntimeError(
            f"ansible-playbook exited {proc.returncode}, failed hosts {run.failed_hosts()}:\n{output[-4000:]}"
        )
    return run
