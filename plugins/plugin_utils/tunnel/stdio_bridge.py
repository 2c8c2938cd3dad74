# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""stdin/stdout <-> tunnel, for use as an OpenSSH ProxyCommand (standard-stream mode, §5.5).

PRIVATE to this collection. Decides nothing about the protocol:

* stdin is read only when :meth:`Tunnel.write` has accepted the previous chunk, so a full unacked
  window stops reading stdin (backpressure; nothing is dropped);
* stdout carries tunnel bytes only (diagnostics belong on stderr, §5.5);
* stdin EOF ends the bridge once what was written has been acked (bounded wait), like the Go
  client which simply exits on EOF; the tunnel ending (``read() == b""``) or stdout going away
  (EPIPE: ssh exited) also ends it.

Works with pipes, sockets, ttys and regular files: descriptors are switched to non-blocking mode
(restored afterwards) and waited on with ``add_reader``/``add_writer`` only when a call would block.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.tunnel.websocket_driver import Tunnel


__all__ = ["REMOTE_END", "bridge_stdio"]

REMOTE_END = "remote"
""":func:`bridge_stdio`'s result when the tunnel ended first (the instance side closed the
stream while the local side, e.g. ssh, was still using it); ``"local"`` otherwise."""

_READ_SIZE = 65536


async def bridge_stdio(
    tunnel: Tunnel, stdin_fd: int = 0, stdout_fd: int = 1, *, drain_timeout: float = 5.0
) -> str:
    """Copy ``stdin_fd`` into the tunnel and the tunnel into ``stdout_fd`` until one side ends.

    Args:
        tunnel: a connected tunnel in stdio mode.
        drain_timeout: after stdin EOF, how long to wait for the last bytes to be acked.

    Returns:
        :data:`REMOTE_END` when the tunnel ended first, ``"local"`` when stdin ended (or stdout
        went away) first. ssh ends its side first when it is done; the instance side ending first
        means the connection was cut under ssh, which the caller may want to say.

    Raises:
        TunnelError: the tunnel failed.
    """
    loop = asyncio.get_running_loop()
    saved = {fd: os.get_blocking(fd) for fd in (stdin_fd, stdout_fd)}
    for fd in saved:
        os.set_blocking(fd, False)
    upstream = loop.create_task(_stdin_to_tunnel(tunnel, stdin_fd, drain_timeout))
    downstream = loop.create_task(_tunnel_to_stdout(tunnel, stdout_fd))
    try:
        done, _pending = await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # propagate a TunnelError
        remote_ended = downstream in done and downstream.result()
        return REMOTE_END if remote_ended else "local"
    finally:
        for task in (upstream, downstream):
            task.cancel()
        await asyncio.gather(upstream, downstream, return_exceptions=True)
        for fd, blocking in saved.items():
            with contextlib.suppress(OSError):
                os.set_blocking(fd, blocking)


async def _stdin_to_tunnel(tunnel: Tunnel, fd: int, drain_timeout: float) -> None:
    while True:
        data = await _read_fd(fd)
        if not data:
            await tunnel.drain(drain_timeout)
            return
        await tunnel.write(data)  # waits while the window is full: stdin is not read meanwhile


async def _tunnel_to_stdout(tunnel: Tunnel, fd: int) -> bool:
    """True when the tunnel ended, False when the reader of ``fd`` went away."""
    while True:
        data = await tunnel.read()
        if not data:
            return True
        try:
            await _write_fd(fd, data)
        except (BrokenPipeError, ConnectionResetError):
            return False  # the reader (ssh) is gone


async def _read_fd(fd: int) -> bytes:
    while True:
        try:
            return os.read(fd, _READ_SIZE)
        except BlockingIOError:
            await _wait_fd(fd, writable=False)
        except (ConnectionResetError, BrokenPipeError):
            return b""


async def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            await _wait_fd(fd, writable=True)
            continue
        view = view[written:]


async def _wait_fd(fd: int, *, writable: bool) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    if writable:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)
