# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One PNG per scenario, drawn from the raw results (matplotlib, no display needed).

Each plot puts the product beside its baseline and draws the target where there is one, so
the picture alone says whether the claim holds. Error bars are the min-max range of the
repetitions (never a standard deviation: there are too few repetitions for one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # after choosing the non-interactive backend
from matplotlib.axes import Axes
from matplotlib.figure import Figure

PRODUCT = "#1f77b4"
BASELINE = "#7f7f7f"
OFFICIAL = "#d62728"
TARGET = "#2ca02c"
DPI = 110


def _spread(summary: dict[str, Any], scale: float = 1.0) -> tuple[float, list[float]]:
    """(median, [below, above]) for an error bar from a stats.summary dict."""
    median = summary["median"] * scale
    return median, [median - summary["min"] * scale, summary["max"] * scale - median]


def _bars(
    ax: Axes, labels: list[str], series: list[tuple[str, str, list[dict[str, Any]]]], scale: float
) -> None:
    """Grouped bars: ``series`` = (name, colour, one summary per label)."""
    width = 0.8 / len(series)
    for index, (name, colour, summaries) in enumerate(series):
        xs = [n + (index - (len(series) - 1) / 2) * width for n in range(len(labels))]
        values = [_spread(s, scale) for s in summaries]
        errors = [[v[1][0] for v in values], [v[1][1] for v in values]]
        ax.bar(xs, [v[0] for v in values], width, yerr=errors, capsize=3, label=name, color=colour)
    ax.set_xticks(range(len(labels)), labels)


def _legend_below(ax: Axes, columns: int = 3) -> None:
    """The legend under the axes, where it cannot hide a bar."""
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=columns, frameon=False)


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def warm(result: dict[str, Any], path: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 2]})
    actions = sorted(result["per_action_s"]["ssm_ssh"])
    _bars(
        left,
        ["all tasks", *actions],
        [
            (
                "ssm_ssh (SSM tunnel)",
                PRODUCT,
                [result["per_task_s"]["ssm_ssh"], *(result["per_action_s"]["ssm_ssh"][a] for a in actions)],
            ),
            (
                "builtin ssh (direct)",
                BASELINE,
                [result["per_task_s"]["direct"], *(result["per_action_s"]["direct"][a] for a in actions)],
            ),
        ],
        1000.0,
    )
    left.set_ylabel("ms per task (median, min-max)")
    left.set_title(f"Warm task time, {result['params']['hosts']} hosts, pipelining")
    left.legend()
    ratios = result["round_ratios"]["samples"]
    right.plot(range(1, len(ratios) + 1), ratios, "o-", color=PRODUCT, label="per round")
    right.axhline(result["target_ratio_max"], color=TARGET, linestyle="--", label="target (max)")
    right.axhline(1.0, color=BASELINE, linewidth=0.8)
    right.set_xticks(range(1, len(ratios) + 1))
    right.set_xlabel("round")
    right.set_ylabel("ssm_ssh / builtin ssh")
    right.set_title("Per-task time ratio")
    right.legend()
    return _save(fig, path)


def cold(result: dict[str, Any], path: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5), gridspec_kw={"width_ratios": [3, 1]})
    rows = [("tunnel helper", result["phases_s"]["helper"]), ("direct ssh", result["phases_s"]["direct"])]
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22"]
    names: list[str] = []
    for _label, phases in rows:
        names += [n for n in phases if n not in names]
    for y, (_label, phases) in enumerate(rows):
        left_edge = 0.0
        for name, summary in phases.items():
            width = summary["median"]
            left.barh(y, width, left=left_edge, color=colours[names.index(name) % len(colours)], label=name)
            left_edge += width
    handles, labels = left.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    left.legend(
        unique.values(),
        unique.keys(),
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.2),
        ncol=2,
        frameon=False,
    )
    left.set_yticks(range(len(rows)), [label for label, _ in rows])
    left.set_xlabel("seconds from ssh start (medians)")
    left.set_title("New connection: ssh host true")
    cpu = result["helper_cpu_s"]
    median, spread = _spread(cpu)
    right.bar([0], [median], yerr=[[spread[0]], [spread[1]]], capsize=4, color=PRODUCT, label="whole helper")
    imports = result["imports"]["python_start_and_imports_cpu_s"]["median"]
    right.bar([0], [imports], color="#aec7e8", label="Python start + imports")
    right.axhline(result["target_cpu_s_max"], color=TARGET, linestyle="--", label="target (max)")
    right.set_xticks([0], ["helper"])
    right.set_ylabel("CPU seconds per new tunnel")
    right.set_title("Helper CPU")
    _legend_below(right, 1)
    return _save(fig, path)


