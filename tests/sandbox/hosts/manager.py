"""Lifecycle of the sshd-backed instances: prepare, run, stop, start, terminate, dial.

``HostManager`` owns everything an instance has on this machine: its namespace, its private
files under ``<state>/hosts/<id>/``, its sshd configuration and host keys, and its port 22 in the
shared ``Listener``. The control plane (EC2/SSM models) decides *when* an instance runs; this
module only does it.

Without network namespaces (not root, or ``netns: off``) an instance is a loopback port
(127.0.0.1:<random>) served by the same ``sshd -i``; there is no isolation then and the sandbox
says so in its log and ``status``.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import netns, sshd, users
from .listener import Listener, listening_socket

SSH_PORT = 22


@dataclass
class Host:
    instance_id: str
    address: str
    hostname: str
    os_user: str
    has_eic: bool
    netns: str | None
    layout: sshd.HostLayout
    host_keys: dict[str, str]
    port: int = SSH_PORT
    """22 inside the namespace; the loopback port without namespaces."""
    running: bool = False


class HostManager:
    def __init__(
        self,
        *,
        state_dir: Path,
        run_dir: Path,
        prefix: str,
        isolated: bool,
        eic_root: Path,
        log: logging.Logger,
        peer_lookup: Callable[[str, str], str | None] | None = None,
    ) -> None:
        """``run_dir`` is the sandbox's root-owned directory under /run (AuthorizedKeysCommand, view).

        ``peer_lookup(from_instance, host)`` names the instance that owns address/host name
        ``host`` in the same VPC as ``from_instance`` (for port forwarding to a remote host).
        """
        self.state_dir = state_dir
        self.run_dir = run_dir
        self.prefix = prefix
        self.isolated = isolated
        self.eic_root = eic_root
        self.log = log
        self.peer_lookup = peer_lookup
        self.hosts: dict[str, Host] = {}
        self._lock = threading.Lock()
        self.listener = Listener(log)
        self.view = run_dir / "view" if isolated else state_dir
        self.akc = run_dir / "eic_authorized_keys"
        self.sudoers_dir = state_dir / "etc" / "sudoers.d"

    # --- setup ------------------------------------------------------------------------------

    def start(self) -> None:
        sshd.require_sshd()
        from .eic import install_command

        install_command(self.akc)
        if self.isolated:
            (self.run_dir / "view").mkdir(parents=True, exist_ok=True)
            users.ensure_users()
            users.write_sudoers_dir(self.sudoers_dir)
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        self.listener.start()

    def netns_name(self, instance_id: str) -> str:
        return f"{self.prefix}-{instance_id}"

    def add_many(self, specs: list[tuple[str, str, str, str, bool]]) -> list[Host]:
        """Prepare and start instances: (instance_id, address, hostname, os_user, has_eic) each."""
        hosts = [self._prepare(*spec) for spec in specs]
        if self.isolated:
            netns.create([(h.netns, h.address) for h in hosts if h.netns])
        for host in hosts:
            with self._lock:
                self.hosts[host.instance_id] = host
            self.start_host(host.instance_id)
        return hosts

    def _prepare(self, instance_id: str, address: str, hostname: str, os_user: str, has_eic: bool) -> Host:
        root = self.state_dir / "hosts" / instance_id
        view = self.view / "hosts" / instance_id
        layout = sshd.HostLayout(instance_id, root, view, self.view)
        allowed = users.allowed_users(os_user) if self.isolated else [os_user]
        if self.isolated:
            sshd.prepare_filesystem(layout, hostname, address, allowed)
        host_keys = sshd.write_host_keys(layout.ssh_dir)
        eic_view = self.view / "eic"
        text = sshd.config_text(layout, allowed, self.akc if has_eic else None, eic_view)
        sshd.write_config(layout, text)
        return Host(
            instance_id=instance_id,
            address=address,
            hostname=hostname,
            os_user=os_user,
            has_eic=has_eic,
            netns=self.netns_name(instance_id) if self.isolated else None,
            layout=layout,
            host_keys=host_keys,
        )

    # --- lifecycle ----------------------------------------------------------------------------

    def start_host(self, instance_id: str) -> None:
        """Open the instance's port 22 (idempotent)."""
        host = self.hosts[instance_id]
        if self.listener.is_open(instance_id):
            host.running = True
            return
        if host.netns:
            sock = listening_socket(netns.socket_in_netns(host.netns), "0.0.0.0", SSH_PORT)
            isolation = sshd.Isolation(
                netns=host.netns,
                hostname=host.hostname,
                state_dir=self.state_dir,
                state_view=self.view,
                sudoers_dir=self.sudoers_dir if self.sudoers_dir.exists() else None,
            )
        else:
            sock = listening_socket(socket.socket(), "127.0.0.1", host.port if host.port != SSH_PORT else 0)
            host.port = sock.getsockname()[1]
            isolation = None
        command = sshd.connection_command(host.layout, isolation)
        log_path = self.state_dir / "logs" / f"host-{instance_id}.log"
        self.listener.open(instance_id, sock, command, log_path)
        host.running = True

    def stop_host(self, instance_id: str) -> None:
        """Refuse new connections and kill everything running on the instance (a stop)."""
        host = self.hosts.get(instance_id)
        if host is None:
            return
        self.listener.close(instance_id)
        self.listener.kill_connections(instance_id)
        if host.netns:
            for pid in netns.pids(host.netns):
                try:
                    import os

                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        host.running = False

    def remove_host(self, instance_id: str) -> None:
        """Terminate: stop, then delete the namespace."""
        self.stop_host(instance_id)
        host = self.hosts.pop(instance_id, None)
        if host is not None and host.netns:
            netns.delete([host.netns])

    def shutdown(self) -> None:
        self.listener.stop()
        names = [h.netns for h in self.hosts.values() if h.netns]
        netns.delete(names)
        self.hosts.clear()

    # --- reaching an instance -------------------------------------------------------------------

    def dial(self, instance_id: str, host: str, port: int, timeout: float = 10.0) -> socket.socket:
        """A connected blocking socket to ``host:port`` as seen from inside ``instance_id``.

        ``localhost``, ``127.0.0.1``, the instance's own address or host name reach the instance
        itself; another instance's private address or host name reaches that instance if the
        ``peer_lookup`` callback says it is in the same VPC; anything else is unreachable (an
        instance namespace has no route out, and the sandbox never resolves public names).
        """
        me = self.hosts.get(instance_id)
        if me is None or not me.running:
            raise ConnectionRefusedError(f"{instance_id} is not running")
        target = me
        if host not in ("localhost", "127.0.0.1", "::1", me.address, me.hostname, me.hostname.split(".")[0]):
            peer_id = self.peer_lookup(instance_id, host) if self.peer_lookup else None
            peer = self.hosts.get(peer_id) if peer_id else None
            if peer is None or not peer.running:
                if _is_ip(host):
                    raise OSError(113, f"No route to host {host} from {instance_id}")
                raise socket.gaierror(socket.EAI_NONAME, f"{host}: name not known in the sandbox VPC")
            target = peer
        if target.netns:
            address = "127.0.0.1" if target is me else target.address
            return netns.connect_in_netns(target.netns, address, port, timeout)
        if port != SSH_PORT:
            raise ConnectionRefusedError(
                f"without namespaces only port 22 of {target.instance_id} is reachable"
            )
        return socket.create_connection(("127.0.0.1", target.port), timeout=timeout)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
