# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Throughput: scp through our tunnel, straight to the sshd, and through AWS's official plugin.

Per round and route a ControlMaster is opened (not timed), then ``scp`` (OpenSSH's default SFTP
protocol) copies a file of random bytes up to the instance and back down again through it; only
each copy is timed. The routes alternate and their order rotates every round. ssh runs with
``Compression=no`` (random data does not compress anyway). MB/s = 10**6 bytes per second.

The official ``session-manager-plugin`` (via ``aws ssm start-session``) moves a smaller file:
it is slow enough uploading that a 64 MiB copy would take minutes per repetition; rates are per
second, so sizes compare. Without the plugin the route is skipped and the result says so.

Through the same masters, ``sessions`` bare SSH sessions (``ssh host true``) per round time the
round trips of one session on each route: a latency check that puts our client beside AWS's on
the same service and agent side.

Downloads are bound by the sandbox agent, which, like the real SSM agent, sends 1024-byte
messages and waits for each to be acknowledged in turn (``agent_chunk_size`` changes that for a
what-if run). Optional ``helper_chunk_sizes`` add helper variants with ``--chunk-size N``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ansible_collections.trek10.ec2ssm.bench import machine, routes, stats, testbed

TARGET_DIRECT_FRACTION = 0.5
TARGET_OFFICIAL_MULTIPLE = 10.0
MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Params:
    size_mib: int = 64
    repeat: int = 3
    official_size_mib: int = 8
    sessions: int = 10
    helper_chunk_sizes: tuple[int, ...] = ()
    agent_chunk_size: int | None = None

    @classmethod
    def full(cls) -> Params:
        return cls()

    @classmethod
    def smoke(cls) -> Params:
        return cls(size_mib=4, repeat=1, official_size_mib=1, sessions=2)


