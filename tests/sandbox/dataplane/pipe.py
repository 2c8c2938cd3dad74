"""An in-process byte pipe with backpressure, standing in for the agent's local socket pair.

In mux mode the real agent runs its smux server on one end of a Unix socket and pumps the other
end into the data channel 1024 bytes at a time (§5.4). ``BytePipe`` plays that socket: smux
writers append whole frames, the pump takes at most ``n`` bytes per message, and writers wait
while more than ``high_water`` bytes are queued, like a full socket buffer.
"""

from __future__ import annotations

import asyncio


class BytePipe:
    def __init__(self, high_water: int = 256 * 1024) -> None:
        self.high_water = high_water
        self._buffer = bytearray()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._buffer)

    def write(self, data: bytes) -> None:
        """Append without waiting; callers that produce much call ``wait_writable`` first."""
        if self._closed or not data:
            return
        self._buffer += data
        self._readable.set()
        if len(self._buffer) > self.high_water:
            self._writable.clear()

    async def wait_writable(self) -> None:
        while not self._writable.is_set() and not self._closed:
            await self._writable.wait()

    async def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; ``b""`` once the pipe is closed and empty."""
        while not self._buffer:
            if self._closed:
                return b""
            self._readable.clear()
            await self._readable.wait()
        chunk = bytes(self._buffer[:n])
        del self._buffer[:n]
        if len(self._buffer) <= self.high_water:
            self._writable.set()
        return chunk

    def close(self) -> None:
        """Wake every waiter; queued bytes can still be read."""
        self._closed = True
        self._readable.set()
        self._writable.set()
