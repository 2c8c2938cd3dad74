"""Helpers of the sandbox tests: SSH keys, a real ssh client call, polling for an event."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ansible_collections.trek10.ec2ssm.tests.sandbox.fixtures import SandboxHandle


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: str


def make_key(directory: Path, kind: str = "ed25519", bits: int = 2048) -> KeyPair:
    key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    elif kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    path = directory / f"id_{kind}_{bits}"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return KeyPair(path, public.decode() + " sandbox-test")


def ssh(
    handle: SandboxHandle,
    instance_id: str,
    user: str,
    key: KeyPair,
    command: str,
    *,
    proxy: str | None = None,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Real OpenSSH to ``instance_id``; ProxyCommand defaults to the no-SSM netcat path."""
    argv = [
        "ssh", "-F", "/dev/null", "-i", str(key.private),
        "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=30",
        "-o", f"ProxyCommand={proxy or handle.ssh_proxy_command(instance_id)}",
        f"{user}@{instance_id}", command,
    ]  # fmt: skip
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or handle.env(),
        input=stdin,
        check=False,
    )


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` until true (this is waiting for an event, not asserting a duration)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)
