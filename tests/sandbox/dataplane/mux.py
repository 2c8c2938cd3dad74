"""Port side in mux mode: an smux v1 server over the data channel (§5.4).

Mirrors the agent's ``MuxPortSession`` on xtaci/smux 1.5: every client SYN is accepted in order
and dialled one at a time; a failed dial sends the ConnectToPortError flag and closes the
stream. Each stream copies both ways; when either side ends, the stream is closed (FIN) and the
destination socket is closed too (smux v1 has no half-close). Received PSH data waits in
per-stream queues charged against a 4 MiB session bucket; while the bucket is exhausted the
session stops reading the websocket, which is the only flow control v1 has.

When the client is old enough for the agent to keep smux keepalive on (G1, §5.1), the server
sends a NOP every 10 s and closes the mux if nothing arrived during a 30 s tick.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Final

from .codec import Flag, PayloadType, flag_payload, parse_flag
from .pipe import BytePipe
from .ports import PortHost
from .smux import (
    K_KEEPALIVE_INTERVAL,
    K_KEEPALIVE_TIMEOUT,
    K_MAX_FRAME_SIZE,
    K_MAX_RECEIVE_BUFFER,
    Command,
    SmuxParser,
    SmuxProtocolError,
    encode_data,
    encode_frame,
)

K_DEST_READ_SIZE: Final = K_MAX_FRAME_SIZE


class _Stream:
    """One smux stream: client bytes waiting for the destination, and its two copy tasks."""

    def __init__(self, stream_id: int) -> None:
        self.id = stream_id
        self.chunks: collections.deque[bytes] = collections.deque()
        self.queued = 0
        self.event = asyncio.Event()
        self.fin_received = False
        self.fin_sent = False
        self.writer: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []


class MuxPort:
    def __init__(
        self,
        host: PortHost,
        *,
        dest_host: str,
        dest_port: int,
        keepalive: bool,
        keepalive_interval: float = K_KEEPALIVE_INTERVAL,
        keepalive_timeout: float = K_KEEPALIVE_TIMEOUT,
    ) -> None:
        self._host = host
        self._dest_host = dest_host
        self._dest_port = dest_port
        self.keepalive = keepalive
        self._keepalive_interval = keepalive_interval
        self._keepalive_timeout = keepalive_timeout
        self._parser = SmuxParser()
        self._streams: dict[int, _Stream] = {}
        self._accepts: asyncio.Queue[_Stream] = asyncio.Queue()
        self._out = BytePipe()
        self._bucket = K_MAX_RECEIVE_BUFFER
        self._bucket_event = asyncio.Event()
        self._bucket_event.set()
        self._data_ready = False
        self._started = False
        self._closed = False
        self._tasks: list[asyncio.Task[None]] = []

    mode = "mux"

    # --- StreamHandler --------------------------------------------------------------------

    def ready(self) -> bool:
        return self._started and not self._closed

    def deliver(self, payload_type: int, payload: bytes) -> None:
        if payload_type == PayloadType.OUTPUT:
            try:
                frames = self._parser.feed(payload)
            except SmuxProtocolError as exc:
                self._host.log.warning("! smux protocol error from client: %s", exc)
                self._host.count("smux_protocol_errors")
                self._fail()
                return
            for frame in frames:
                self._on_frame(frame.cmd, frame.stream_id, frame.data)
        elif payload_type == PayloadType.FLAG:
            if parse_flag(payload) == Flag.TERMINATE_SESSION:
                self._host.port_finished("Terminated", "")
            else:
                self._host.count("unexpected_flag_in")  # DisconnectToPort is basic-mode only
        else:
            self._host.count("unexpected_payload_in")

    def _on_frame(self, cmd: Command, stream_id: int, data: bytes) -> None:
        self._data_ready = True
        stream = self._streams.get(stream_id)
        if cmd is Command.SYN:
            if stream is None:  # a SYN for an existing id is ignored
                stream = _Stream(stream_id)
                self._streams[stream_id] = stream
                self._accepts.put_nowait(stream)
                self._host.count("mux_streams_opened")
        elif cmd is Command.PSH:
            if stream is not None and data:  # PSH for an unknown stream is ignored
                stream.chunks.append(data)
                stream.queued += len(data)
                self._take_tokens(len(data))
                stream.event.set()
        elif cmd is Command.FIN and stream is not None:
            stream.fin_received = True
            stream.event.set()

    def _take_tokens(self, n: int) -> None:
        self._bucket -= n
        if self._bucket <= 0:
            self._bucket_event.clear()

    def _return_tokens(self, n: int) -> None:
        self._bucket += n
        if self._bucket > 0:
            self._bucket_event.set()

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._accept_loop()), loop.create_task(self._pump())]
        if self.keepalive:
            self._tasks.append(loop.create_task(self._keepalive()))
        self._started = True

    @property
    def writable(self) -> bool:
        """False while ``wait_writable`` would wait."""
        return self._bucket_event.is_set() or self._closed

    async def wait_writable(self) -> None:
        while not self._bucket_event.is_set() and not self._closed:
            await self._bucket_event.wait()

    async def close(self) -> None:
        self._closed = True
        self._bucket_event.set()
        self._out.close()
        tasks = list(self._tasks)
        for stream in self._streams.values():
            tasks.extend(stream.tasks)
            if stream.writer is not None:
                stream.writer.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _fail(self) -> None:
        """The smux session died: like the agent's WritePump returning an error."""
        if not self._closed:
            self._closed = True
            self._host.port_finished("Failed", "")

    # --- tasks ----------------------------------------------------------------------------

    async def _pump(self) -> None:
        """The agent's transferDataToMgs: socket bytes -> Output messages of chunk_size."""
        while True:
            chunk = await self._out.read(self._host.chunk_size)
            if not chunk or not await self._host.send_output(PayloadType.OUTPUT, chunk):
                return

    async def _accept_loop(self) -> None:
        while not self._closed:
            stream = await self._accepts.get()
            try:
                reader, writer = await self._host.dial(self._dest_host, self._dest_port)
            except OSError as exc:
                self._host.count("mux_dial_failures")
                self._host.log.info(
                    "! stream %d: dial %s:%d failed: %s", stream.id, self._dest_host, self._dest_port, exc
                )
                await self._host.send_output(PayloadType.FLAG, flag_payload(Flag.CONNECT_TO_PORT_ERROR))
                self._close_stream(stream)
                continue
            self._host.count("port_dials")
            stream.writer = writer
            loop = asyncio.get_running_loop()
            stream.tasks = [
                loop.create_task(self._downstream(stream, reader)),
                loop.create_task(self._upstream(stream, writer)),
            ]

    async def _downstream(self, stream: _Stream, reader: asyncio.StreamReader) -> None:
        """Destination -> client: PSH frames until EOF, then FIN."""
        try:
            while True:
                data = await reader.read(K_DEST_READ_SIZE)
                if not data or stream.fin_sent:
                    break
                await self._out.wait_writable()
                self._out.write(encode_data(stream.id, data))
        except OSError:
            pass
        self._close_stream(stream)

    async def _upstream(self, stream: _Stream, writer: asyncio.StreamWriter) -> None:
        """Client -> destination, until the client's FIN has been drained."""
        try:
            while True:
                if not stream.chunks:
                    if stream.fin_received or stream.fin_sent:
                        break
                    stream.event.clear()
                    await stream.event.wait()
                    continue
                data = stream.chunks.popleft()
                stream.queued -= len(data)
                writer.write(data)
                await writer.drain()
                self._return_tokens(len(data))
        except OSError:
            pass
        self._close_stream(stream)

    def _close_stream(self, stream: _Stream) -> None:
        """Close both ways: FIN to the client once, destination socket shut, tokens back."""
        if not stream.fin_sent:
            stream.fin_sent = True
            self._out.write(encode_frame(Command.FIN, stream.id))
        if stream.writer is not None:
            stream.writer.close()
        stream.event.set()
        if stream.queued:
            self._return_tokens(stream.queued)
            stream.chunks.clear()
            stream.queued = 0
        if self._streams.get(stream.id) is stream:
            del self._streams[stream.id]

    async def _keepalive(self) -> None:
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self._keepalive_interval
        next_check = loop.time() + self._keepalive_timeout
        while not self._closed:
            await asyncio.sleep(max(0.0, min(next_ping, next_check) - loop.time()))
            now = loop.time()
            if now >= next_ping:
                self._out.write(encode_frame(Command.NOP, 0))
                next_ping += self._keepalive_interval
            if now >= next_check:
                if not self._data_ready and self._bucket > 0:
                    self._host.log.info("= smux keepalive timeout: closing the mux (G1)")
                    self._host.count("smux_keepalive_timeouts")
                    self._fail()
                    return
                self._data_ready = False
                next_check += self._keepalive_timeout
