"""One attached client websocket, with its own writer task.

Why a queue and a writer task: the session's reader must never wait for a websocket write.
If it did, a client that writes while its own writes are blocked (the Go client acks from its
read loop) could deadlock against us under bidirectional load, something the real service, a
relay, does not do. Acks and control frames are therefore queued without waiting; only port
data waits (``wait_writable``), which is the backpressure a full socket would give.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Final

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

K_HIGH_WATER: Final = 512 * 1024
K_LOW_WATER: Final = 128 * 1024
K_BATCH_BYTES: Final = 256 * 1024
"""At most this much queued data goes out in one socket write (see ``_write_loop``)."""


class Link:
    """Queue + writer for one websocket, plus the per-connection fault state."""

    def __init__(
        self, ws: ServerConnection, *, opened: float, client_id: str, on_closed: Callable[[Link], None]
    ) -> None:
        self.ws = ws
        self.opened = opened
        self.client_id = client_id
        self.closed = False
        self.dropping = False
        """A 1000 "Bye" close is under way (fault)."""
        self.held: bytes | None = None
        """A frame held back by the reorder fault."""
        self.last_publication = opened
        self.paused_at: float | None = None
        self._on_closed = on_closed
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._has_data = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._drained = asyncio.Event()
        self._drained.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reading_held = False
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    def post(self, data: bytes) -> bool:
        """Queue one binary message; never waits. False once the link is closed."""
        if self.closed:
            return False
        self._queue.append(data)
        self._queued += len(data)
        self._has_data.set()
        self._drained.clear()
        if self._queued > K_HIGH_WATER:
            self._writable.clear()
        return True

    def post_later(self, delay: float, action: Callable[[], None]) -> None:
        """Run ``action`` after ``delay`` seconds unless the link closed meanwhile."""

        async def run() -> None:
            await asyncio.sleep(delay)
            if not self.closed:
                action()

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def hold_reading_until(self, ready: Callable[[], Awaitable[None]]) -> None:
        """Stop reading the websocket until ``ready()`` returns (backpressure from the port side).

        Already-read messages are still delivered; nothing is dropped. Idempotent while held.
        """
        if self._reading_held or self.closed:
            return
        transport = self.ws.transport
        transport.pause_reading()
        self._reading_held = True

        async def wait_then_resume() -> None:
            try:
                await ready()
            finally:
                self._reading_held = False
                if not transport.is_closing():
                    transport.resume_reading()

        task = asyncio.get_running_loop().create_task(wait_then_resume())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_writable(self) -> None:
        """Wait while too much is queued (port readers call this after posting)."""
        while not self._writable.is_set() and not self.closed:
            await self._writable.wait()

    async def flush(self) -> None:
        """Wait until everything queued so far was handed to the socket (or the link died)."""
        while not self._drained.is_set() and not self.closed:
            await self._drained.wait()

    async def close(self, code: int, reason: str, *, flush: bool = False) -> None:
        """Close the websocket; queued frames are dropped unless ``flush``."""
        if flush:
            await self.flush()
        self.mark_closed()
        await self.ws.close(code, reason)

    def mark_closed(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.held = None
        self._queue.clear()
        self._queued = 0
        for event in (self._has_data, self._writable, self._drained):
            event.set()
        for task in self._tasks:
            task.cancel()
        self._on_closed(self)

    async def _write_loop(self) -> None:
        ws = self.ws
        while not self.closed:
            if not self._queue:
                self._drained.set()
                self._has_data.clear()
                await self._has_data.wait()
                continue
            if ws.state is not State.OPEN:
                self.mark_closed()
                return
            batch = self._take_batch()
            if self._queued <= K_LOW_WATER:
                self._writable.set()
            try:
                await self._send_all(batch)
            except ConnectionClosed:
                self.mark_closed()
                return

    def _take_batch(self) -> list[bytes]:
        """Everything queued, up to ``K_BATCH_BYTES`` (at least one message)."""
        queue = self._queue
        batch = [queue.popleft()]
        size = len(batch[0])
        while queue and size < K_BATCH_BYTES:
            data = queue.popleft()
            batch.append(data)
            size += len(data)
        self._queued -= size
        return batch

    async def _send_all(self, batch: list[bytes]) -> None:
        """Send each item as its own binary message, with one write to the socket.

        A relay forwards many small messages; one ``ws.send()`` each would cost a TLS record and a
        ``send()`` call per 1 KiB message, which made the sandbox, not the client, the slowest part
        of the measured path. websockets' sans-I/O protocol frames each message exactly as
        ``send()`` would; the frames then leave in one write, and ``drain()`` applies the same
        flow control ``send()`` does.
        """
        ws = self.ws
        protocol = ws.protocol
        if len(batch) == 1 or protocol.state is not State.OPEN:
            for data in batch:
                await ws.send(data)
            return
        for data in batch:
            protocol.send_binary(data)
        chunks = protocol.data_to_send()
        if all(chunks):
            ws.transport.write(b"".join(chunks))
        else:  # an end of stream is queued too: let websockets write it its way
            for chunk in chunks:
                if chunk:
                    ws.transport.write(chunk)
                elif ws.transport.can_write_eof():
                    ws.transport.write_eof()
                else:
                    ws.transport.close()
        try:
            await ws.drain()
        except OSError as exc:
            raise ConnectionClosed(None, None) from exc

    async def stop(self) -> None:
        """Cancel the writer (data plane shutdown)."""
        self._writer.cancel()
        tasks = [self._writer, *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
