"""A real OpenSSH sshd per instance: its host keys, its configuration, how a connection reaches it.

Each instance has its own ed25519 and ECDSA host keys and ``sshd_config``: public-key
authentication only, no ``authorized_keys`` files, keys come from the EC2 Instance Connect
``AuthorizedKeysCommand`` (unless the instance is "without EIC"), ``AllowUsers`` = the AMI's user
plus the sudo-password test user, root login off, the internal sftp server, as the AMIs ship it.

sshd runs in *inetd mode* (``sshd -i``), one process per TCP connection, started by the
instance's listener (``listener.py``) inside the instance's network namespace plus a fresh
mount and UTS namespace. This is what a listening sshd does for every connection anyway (it forks
and re-executes itself), so a client sees the same server; the difference is that an idle
instance costs no process at all (a listening sshd is about 9 MB RSS, i.e. ~0.9 GB for 100
instances). The mount namespace gives each instance its own ``/home``, ``/root``, ``/tmp``,
``/var/tmp``, ``/etc/hosts`` and ``/etc/sudoers.d`` (bind mounts of directories under
``<state>/hosts/<instance-id>/``), and the UTS namespace its own hostname, so five instances
running the same playbook never write the same file and ``hostname`` differs.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

SSHD = Path("/usr/sbin/sshd")


class SshdMissing(RuntimeError):
    pass


def require_sshd() -> None:
    if not SSHD.exists():
        raise SshdMissing(
            f"{SSHD} not found: install Debian's openssh-server (the Makefile's setup does) "
            "or start the sandbox with API-only instances"
        )


@dataclass(frozen=True)
class HostLayout:
    """Where one instance's files are, seen from the host (``root``) and from sshd (``view``)."""

    instance_id: str
    root: Path
    """``<state>/hosts/<instance-id>`` on the host."""
    view: Path
    """The same directory as sshd sees it (through the state bind mount), or ``root`` without namespaces."""
    state_view: Path
    """The state directory as sshd sees it."""

    @property
    def ssh_dir(self) -> Path:
        return self.root / "ssh"

    def sshd_config(self, seen_by_sshd: bool = True) -> Path:
        return (self.view if seen_by_sshd else self.root) / "ssh" / "sshd_config"

    def sshd_log(self, seen_by_sshd: bool = True) -> Path:
        base = self.state_view if seen_by_sshd else self.root.parent.parent
        return base / "logs" / f"sshd-{self.instance_id}.log"


def write_host_keys(ssh_dir: Path) -> dict[str, str]:
    """Generate the instance's host keys (0600, as sshd demands); return their public lines."""
    ssh_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(ssh_dir, 0o700)
    public = {}
    keys: dict[str, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey] = {
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
        "ecdsa": ec.generate_private_key(ec.SECP256R1()),
    }
    for kind, key in keys.items():
        path = ssh_dir / f"ssh_host_{kind}_key"
        data = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        line = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        (ssh_dir / f"ssh_host_{kind}_key.pub").write_bytes(line + b"\n")
        public[kind] = line.decode()
    return public


def config_text(
    layout: HostLayout,
    allow_users: list[str],
    authorized_keys_command: Path | None,
    eic_view: Path,
) -> str:
    """The instance's sshd_config. ``authorized_keys_command`` None = instance without EIC."""
    keys_dir = layout.view / "ssh"
    lines = [
        "# ec2ssm sandbox instance " + layout.instance_id,
        f"HostKey {keys_dir / 'ssh_host_ed25519_key'}",
        f"HostKey {keys_dir / 'ssh_host_ecdsa_key'}",
        "PidFile none",
        "UsePAM no",
        "PermitRootLogin no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "AuthorizedKeysFile none",
        "AllowUsers " + " ".join(allow_users),
        "AllowTcpForwarding yes",
        "X11Forwarding no",
        "PrintMotd no",
        "LogLevel VERBOSE",
        "Subsystem sftp internal-sftp",
    ]
    if authorized_keys_command is not None:
        lines.append(f"AuthorizedKeysCommand {authorized_keys_command} {eic_view / layout.instance_id} %u")
        lines.append("AuthorizedKeysCommandUser root")
    return "\n".join(lines) + "\n"


def write_config(layout: HostLayout, text: str) -> None:
    path = layout.sshd_config(seen_by_sshd=False)
    tmp = path.with_name("sshd_config.tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


@dataclass(frozen=True)
class Isolation:
    """What the per-connection namespace setup needs to know (None fields = not isolated)."""

    netns: str
    hostname: str
    state_dir: Path
    state_view: Path
    sudoers_dir: Path | None


def connection_command(layout: HostLayout, isolation: Isolation | None) -> list[str]:
    """argv that serves one SSH connection on stdin/stdout as this instance."""
    sshd = [
        str(SSHD), "-i",
        "-f", str(layout.sshd_config(seen_by_sshd=isolation is not None)),
        "-E", str(layout.sshd_log(seen_by_sshd=isolation is not None)),
    ]  # fmt: skip
    if isolation is None:
        return sshd
    view = layout.view
    binds = [
        (view / "home", "/home"),
        (view / "root", "/root"),
        (view / "tmp", "/tmp"),
        (view / "var-tmp", "/var/tmp"),
        (view / "etc" / "hosts", "/etc/hosts"),
    ]
    if isolation.sudoers_dir is not None:
        binds.append(
            (isolation.state_view / isolation.sudoers_dir.relative_to(isolation.state_dir), "/etc/sudoers.d")
        )
    q = shlex.quote
    steps = [
        "set -e",
        # the state directory first: later binds (/tmp, /root, /home) may hide where it lives
        f"mount --bind {q(str(isolation.state_dir))} {q(str(isolation.state_view))}",
        f"hostname {q(isolation.hostname)}",
        *(f"mount --bind {q(str(src))} {q(dst)}" for src, dst in binds),
        "exec " + " ".join(q(a) for a in sshd),
    ]
    return [
        "nsenter", f"--net=/run/netns/{isolation.netns}", "--",
        "unshare", "--mount", "--uts", "--propagation", "private", "--",
        "/bin/sh", "-c", "; ".join(steps),
    ]  # fmt: skip


def prepare_filesystem(layout: HostLayout, hostname: str, address: str, users: list[str]) -> None:
    """The instance's private directories: homes, /root, /tmp, /var/tmp, /etc/hosts."""
    from .users import make_home

    root = layout.root
    (root / "home").mkdir(parents=True, exist_ok=True)
    os.chmod(root / "home", 0o755)  # noqa: S103 - the mode sshd/sudo/the AMI use
    for user in users:
        make_home(root / "home", user)
    (root / "root").mkdir(exist_ok=True)
    os.chmod(root / "root", 0o700)
    for tmp in ("tmp", "var-tmp"):
        (root / tmp).mkdir(exist_ok=True)
        os.chmod(root / tmp, 0o1777)  # noqa: S103 - the mode sshd/sudo/the AMI use
    (root / "etc").mkdir(exist_ok=True)
    short = hostname.split(".", 1)[0]
    (root / "etc" / "hosts").write_text(
        f"127.0.0.1 localhost\n{address} {hostname} {short}\n::1 localhost ip6-localhost ip6-loopback\n"
    )
    os.chmod(root / "etc" / "hosts", 0o644)
