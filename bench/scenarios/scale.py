# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scale: N hosts at once (forks = N), every connection new, with the sandbox's default throttling.

Per host count and route, one playbook (command / copy / template, pipelining on) runs from
cold: a fresh ControlPath directory, so every host opens a new master (ssm_ssh: a key push, a
StartSession and a helper per host, all at once). Measured per run:

- wall time of ansible-playbook;
- peak total RSS of the controller's whole process tree (ansible-playbook, its workers, every
  ssh client and master, every helper), sampled with psutil every 0.25 s under a subreaper
  (``proctree``), with the split by kind at the peak, and the peak sum of PSS;
- AWS API calls by action and outcome (throttled ones separately) from the sandbox's counters,
  read after the masters were closed and their sessions terminated, so TerminateSession counts;
- hosts failed or unreachable, with the reasons ansible gave;
- CPU seconds used meanwhile by the whole machine and by the sandbox (its server process, which
  plays the AWS APIs and the data plane, plus the sshd processes it started and reaped): on AWS
  that share runs elsewhere, here it competes with the controller for the same CPUs.

The baseline is the builtin ssh plugin over the direct route with the same forks: what the
same run costs without any tunnel. Its keys are pushed by the harness before its run (those
calls are not counted). Before every run the harness waits ``settle_s`` so the sandbox's token
buckets (burst/rate, at most 4 s by default) start full, as they would for a fresh run.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from ansible_collections.trek10.ec2ssm.bench import playbooks, stats, testbed
from ansible_collections.trek10.ec2ssm.tests.sandbox.fixtures import SandboxHandle

ROUTES = ("ssm_ssh", "direct")
TARGET_RSS_MIB = 1024.0
TARGET_AT_HOSTS = 100


@dataclasses.dataclass(frozen=True)
class Params:
    sizes: tuple[int, ...] = (25, 50, 100)
    repeat: int = 2
    tasks: int = 3
    settle_s: float = 8.0

    @classmethod
    def full(cls) -> Params:
        return cls()

    @classmethod
    def smoke(cls) -> Params:
        return cls(sizes=(3,), repeat=1, settle_s=1.0)


def count_calls(handle: SandboxHandle) -> dict[str, Any]:
    calls = handle.ctl.calls()
    by_action: dict[str, dict[str, int]] = {}
    for row in calls["rows"]:
        entry = by_action.setdefault(row["action"], {})
        entry[row["outcome"]] = entry.get(row["outcome"], 0) + row["count"]
    return {"total": calls["total"], "throttled": calls["throttled"], "by_action": by_action}


def cpu_seconds(sandbox_pid: int) -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, of the sandbox process and its reaped children)."""
    total = psutil.cpu_times()
    busy = float(total.user + total.nice + total.system + total.irq + total.softirq + total.steal)
    times = psutil.Process(sandbox_pid).cpu_times()
    return busy, float(times.user + times.system + times.children_user + times.children_system)


def one_run(
    handle: SandboxHandle,
    *,
    name: str,
    hosts: list[dict[str, Any]],
    inventory: Path,
    play: Path,
    key: Path,
    params: Params,
    work: Path,
    label: str,
) -> dict[str, Any]:
    control = work / f"cp-{label}"
    env = testbed.ansible_env(handle, work, ANSIBLE_SSH_CONTROL_PATH_DIR=str(control))
    if name == "direct":
        testbed.push_keys(handle, hosts, Path(f"{key}.pub"))
    time.sleep(params.settle_s)
    handle.ctl.reset_calls()
    sandbox_pid = int(handle.info["pid"])
    machine_before, sandbox_before = cpu_seconds(sandbox_pid)
    try:
        result = playbooks.run_playbook(
            play, inventory, env, work, forks=len(hosts), sample_memory=True, allow_failures=True
        )
    finally:
        testbed.close_masters(control)
        live = testbed.wait_sessions_ended(handle)
    time.sleep(2.0)  # the sandbox reaps its ended sshd processes once a second: count them here
    machine_after, sandbox_after = cpu_seconds(sandbox_pid)
    memory = result.memory or {}
    failed = result.failed_hosts()
    return {
        "wall_s": result.wall,
        "tasks_span_s": result.tasks_span(),
        "peak_rss_mib": memory.get("peak_rss_mib"),
        "peak_pss_mib": memory.get("peak_pss_mib"),
        "peak_processes": memory.get("peak_processes"),
        "peak_breakdown": memory.get("peak_breakdown"),
        "rss_timeline": memory.get("timeline"),
        "failed_hosts": len(failed),
        "failure_reasons": result.failure_reasons(),
        "sessions_still_live_after_close": live,
        "cpu_s": {"machine": machine_after - machine_before, "sandbox": sandbox_after - sandbox_before},
        "calls": count_calls(handle),
    }


def run(params: Params, work: Path) -> dict[str, Any]:
    largest = max(params.sizes)
    with (
        testbed.sandbox(work, testbed.sandbox_config(instances=largest)) as handle,
        testbed.DirectRoutes(handle) as direct_routes,
    ):
        records = testbed.sshd_instances(handle, largest)
        known_hosts = testbed.write_known_hosts(work / "known_hosts", records)
        key = testbed.keypair(work / "direct_key")
        addresses = {r["instance_id"]: direct_routes.add(r) for r in records}
        play = playbooks.mixed_playbook(work / "scale.yml", params.tasks)
        results: dict[str, Any] = {}
        for size in params.sizes:
            hosts = records[:size]
            inventories = {
                "ssm_ssh": playbooks.ssm_inventory(work / f"ssm-{size}.yml", hosts, known_hosts),
                "direct": playbooks.direct_inventory(
                    work / f"direct-{size}.yml", hosts, addresses, key, known_hosts
                ),
            }
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in ROUTES}
            for round_no in range(params.repeat):
                for name in stats.rotated(ROUTES, round_no):
                    label = f"{name}-{size}-{round_no}"
                    runs[name].append(
                        one_run(
                            handle,
                            name=name,
                            hosts=hosts,
                            inventory=inventories[name],
                            play=play,
                            key=key,
                            params=params,
                            work=work,
                            label=label,
                        )
                    )
            results[str(size)] = {
                name: {
                    "wall_s": stats.summary([r["wall_s"] for r in rs]),
                    "peak_rss_mib": stats.summary([r["peak_rss_mib"] for r in rs]),
                    "peak_pss_mib": stats.summary([r["peak_pss_mib"] for r in rs]),
                    "failed_hosts_max": max(r["failed_hosts"] for r in rs),
                    "runs": rs,
                }
                for name, rs in runs.items()
            }
            ssm, direct = results[str(size)]["ssm_ssh"], results[str(size)]["direct"]
            results[str(size)]["ratios"] = {
                "wall": ssm["wall_s"]["median"] / direct["wall_s"]["median"],
                "peak_rss": ssm["peak_rss_mib"]["median"] / direct["peak_rss_mib"]["median"],
            }
    return {
        "params": dataclasses.asdict(params),
        "target": {"hosts": TARGET_AT_HOSTS, "peak_rss_mib_max": TARGET_RSS_MIB, "failed_hosts": 0},
        "throttling": "sandbox defaults (on)",
        "sizes": results,
        "largest": {
            "hosts": largest,
            "peak_rss_mib_max": max(r["peak_rss_mib"] for r in results[str(largest)]["ssm_ssh"]["runs"]),
            "failed_hosts_max": results[str(largest)]["ssm_ssh"]["failed_hosts_max"],
            "wall_s_median": statistics.median(r["wall_s"] for r in results[str(largest)]["ssm_ssh"]["runs"]),
        },
    }
