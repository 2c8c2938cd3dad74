# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render ``docs/performance.md`` and its plots from the raw results in ``bench/results/``.

The document is generated, never edited by hand: every number in it comes from a result file,
and every verdict ("met" / "not met") is computed here from the measurement and its target, so
the prose cannot drift from the data. Each scenario's section carries the machine and load it
was measured with, since scenarios may be rerun separately.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ansible_collections.trek10.ec2ssm.bench import plots

ORDER = ("warm", "cold", "throughput", "scale", "inventory")
TITLES = {
    "warm": "1. Warm per-task time",
    "cold": "2. Cold connect",
    "throughput": "3. Throughput",
    "scale": "4. Scale",
    "inventory": "5. Inventory",
}
Headline = tuple[str, str, str, str, str]  # scenario, measurement, result, target, verdict


def load_results(directory: Path) -> dict[str, dict[str, Any]]:
    """The latest result file of each scenario (``<scenario>.json``)."""
    found = {}
    for name in ORDER:
        path = directory / f"{name}.json"
        if path.exists():
            found[name] = json.loads(path.read_text())
    return found


# -- formatting -----------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def secs(seconds: float) -> str:
    return f"{seconds:.2f} s"


def spread(summary: dict[str, Any], fmt: Callable[[float], str]) -> str:
    """``median (min-max, n=N)``; just the value for a single sample."""
    if summary["n"] == 1:
        return fmt(summary["median"])
    return f"{fmt(summary['median'])} ({fmt(summary['min'])}-{fmt(summary['max'])}, n={summary['n']})"


def ratio(value: float) -> str:
    return f"{value:.2f}"


