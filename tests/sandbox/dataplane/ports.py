"""Port side of a session in standard-stream (SSH) and basic port-forwarding mode (§5.3, §5.5).

Both are the agent's ``BasicPortSession``: one TCP connection to the destination, dialled right
after the handshake. They differ only when that connection ends:

* SSH document (no ``type`` property): EOF from sshd ends the session successfully, any other
  read error ends it as failed.
* ``LocalPortForwarding`` with an agent or client too old for mux: the agent closes the
  destination on a DisconnectToPort flag or a read error and redials lazily when the next
  Output message arrives. The client is never told that the destination went away (G11).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Sequence
from typing import Final, Protocol

from .codec import Flag, PayloadType, parse_flag

K_READ_SIZE: Final = 64 * 1024
K_WRITE_HIGH_WATER: Final = 1024 * 1024
"""Queued client bytes above which the session stops reading the websocket (backpressure)."""
K_WRITE_BATCH: Final = 256 * 1024
"""At most this much queued client data is joined into one socket write."""


class PortHost(Protocol):
    """What a port handler needs from its session (implemented by ``AgentSession``)."""

    target: str
    log: logging.Logger

    @property
    def chunk_size(self) -> int: ...

    async def send_output(self, payload_type: int, payload: bytes) -> bool:
        """Sequence and transmit one payload; False once the session is ending."""
        ...

    async def send_outputs(self, payload_type: int, payloads: Sequence[bytes]) -> bool:
        """``send_output`` for several payloads in order (one message each)."""
        ...

    async def dial(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect inside the target's network; raises OSError."""
        ...

    def port_finished(self, status: str, output: str) -> None:
        """The port side is done: end the session with this status and channel_closed Output."""
        ...

    def count(self, name: str, n: int = 1) -> None: ...