class Transfers:
    """Opens masters and times scp copies for one target."""

    def __init__(self, target: routes.Target, work: Path, official_env: dict[str, str] | None) -> None:
        self.target = target
        self.work = work
        self.env = target.handle.env()
        self.official_env = official_env

    def env_for(self, route: str) -> dict[str, str]:
        if route == "official" and self.official_env is not None:
            return self.official_env
        return self.env

    def options(self, route: str) -> list[str]:
        if route.startswith("helper-"):
            proxy = self.target.helper_proxy(chunk_size=int(route.split("-", 1)[1]))
            return self.target.options("helper", proxy)
        return self.target.options(route)

    @contextlib.contextmanager
    def master(self, route: str) -> Iterator[list[str]]:
        """A ControlMaster for ``route``; yields the options that reuse it."""
        sock = self.work / f"cm-{route}"
        if route in ("direct", "official"):
            self.target.push_key()
        host = self.target.host(route)
        opts = [*self.options(route), "-o", f"ControlPath={sock}"]
        # The backgrounded master keeps its stderr: a file, not a pipe nobody would close.
        log = self.work / f"master-{route}.log"
        with log.open("ab") as stderr:
            proc = subprocess.run(
                ["ssh", *opts, "-o", "ControlMaster=yes", "-fN", host],
                env=self.env_for(route),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                timeout=180,
                check=False,
            )
        if proc.returncode != 0:
            raise RuntimeError(f"ssh master over {route} failed: {log.read_text()[-2000:]}")
        try:
            yield opts
        finally:
            subprocess.run(
                ["ssh", *opts, "-O", "exit", host],
                env=self.env_for(route),
                capture_output=True,
                timeout=60,
                check=False,
            )

    def copy(self, route: str, opts: list[str], source: str, dest: str) -> float:
        started = time.perf_counter()
        proc = subprocess.run(
            ["scp", "-q", *opts, source, dest],
            env=self.env_for(route),
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        took = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"scp {source} {dest} over {route} failed: {proc.stderr.strip()}")
        return took

    def remote_size(self, route: str, opts: list[str], path: str) -> int:
        host = self.target.host(route)
        proc = subprocess.run(
            ["ssh", *opts, host, f"stat -c %s {path}"],
            env=self.env_for(route),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return int(proc.stdout.strip())

    def session(self, route: str, opts: list[str]) -> float:
        """Seconds for one bare ``ssh host true`` through the open master."""
        started = time.perf_counter()
        subprocess.run(
            ["ssh", *opts, self.target.host(route), "true"],
            env=self.env_for(route),
            capture_output=True,
            timeout=60,
            check=True,
        )
        return time.perf_counter() - started

    def round_trip(self, route: str, payload: Path, size: int, sessions: int) -> dict[str, Any]:
        """MB/s up and down through one master (both copies checked whole), then session times."""
        remote = f"/tmp/bench-{route}.bin"
        local = self.work / f"back-{route}.bin"
        host = self.target.host(route)
        with self.master(route) as opts:
            up = self.copy(route, opts, str(payload), f"{host}:{remote}")
            if self.remote_size(route, opts, remote) != size:
                raise RuntimeError(f"{route}: the uploaded file is not {size} bytes")
            down = self.copy(route, opts, f"{host}:{remote}", str(local))
            if local.stat().st_size != size:
                raise RuntimeError(f"{route}: the downloaded file is not {size} bytes")
            local.unlink()
            times = [self.session(route, opts) for _ in range(sessions)]
        return {"up": size / up / 1e6, "down": size / down / 1e6, "sessions": times}


def make_payload(path: Path, size_mib: int) -> Path:
    with path.open("wb") as handle:
        for _block in range(size_mib):
            handle.write(os.urandom(MIB))
    return path


def run(params: Params, work: Path) -> dict[str, Any]:
    official_note = None
    with (
        testbed.sandbox(work, testbed.sandbox_config(instances=1)) as handle,
        testbed.DirectRoutes(handle) as direct_routes,
    ):
        target = routes.single_target(handle, direct_routes, work)
        official_env = routes.official_env(handle)
        names = ["helper", *(f"helper-{n}" for n in params.helper_chunk_sizes), "direct"]
        if official_env is None:
            official_note = (
                "skipped: no session-manager-plugin on PATH or in /opt/session-manager-plugin/bin*"
            )
        else:
            names.append("official")
        if params.agent_chunk_size:
            handle.ctl.set_faults(dataplane={"chunk_size": params.agent_chunk_size})
        transfers = Transfers(target, work, official_env)
        payloads = {
            size: make_payload(work / f"payload-{size}.bin", size)
            for size in {params.size_mib, params.official_size_mib}
        }
        rates: dict[str, dict[str, list[float]]] = {n: {"up": [], "down": []} for n in names}
        sessions: dict[str, list[float]] = {n: [] for n in names}
        for round_no in range(params.repeat):
            for name in stats.rotated(names, round_no):
                size_mib = params.official_size_mib if name == "official" else params.size_mib
                result = transfers.round_trip(name, payloads[size_mib], size_mib * MIB, params.sessions)
                for direction in ("up", "down"):
                    rates[name][direction].append(result[direction])
                sessions[name] += result["sessions"]
        testbed.wait_sessions_ended(handle)
    medians = {n: {d: statistics.median(v) for d, v in by.items()} for n, by in rates.items()}
    out: dict[str, Any] = {
        "params": dataclasses.asdict(params),
        "targets": {
            "helper_over_direct_min": TARGET_DIRECT_FRACTION,
            "helper_over_official_min": TARGET_OFFICIAL_MULTIPLE,
        },
        "routes": names,
        "official": {
            "present": official_env is not None,
            "note": official_note,
            "plugin": machine.snapshot()["session_manager_plugin"],
        },
        "rates_MBps": {n: {d: stats.summary(v) for d, v in by.items()} for n, by in rates.items()},
        "session_s": {n: stats.summary(v) for n, v in sessions.items()},
        "ratios": {},
        "round_ratios": {},
    }
    for mine in [n for n in names if n.startswith("helper")]:
        for other in [n for n in ("direct", "official") if n in names]:
            key = f"{mine}/{other}"
            out["ratios"][key] = {d: medians[mine][d] / medians[other][d] for d in ("up", "down")}
            out["round_ratios"][key] = {
                d: stats.summary(stats.ratios(rates[mine][d], rates[other][d])) for d in ("up", "down")
            }
    return out
