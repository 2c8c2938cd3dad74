"""The instance side of EC2 Instance Connect: pushed keys, valid for a while, seen by sshd.

The real ec2-instance-connect package installs an ``AuthorizedKeysCommand`` that asks the instance
metadata service for the keys pushed for that user in the last 60 s. Ours does the same job with
files: the control plane writes each pushed key atomically to
``<state>/eic/<instance-id>/<os-user>/<expiry-epoch>-<uuid>.pub`` and the command prints the keys
whose expiry is still in the future. ``ttl`` defaults to 60 s and is configurable so tests need not
wait a minute. An instance "without EIC" simply has no ``AuthorizedKeysCommand`` in its sshd
configuration: the push succeeds, sshd never sees the key.

sshd runs the command only if the file and every directory above it are root-owned and not
writable by group or others, so the script lives in ``/run/ec2ssm-sandbox/<prefix>/`` and not in
the state directory (which may be under /tmp).
"""

from __future__ import annotations

import math
import os
import time
import uuid
from pathlib import Path

AUTHORIZED_KEYS_COMMAND = r"""#!/bin/sh
# ec2ssm sandbox: print the EC2 Instance Connect keys pushed for user $2 that have not expired.
# $1 = the instance's key directory, $2 = the user sshd asks about (%u).
dir="$1/$2"
[ -d "$dir" ] || exit 0
now=$(date +%s)
for key in "$dir"/*.pub; do
    [ -f "$key" ] || continue
    name=${key##*/}
    expiry=${name%%-*}
    if [ "$expiry" -gt "$now" ] 2>/dev/null; then
        cat "$key"
    fi
done
exit 0
"""


def install_command(path: Path) -> None:
    """Write the AuthorizedKeysCommand root-owned 0755 and check sshd's ownership rules."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(AUTHORIZED_KEYS_COMMAND)
    os.chmod(tmp, 0o755)  # noqa: S103 - the mode sshd/sudo/the AMI use
    os.replace(tmp, path)
    for part in [path, *path.parents]:
        st = part.stat()
        if st.st_uid != 0 or st.st_mode & 0o022:
            raise PermissionError(
                f"sshd would refuse {path}: {part} must be root-owned and not group/world-writable"
            )


class EicKeyStore:
    """Pushed keys per (instance, user), each valid for ``ttl`` seconds from the push."""

    def __init__(self, root: Path, ttl: float = 60.0) -> None:
        self.root = root
        self.ttl = ttl
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755)  # noqa: S103 - the mode sshd/sudo/the AMI use

    def push(self, instance_id: str, os_user: str, public_key: str, now: float | None = None) -> Path:
        """Store ``public_key`` for ``os_user`` on ``instance_id``; expired keys there are purged."""
        stamp = time.time() if now is None else now
        directory = self.root / instance_id / os_user
        directory.mkdir(parents=True, exist_ok=True)
        self.purge(instance_id, os_user, stamp)
        expiry = math.ceil(stamp + self.ttl)
        target = directory / f"{expiry}-{uuid.uuid4().hex}.pub"
        tmp = directory / f".{target.name}.tmp"
        tmp.write_text(public_key.strip() + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        return target

    def purge(self, instance_id: str, os_user: str, now: float | None = None) -> None:
        stamp = time.time() if now is None else now
        directory = self.root / instance_id / os_user
        if not directory.is_dir():
            return
        for key in directory.glob("*.pub"):
            expiry = key.name.split("-", 1)[0]
            if expiry.isdigit() and int(expiry) <= stamp:
                key.unlink(missing_ok=True)

    def active_keys(self, instance_id: str, os_user: str, now: float | None = None) -> list[str]:
        """What the AuthorizedKeysCommand would print now (for tests and the control API)."""
        stamp = time.time() if now is None else now
        directory = self.root / instance_id / os_user
        keys = []
        for key in sorted(directory.glob("*.pub")) if directory.is_dir() else []:
            expiry = key.name.split("-", 1)[0]
            if expiry.isdigit() and int(expiry) > stamp:
                keys.append(key.read_text().strip())
        return keys
