"""Network namespaces: one per simulated instance, private address, unreachable from the controller.

Each instance gets ``ip netns add <prefix>-<n>`` with ``lo`` up and its private address (the one
EC2 reports) on ``lo``. Nothing links the namespace to the host, so the only ways in are a socket
*created inside* the namespace (``socket_in_netns``, what the data plane's ``dial`` uses) or
``ip netns exec``/``nsenter``. On the host side the sandbox installs an ``unreachable`` route for its
whole private range, so a direct ``ssh 10.x.y.z`` from the controller fails at once with
"No route to host" and no packet for that range ever leaves the machine through the default route.

Names carry a per-sandbox random prefix, so parallel sandboxes never share a namespace, and
cleanup only touches names with this sandbox's prefix.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import random
import socket
import subprocess
import threading
from pathlib import Path

NETNS_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    pass


def available() -> tuple[bool, str]:
    """Can this process make network namespaces? (root + ``ip`` + a working ``ip netns add``)."""
    if os.geteuid() != 0:
        return False, "not running as root"
    if not Path("/usr/sbin/ip").exists() and not Path("/sbin/ip").exists() and not _which("ip"):
        return False, "iproute2 (ip) is not installed"
    probe = f"ec2ssm-probe-{os.getpid()}-{random.randrange(1 << 30):x}"
    try:
        _ip(["netns", "add", probe])
    except NetnsError as exc:
        return False, str(exc)
    _ip(["netns", "delete", probe], check=False)
    return True, ""


def _which(name: str) -> str | None:
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    return None


def _ip(args: list[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], input=stdin, text=True, capture_output=True, check=False)
    if check and result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip() or result.stdout.strip()}")
    return result


def create(names_and_addresses: list[tuple[str, str]]) -> None:
    """Create namespaces (batched) and give each ``lo`` up plus its /32 address."""
    if not names_and_addresses:
        return
    _ip(["-batch", "-"], stdin="".join(f"netns add {name}\n" for name, _ in names_and_addresses))
    for name, address in names_and_addresses:
        _ip(["-n", name, "-batch", "-"], stdin=f"link set lo up\naddr add {address}/32 dev lo\n")


def delete(names: list[str]) -> None:
    """Kill every process left in each namespace, then remove it. Idempotent."""
    existing = set(list_names())
    for name in names:
        if name not in existing:
            continue
        for pid in pids(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        _ip(["netns", "delete", name], check=False)


def list_names(prefix: str = "") -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))


def pids(name: str) -> list[int]:
    result = _ip(["netns", "pids", name], check=False)
    return [int(x) for x in result.stdout.split() if x.isdigit()]


def socket_in_netns(name: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket that lives in namespace ``name`` (sockets keep the namespace they were born in).

    setns(2) switches only the calling thread, so a short-lived thread does it, creates the
    socket and switches back; the caller's threads never leave the host namespace.
    """
    result: dict[str, object] = {}

    def work() -> None:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(NETNS_DIR / name, os.O_RDONLY)
        except OSError as exc:
            os.close(own)
            result["error"] = exc
            return
        try:
            if _libc.setns(target, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                result["error"] = OSError(err, f"setns({name}): {os.strerror(err)}")
                return
            try:
                result["socket"] = socket.socket(family, kind)
            finally:
                if _libc.setns(own, _CLONE_NEWNET) != 0:  # pragma: no cover - would be a kernel bug
                    result["poisoned"] = True
        finally:
            os.close(target)
            os.close(own)

    thread = threading.Thread(target=work, name=f"setns-{name}")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["socket"]  # type: ignore[return-value]


class AddressPlan:
    """The private range of one sandbox: a free 10.N.0.0/16 claimed with an ``unreachable`` route.

    Claiming is atomic across sandboxes on the machine: ``ip route add`` fails with "File exists"
    if another sandbox holds that /16, and we try the next one. ``release`` removes the route.
    """

    def __init__(self, cidr: str) -> None:
        self.network = ipaddress.IPv4Network(cidr)

    @classmethod
    def claim(cls, seed: int) -> AddressPlan:
        taken = _routed_networks()
        for step in range(64):
            second = 64 + (seed + step) % 64
            cidr = f"10.{second}.0.0/16"
            net = ipaddress.ip_network(cidr)
            if any(net.overlaps(other) for other in taken):
                continue
            result = _ip(["route", "add", "unreachable", cidr], check=False)
            if result.returncode == 0:
                return cls(cidr)
            if "File exists" not in result.stderr:
                raise NetnsError(f"ip route add unreachable {cidr}: {result.stderr.strip()}")
        raise NetnsError("no free 10.64-127.0.0/16 range left for a sandbox")

    def release(self) -> None:
        _ip(["route", "del", "unreachable", str(self.network)], check=False)

    def subnets(self, count: int) -> list[ipaddress.IPv4Network]:
        """Split the range into ``count`` equal subnets (one per availability zone)."""
        prefix = self.network.prefixlen + max(1, (count - 1).bit_length())
        return list(self.network.subnets(new_prefix=prefix))[:count]


def _routed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    result = _ip(["-4", "route", "show", "table", "all"], check=False)
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for line in result.stdout.splitlines():
        words = line.split()
        if not words:
            continue
        candidate = (
            words[1]
            if words[0] in ("unreachable", "blackhole", "prohibit", "local", "broadcast")
            else words[0]
        )
        if candidate == "default":
            continue
        try:
            net = ipaddress.ip_network(candidate, strict=False)
        except ValueError:
            continue
        if net.prefixlen >= 8 and not net.is_loopback:
            nets.append(net)
    return nets


def connect_in_netns(name: str, address: str, port: int, timeout: float = 10.0) -> socket.socket:
    """A blocking TCP connection made from inside namespace ``name``."""
    sock = socket_in_netns(name)
    sock.settimeout(timeout)
    try:
        sock.connect((address, port))
    except OSError:
        sock.close()
        raise
    sock.settimeout(None)
    return sock


__all__ = [
    "AddressPlan",
    "NetnsError",
    "available",
    "connect_in_netns",
    "create",
    "delete",
    "list_names",
    "pids",
    "socket_in_netns",
]