def table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    aligns = align or "l" + "r" * (len(header) - 1)
    marks = ["---:" if a == "r" else "---" for a in aligns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(record: dict[str, Any]) -> str:
    m, load = record["machine"], record["load"]
    plugin = m.get("session_manager_plugin")
    return (
        f"*Measured {m['time_utc']} ({record['mode']} run, {record['duration_s']:.0f} s) on {m['cpus']} CPUs "
        f"({m['cpu_model']}), {m['memory_gib']} GiB, Linux {m['kernel']}; Python {m['python']}, "
        f"ansible-core {m['ansible_core']}, amazon.aws {m['amazon_aws']}, {m['openssh']}"
        + (f", session-manager-plugin {plugin['version']}" if plugin else "")
        + f". 1-minute load average: {load['start']:.2f} at start, {load['max']:.2f} at most, "
        f"{load['end']:.2f} at end"
        + (
            f"; all CPUs busy {load['cpu_busy']:.0%} of the time (busiest 5 s: {load['cpu_busy_max']:.0%}), "
            "this run included.*"
            if load.get("cpu_busy") is not None and load.get("cpu_busy_max") is not None
            else ".*"
        )
    )


def reproduce(record: dict[str, Any]) -> str:
    return f"Reproduce: `{record['command']}`"


# -- scenarios ------------------------------------------------------------------------------


def warm_section(result: dict[str, Any]) -> tuple[str, list[Headline]]:
    p = result["params"]
    per_task, per_action, walls = result["per_task_s"], result["per_action_s"], result["playbook_wall_s"]
    actions = sorted(per_action["ssm_ssh"])
    rows = []
    for route, label in (
        ("ssm_ssh", "`trek10.ec2ssm.ssm_ssh` (SSM tunnel)"),
        ("direct", "builtin `ssh`, direct"),
    ):
        rows.append(
            [
                label,
                spread(per_task[route], ms),
                " / ".join(ms(per_action[route][a]["median"]) for a in actions),
                secs(walls[route]["median"]),
            ]
        )
    value, target = result["ratio"], result["target_ratio_max"]
    rr = result["round_ratios"]
    calls = result["aws_calls_per_ssm_run"]
    reopened = sum(1 for c in calls if c)
    calls_text = (
        "no ssm_ssh run made an AWS call (warm tasks reuse the master)"
        if not reopened
        else f"**{reopened} of {len(calls)} ssm_ssh runs made AWS calls ({calls})**: a master was lost "
        "and reopened during the rounds, so those runs include a new tunnel"
    )
    cpu = result["tunnel_cpu_per_host_task_s"]
    mux = result["mux_session_s"]
    ok = verdict(value <= target)
    header = ["route", "per task, median (min-max over rounds)", "median per task: " + " / ".join(actions)]
    main_table = table([*header, "playbook wall, median"], rows)
    text = f"""\
A {p["tasks"]}-task playbook (command, copy, template in turn; copy and template write new content
every run) on {p["hosts"]} hosts, pipelining on, the same `ssh_args` (`-C -o ControlMaster=auto -o
ControlPersist=10m`) for both routes. A one-task run opens every ControlPersist master first; then
{p["repeat"]} rounds alternate the two routes, rotating which goes first. Per-task time = (end of the
play - start of its first task) / {p["tasks"]}, from a callback's timestamps, so ansible-playbook's
start-up is left out. The baseline is the builtin `ssh` plugin connecting over TCP straight to the
same sshds (a veth pair into each instance's network namespace; no ProxyCommand).

{main_table}

**ssm_ssh / builtin ssh = {ratio(value)}** (ratio of the medians; per round: median
{ratio(rr["median"])}, range {ratio(rr["min"])}-{ratio(rr["max"])}). Target ≤ {target}: {ok}.
AWS calls: {calls_text}.

Where the difference goes: one bare SSH session through an open master (`ssh -o ControlPath=… host
true`, {mux["ssm_ssh"]["n"]} per route alternating) takes {spread(mux["ssm_ssh"], ms)} through the tunnel and
{spread(mux["direct"], ms)} direct, and a task is several such round trips. The Throughput section
times the same session through AWS's own session-manager-plugin on the same sandbox: if it is as
slow, the delay sits on the shared service/agent side (here: the sandbox), not in our client. CPU
spent on the tunnel per host and task: helper {ms(cpu["helpers"]["median"])}, sandbox data plane
{ms(cpu["sandbox"]["median"])} (the service and agent side, which on AWS runs elsewhere, here shares
the controller's CPUs).
"""
    headlines: list[Headline] = [
        (
            "warm",
            "per-task time, ssm_ssh / builtin ssh",
            ratio(value),
            f"≤ {target}",
            verdict(value <= target),
        )
    ]
    return text, headlines


def cold_section(result: dict[str, Any]) -> tuple[str, list[Headline]]:
    p = result["params"]
    helper, direct = result["phases_s"]["helper"], result["phases_s"]["direct"]
    names = list(helper) + [n for n in direct if n not in helper]
    rows = [
        [
            name,
            spread(helper[name], ms) if name in helper else "",
            spread(direct[name], ms) if name in direct else "",
        ]
        for name in names
    ]
    cpu, rss = result["helper_cpu_s"], result["helper_peak_rss_mib"]
    imports = result["imports"]
    target = result["target_cpu_s_max"]
    auth = result["to_authenticated_s"]
    first = result["first_result"]
    cpu_rows = [
        [
            "helper CPU per new tunnel (user+sys, no `--debug`)",
            spread(cpu, secs),
            f"≤ {target} s",
            verdict(cpu["max"] <= target),
        ],
        ["helper peak RSS per new tunnel", spread(rss, lambda v: f"{v:.1f} MiB"), "", ""],
        ["Python start alone (`python -c pass`), CPU", secs(imports["python_start_cpu_s"]["median"]), "", ""],
        [
            "Python start + the helper's imports (botocore, websockets, ours), CPU",
            secs(imports["python_start_and_imports_cpu_s"]["median"]),
            "",
            "",
        ],
        [
            "helper CPU with `--debug` (the timeline runs)",
            secs(result["helper_cpu_s_with_debug"]["median"]),
            "",
            "",
        ],
    ]
    first_rows = [
        [
            label,
            spread(first["task_start_to_result_s"][route], secs),
            spread(first["launch_to_result_s"][route], secs),
        ]
        for route, label in (("ssm_ssh", "`ssm_ssh`"), ("direct", "builtin `ssh`, direct"))
    ]
    text = f"""\
**Per new tunnel** ({p["tunnels"]} connections per route, alternating): `ssh -v host true`, the helper as
ProxyCommand with `--debug`. The harness timestamps every stderr line (ssh's and the helper's) as it
arrives; a phase is the gap between two marker lines (e.g. the helper's `> ssm:StartSession` and
`< session …`). The helper pushes the key and calls StartSession concurrently and waits for both,
so those two are one phase (alone: key push {ms(result["key_push_alone_s"]["median"])}, StartSession
answered after {ms(result["start_session_answered_s"]["median"])}, medians). The helper runs behind a
small `wait4` wrapper (its start is its own row). The AWS-side latencies are the sandbox's (moto and a
Python HTTPS server sharing these CPUs), not AWS's.

{table(["phase", "through the tunnel helper", "direct (TCP to the sshd)"], rows)}

To an authenticated SSH connection (runs without `--debug`, wrapper start subtracted):
helper {spread(auth["helper"], secs)}, direct {spread(auth["direct"], secs)};
ratio {ratio(result["to_authenticated_ratio"])}.

**Helper cost** (from `wait4` of the helper in separate runs without `--debug`; the import costs in
separate processes):

{table(["", "median (min-max)", "target", ""], cpu_rows, "lrll")}

**Time to the first task result** on a host with no master (ansible-playbook, one `command` task, a
fresh ControlPath directory per run, {p["first_result_repeat"]} runs per route alternating; the direct
baseline's key is pushed by the harness before its run, untimed):

{table(["route", "task start → first result", "ansible-playbook launch → first result"], first_rows)}

Ratio ssm_ssh / builtin ssh (task start → result): {ratio(first["ratio"])}.
"""
    headlines: list[Headline] = [
        (
            "cold",
            "helper CPU per new tunnel (worst of runs)",
            f"{cpu['max']:.2f} s (median {cpu['median']:.2f} s)",
            f"≤ {target} s",
            verdict(cpu["max"] <= target),
        ),
        ("cold", "helper peak RSS per new tunnel", f"{rss['median']:.0f} MiB", "—", ""),
        ("cold", "first task result, ssm_ssh / builtin ssh", ratio(first["ratio"]), "—", ""),
    ]
    return text, headlines


def throughput_section(result: dict[str, Any]) -> tuple[str, list[Headline]]:
    p = result["params"]
    rates = result["rates_MBps"]
    labels = {
        "helper": "tunnel helper",
        "direct": "direct (TCP to the sshd)",
        "official": "official session-manager-plugin",
    }

    def mbps(v: float) -> str:
        return f"{v:.2f}" if v < 10 else f"{v:.1f}"

    sessions = result.get("session_s", {})
    rows = []
    for route in result["routes"]:
        size = p["official_size_mib"] if route == "official" else p["size_mib"]
        label = labels.get(route, f"tunnel helper `--chunk-size {route.split('-', 1)[-1]}`")
        up, down = spread(rates[route]["up"], mbps), spread(rates[route]["down"], mbps)
        session = spread(sessions[route], ms) if route in sessions else "not measured"
        rows.append([label, up, down, f"{size} MiB", session])
    targets = result["targets"]
    ratio_rows = []
    headlines: list[Headline] = []
    for key, minimum in (
        ("helper/direct", targets["helper_over_direct_min"]),
        ("helper/official", targets["helper_over_official_min"]),
    ):
        if key not in result["ratios"]:
            continue
        values = result["ratios"][key]
        for direction in ("up", "down"):
            value = values[direction]
            rr = result["round_ratios"][key][direction]
            ratio_rows.append(
                [
                    f"{key}, {'upload' if direction == 'up' else 'download'}",
                    f"{ratio(value)} (rounds {ratio(rr['min'])}-{ratio(rr['max'])})",
                    f"≥ {minimum}",
                    verdict(value >= minimum),
                ]
            )
            headlines.append(
                (
                    "throughput",
                    f"scp {'upload' if direction == 'up' else 'download'}, {key}",
                    ratio(value),
                    f"≥ {minimum}",
                    verdict(value >= minimum),
                )
            )
    official = result["official"]
    if official["present"]:
        plugin = official["plugin"] or {}
        official_text = (
            f"The official plugin ({plugin.get('version')}, `{plugin.get('path')}`, run by "
            "`aws ssm start-session` from AWS CLI v1 with `SSL_CERT_FILE` set to the sandbox CA) moved "
            f"{p['official_size_mib']} MiB per copy instead: its uploads are slow enough that the full "
            "size would take minutes per repetition."
        )
    else:
        official_text = (
            f"Official plugin: {official['note']}. The helper/official ratios are therefore missing."
        )
    agent = p.get("agent_chunk_size") or 1024
    agent_note = (
        "the real SSM agent's size, which the sandbox's agent sends too"
        if agent == 1024
        else "set for this run; the real SSM agent sends 1024"
    )
    text = f"""\
`scp` (OpenSSH's default SFTP protocol) of {p["size_mib"]} MiB of random bytes to the instance and back,
through a ControlMaster opened beforehand (not timed), {p["repeat"]} rounds with the routes alternating
and their order rotating; `Compression=no`; MB/s = 10⁶ bytes/s. {official_text} After the copies,
{p.get("sessions", 0)} bare SSH sessions per round and route through the same master time one
session's round trips.

{table(["route", "upload MB/s", "download MB/s", "file", "one SSH session (`ssh host true`)"], rows)}

{table(["ratio", "value (per-round range)", "target", ""], ratio_rows, "lrll")}

Downloads through any SSM route come from the agent in {agent}-byte data messages ({agent_note}),
each a websocket frame that the client parses and acknowledges with a frame of its own: a message
and an acknowledgement per KiB, so the download rate is set by per-message work at both ends (here
the sandbox's agent is Python on these same CPUs), not by the bytes. Uploads are the client's
choice (the helper's `--chunk-size`, default 1024 like the official plugin).
"""
    return text, headlines


def scale_section(result: dict[str, Any]) -> tuple[str, list[Headline]]:
    p = result["params"]
    rows = []
    for size, entry in result["sizes"].items():
        for route, label in (("ssm_ssh", "ssm_ssh"), ("direct", "builtin ssh, direct")):
            data = entry[route]
            last = data["runs"][-1]
            actions = ", ".join(
                f"{action} {sum(outcomes.values())}"
                + "".join(f" ({n} {outcome})" for outcome, n in sorted(outcomes.items()) if outcome != "ok")
                for action, outcomes in sorted(last["calls"]["by_action"].items())
            )
            cpu = [r["cpu_s"] for r in data["runs"] if "cpu_s" in r]
            cpu_text = (
                f"{statistics.median(c['machine'] for c in cpu):.1f} / "
                f"{statistics.median(c['sandbox'] for c in cpu):.1f}"
                if cpu
                else "not measured"
            )
            rows.append(
                [
                    size,
                    label,
                    spread(data["wall_s"], lambda v: f"{v:.1f} s"),
                    f"{data['peak_rss_mib']['median']:.0f} (max {data['peak_rss_mib']['max']:.0f})",
                    f"{data['peak_pss_mib']['median']:.0f}",
                    str(last["peak_processes"]),
                    ", ".join(str(r["failed_hosts"]) for r in data["runs"]),
                    f"{last['calls']['total']}: {actions}" if actions else "0",
                    ", ".join(str(r["calls"]["throttled"]) for r in data["runs"]),
                    cpu_text,
                ]
            )
    largest = result["largest"]
    target = result["target"]
    peak = largest["peak_rss_mib_max"]
    breakdown_entry = result["sizes"][str(largest["hosts"])]["ssm_ssh"]["runs"]
    worst = max(breakdown_entry, key=lambda r: r["peak_rss_mib"])
    parts = ", ".join(
        f"{kind} {v['rss_mib']:.0f} MiB in {int(v['processes'])} processes"
        for kind, v in sorted(worst["peak_breakdown"].items(), key=lambda kv: -kv[1]["rss_mib"])
    )
    base = result["sizes"][str(largest["hosts"])]["direct"]
    base_rss, base_pss = base["peak_rss_mib"]["max"], base["peak_pss_mib"]["max"]
    helper_rss = float(worst["peak_breakdown"].get("helper", {}).get("rss_mib", 0.0))
    at_target = largest["hosts"] == target["hosts"]
    rss_ok = peak <= target["peak_rss_mib_max"]
    fail_ok = largest["failed_hosts_max"] == 0
    limit = target["peak_rss_mib_max"]
    sizes = ", ".join(str(s) for s in p["sizes"])
    header = ["hosts", "route", "wall time", "peak RSS sum, MiB", "peak PSS sum, MiB", "processes at peak"]
    header += ["failed hosts (per run)", "API calls (last run)", "throttled (per run)"]
    header += ["CPU-s: machine / sandbox (median)"]
    main_table = table(header, rows, "rlrrrrrlrr")
    reasons = []
    for size, entry in result["sizes"].items():
        for route in ("ssm_ssh", "direct"):
            counted: dict[str, int] = {}
            for run in entry[route]["runs"]:
                for reason, count in (run.get("failure_reasons") or {}).items():
                    counted[reason] = counted.get(reason, 0) + count
            reasons += [
                f"- {size} hosts, {route}: {n} times: {reason}" for reason, n in sorted(counted.items())
            ]
    failures = (
        "Why hosts failed (all runs; ids and numbers masked as N):\n\n" + "\n".join(reasons) + "\n"
        if reasons
        else ""
    )
    qualifier = (
        "" if at_target else f" (this run's largest size is {largest['hosts']} hosts, not {target['hosts']})"
    )
    text = f"""\
{sizes} hosts with `--forks` equal to the host count, {p["tasks"]} tasks (command, copy,
template), pipelining on, every connection new (fresh ControlPath directory), {p["repeat"]} runs per size and
route alternating; the sandbox's default throttling is on (StartSession 5/s burst 20, SendSSHPublicKey
10/s burst 40, TerminateSession 10/s burst 40). Memory: the sum of RSS of every controller process
(ansible-playbook and its workers, ssh clients and masters, helpers; ansible-playbook runs as a child
subreaper so detached masters stay in its tree), sampled every 0.25 s with psutil; the sum of PSS
(shared pages split between processes) every 2 s. API calls are read after the masters were closed,
so each helper's TerminateSession counts. The baseline's key pushes are not counted. The harness waits
{p["settle_s"]:.0f} s before each run so the throttling buckets start full. CPU-s: busy CPU seconds of the
whole machine during the run and its clean-up, and the sandbox's share (its server process, which
plays the AWS APIs and the data plane, and the sshd processes it started): on AWS that share runs
elsewhere; here it competes with ansible-playbook, ssh and the helpers for the same CPUs.

{main_table}

At {largest["hosts"]} hosts{qualifier}: peak total RSS {peak:.0f} MiB against a target of
≤ {limit:.0f} MiB: {verdict(rss_ok)}; failed hosts {largest["failed_hosts_max"]} in the worst run (target 0):
{verdict(fail_ok)}. At that peak: {parts}.
The RSS sum counts memory shared between forked workers once per process, so it overstates the real
footprint (compare the PSS sum). For scale: the baseline, the same run without any tunnel, peaks at
{base_rss:.0f} MiB RSS sum ({base_pss:.0f} MiB PSS) at {largest["hosts"]} hosts; what the tunnel adds on
top is mostly its helpers, one per host for the life of its master ({helper_rss:.0f} MiB RSS at the
peak above).

{failures}"""
    headlines: list[Headline] = [
        (
            "scale",
            f"peak total RSS at {largest['hosts']} hosts",
            f"{peak:.0f} MiB",
            f"≤ {target['peak_rss_mib_max']:.0f} MiB",
            verdict(rss_ok),
        ),
        (
            "scale",
            f"failed hosts at {largest['hosts']} hosts",
            str(largest["failed_hosts_max"]),
            "0",
            verdict(fail_ok),
        ),
        (
            "scale",
            f"wall time at {largest['hosts']} hosts, ssm_ssh / builtin ssh",
            ratio(result["sizes"][str(largest["hosts"])]["ratios"]["wall"])
            + (" (hosts that failed stopped early)" if largest["failed_hosts_max"] else ""),
            "—",
            "",
        ),
    ]
    return text, headlines


def inventory_section(result: dict[str, Any]) -> tuple[str, list[Headline]]:
    p = result["params"]
    labels = {
        "ssm_instances": "`trek10.ec2ssm.ssm_instances`",
        "aws_ec2": "`amazon.aws.aws_ec2`",
        "ssm_instances_cached": "`ssm_instances`, cache hit",
    }
    rows = []
    headlines: list[Headline] = []
    for entry in result["sizes"]:
        for selection, data in entry["selections"].items():
            for name, label in labels.items():
                run = data[name]
                actions = ", ".join(f"{k} {v}" for k, v in sorted(run["by_action"].items())) or "none"
                rel = {
                    "ssm_instances": data["ratio_wall"],
                    "ssm_instances_cached": data["ratio_wall_cached"],
                }.get(name)
                rows.append(
                    [
                        f"{entry['size']:,}",
                        selection,
                        label,
                        f"{run['hosts']:,}",
                        f"{run['calls']} ({actions})",
                        str(run["throttled_max"]),
                        spread(run["wall_s"], secs),
                        ratio(rel) if rel is not None else "1",
                    ]
                )
            headlines.append(
                (
                    "inventory",
                    f"{entry['size']:,} instances, {selection}: wall time ssm_instances / aws_ec2",
                    ratio(data["ratio_wall"]),
                    "—",
                    "",
                )
            )
    header = ["instances", "selection", "plugin", "hosts", "API calls (by action)", "throttled", "wall time"]
    main_table = table([*header, "ratio to aws_ec2"], rows, "rllrlrrr")
    text = f"""\
The real `ansible-inventory --list` with each plugin on the same sandbox instances (API-only: EC2 in
moto and their SSM records, no sshd), one region, the sandbox's default throttling on; {p["repeat"]} runs
per plugin alternating. Selections: `tag` = the half tagged `Environment=prod` (ours `tags:
{{Environment: prod}}`, aws_ec2 `filters: {{tag:Environment: prod, instance-state-name: running}}`);
`all` = every instance (aws_ec2 `filters: {{instance-state-name: running}}`). Both name hosts by
instance id and set the same connection variables (aws_ec2 through `compose`). Wall time includes
ansible-inventory's start-up; API calls are counted by the sandbox.

{main_table}

`DescribeInstanceInformation` returns at most 50 nodes per call and AWS applies tag filters per page
after paging, so a tag selection costs one call per 50 nodes in the region however few match.
aws_ec2 makes one `DescribeInstances` call here because moto answers it unpaged; on AWS it pages
too. The call counts include throttled attempts (the throttled column), which botocore retried.
"""
    return text, headlines


SECTIONS: dict[str, Callable[[dict[str, Any]], tuple[str, list[Headline]]]] = {
    "warm": warm_section,
    "cold": cold_section,
    "throughput": throughput_section,
    "scale": scale_section,
    "inventory": inventory_section,
}
PLOTS: dict[str, Callable[[dict[str, Any], Path], Path]] = {
    "warm": plots.warm,
    "cold": plots.cold,
    "throughput": plots.throughput,
    "scale": plots.scale,
    "inventory": plots.inventory,
}


def render(results: dict[str, dict[str, Any]], doc: Path, all_command: str) -> list[Path]:
    """Write ``doc`` and its plots (``<doc stem>/<scenario>.png``); returns the plot paths."""
    plot_dir = doc.parent / doc.stem
    images: list[Path] = []
    sections: list[str] = []
    headlines: list[Headline] = []
    for name in ORDER:
        title = TITLES[name]
        record = results.get(name)
        if record is None:
            sections.append(f"## {title}\n\nNot measured yet. Run `{all_command} --only {name}`.\n")
            continue
        text, lines = SECTIONS[name](record["result"])
        headlines += lines
        image = PLOTS[name](record["result"], plot_dir / f"{name}.png")
        images.append(image)
        rel = image.relative_to(doc.parent).as_posix()
        sections.append(
            f"## {title}\n\n{text}\n![{title}]({rel})\n\n{machine_line(record)}\n\n{reproduce(record)}\n"
        )
    summary = table(
        ["scenario", "measurement", "result", "target", ""],
        [list(h) for h in headlines],
        "lllll",
    )
    modes = sorted({r["mode"] for r in results.values()})
    smoke_note = (
        "\n> **Smoke run**: one repetition at small sizes, to keep the harness working; not a measurement.\n"
        if "smoke" in modes
        else ""
    )
    closing = "\n".join(
        f"- {scenario}: {what} = **{value}**" + (f" (target {target}: {ok})" if ok else "")
        for scenario, what, value, target, ok in headlines
    )
    doc.write_text(
        f"""\
# Performance
{smoke_note}
<!-- Generated by bench/report.py from bench/results/*.json; edit those tools, not this file. -->

Our claims — as fast as plain SSH once connected, the tunnel is never the bottleneck, and it
scales to 100 hosts — measured in the local AWS sandbox, with one command: `{all_command}`
(root, Debian/Ubuntu; the sandbox puts each instance's sshd in its own network namespace). Each
scenario runs the product and its baseline **alternately in the same run**, several times, and
reports the median with the min-max range; compare the **ratios**, not the absolute times, which
belong to this machine and to the sandbox (a Python stand-in for AWS on the same CPUs), not to AWS.
Raw results, with the machine and load of each run: `bench/results/*.json` (not committed).

## Summary

{summary}

{chr(10).join(sections)}
## Closing note: headline ratios

{closing}
"""
    )
    return images
