# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cold connect: what a *new* tunnel costs, piece by piece, against a new direct ssh connection.

Three measurements, the routes alternating in each:

1. **Timeline** of ``ssh -v host true`` with the helper in ``--debug`` mode. Every line ssh and
   the helper write to stderr is timestamped by the harness on arrival (the helper writes its
   debug lines unbuffered, with ``os.write``); the phases are the gaps between marker lines.
   The direct route gives the same ssh phases without a tunnel.
2. **Helper CPU time and peak RSS** per new tunnel, from ``wait4`` in a wrapper between ssh and
   the helper (``wrappers/rusage_exec.py``), in separate runs *without* ``--debug`` (botocore's
   debug logging costs CPU). Python start-up and imports alone are measured in separate
   processes (``python -c pass``, then the helper's imports), with ``wait4`` too.
3. **Time to the first task result** of ansible-playbook on a host with no master:
   ``ssm_ssh`` against the builtin ssh plugin over the direct route, each with a fresh
   ControlPath directory, from the task's start to its result (timing callback).

The key push and StartSession run concurrently in the helper (it waits for both), so their
phases overlap; the timeline shows both.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ansible_collections.trek10.ec2ssm.bench import playbooks, routes, stats, testbed

TARGET_CPU_S = 0.5
MIB = 1024 * 1024
DEBUG = "trek10.ec2ssm debug: "
#: Marker -> the start of the stderr line that marks it.
MARKERS = {
    "proxy_exec": "debug1: Executing proxy command",
    "connecting": "debug1: Connecting to",
    "tcp_established": "debug1: Connection established",
    "wrapper_exec": "bench: exec",
    "push_sent": DEBUG + "> ec2-instance-connect:SendSSHPublicKey",
    "start_sent": DEBUG + "> ssm:StartSession",
    "push_done": DEBUG + "< key pushed",
    "session": DEBUG + "< session",
    "channel_open": DEBUG + "= data channel open",
    "banner": "debug1: Remote protocol version",
    "authenticated": "Authenticated to",
    "exit_status": "debug1: Exit status",
}
#: (phase, from marker, to marker) per route, in order; "start" is when ssh was launched.
PHASES = {
    "helper": [
        ("ssh client start", "start", "proxy_exec"),
        ("rusage wrapper start (measurement only)", "proxy_exec", "wrapper_exec"),
        ("Python start, imports, AWS set-up", "wrapper_exec", "push_sent"),
        ("key push and StartSession (concurrent)", "push_sent", "session"),
        ("websocket + data-channel handshake", "session", "channel_open"),
        ("SSH handshake (banner, kex, auth)", "channel_open", "authenticated"),
        ("remote command", "authenticated", "exit_status"),
    ],
    "direct": [
        ("ssh client start", "start", "connecting"),
        ("TCP connect", "connecting", "tcp_established"),
        ("SSH handshake (banner, kex, auth)", "tcp_established", "authenticated"),
        ("remote command", "authenticated", "exit_status"),
    ],
}
#: What the helper imports on its way to the first byte (botocore and websockets come with them).
IMPORTS = """\
import ansible_collections.trek10.ec2ssm.plugins.plugin_utils.ssm_proxy
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws import clients, instance_connect, sessions
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.tunnel import stdio_bridge, tls, websocket_driver
"""


@dataclasses.dataclass(frozen=True)
class Params:
    tunnels: int = 10
    first_result_repeat: int = 5

    @classmethod
    def full(cls) -> Params:
        return cls()

    @classmethod
    def smoke(cls) -> Params:
        return cls(tunnels=2, first_result_repeat=1)


def timeline(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run ssh; seconds from launch to the first line of each marker (stderr read as it comes)."""
    seen: dict[str, float] = {"start": 0.0}
    lines: list[str] = []
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    if proc.stderr is None:
        raise RuntimeError("no stderr pipe")
    for line in proc.stderr:
        now = time.perf_counter() - started
        lines.append(line.rstrip())
        for marker, lead in MARKERS.items():
            if marker not in seen and line.startswith(lead):
                seen[marker] = now
    if proc.wait(timeout=120) != 0 or "exit_status" not in seen:
        raise RuntimeError(f"ssh failed (exit {proc.returncode}):\n" + "\n".join(lines[-40:]))
    seen["done"] = time.perf_counter() - started
    return seen


def phases(route: str, marks: dict[str, float]) -> dict[str, float]:
    missing = [m for _name, a, b in PHASES[route] for m in (a, b) if m not in marks]
    if missing:
        raise RuntimeError(f"{route}: markers missing from ssh -v output: {sorted(set(missing))}")
    return {name: marks[b] - marks[a] for name, a, b in PHASES[route]}


def rusage_of(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """CPU seconds (user+sys) and peak RSS (MiB) of a child process, from wait4."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:3]} exited {proc.returncode}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def read_usage(path: Path, expected: int) -> list[tuple[float, float]]:
    """(cpu_s, peak_rss_mib) lines of the rusage wrapper; it writes after the helper's cleanup."""
    deadline = time.monotonic() + 60
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= expected:
            break
        time.sleep(0.1)
    if len(lines) < expected:
        raise RuntimeError(f"the rusage wrapper recorded {len(lines)} of {expected} helper runs")
    usage = [tuple(float(x) for x in line.split()) for line in lines]
    return [(user + system, rss_kib / 1024) for user, system, rss_kib in usage]


def connect_runs(target: routes.Target, params: Params, work: Path) -> dict[str, Any]:
    """Measurements 1 and 2, interleaved: debug timeline, plain cost run, direct timeline."""
    env = target.handle.env()
    debug_log, cost_log = work / "usage-debug.txt", work / "usage.txt"
    kinds = ("helper_debug", "helper", "direct")
    marks: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for round_no in range(params.tunnels):
        for kind in stats.rotated(kinds, round_no):
            if kind == "direct":
                target.push_key()
                argv = ["ssh", "-v", *target.options("direct"), target.host("direct"), "true"]
            else:
                debug = kind == "helper_debug"
                proxy = target.helper_proxy(debug=debug, usage_log=debug_log if debug else cost_log)
                argv = ["ssh", "-v", *target.options("helper", proxy), target.host("helper"), "true"]
            marks[kind].append(timeline(argv, env))
    cost = read_usage(cost_log, params.tunnels)
    breakdown = {
        route: [phases(route, m) for m in marks[kind]]
        for route, kind in (("helper", "helper_debug"), ("direct", "direct"))
    }
    to_auth = {kind: [m["authenticated"] for m in marks[kind]] for kind in kinds}
    wrapper = [m["wrapper_exec"] - m["proxy_exec"] for m in marks["helper"]]
    helper_auth = [t - w for t, w in zip(to_auth["helper"], wrapper, strict=True)]
    return {
        "phases_s": {
            route: {name: stats.summary([run[name] for run in runs]) for name in runs[0]}
            for route, runs in breakdown.items()
        },
        "key_push_alone_s": stats.summary([m["push_done"] - m["push_sent"] for m in marks["helper_debug"]]),
        "start_session_answered_s": stats.summary(
            [m["session"] - m["start_sent"] for m in marks["helper_debug"]]
        ),
        # Without --debug, minus the wrapper's own start: what ssh sees from a plain helper.
        "to_authenticated_s": {
            "helper": stats.summary(helper_auth),
            "direct": stats.summary(to_auth["direct"]),
        },
        "to_authenticated_ratio": statistics.median(helper_auth) / statistics.median(to_auth["direct"]),
        "helper_cpu_s": stats.summary([c for c, _ in cost]),
        "helper_peak_rss_mib": stats.summary([r for _, r in cost]),
        "helper_cpu_s_with_debug": stats.summary([c for c, _ in read_usage(debug_log, params.tunnels)]),
    }


def import_costs(env: dict[str, str], repeat: int) -> dict[str, Any]:
    """CPU of a bare interpreter and of the helper's imports, each in a fresh process."""
    bare = [rusage_of([sys.executable, "-c", "pass"], env) for _ in range(repeat)]
    imports = [rusage_of([sys.executable, "-c", IMPORTS], env) for _ in range(repeat)]
    return {
        "python_start_cpu_s": stats.summary([c for c, _ in bare]),
        "python_start_and_imports_cpu_s": stats.summary([c for c, _ in imports]),
        "python_start_and_imports_rss_mib": stats.summary([r for _, r in imports]),
    }


def first_results(handle: Any, target: routes.Target, params: Params, work: Path) -> dict[str, Any]:
    """Measurement 3: ansible-playbook, one command task, one host, no master."""
    records = [target.record]
    inventories = {
        "ssm_ssh": playbooks.ssm_inventory(work / "cold-ssm.yml", records, target.known_hosts),
        "direct": playbooks.direct_inventory(
            work / "cold-direct.yml",
            records,
            {target.instance_id: target.direct},
            target.key,
            target.known_hosts,
        ),
    }
    play = playbooks.mixed_playbook(work / "cold-play.yml", 1)
    names = ("ssm_ssh", "direct")
    task_to_result: dict[str, list[float]] = {n: [] for n in names}
    launch_to_result: dict[str, list[float]] = {n: [] for n in names}
    for round_no in range(params.first_result_repeat):
        for name in stats.rotated(names, round_no):
            control = work / f"cp-cold-{name}-{round_no}"
            env = testbed.ansible_env(handle, work, ANSIBLE_SSH_CONTROL_PATH_DIR=str(control))
            if name == "direct":
                target.push_key()
            try:
                result = playbooks.run_playbook(play, inventories[name], env, work)
            finally:
                testbed.close_masters(control)
            task_to_result[name].append(result.first_result())
            launch_to_result[name].append(result.first_result() + result.task_starts()[0] - result.launched)
    medians = {n: statistics.median(v) for n, v in task_to_result.items()}
    return {
        "task_start_to_result_s": {n: stats.summary(v) for n, v in task_to_result.items()},
        "launch_to_result_s": {n: stats.summary(v) for n, v in launch_to_result.items()},
        "ratio": medians["ssm_ssh"] / medians["direct"],
    }


def run(params: Params, work: Path) -> dict[str, Any]:
    with (
        testbed.sandbox(work, testbed.sandbox_config(instances=1)) as handle,
        testbed.DirectRoutes(handle) as direct_routes,
    ):
        target = routes.single_target(handle, direct_routes, work)
        connect = connect_runs(target, params, work)
        imports = import_costs(handle.env(), max(3, params.tunnels // 2))
        first = first_results(handle, target, params, work)
        testbed.wait_sessions_ended(handle)
    return {
        "params": dataclasses.asdict(params),
        "target_cpu_s_max": TARGET_CPU_S,
        **connect,
        "imports": imports,
        "first_result": first,
    }
