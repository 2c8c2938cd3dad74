# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inventory at scale: ``trek10.ec2ssm.ssm_instances`` against ``amazon.aws.aws_ec2``.

For each size the sandbox holds that many API-only instances (EC2 in moto plus their SSM
managed-node records; no sshd) in one region, with its default throttling (which limits
DescribeInstanceInformation to 20 calls/s, burst 40). The real ``ansible-inventory --list`` runs
with each plugin and equivalent selections, the plugins alternating and their order rotating
every round; per run: wall time of the whole process (Python start-up included), API calls by
action from the sandbox's counters, throttled answers, and the number of hosts (both plugins
must list the same hosts, or the scenario fails).

Selections (the same for both plugins):

``tag``  half of the instances, tagged ``Environment=prod``: ours ``tags: {Environment: prod}``;
         aws_ec2 ``filters: {tag:Environment: prod, instance-state-name: running}``
``all``  every instance: ours without a filter; aws_ec2 ``filters: {instance-state-name: running}``

Both name hosts by instance id and set the same connection variables (aws_ec2 through
``compose``), so the work after the API calls is comparable. Ours is also timed with a warm
inventory cache (``jsonfile``), which makes no call at all.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from ansible_collections.trek10.ec2ssm.bench import stats, testbed
from ansible_collections.trek10.ec2ssm.tests.sandbox.fixtures import SandboxHandle

REGION = "us-east-1"
PLUGINS = ("ssm_instances", "aws_ec2", "ssm_instances_cached")
CONNECTION = {
    "ansible_host": "instance_id",
    "ansible_connection": "'trek10.ec2ssm.ssm_ssh'",
    "ansible_ec2ssm_region": "placement.region",
}
SELECTIONS: dict[str, dict[str, dict[str, Any]]] = {
    "tag": {
        "ssm_instances": {"tags": {"Environment": "prod"}},
        "aws_ec2": {"filters": {"tag:Environment": "prod", "instance-state-name": "running"}},
    },
    "all": {
        "ssm_instances": {},
        "aws_ec2": {"filters": {"instance-state-name": "running"}},
    },
}


@dataclasses.dataclass(frozen=True)
class Params:
    sizes: tuple[int, ...] = (1000, 5000)
    repeat: int = 3

    @classmethod
    def full(cls) -> Params:
        return cls()

    @classmethod
    def smoke(cls) -> Params:
        return cls(sizes=(100,), repeat=1)


def inventory_file(directory: Path, name: str, selection: str) -> Path:
    """The inventory source for ``name`` (a PLUGINS entry) and ``selection``."""
    if name == "aws_ec2":
        config: dict[str, Any] = {
            "plugin": "amazon.aws.aws_ec2",
            "regions": [REGION],
            "hostnames": ["instance-id"],
            "compose": CONNECTION,
            **SELECTIONS[selection]["aws_ec2"],
        }
        suffix = "aws_ec2"
    else:
        config = {
            "plugin": "trek10.ec2ssm.ssm_instances",
            "regions": [REGION],
            **SELECTIONS[selection]["ssm_instances"],
        }
        if name == "ssm_instances_cached":
            config.update(
                cache=True,
                cache_plugin="ansible.builtin.jsonfile",
                cache_connection=str(directory / f"cache-{selection}"),
                cache_timeout=3600,
            )
        suffix = "ssm_instances"
    path = directory / f"{selection}-{name}.{suffix}.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def inventory_env(handle: SandboxHandle, work: Path) -> dict[str, str]:
    return testbed.ansible_env(
        handle,
        work,
        ANSIBLE_INVENTORY_UNPARSED_FAILED="true",
        # amazon.aws prints deprecation notices on some versions; they are not errors.
        ANSIBLE_DEPRECATION_WARNINGS="false",
        ANSIBLE_CALLBACKS_ENABLED="",
    )


def run_once(handle: SandboxHandle, env: dict[str, str], path: Path) -> dict[str, Any]:
    handle.ctl.reset_calls()
    started = time.perf_counter()
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(path), "--list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
        check=False,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"ansible-inventory failed for {path.name}:\n{proc.stderr[-3000:]}")
    calls = handle.ctl.calls()
    by_action: dict[str, int] = {}
    for row in calls["rows"]:
        by_action[row["action"]] = by_action.get(row["action"], 0) + row["count"]
    return {
        "wall_s": wall,
        "calls": calls["total"],
        "throttled": calls["throttled"],
        "by_action": by_action,
        "hosts": len(json.loads(proc.stdout)["_meta"]["hostvars"]),
    }


def bench_size(size: int, params: Params, work: Path) -> dict[str, Any]:
    config = testbed.sandbox_config(api_only=size, regions=[REGION])
    started = time.perf_counter()
    with testbed.sandbox(work, config) as handle:
        up_s = time.perf_counter() - started
        env = inventory_env(handle, work)
        files = work / "inventories"
        files.mkdir(exist_ok=True)
        selections: dict[str, Any] = {}
        for selection in SELECTIONS:
            paths = {name: inventory_file(files, name, selection) for name in PLUGINS}
            run_once(handle, env, paths["ssm_instances_cached"])  # fill the cache (not measured)
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in PLUGINS}
            for round_no in range(params.repeat):
                for name in stats.rotated(PLUGINS, round_no):
                    runs[name].append(run_once(handle, env, paths[name]))
            hosts = {name: {r["hosts"] for r in rs} for name, rs in runs.items()}
            if len({h for hs in hosts.values() for h in hs}) != 1:
                raise RuntimeError(
                    f"{size} instances, {selection}: the plugins listed different hosts: {hosts}"
                )
            entry: dict[str, Any] = {
                name: {
                    "wall_s": stats.summary([r["wall_s"] for r in rs]),
                    "calls": rs[-1]["calls"],
                    "by_action": rs[-1]["by_action"],
                    "throttled_max": max(r["throttled"] for r in rs),
                    "hosts": rs[-1]["hosts"],
                }
                for name, rs in runs.items()
            }
            medians = {name: statistics.median(r["wall_s"] for r in rs) for name, rs in runs.items()}
            entry["ratio_wall"] = medians["ssm_instances"] / medians["aws_ec2"]
            entry["ratio_wall_cached"] = medians["ssm_instances_cached"] / medians["aws_ec2"]
            entry["round_ratios"] = stats.summary(
                stats.ratios(
                    [r["wall_s"] for r in runs["ssm_instances"]], [r["wall_s"] for r in runs["aws_ec2"]]
                )
            )
            selections[selection] = entry
    return {"size": size, "sandbox_up_s": up_s, "selections": selections}


def run(params: Params, work: Path) -> dict[str, Any]:
    results = []
    for size in params.sizes:
        directory = work / f"size-{size}"
        directory.mkdir()
        results.append(bench_size(size, params, directory))
    return {"params": dataclasses.asdict(params), "region": REGION, "sizes": results}
