"""Port 22 of every instance: one thread accepts on all of them and starts ``sshd -i`` per connection.

Each listening socket is created inside its instance's network namespace (so ``ip netns exec <ns>
ssh localhost`` and the data plane's ``dial`` both reach it, and nothing outside the namespace
can). On accept, the instance's connection command (``sshd.connection_command``) runs with the
connection as stdin/stdout: the classic inetd arrangement, which sshd supports with ``-i``.
Closing an instance's listener refuses new connections (an instance that is stopping);
``kill_connections`` ends the sshd processes already serving it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass
class _Port:
    instance_id: str
    sock: socket.socket
    command: list[str]
    log_path: Path


class Listener:
    """Accept loop for every instance's sshd port (a thread; ``start``/``stop``)."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._lock = threading.Lock()
        self._ports: dict[str, _Port] = {}
        self._children: dict[str, list[subprocess.Popen[bytes]]] = {}
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sshd-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake()
        self._thread.join(timeout=5)
        with self._lock:
            for instance_id in list(self._ports):
                self._close_locked(instance_id)
            children = [c for kids in self._children.values() for c in kids]
        for child in children:
            if child.poll() is None:
                child.kill()
            child.wait()

    def open(self, instance_id: str, sock: socket.socket, command: list[str], log_path: Path) -> None:
        """Start accepting on ``sock`` (bound and listening) for ``instance_id``."""
        sock.setblocking(False)
        with self._lock:
            if instance_id in self._ports:
                self._close_locked(instance_id)
            port = _Port(instance_id, sock, command, log_path)
            self._ports[instance_id] = port
            self._selector.register(sock, selectors.EVENT_READ, port)
        self._wake()

    def close(self, instance_id: str) -> None:
        """Stop accepting for ``instance_id`` (connections already served keep running)."""
        with self._lock:
            self._close_locked(instance_id)
        self._wake()

    def kill_connections(self, instance_id: str) -> None:
        """Kill the sshd processes this listener started for ``instance_id``."""
        with self._lock:
            children = list(self._children.get(instance_id, []))
        for child in children:
            if child.poll() is None:
                child.kill()

    def is_open(self, instance_id: str) -> bool:
        with self._lock:
            return instance_id in self._ports

    def active_connections(self) -> int:
        with self._lock:
            return sum(1 for kids in self._children.values() for c in kids if c.poll() is None)

    def _close_locked(self, instance_id: str) -> None:
        port = self._ports.pop(instance_id, None)
        if port is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(port.sock)
        port.sock.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _run(self) -> None:
        while not self._stopping.is_set():
            events = self._selector.select(timeout=1.0)
            for key, _ in events:
                if key.data is None:
                    try:
                        while self._wake_r.recv(512):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                self._accept(key.data)
            self._reap()

    def _accept(self, port: _Port) -> None:
        try:
            conn, _ = port.sock.accept()
        except (BlockingIOError, OSError):
            return
        try:
            conn.setblocking(True)
            with open(port.log_path, "ab") as errlog:
                child = subprocess.Popen(
                    port.command,
                    stdin=conn.fileno(),
                    stdout=conn.fileno(),
                    stderr=errlog,
                    close_fds=True,
                    start_new_session=True,
                )
        except OSError as exc:
            self._log.error("%s: cannot start sshd for a connection: %s", port.instance_id, exc)
            conn.close()
            return
        conn.close()
        with self._lock:
            self._children.setdefault(port.instance_id, []).append(child)

    def _reap(self) -> None:
        with self._lock:
            for instance_id, kids in list(self._children.items()):
                alive = [c for c in kids if c.poll() is None]
                if alive:
                    self._children[instance_id] = alive
                else:
                    del self._children[instance_id]


def listening_socket(sock: socket.socket, host: str, port: int) -> socket.socket:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    os.set_inheritable(sock.fileno(), False)
    return sock
