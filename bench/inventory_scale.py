# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inventory at scale: trek10.ec2ssm.ssm_instances beside amazon.aws.aws_ec2 on the same instances.

For each size, starts the local AWS sandbox with that many API-only instances (EC2 in moto plus
their SSM managed-node records; no sshd) in one region, then runs the real ``ansible-inventory
--list`` with each plugin and equivalent selections, and reports:

- the AWS API calls each run made, per action, from the sandbox's call counters (throttled
  answers counted separately: the sandbox rate-limits DescribeInstanceInformation like a real
  account, 20/s with a burst of 40);
- the wall time of the whole ``ansible-inventory`` process (Python start-up included), median of
  ``--repeat`` runs;
- the number of hosts listed (both plugins must list the same instances).

Scenarios (the same for both plugins):

``tag``   half of them, tagged ``Environment=prod`` -- ours ``tags: {Environment: prod}``; aws_ec2
          ``filters: {tag:Environment: prod, instance-state-name: running}``.
``all``   every instance -- ours with no filter; aws_ec2 ``filters: {instance-state-name: running}``.

Both name hosts by instance id and set the same connection variables (aws_ec2 through
``compose``), so the work after the API calls is comparable. Our plugin is also timed with a warm
inventory cache. Usage (issue #7 folds this into ``make bench``)::

    python bench/inventory_scale.py [--sizes 1000,5000] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SANDBOX = "ansible_collections.trek10.ec2ssm.tests.sandbox"
REGION = "us-east-1"
CONNECTION = {
    "ansible_host": "instance_id",
    "ansible_connection": "'trek10.ec2ssm.ssm_ssh'",
    "ansible_ec2ssm_region": "placement.region",
}

SCENARIOS: dict[str, dict[str, dict[str, Any]]] = {
    "tag": {
        "ssm_instances": {"tags": {"Environment": "prod"}},
        "aws_ec2": {"filters": {"tag:Environment": "prod", "instance-state-name": "running"}},
    },
    "all": {
        "ssm_instances": {},
        "aws_ec2": {"filters": {"instance-state-name": "running"}},
    },
}


def inventory_file(directory: Path, plugin: str, options: dict[str, Any]) -> Path:
    if plugin == "ssm_instances":
        config = {"plugin": "trek10.ec2ssm.ssm_instances", "regions": [REGION], **options}
    else:
        config = {
            "plugin": "amazon.aws.aws_ec2",
            "regions": [REGION],
            "hostnames": ["instance-id"],
            "compose": CONNECTION,
            **options,
        }
    path = directory / f"bench-{plugin}-{len(list(directory.iterdir()))}.{plugin}.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def sandbox_env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    for line in (state / "env.sh").read_text().splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "export":
            for word in words[1:]:
                key, _sep, value = word.partition("=")
                env[key] = value
        elif words and words[0] == "unset":
            for key in words[1:]:
                env.pop(key, None)
    collections = os.environ.get("ANSIBLE_COLLECTIONS_PATH") or str(
        Path(sys.executable).parents[1] / "collections"
    )
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", collections)
    env.setdefault("PYTHONPATH", collections)
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_INVENTORY_UNPARSED_FAILED"] = "true"
    # amazon.aws's aws_ec2 prints a deprecation notice per run on some versions; it is not an error
    env["ANSIBLE_DEPRECATION_WARNINGS"] = "false"
    return env


def run_once(client: Any, env: dict[str, str], path: Path, *extra: str) -> dict[str, Any]:
    client.reset_calls()
    started = time.perf_counter()
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(path), "--list", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
        check=False,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"ansible-inventory failed for {path.name}:\n{proc.stderr[-3000:]}")
    calls = client.calls()
    by_action: dict[str, int] = {}
    for row in calls["rows"]:
        by_action[row["action"]] = by_action.get(row["action"], 0) + row["count"]
    hosts = json.loads(proc.stdout)["_meta"]["hostvars"]
    return {
        "wall_s": wall,
        "calls": calls["total"],
        "ok_calls": calls["ok"],
        "throttled": calls["throttled"],
        "by_action": by_action,
        "hosts": len(hosts),
    }


