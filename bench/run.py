# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``make bench``: run the benchmark scenarios, keep their raw results, render docs/performance.md.

Usage (``make bench BENCH_ARGS="..."`` passes the arguments through)::

    python bench/run.py                      # every scenario, full size -> bench/results/, docs/
    python bench/run.py --only warm,cold     # rerun some; the document is rendered from all results
    python bench/run.py --report-only        # re-render docs/performance.md from bench/results/
    python bench/run.py --smoke --output-dir DIR   # CI: one repetition, small sizes, all into DIR
    python bench/run.py --only throughput --param throughput.helper_chunk_sizes=4096,16384
                                             # change a scenario's Params field (repeatable)

Each scenario runs in its own temporary directory with its own sandbox, under a load monitor;
its result is written with the machine information to ``<results>/<scenario>.json`` (and a
timestamped copy under ``<results>/history/``). A failing scenario does not stop the others, but
the exit status is 1 and the failure is printed, so neither CI nor a person can miss it.
Needs root, like the sandbox.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from ansible_collections.trek10.ec2ssm.bench import machine, report
from ansible_collections.trek10.ec2ssm.bench.scenarios import cold, inventory, scale, throughput, warm

REPO = Path(__file__).resolve().parents[1]
SCENARIOS: dict[str, ModuleType] = {
    "warm": warm,
    "cold": cold,
    "throughput": throughput,
    "scale": scale,
    "inventory": inventory,
}
ALL_COMMAND = "make bench"


def command_for(name: str, smoke: bool, overrides: dict[str, str]) -> str:
    if smoke:
        return "make bench-smoke"
    extra = "".join(f" --param {name}.{field}={value}" for field, value in overrides.items())
    return f'{ALL_COMMAND} BENCH_ARGS="--only {name}{extra}"'


def with_overrides(params: Any, overrides: dict[str, str]) -> Any:
    """``params`` with fields replaced from text: ints, floats, comma-separated int tuples."""
    changes: dict[str, Any] = {}
    for field, text in overrides.items():
        current = getattr(params, field)
        if isinstance(current, tuple):
            changes[field] = tuple(int(v) for v in text.split(",") if v)
        elif isinstance(current, float):
            changes[field] = float(text)
        else:  # int, or an optional int left at None
            changes[field] = int(text) if text else None
    return dataclasses.replace(params, **changes)


def run_scenario(name: str, smoke: bool, overrides: dict[str, str]) -> dict[str, Any]:
    """Run one scenario; returns its record (raises on failure)."""
    module = SCENARIOS[name]
    params = with_overrides(module.Params.smoke() if smoke else module.Params.full(), overrides)
    print(f">>> bench {name} ({'smoke' if smoke else 'full'}): {params}", flush=True)
    facts = machine.snapshot()
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix=f"ec2ssm-bench-{name}-", ignore_cleanup_errors=True) as tmp,
        machine.LoadMonitor() as load,
    ):
        result = module.run(params, Path(tmp))
    record = {
        "scenario": name,
        "mode": "smoke" if smoke else "full",
        "command": command_for(name, smoke, overrides),
        "machine": facts,
        "load": load.result(),
        "duration_s": time.monotonic() - started,
        "result": result,
    }
    print(f">>> bench {name}: done in {record['duration_s']:.0f} s, load {record['load']}", flush=True)
    return record


def save(record: dict[str, Any], results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=2) + "\n"
    (results / f"{record['scenario']}.json").write_text(text)
    stamp = record["machine"]["time_utc"].replace(":", "")
    history = results / "history"
    history.mkdir(exist_ok=True)
    (history / f"{record['scenario']}-{stamp}.json").write_text(text)


def check_links(doc: Path) -> None:
    """Every image the document embeds exists (the smoke's check of the rendering)."""
    missing = [
        link
        for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", doc.read_text())
        if not (doc.parent / link).exists()
    ]
    if missing:
        raise RuntimeError(f"{doc} embeds missing images: {missing}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios to run")
    parser.add_argument("--smoke", action="store_true", help="one repetition, small sizes (CI)")
    parser.add_argument(
        "--output-dir",
        type=Path,
        help="put results/, performance.md and performance/ here (default: bench/results and docs/)",
    )
    parser.add_argument("--report-only", action="store_true", help="only re-render the document")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="SCENARIO.FIELD=VALUE",
        help="override a field of a scenario's Params (e.g. warm.repeat=7)",
    )
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in args.only if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    args.overrides = {name: {} for name in SCENARIOS}
    for item in args.param:
        target, _sep, value = item.partition("=")
        scenario, _dot, field = target.partition(".")
        fields = (
            {f.name for f in dataclasses.fields(SCENARIOS[scenario].Params)}
            if scenario in SCENARIOS
            else set()
        )
        if not _sep or field not in fields:
            parser.error(
                f"--param {item}: expected SCENARIO.FIELD=VALUE with a field of that scenario's Params"
            )
        args.overrides[scenario][field] = value
    if args.smoke and args.output_dir is None:
        parser.error("--smoke needs --output-dir (the smoke must not overwrite docs/performance.md)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.output_dir is not None:
        results, doc = args.output_dir / "results", args.output_dir / "performance.md"
    else:
        results, doc = REPO / "bench" / "results", REPO / "docs" / "performance.md"
    failures: list[str] = []
    started = time.monotonic()
    if not args.report_only:
        for name in args.only:
            try:
                save(run_scenario(name, args.smoke, args.overrides[name]), results)
            except Exception:  # noqa: BLE001 - reported below; the other scenarios still run
                traceback.print_exc()
                print(f">>> bench {name}: FAILED", file=sys.stderr, flush=True)
                failures.append(name)
    found = report.load_results(results)
    if args.smoke:  # only this run's results, all of which must be there
        found = {k: v for k, v in found.items() if k in args.only}
    images = report.render(found, doc, ALL_COMMAND)
    check_links(doc)
    print(f">>> wrote {doc} and {len(images)} plots in {time.monotonic() - started:.0f} s", flush=True)
    if args.smoke:
        official = found.get("throughput", {}).get("result", {}).get("official", {})
        if official and not official.get("present"):
            print(f">>> note: official session-manager-plugin {official.get('note')}", flush=True)
    if failures:
        print(f">>> bench: FAILED scenarios: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