def throughput(result: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colours = {"direct": BASELINE, "official": OFFICIAL}
    names = {"helper": "tunnel helper", "direct": "direct ssh", "official": "official plugin"}
    series = [
        (
            names.get(route, route),
            colours.get(route, PRODUCT),
            [result["rates_MBps"][route][d] for d in ("up", "down")],
        )
        for route in result["routes"]
    ]
    _bars(ax, ["upload (scp to the instance)", "download (scp from it)"], series, 1.0)
    ax.set_yscale("log")
    ax.set_ylabel("MB/s (median, min-max; log scale)")
    size = result["params"]["size_mib"]
    _legend_below(ax, len(series))
    ax.set_title(
        f"scp throughput, {size} MiB"
        + (" (official plugin: smaller file)" if "official" in result["routes"] else "")
    )
    return _save(fig, path)


def scale(result: dict[str, Any], path: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5))
    sizes = [int(s) for s in result["sizes"]]
    kinds = ("ansible", "ssh", "helper", "other")
    bottoms = [0.0] * len(sizes)
    colours = {"ansible": "#9467bd", "ssh": BASELINE, "helper": PRODUCT, "other": "#c7c7c7"}
    xs = list(range(len(sizes)))
    for kind in kinds:
        heights = []
        for size in sizes:
            runs = result["sizes"][str(size)]["ssm_ssh"]["runs"]
            peak_run = max(runs, key=lambda r: r["peak_rss_mib"])
            heights.append(float(peak_run["peak_breakdown"].get(kind, {}).get("rss_mib", 0.0)))
        left.bar(
            [x - 0.2 for x in xs], heights, 0.4, bottom=bottoms, color=colours[kind], label=f"ssm_ssh: {kind}"
        )
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    direct = [max(r["peak_rss_mib"] for r in result["sizes"][str(s)]["direct"]["runs"]) for s in sizes]
    left.bar(
        [x + 0.2 for x in xs], direct, 0.4, color="#dddddd", edgecolor=BASELINE, label="builtin ssh (direct)"
    )
    left.axhline(
        result["target"]["peak_rss_mib_max"], color=TARGET, linestyle="--", label="target at 100 hosts"
    )
    left.set_xticks(xs, [str(s) for s in sizes])
    left.set_xlabel("hosts (forks = hosts)")
    left.set_ylabel("peak total RSS, MiB (worst run)")
    left.set_title("Controller memory")
    _legend_below(left, 2)
    for route, colour in (("ssm_ssh", PRODUCT), ("direct", BASELINE)):
        medians: list[float] = []
        errors: list[list[float]] = [[], []]
        for size in sizes:
            median, spread = _spread(result["sizes"][str(size)][route]["wall_s"])
            medians.append(median)
            errors[0].append(spread[0])
            errors[1].append(spread[1])
        right.errorbar(sizes, medians, yerr=errors, fmt="o-", capsize=3, color=colour, label=route)
    right.set_xlabel("hosts (forks = hosts)")
    right.set_ylabel("ansible-playbook wall time, s")
    right.set_title("Wall time from cold (median, min-max)")
    right.legend()
    return _save(fig, path)


def inventory(result: dict[str, Any], path: Path) -> Path:
    selections = list(result["sizes"][0]["selections"])
    fig, axes = plt.subplots(1, len(selections), figsize=(5 * len(selections), 4.5), squeeze=False)
    names = (
        ("ssm_instances", PRODUCT),
        ("aws_ec2", BASELINE),
        ("ssm_instances_cached", "#aec7e8"),
    )
    for ax, selection in zip(axes[0], selections, strict=True):
        labels = [f"{entry['size']:,}" for entry in result["sizes"]]
        series = [
            (name, colour, [entry["selections"][selection][name]["wall_s"] for entry in result["sizes"]])
            for name, colour in names
        ]
        _bars(ax, labels, series, 1.0)
        ax.set_xlabel("instances")
        ax.set_ylabel("ansible-inventory --list, s")
        ax.set_title(f"selection: {selection}")
        _legend_below(ax)
    return _save(fig, path)