def measure(client: Any, env: dict[str, str], path: Path, repeat: int, *extra: str) -> dict[str, Any]:
    runs = [run_once(client, env, path, *extra) for _attempt in range(repeat)]
    return {
        "wall_s_median": statistics.median(r["wall_s"] for r in runs),
        "wall_s_runs": [round(r["wall_s"], 3) for r in runs],
        "calls": runs[-1]["calls"],
        "throttled": max(r["throttled"] for r in runs),
        "by_action": runs[-1]["by_action"],
        "hosts": runs[-1]["hosts"],
    }


def bench_size(size: int, repeat: int, workdir: Path) -> dict[str, Any]:
    from ansible_collections.trek10.ec2ssm.tests.sandbox.control.client import SandboxClient

    state = workdir / f"sandbox-{size}"
    started = time.perf_counter()
    up = subprocess.run(
        [
            sys.executable,
            "-m",
            SANDBOX,
            "up",
            "--instances",
            "0",
            "--api-only",
            str(size),
            "--regions",
            REGION,
            "--state-dir",
            str(state),
            "--timeout",
            "1800",
        ],
        capture_output=True,
        text=True,
        timeout=1900,
        check=False,
    )
    if up.returncode != 0:
        raise RuntimeError(f"sandbox up failed:\n{up.stderr}{up.stdout}")
    result: dict[str, Any] = {
        "size": size,
        "sandbox_up_s": round(time.perf_counter() - started, 1),
        "scenarios": {},
    }
    try:
        client = SandboxClient.from_state(state)
        env = sandbox_env(state)
        files = workdir / f"files-{size}"
        files.mkdir(exist_ok=True)
        for scenario, plugins in SCENARIOS.items():
            entry: dict[str, Any] = {}
            for plugin, options in plugins.items():
                entry[plugin] = measure(client, env, inventory_file(files, plugin, options), repeat)
            cache_dir = files / f"cache-{scenario}"
            cached_file = inventory_file(
                files,
                "ssm_instances",
                {
                    **plugins["ssm_instances"],
                    "cache": True,
                    "cache_plugin": "ansible.builtin.jsonfile",
                    "cache_connection": str(cache_dir),
                    "cache_timeout": 3600,
                },
            )
            run_once(client, env, cached_file)  # fill the cache
            entry["ssm_instances_cached"] = measure(client, env, cached_file, repeat)
            if entry["ssm_instances"]["hosts"] != entry["aws_ec2"]["hosts"]:
                raise RuntimeError(f"{scenario}: the plugins listed different host counts: {entry}")
            result["scenarios"][scenario] = entry
    finally:
        subprocess.run(
            [sys.executable, "-m", SANDBOX, "down", "--state-dir", str(state)], timeout=600, check=False
        )
    return result


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| instances | selection | plugin | hosts | API calls (per action) | throttled "
        "| wall time (median) |",
        "|---:|---|---|---:|---|---:|---:|",
    ]
    for result in results:
        for scenario, entry in result["scenarios"].items():
            for plugin, data in entry.items():
                actions = ", ".join(f"{k} {v}" for k, v in sorted(data["by_action"].items())) or "none"
                lines.append(
                    f"| {result['size']:,} | {scenario} | {plugin} | {data['hosts']:,} "
                    f"| {data['calls']} ({actions}) | {data['throttled']} | {data['wall_s_median']:.2f} s |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="1000,5000", help="comma-separated instance counts")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    results = []
    with tempfile.TemporaryDirectory(prefix="ec2ssm-inventory-bench-") as tmp:
        for size in sizes:
            print(f">>> {size} instances", file=sys.stderr)
            results.append(bench_size(size, args.repeat, Path(tmp)))
    meta = {
        "python": sys.version.split()[0],
        "ansible_core": subprocess.run(
            [sys.executable, "-c", "import ansible.release as r; print(r.__version__)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip(),
        "cpus": os.cpu_count(),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(
        f"ansible-core {meta['ansible_core']}, Python {meta['python']}, {meta['cpus']} CPUs, region {REGION}"
    )
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
