# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Peak memory of a whole controller-side process tree, sampled with psutil.

The scale target is about *total* controller memory: ansible-playbook and its forked workers,
every ssh client and ControlPersist master, every tunnel helper. The tree is rooted at a
subreaper (``wrappers/subreaper_exec.py``) so detached masters and their helpers stay in it.

The sum of RSS counts pages shared between processes (forked workers share most of their
memory with ansible-playbook) once per process, so it overstates the real footprint; it is what
the target is stated in. The sampler also records the peak sum of PSS (shared pages split
between their users), sampled less often because reading every process's smaps is slow.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any

import psutil  # type: ignore[import-untyped]

MIB = 1024 * 1024


def category(proc: psutil.Process) -> str:
    """Which part of the controller a process is: helper, ssh, ansible or other."""
    try:
        name = proc.name()
        cmdline = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "gone"
    if name in ("ssh", "scp", "sftp"):  # before the helper test: a master's argv names the helper
        return "ssh"
    if "ssm_proxy" in cmdline:
        return "helper"
    if "ansible" in cmdline:
        return "ansible"
    return "other"


class TreeSampler:
    """Samples the RSS of ``root_pid`` and all its descendants every ``interval`` seconds."""

    def __init__(self, root_pid: int, interval: float = 0.25, pss_interval: float = 2.0) -> None:
        self.root = psutil.Process(root_pid)
        self.interval = interval
        self.pss_interval = pss_interval
        self.peak_rss = 0
        self.peak_breakdown: dict[str, dict[str, float]] = {}
        self.peak_pss: float | None = None
        self._last_pss = -pss_interval
        self.peak_processes = 0
        self.samples: list[tuple[float, float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-sampler", daemon=True)
        self._started = time.monotonic()

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return []

    def _sample(self) -> None:
        procs = self._tree()
        total = 0
        parts: dict[str, dict[str, float]] = {}
        for proc in procs:
            try:
                rss = proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            if rss == 0:  # zombie
                continue
            total += rss
            part = parts.setdefault(category(proc), {"rss_mib": 0.0, "processes": 0})
            part["rss_mib"] += rss / MIB
            part["processes"] += 1
        self.samples.append((time.monotonic() - self._started, total / MIB, len(procs)))
        if total > self.peak_rss:
            self.peak_rss = total
            self.peak_breakdown = parts
            self.peak_processes = sum(int(p["processes"]) for p in parts.values())
        now = time.monotonic()
        if now - self._last_pss >= self.pss_interval:
            self._last_pss = now
            pss = self._pss(procs)
            self.peak_pss = pss if self.peak_pss is None else max(self.peak_pss, pss)

    @staticmethod
    def _pss(procs: list[psutil.Process]) -> float:
        """Sum of PSS in MiB (reads every process's smaps_rollup)."""
        total = 0
        for proc in procs:
            try:
                total += getattr(proc.memory_full_info(), "pss", 0)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return total / MIB

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def result(self) -> dict[str, Any]:
        return {
            "peak_rss_mib": self.peak_rss / MIB,
            "peak_pss_mib": self.peak_pss,
            "peak_processes": self.peak_processes,
            "peak_breakdown": self.peak_breakdown,
            "sample_interval_s": self.interval,
            "pss_interval_s": self.pss_interval,
            "timeline": [(round(t, 2), round(m, 1), n) for t, m, n in self.samples],
        }
