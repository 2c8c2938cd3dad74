"""The state directory of one sandbox (``.sandbox/`` for ``make sandbox``).

Layout::

    sandbox.json      status (starting/ready/stopped), pid, prefix, endpoint, env; read by down/ctl/status
    env.sh            ``source`` it: the standard AWS variables that select this sandbox
    instances.json    one record per instance (id, region, platform, OS user, tags, address, netns, ...)
    tls/              ca.pem (AWS_CA_BUNDLE), server certificate and key
    eic/<id>/<user>/  keys pushed with SendSSHPublicKey (``<expiry>-<uuid>.pub``)
    hosts/<id>/       the instance's /home, /root, /tmp, /var/tmp, /etc/hosts and sshd files
    etc/sudoers.d/    the sudo rules every instance sees
    logs/             sandbox.log (the server), sshd-<id>.log, host-<id>.log
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class StateDir:
    root: Path

    @property
    def info_file(self) -> Path:
        return self.root / "sandbox.json"

    @property
    def env_file(self) -> Path:
        return self.root / "env.sh"

    @property
    def instances_file(self) -> Path:
        return self.root / "instances.json"

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def eic_dir(self) -> Path:
        return self.root / "eic"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def log_file(self) -> Path:
        return self.logs_dir / "sandbox.log"

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(exist_ok=True)
        (self.root / "hosts").mkdir(exist_ok=True)

    def write_json(self, path: Path, data: Any) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
        os.replace(tmp, path)

    def read_info(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.info_file.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_env(self, env: dict[str, str]) -> None:
        lines = [
            "# ec2ssm sandbox: source this file to point AWS clients at the local sandbox.",
            "# Only standard AWS configuration variables; nothing here is specific to our code.",
            "unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN",
        ]
        lines += [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
        tmp = self.env_file.with_name(".env.sh.tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.env_file)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still "exists"; treat it as gone
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False
