# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tunnel helper throughput and per-tunnel cost, against direct ssh to the same sshd.

One sandbox instance, two routes to the *same* sshd:

``helper``  ``ProxyCommand=python -m ...ssm_proxy`` -- EIC key push, StartSession, our data channel
            through the sandbox's websocket data plane (agent side: 1024-byte messages, per-message
            acks, like the real agent).
``direct``  ``ProxyCommand=ip netns exec <instance netns> python -m ...sandbox.hosts.netcat 127.0.0.1 22``
            -- a byte relay inside the instance's network namespace (the sandbox's baseline route).
            Its key is pushed through the sandbox's EIC API just before it logs in.

Throughput: per route, a ControlMaster is opened first, then ``--size-mib`` MiB are sent up
(``cat > /dev/null``) and down (``head -c N /dev/zero``) over it, ``--repeat`` times, alternating
routes; only the transfer is timed. ssh runs with ``Compression=no``. MB/s = 10**6 bytes/s.

Per new tunnel: ``--tunnels`` times ``ssh host true`` through the helper, each a new tunnel; the
helper's own CPU time (user+sys) and peak RSS come from ``wait4`` in a small wrapper between ssh
and the helper (it forwards ssh's SIGHUP), plus ssh's wall time for the whole connection.

Usage (issue #7 folds it into ``make bench``)::

    python bench/tunnel_throughput.py [--state-dir DIR] [--size-mib 64] [--repeat 3] [--tunnels 10]
                                      [--json out.json]

Without ``--state-dir`` it starts (and stops) a private sandbox with one instance and no API
throttling. Needs root (network namespaces), like the sandbox.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HELPER = "ansible_collections.trek10.ec2ssm.plugins.plugin_utils.ssm_proxy"
MIB = 1024 * 1024
#: Runs the helper as a child, forwards SIGHUP/SIGINT/SIGTERM to it, and appends
#: "user_s sys_s maxrss_kib" of that child (from wait4) to argv[1].
RUSAGE_WRAPPER = """\
import os, signal, sys
out, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    os.execvp(argv[0], argv)
for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, lambda s, f: os.kill(pid, s))
while True:
    try:
        _, status, usage = os.wait4(pid, 0)
        break
    except ChildProcessError:
        sys.exit(70)
    except InterruptedError:
        continue
with open(out, "a") as f:
    f.write(f"{usage.ru_utime} {usage.ru_stime} {usage.ru_maxrss}\\n")
sys.exit(os.waitstatus_to_exitcode(status) & 0xFF)
"""


@contextlib.contextmanager
def sandbox(state_dir: Path | None) -> Iterator[Any]:
    from ansible_collections.trek10.ec2ssm.tests.sandbox.config import SandboxConfig
    from ansible_collections.trek10.ec2ssm.tests.sandbox.fixtures import SandboxHandle, start_sandbox

    if state_dir is not None:
        yield SandboxHandle(state_dir.resolve(), json.loads((state_dir / "sandbox.json").read_text()))
        return
    with tempfile.TemporaryDirectory(prefix="ec2ssm-bench-") as tmp:
        config = SandboxConfig(instances=1, throttling={"enabled": False, "rules": {}})
        handle = start_sandbox(Path(tmp) / "sandbox", config)
        try:
            yield handle
        finally:
            handle.down()


class Routes:
    def __init__(self, handle: Any, work: Path) -> None:
        self.handle = handle
        self.work = work
        self.record = handle.instance(sshd=True, state="running")
        self.iid = self.record["instance_id"]
        self.user = self.record["os_user"]
        self.key = work / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        hosts = [f"{self.iid} {k}" for k in (self.record.get("host_keys") or {}).values()]
        (work / "known_hosts").write_text("\n".join(hosts) + "\n")
        self.env = handle.env()
        self.usage_log = work / "helper-usage.txt"

    def proxy(self, route: str, *, measure: bool = False) -> str:
        if route == "direct":
            return str(self.handle.ssh_proxy_command(self.iid))
        helper = [
            sys.executable, "-m", HELPER, "--target", "%h", "--port", "%p", "--os-user", "%r",
            "--public-key-file", f"{self.key}.pub",
        ]  # fmt: skip
        if measure:
            helper = [sys.executable, "-c", RUSAGE_WRAPPER, str(self.usage_log), *helper]
        return shlex.join(helper)

    def ssh(self, route: str, *args: str, measure: bool = False) -> list[str]:
        return [
            "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.work / 'known_hosts'}", "-o", f"HostKeyAlias={self.iid}",
            "-o", "IdentitiesOnly=yes", "-i", str(self.key), "-o", "Compression=no",
            "-o", "ConnectTimeout=60",
            "-o", f"ProxyCommand={self.proxy(route, measure=measure)}", "-l", self.user, *args,
        ]  # fmt: skip

    def push_key(self) -> None:
        """The direct route has no helper to push its key: do it by hand (valid 60 s)."""
        self.handle.client("ec2-instance-connect").send_ssh_public_key(
            InstanceId=self.iid,
            InstanceOSUser=self.user,
            SSHPublicKey=(self.work / "id_ed25519.pub").read_text(),
        )

    @contextlib.contextmanager
    def master(self, route: str) -> Iterator[list[str]]:
        """A ControlMaster for ``route``; yields the ssh prefix that reuses it."""
        sock = self.work / f"cm-{route}"
        if route == "direct":
            self.push_key()
        subprocess.run(
            [*self.ssh(route, "-o", "ControlMaster=yes", "-o", f"ControlPath={sock}", "-fN", self.iid)],
            env=self.env,
            check=True,
            timeout=120,
        )
        try:
            yield [*self.ssh(route, "-o", f"ControlPath={sock}"), self.iid]
        finally:
            subprocess.run(
                [*self.ssh(route, "-o", f"ControlPath={sock}", "-O", "exit", self.iid)],
                env=self.env,
                capture_output=True,
                timeout=60,
                check=False,
            )


def transfer(prefix: list[str], env: dict[str, str], direction: str, size: int, payload: Path) -> float:
    """Seconds to move ``size`` bytes through an open master, one way."""
    if direction == "up":
        with payload.open("rb") as stdin:
            start = time.perf_counter()
            subprocess.run([*prefix, "cat > /dev/null"], env=env, stdin=stdin, check=True, timeout=1800)
            return time.perf_counter() - start
    start = time.perf_counter()
    proc = subprocess.Popen([*prefix, f"head -c {size} /dev/zero"], env=env, stdout=subprocess.PIPE)
    received = 0
    if proc.stdout is None:
        raise RuntimeError("no stdout pipe")
    while chunk := proc.stdout.read(MIB):
        received += len(chunk)
    if proc.wait(timeout=1800) != 0 or received != size:
        raise RuntimeError(f"download failed: exit {proc.returncode}, {received} of {size} bytes")
    return time.perf_counter() - start


def throughput(routes: Routes, size_mib: int, repeat: int) -> dict[str, dict[str, float]]:
    size = size_mib * MIB
    payload = routes.work / "payload.bin"
    with payload.open("wb") as handle:
        for _block in range(size_mib):
            handle.write(os.urandom(MIB))
    seconds: dict[str, dict[str, list[float]]] = {r: {"up": [], "down": []} for r in ("helper", "direct")}
    for _round in range(repeat):
        for route in ("helper", "direct"):
            with routes.master(route) as prefix:
                for direction in ("up", "down"):
                    seconds[route][direction].append(transfer(prefix, routes.env, direction, size, payload))
    payload.unlink()
    return {
        route: {f"{d}_MBps": size / statistics.median(times) / 1e6 for d, times in by_dir.items()}
        for route, by_dir in seconds.items()
    }


def per_tunnel(routes: Routes, count: int) -> dict[str, float]:
    routes.usage_log.unlink(missing_ok=True)
    walls = []
    for _tunnel in range(count):
        start = time.perf_counter()
        subprocess.run(
            [*routes.ssh("helper", routes.iid, "true", measure=True)], env=routes.env, check=True, timeout=120
        )
        walls.append(time.perf_counter() - start)
    deadline = time.monotonic() + 30  # the wrapper writes after the helper exits (after ssh)
    while time.monotonic() < deadline:
        lines = routes.usage_log.read_text().splitlines() if routes.usage_log.exists() else []
        if len(lines) >= count:
            break
        time.sleep(0.1)
    usage = [tuple(float(x) for x in line.split()) for line in lines]
    cpu = [user + system for user, system, _rss in usage]
    rss = [kib / 1024 for _user, _system, kib in usage]
    return {
        "tunnels": float(len(usage)),
        "cpu_s_median": statistics.median(cpu),
        "cpu_s_max": max(cpu),
        "peak_rss_MB_median": statistics.median(rss),
        "peak_rss_MB_max": max(rss),
        "ssh_connect_wall_s_median": statistics.median(walls),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, help="use this running sandbox (default: start one)")
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tunnels", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with sandbox(args.state_dir) as handle, tempfile.TemporaryDirectory(prefix="ec2ssm-bench-work-") as tmp:
        routes = Routes(handle, Path(tmp))
        cost = per_tunnel(routes, args.tunnels)
        rates = throughput(routes, args.size_mib, args.repeat)
    result = {
        "size_mib": args.size_mib,
        "repeat": args.repeat,
        "throughput": rates,
        "ratio_helper_over_direct": {
            d: rates["helper"][f"{d}_MBps"] / rates["direct"][f"{d}_MBps"] for d in ("up", "down")
        },
        "per_new_tunnel": cost,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "loadavg_1m_at_end": os.getloadavg()[0],
    }
    print(f"{args.size_mib} MiB, median of {args.repeat}   up MB/s   down MB/s")
    for route in ("helper", "direct"):
        r = rates[route]
        print(f"  {route:<8}                 {r['up_MBps']:8.2f}   {r['down_MBps']:8.2f}")
    ratio = result["ratio_helper_over_direct"]
    print(f"  helper/direct            {ratio['up']:8.2f}   {ratio['down']:8.2f}")
    print(
        f"per new tunnel ({int(cost['tunnels'])} tunnels): helper CPU {cost['cpu_s_median']:.3f} s median "
        f"({cost['cpu_s_max']:.3f} max), peak RSS {cost['peak_rss_MB_median']:.1f} MB median "
        f"({cost['peak_rss_MB_max']:.1f} max), ssh connect+command {cost['ssh_connect_wall_s_median']:.2f} s"
    )
    print(f"(load average at end: {result['loadavg_1m_at_end']:.2f} on {result['cpus']} CPUs)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
