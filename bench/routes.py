# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plain ssh/scp to one sandbox instance over each route the benchmarks compare.

``helper``    ProxyCommand = our tunnel helper (EIC key push, StartSession, our data channel)
``direct``    no ProxyCommand: TCP straight to the sshd over :class:`testbed.DirectRoutes`
``official``  ProxyCommand = ``aws ssm start-session`` with AWS's session-manager-plugin

Every route uses the same key, the same strict host-key check (keys pinned under the instance
id) and ``Compression=no``, so only the transport differs.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ansible_collections.trek10.ec2ssm.bench import machine, testbed
from ansible_collections.trek10.ec2ssm.tests.sandbox.fixtures import SandboxHandle

HELPER_MODULE = "ansible_collections.trek10.ec2ssm.plugins.plugin_utils.ssm_proxy"
RUSAGE = testbed.REPO / "bench" / "wrappers" / "rusage_exec.py"
OFFICIAL_PROXY = (
    "aws ssm start-session --target %h --document-name AWS-StartSSHSession --parameters portNumber=%p"
)


def official_env(handle: SandboxHandle) -> dict[str, str] | None:
    """Environment in which ``aws ssm start-session`` runs AWS's plugin against the sandbox, or
    None without the plugin. The Go plugin trusts the system roots plus ``SSL_CERT_FILE``, not
    ``AWS_CA_BUNDLE``; ``aws`` (AWS CLI v1) comes from this virtualenv."""
    plugin = machine.official_plugin()
    if plugin is None:
        return None
    env = handle.env()
    env["PATH"] = os.pathsep.join([str(plugin.parent), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["SSL_CERT_FILE"] = env["AWS_CA_BUNDLE"]
    return env


@dataclass
class Target:
    """One instance and everything ssh needs to reach it on any route."""

    handle: SandboxHandle
    record: dict[str, Any]
    key: Path
    known_hosts: Path
    direct: tuple[str, int]

    @property
    def instance_id(self) -> str:
        return str(self.record["instance_id"])

    def helper_proxy(
        self, *, debug: bool = False, usage_log: Path | None = None, chunk_size: int | None = None
    ) -> str:
        """The helper as ProxyCommand; with ``usage_log``, behind the rusage wrapper."""
        argv = [
            sys.executable, "-m", HELPER_MODULE, "--target", "%h", "--port", "%p", "--os-user", "%r",
            "--public-key-file", f"{self.key}.pub",
        ]  # fmt: skip
        if debug:
            argv.append("--debug")
        if chunk_size is not None:
            argv += ["--chunk-size", str(chunk_size)]
        if usage_log is not None:
            argv = [sys.executable, str(RUSAGE), str(usage_log), *argv]
        return shlex.join(argv)

    def options(self, route: str, proxy: str | None = None) -> list[str]:
        """ssh ``-o`` options for ``route``; ``proxy`` overrides the helper's ProxyCommand."""
        opts = [
            "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", f"HostKeyAlias={self.instance_id}",
            "-o", "IdentitiesOnly=yes", "-i", str(self.key), "-o", "Compression=no",
            "-o", "ConnectTimeout=60", "-o", f"User={self.record['os_user']}",
        ]  # fmt: skip
        if route == "direct":
            return [*opts, "-o", f"Port={self.direct[1]}"]
        if route == "official":
            return [*opts, "-o", f"ProxyCommand={OFFICIAL_PROXY}"]
        return [*opts, "-o", f"ProxyCommand={proxy or self.helper_proxy()}"]

    def host(self, route: str) -> str:
        return self.direct[0] if route == "direct" else self.instance_id

    def push_key(self) -> None:
        """The direct and official routes have no helper to push the key; valid 60 s."""
        testbed.push_keys(self.handle, [self.record], Path(f"{self.key}.pub"))


def single_target(handle: SandboxHandle, routes: testbed.DirectRoutes, work: Path) -> Target:
    """The first sshd instance, with a key pair, pinned host keys and a direct route."""
    record = testbed.sshd_instances(handle, 1)[0]
    return Target(
        handle=handle,
        record=record,
        key=testbed.keypair(work / "id_ed25519"),
        known_hosts=testbed.write_known_hosts(work / "known_hosts", [record]),
        direct=routes.add(record),
    )
