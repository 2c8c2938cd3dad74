# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Warm per-task time: ``trek10.ec2ssm.ssm_ssh`` against the builtin ``ssh`` to the same sshds.

The claim under test: once the ControlPersist master is up, a task costs what it costs over
plain ssh, because the tunnel only carries bytes the master already sends. Both routes run the
same playbook (command / copy / template, pipelining on) on the same hosts with the same
ssh_args; a one-task warm-up opens every master first, and the measured rounds alternate the
routes (rotating which goes first). Per-task time is the span from the first task's start to the
play's end, from the timing callback, divided by the number of tasks: ansible-playbook start-up
and inventory parsing (identical for both) are left out.

Around every ssm_ssh run the harness also reads the CPU time of the tunnel's two ends: the
helpers (controller side) and the sandbox server process, whose data plane plays the Session
Manager service and the agent (on AWS that work runs elsewhere; here it shares the CPUs). The
baseline has neither. And it counts AWS calls per run: a warm run makes none, unless a master
was lost and reopened, which the result then shows.

Last, a diagnostic below ansible: ``mux_sessions`` bare SSH sessions (``ssh -o ControlPath=<an
open master> host true``, alternating routes) time one session's round trips through each
route's master, without any Python of ansible's in the way.
"""

from __future__ import annotations

import dataclasses
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from ansible_collections.trek10.ec2ssm.bench import playbooks, stats, testbed

ROUTES = ("ssm_ssh", "direct")
TARGET_RATIO = 1.05


@dataclasses.dataclass(frozen=True)
class Params:
    hosts: int = 5
    tasks: int = 30
    repeat: int = 5
    mux_sessions: int = 20

    @classmethod
    def full(cls) -> Params:
        return cls()

    @classmethod
    def smoke(cls) -> Params:
        return cls(hosts=2, tasks=5, repeat=1, mux_sessions=3)


def _cpu(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0
    return float(times.user + times.system)


def tunnel_cpu(sandbox_pid: int, work: Path) -> dict[str, float]:
    """CPU seconds so far of the sandbox server and of this scenario's helpers. A helper outlives
    the ssh that started it (the detached master is a sibling, not its parent), so helpers are
    found by command line: the helper module and this scenario's per-run key directory."""
    helpers = 0.0
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if "ssm_proxy" in cmdline and str(work) in cmdline:
            helpers += _cpu(proc)
    return {"sandbox": _cpu(psutil.Process(sandbox_pid)), "helpers": helpers}


def mux_sessions(control_dirs: dict[str, Path], count: int) -> dict[str, list[float]]:
    """Seconds per bare ``ssh host true`` through one open master of each route, alternating."""
    sockets = {}
    for name, directory in control_dirs.items():
        found = sorted(directory.iterdir())
        if not found:
            raise RuntimeError(f"no ControlPersist master left for {name} after the rounds")
        sockets[name] = found[0]
    seconds: dict[str, list[float]] = {name: [] for name in control_dirs}
    for number in range(count):
        for name in stats.rotated(list(control_dirs), number):
            started = time.perf_counter()
            subprocess.run(
                ["ssh", "-o", f"ControlPath={sockets[name]}", "-o", "ControlMaster=no", "bench", "true"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            seconds[name].append(time.perf_counter() - started)
    return seconds


def run(params: Params, work: Path) -> dict[str, Any]:
    config = testbed.sandbox_config(instances=params.hosts)
    with testbed.sandbox(work, config) as handle, testbed.DirectRoutes(handle) as routes:
        records = testbed.sshd_instances(handle, params.hosts)
        known_hosts = testbed.write_known_hosts(work / "known_hosts", records)
        key = testbed.keypair(work / "direct_key")
        addresses = {r["instance_id"]: routes.add(r) for r in records}
        inventories = {
            "ssm_ssh": playbooks.ssm_inventory(work / "ssm_ssh.yml", records, known_hosts),
            "direct": playbooks.direct_inventory(work / "direct.yml", records, addresses, key, known_hosts),
        }
        control_dirs = {name: work / f"cp-{name}" for name in ROUTES}
        envs = {
            name: testbed.ansible_env(handle, work, ANSIBLE_SSH_CONTROL_PATH_DIR=str(control_dirs[name]))
            for name in ROUTES
        }
        warmup = playbooks.mixed_playbook(work / "warmup.yml", 1)
        play = playbooks.mixed_playbook(work / "play.yml", params.tasks)
        per_task: dict[str, list[float]] = {name: [] for name in ROUTES}
        walls: dict[str, list[float]] = {name: [] for name in ROUTES}
        by_action: dict[str, dict[str, list[float]]] = {name: {} for name in ROUTES}
        tunnel_cpu_per_task: dict[str, list[float]] = {"sandbox": [], "helpers": []}
        calls_per_run: list[int] = []
        sandbox_pid = int(handle.info["pid"])
        try:
            # The baseline's key is accepted for 60 s: push it right before its masters log in.
            testbed.push_keys(handle, records, Path(f"{key}.pub"))
            for name in ROUTES:
                playbooks.run_playbook(warmup, inventories[name], envs[name], work)
            for round_no in range(params.repeat):
                for name in stats.rotated(ROUTES, round_no):
                    handle.ctl.reset_calls()
                    before = tunnel_cpu(sandbox_pid, work)
                    result = playbooks.run_playbook(play, inventories[name], envs[name], work)
                    if name == "ssm_ssh":
                        after = tunnel_cpu(sandbox_pid, work)
                        for end, seconds in after.items():
                            tunnel_cpu_per_task[end].append(
                                (seconds - before[end]) / params.tasks / params.hosts
                            )
                        # Warm means no new tunnel: a call here means a master was lost and reopened.
                        calls_per_run.append(int(handle.ctl.calls()["total"]))
                    per_task[name].append(result.tasks_span() / params.tasks)
                    walls[name].append(result.wall)
                    for task in result.task_durations():
                        action = task["action"].rsplit(".", 1)[-1]
                        by_action[name].setdefault(action, []).append(task["seconds"])
            mux = mux_sessions(control_dirs, params.mux_sessions)
        finally:
            for directory in control_dirs.values():
                testbed.close_masters(directory)
    medians = {name: statistics.median(values) for name, values in per_task.items()}
    return {
        "params": dataclasses.asdict(params),
        "target_ratio_max": TARGET_RATIO,
        "per_task_s": {name: stats.summary(values) for name, values in per_task.items()},
        "playbook_wall_s": {name: stats.summary(values) for name, values in walls.items()},
        "per_action_s": {
            name: {action: stats.summary(values) for action, values in actions.items()}
            for name, actions in by_action.items()
        },
        "ratio": medians["ssm_ssh"] / medians["direct"],
        "round_ratios": stats.summary(stats.ratios(per_task["ssm_ssh"], per_task["direct"])),
        "aws_calls_per_ssm_run": calls_per_run,
        "mux_session_s": {name: stats.summary(values) for name, values in mux.items()},
        "tunnel_cpu_per_host_task_s": {end: stats.summary(v) for end, v in tunnel_cpu_per_task.items()},
    }