def dial_failure_output(host: str, port: int | str, exc: BaseException) -> str:
    """The agent's wording, with a Go-style error text (``connect: connection refused``)."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    reason = reason[:1].lower() + reason[1:]
    return f"Unable to connect to specified port: dial tcp {host}:{port}: connect: {reason}"


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


_DISCONNECT: Final = object()
_TERMINATE: Final = object()


class BasicPort:
    """One destination connection; ``deliver`` only queues, two tasks do the I/O."""

    def __init__(
        self,
        host: PortHost,
        *,
        dest_host: str,
        dest_port: int,
        local_port_forwarding: bool,
        terminate_flag: bool,
    ) -> None:
        self._host = host
        self._dest_host = dest_host
        self._dest_port = dest_port
        self._lpf = local_port_forwarding
        self._terminate_flag = terminate_flag
        self._conn: _Conn | None = None
        self._connected = asyncio.Event()
        self._started = False
        self._closed = False
        self._queue: collections.deque[bytes | object] = collections.deque()
        self._queued_bytes = 0
        self._has_items = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def mode(self) -> str:
        return "basic" if self._lpf else "stdio"

    # --- StreamHandler --------------------------------------------------------------------

    def ready(self) -> bool:
        # The agent's ``conn != nil``: true from the first successful dial on, even while a
        # LocalPortForwarding session waits to redial.
        return self._started and not self._closed

    def deliver(self, payload_type: int, payload: bytes) -> None:
        if payload_type == PayloadType.OUTPUT:
            if payload:
                self._enqueue(payload, len(payload))
        elif payload_type == PayloadType.FLAG:
            flag = parse_flag(payload)
            if flag == Flag.DISCONNECT_TO_PORT:
                self._enqueue(_DISCONNECT, 0)
            elif flag == Flag.TERMINATE_SESSION and self._terminate_flag:
                self._enqueue(_TERMINATE, 0)
            else:
                self._host.count("unexpected_flag_in")
        else:
            self._host.count("unexpected_payload_in")

    def _enqueue(self, item: bytes | object, size: int) -> None:
        self._queue.append(item)
        self._queued_bytes += size
        self._has_items.set()
        if self._queued_bytes > K_WRITE_HIGH_WATER:
            self._writable.clear()

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Dial the destination; on failure the session fails like the agent's (§5.3 step 1)."""
        conn = await self._dial()
        if conn is None:
            return
        self._conn = conn
        self._connected.set()
        self._started = True
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read_loop()), loop.create_task(self._write_loop())]

    @property
    def writable(self) -> bool:
        """False while ``wait_writable`` would wait."""
        return self._writable.is_set() or self._closed

    async def wait_writable(self) -> None:
        while not self._writable.is_set() and not self._closed:
            await self._writable.wait()

    async def close(self) -> None:
        self._closed = True
        self._writable.set()
        for task in self._tasks:
            task.cancel()
        if self._conn is not None:
            self._conn.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _dial(self) -> _Conn | None:
        try:
            reader, writer = await self._host.dial(self._dest_host, self._dest_port)
        except OSError as exc:
            self._host.count("port_dial_failures")
            self._host.port_finished("Failed", dial_failure_output(self._dest_host, self._dest_port, exc))
            return None
        self._host.count("port_dials")
        return _Conn(reader, writer)

    # --- I/O tasks ------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        host = self._host
        while not self._closed:
            conn = self._conn
            if conn is None:
                await self._connected.wait()
                continue
            try:
                data = await conn.reader.read(K_READ_SIZE)
                failed = False
            except OSError:
                data, failed = b"", True
            if data:
                size = host.chunk_size  # the agent's StreamDataPayloadSize reads (§3.1)
                chunks = [data[start : start + size] for start in range(0, len(data), size)]
                if not await host.send_outputs(PayloadType.OUTPUT, chunks):
                    return
                continue
            if self._lpf:
                self._drop(conn)  # redial on the next Output message (§5.3 step 4)
                continue
            host.log.debug("= destination closed the connection (%s)", "error" if failed else "EOF")
            host.port_finished("Failed" if failed else "Terminated", "")
            return

    async def _write_loop(self) -> None:
        while not self._closed:
            if not self._queue:
                self._has_items.clear()
                await self._has_items.wait()
                continue
            item = self._queue.popleft()
            if item is _TERMINATE:
                self._host.port_finished("Terminated", "")
                return
            if item is _DISCONNECT:
                if not self._lpf:
                    # The agent closes sshd's connection; its reader then fails with a
                    # non-EOF error, which ends an SSH session as failed.
                    self._host.port_finished("Failed", "")
                    return
                if self._conn is not None:
                    self._drop(self._conn)
                continue
            assert isinstance(item, bytes)
            data = self._coalesce(item)
            await self._write(data)
            self._queued_bytes -= len(data)
            if self._queued_bytes <= K_WRITE_HIGH_WATER:
                self._writable.set()

    def _coalesce(self, first: bytes) -> bytes:
        """``first`` plus the data queued right behind it (up to a flag), as one socket write.

        The agent writes each 1 KiB message to its socket as it comes; joining what is already
        queued only saves system calls here, the destination sees the same byte stream.
        """
        queue = self._queue
        if not queue or not isinstance(queue[0], bytes):
            return first
        parts = [first]
        size = len(first)
        while queue and isinstance(queue[0], bytes) and size < K_WRITE_BATCH:
            data = queue.popleft()
            assert isinstance(data, bytes)
            parts.append(data)
            size += len(data)
        return b"".join(parts)

    async def _write(self, data: bytes, *, retry: bool = True) -> None:
        if self._conn is None:
            if not self._lpf:
                return  # the SSH path is ending; nothing to write to
            conn = await self._dial()
            if conn is None:
                return
            self._conn = conn
            self._connected.set()
        conn = self._conn
        try:
            conn.writer.write(data)
            await conn.writer.drain()
        except OSError:
            if not self._lpf:
                return  # the read side sees the same failure and ends the session
            self._drop(conn)
            if retry:
                # The agent leaves this message unacked and writes the resend to the new
                # connection; we already acked it, so write it there ourselves.
                await self._write(data, retry=False)

    def _drop(self, conn: _Conn) -> None:
        conn.close()
        if self._conn is conn:
            self._conn = None
            self._connected.clear()
