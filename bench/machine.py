# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What machine a result was measured on, and how busy it was meanwhile.

Every result carries this: ratios from a 2-core machine that was also running a test suite are
not the ratios of an idle 16-core one, and a reader (or a rerun) must be able to tell.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

OFFICIAL_PLUGIN_DIRS = (
    Path("/opt/session-manager-plugin/bin-release-version"),
    Path("/opt/session-manager-plugin/bin"),
)


def official_plugin() -> Path | None:
    """AWS's ``session-manager-plugin``: on PATH, else where this project's CI images put it."""
    found = shutil.which("session-manager-plugin")
    if found:
        return Path(found)
    for directory in OFFICIAL_PLUGIN_DIRS:
        candidate = directory / "session-manager-plugin"
        if candidate.exists():
            return candidate
    return None


def _command_output(argv: list[str]) -> str | None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _amazon_aws_version() -> str | None:
    for root in os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep):
        manifest = Path(root) / "ansible_collections" / "amazon" / "aws" / "MANIFEST.json"
        if manifest.exists():
            return str(json.loads(manifest.read_text())["collection_info"]["version"])
    return None


def snapshot() -> dict[str, Any]:
    """Static facts about this machine and software, plus the load average right now."""
    import ansible.release  # type: ignore[import-untyped]

    plugin = official_plugin()
    return {
        "time_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "ansible_core": ansible.release.__version__,
        "amazon_aws": _amazon_aws_version(),
        "openssh": _command_output(["ssh", "-V"]),
        "session_manager_plugin": (
            {"path": str(plugin), "version": _command_output([str(plugin), "--version"])} if plugin else None
        ),
        "loadavg": list(os.getloadavg()),
    }


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat (all processes, all
    containers on this kernel), in clock ticks."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user
    return total - idle, total


class LoadMonitor:
    """Samples the 1-minute load average and the machine's CPU use every ``interval`` seconds
    while a scenario runs.

    Load at the start and end alone can miss a burst in the middle (another engineer's test
    run); the maximum seen is what tells whether a result deserves a rerun. The load average
    counts waiting tasks too (and, on a shared kernel, other containers'), so the share of CPU
    time the machine was busy is recorded beside it.
    """

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self.busy: list[float] = []
        self._start_jiffies = _cpu_jiffies()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-monitor", daemon=True)

    def _run(self) -> None:
        last = _cpu_jiffies()
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.interval):
                return
            now = _cpu_jiffies()
            if now[1] > last[1]:
                self.busy.append((now[0] - last[0]) / (now[1] - last[1]))
            last = now

    def __enter__(self) -> LoadMonitor:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])

    def result(self) -> dict[str, float | None]:
        """1-minute load average (at start, at end, maximum and median while running) and the
        fraction of all CPU time the machine was busy (over the whole run, and the busiest
        interval)."""
        samples = self.samples or [os.getloadavg()[0]]
        ordered = sorted(samples)
        end = _cpu_jiffies()
        spent = end[1] - self._start_jiffies[1]
        return {
            "start": samples[0],
            "end": samples[-1],
            "max": ordered[-1],
            "median": ordered[len(ordered) // 2],
            "cpu_busy": (end[0] - self._start_jiffies[0]) / spent if spent else None,
            "cpu_busy_max": max(self.busy) if self.busy else None,
        }
