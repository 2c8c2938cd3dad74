# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Local TCP listener for port-forwarding sessions (``--local-port``): basic and mux modes.

PRIVATE to this collection.

* **Basic** (§5.3): one local connection at a time; later ones wait their turn (the Go client
  blocks in accept). Its bytes go to the tunnel as they are; when it ends we send DisconnectToPort.
  Between connections nobody reads the tunnel, so the core stops acking and the agent resends
  later (G6). A remote close is not signalled in this mode (G11).
* **Mux** (§5.4): every accepted connection becomes one smux stream (ids 3, 5, ...) of the sans-IO
  :class:`SmuxClient`; one writer task carries its byte stream through the tunnel. Local EOF sends
  FIN; the agent's FIN (or ConnectToPortError, which comes with one) closes the local socket.
  NOPs every 10 s only for old agents (§5.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.events import SessionMode
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.smux import (
    K_SMUX_KEEPALIVE_INTERVAL,
    MuxFailed,
    SmuxClient,
    StreamDataReceived,
    StreamFinished,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.tunnel.errors import TunnelError

if TYPE_CHECKING:
    from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.tunnel.websocket_driver import Tunnel


__all__ = ["PortForwardListener", "serve", "serve_port_forward"]

_READ_SIZE = 32768
_MUX_HIGH_WATER = 256 * 1024
"""Queued smux output above which local readers pause (backpressure into the sockets)."""
_LOCAL_HIGH_WATER = 1024 * 1024
"""Unsent bytes towards one local socket above which we wait for it to drain."""
_FIN_LINGER = 5.0
"""After local EOF, how long we still deliver data for the stream before closing the socket."""


class PortForwardListener:
    """A running local listener (returned by :func:`serve`)."""

    def __init__(self, server: asyncio.Server, forwarder: _Forwarder, port: int) -> None:
        self.port = port
        """The bound local port."""
        self._server = server
        self._forwarder = forwarder
        self._task = asyncio.get_running_loop().create_task(forwarder.run())
        self._closed = False

    async def wait_closed(self) -> None:
        """Wait until the tunnel ends, then stop listening.

        Raises:
            TunnelError: the tunnel failed.
        """
        try:
            await asyncio.shield(self._task)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stop listening and close every forwarded connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._server.close()
        if not self._task.done():
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._forwarder.shutdown()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self._server.wait_closed()


async def serve(
    tunnel: Tunnel,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log: Callable[[str], None] | None = None,
) -> PortForwardListener:
    """Start listening on ``host:port`` (0 = any free port) and forward connections in the
    background until the tunnel ends (see :meth:`PortForwardListener.wait_closed`).

    Raises:
        ValueError: the tunnel is in stdio mode (use ``bridge_stdio``).
        OSError: the port cannot be bound.
    """
    mode = tunnel.mode
    if mode is SessionMode.MUX:
        forwarder: _Forwarder = _MuxForwarder(tunnel, log)
    elif mode is SessionMode.BASIC:
        forwarder = _BasicForwarder(tunnel, log)
    else:
        raise ValueError(f"port forwarding needs a basic or mux session, not {mode}")
    server = await asyncio.start_server(forwarder.handle, host, port)
    bound = int(server.sockets[0].getsockname()[1])
    if log is not None:
        log(f"= port {bound} opened for session {tunnel.session_id} ({mode.value} mode)")
    return PortForwardListener(server, forwarder, bound)


async def serve_port_forward(
    tunnel: Tunnel,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    on_listening: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> None:
    """Listen and forward until the tunnel ends (:func:`serve` plus ``wait_closed``).

    Args:
        tunnel: a connected tunnel in basic or mux mode.
        on_listening: called once with the bound port.
        log: one-line diagnostics.

    Raises:
        ValueError: the tunnel is in stdio mode (use ``bridge_stdio``).
        TunnelError: the tunnel failed.
    """
    listener = await serve(tunnel, host=host, port=port, log=log)
    try:
        if on_listening is not None:
            on_listening(listener.port)
        await listener.wait_closed()
    finally:
        await listener.aclose()


class _Forwarder:
    def __init__(self, tunnel: Tunnel, log: Callable[[str], None] | None) -> None:
        self.tunnel = tunnel
        self._log_cb = log
        self._handlers: set[asyncio.Task[None]] = set()

    def log(self, text: str) -> None:
        if self._log_cb is not None:
            self._log_cb(text)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            await self.serve_connection(reader, writer)
        except TunnelError:
            pass  # run() reports the tunnel's failure
        except OSError as exc:
            self.log(f"! local connection error: {exc}")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            if task is not None:
                self._handlers.discard(task)

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        raise NotImplementedError

    async def shutdown(self) -> None:
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)


class _BasicForwarder(_Forwarder):
    def __init__(self, tunnel: Tunnel, log: Callable[[str], None] | None) -> None:
        super().__init__(tunnel, log)
        self._turn = asyncio.Lock()

    async def run(self) -> None:
        # The active connection reads the tunnel; here we only wait for the session to end.
        await self.tunnel.wait_closed()
        if self.tunnel.failure is not None:
            raise self.tunnel.failure

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with self._turn:  # §5.3: one connection at a time
            loop = asyncio.get_running_loop()
            upstream = loop.create_task(_copy_to_tunnel(reader, self.tunnel))
            downstream = loop.create_task(self._copy_from_tunnel(writer))
            try:
                await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                upstream.cancel()
                downstream.cancel()
                await asyncio.gather(upstream, downstream, return_exceptions=True)
            if downstream.done() and not downstream.cancelled() and downstream.exception() is None:
                return  # the tunnel ended
            with contextlib.suppress(TunnelError):
                await self.tunnel.disconnect_port()  # §5.3 step 3

    async def _copy_from_tunnel(self, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await self.tunnel.read()
            if not data:
                return
            writer.write(data)
            await writer.drain()


async def _copy_to_tunnel(reader: asyncio.StreamReader, tunnel: Tunnel) -> None:
    while True:
        data = await reader.read(_READ_SIZE)
        if not data:
            return
        await tunnel.write(data)


@dataclasses.dataclass(eq=False)
class _MuxStream:
    writer: asyncio.StreamWriter
    finished: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


class _MuxForwarder(_Forwarder):
    def __init__(self, tunnel: Tunnel, log: Callable[[str], None] | None) -> None:
        super().__init__(tunnel, log)
        info = tunnel.handshake_info
        keepalive = K_SMUX_KEEPALIVE_INTERVAL if info is not None and info.smux_keepalive else None
        self.smux = SmuxClient(keepalive_interval=keepalive, now=asyncio.get_running_loop().time())
        self._streams: dict[int, _MuxStream] = {}
        self._output = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()

    def _kick(self) -> None:
        self._output.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        tasks = [
            loop.create_task(self._tunnel_reader()),
            loop.create_task(self._tunnel_writer()),
            loop.create_task(self._keepalive()),
        ]
        try:
            done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _tunnel_reader(self) -> None:
        while True:
            data = await self.tunnel.read()
            if not data:
                return
            self.smux.receive_data(data)
            while (event := self.smux.next_event()) is not None:
                if isinstance(event, StreamDataReceived):
                    stream = self._streams.get(event.stream_id)
                    if stream is not None and not stream.writer.is_closing():
                        stream.writer.write(event.data)
                        if stream.writer.transport.get_write_buffer_size() > _LOCAL_HIGH_WATER:
                            with contextlib.suppress(OSError):
                                await stream.writer.drain()
                elif isinstance(event, StreamFinished):
                    stream = self._streams.get(event.stream_id)
                    if stream is not None:
                        stream.finished.set()
                elif isinstance(event, MuxFailed):
                    raise TunnelError(f"smux protocol error from the agent: {event.reason}")

    async def _tunnel_writer(self) -> None:
        while True:
            data = self.smux.data_to_send()
            if data:
                self._drained.set()
                await self.tunnel.write(data)
                continue
            self._output.clear()
            await self._output.wait()

    async def _keepalive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            deadline = self.smux.get_timer()
            if deadline is None:
                await asyncio.Event().wait()  # no keepalive: park until cancelled
            await asyncio.sleep(max(0.0, (deadline or 0.0) - loop.time()))
            self.smux.handle_timer(loop.time())
            self._kick()

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream_id = self.smux.open_stream()
        stream = _MuxStream(writer)
        self._streams[stream_id] = stream
        self._kick()
        loop = asyncio.get_running_loop()
        upstream = loop.create_task(self._copy_local(stream_id, reader))
        finished = loop.create_task(stream.finished.wait())
        try:
            await asyncio.wait({upstream, finished}, return_when=asyncio.FIRST_COMPLETED)
            if upstream.done() and not finished.done():
                # Local EOF: FIN sent; keep delivering what the agent still sends, briefly.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_FIN_LINGER):
                        await stream.finished.wait()
            with contextlib.suppress(OSError):
                await writer.drain()
        finally:
            upstream.cancel()
            finished.cancel()
            await asyncio.gather(upstream, finished, return_exceptions=True)
            self.smux.close_stream(stream_id)
            self.smux.forget_stream(stream_id)
            self._streams.pop(stream_id, None)
            self._kick()

    async def _copy_local(self, stream_id: int, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                data = await reader.read(_READ_SIZE)
                if not data:
                    return
                while self.smux.pending_output > _MUX_HIGH_WATER:
                    self._drained.clear()
                    await self._drained.wait()
                self.smux.send(stream_id, data)
                self._kick()
        finally:
            self.smux.close_stream(stream_id)
            self._kick()
