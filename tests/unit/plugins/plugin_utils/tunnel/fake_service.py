"""An in-process ssmmessages data-channel endpoint for driver tests.

A real ``websockets`` server on 127.0.0.1:0. Behind it sits the independent ScriptedAgent (the
agent side written from the spec, see ``datachannel/scripted_agent.py``); its per-session state
outlives websocket connections, as the spec's Appendix A point 3 requires, so a client can resume.
Fault switches: close with 1000 "Bye" (or abort the TCP connection) when a predicate becomes
true, refuse upgrades with an HTTP status, inject raw frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.tunnel.websocket_driver import Tunnel
from ansible_collections.trek10.ec2ssm.tests.unit.plugins.plugin_utils.datachannel.scripted_agent import (
    ScriptedAgent,
    decode_frame,
)

HARD_TIMEOUT = (
    pytest.mark.timeout(60) if importlib.util.find_spec("pytest_timeout") else pytest.mark.usefixtures()
)
"""Signal-based per-test limit (it also stops a busy loop that starves asyncio's own timeouts).
Conditional because ``ansible-test units`` runs with --strict-markers and may lack pytest-timeout."""


class _RecordingConnection(ServerConnection):
    """Records the payload of every ping the client sends (§6.1)."""

    pings: list[bytes]

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame) and event.opcode is Opcode.PING:
            self.pings.append(bytes(event.data))
        super().process_event(event)


class FakeService:
    def __init__(
        self,
        agent: ScriptedAgent | None = None,
        *,
        token: str = "tok-1",  # noqa: S107 - a fake token
        tick: float = 0.02,
    ) -> None:
        self.agent = agent if agent is not None else ScriptedAgent()
        self.valid_tokens = {token}
        self.tick = tick
        self.paths: list[str] = []
        self.openings: list[dict[str, Any]] = []
        self.client_seqs: list[list[int]] = []
        """Per connection: sequence numbers of the client's input_stream_data frames."""
        self.pings: list[bytes] = []
        self.close_when: Callable[[ScriptedAgent], bool] | None = None
        self.abort_instead_of_close = False
        self.reject_status: int | None = None
        self.reject_after_first = False
        self.current: ServerConnection | None = None
        self._server: Server | None = None
        self._started = False
        self._loop_time = 0.0

    @property
    def port(self) -> int:
        if self._server is None:
            raise AssertionError("not started")
        return int(next(iter(self._server.sockets)).getsockname()[1])

    def url(self, session_id: str = "sess-1") -> str:
        # A real StreamUrl carries '+', '/' and '=' in its query: it must reach us verbatim (G15).
        return (
            f"ws://127.0.0.1:{self.port}/v1/data-channel/{session_id}"
            "?role=publish_subscribe&cell-number=AAEAAf+1Bg/Kw9iE=="
        )

    async def __aenter__(self) -> FakeService:
        self._server = await serve(
            self._handler,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            create_connection=self._make_connection,
            compression=None,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()

    def _make_connection(self, *args: Any, **kwargs: Any) -> ServerConnection:
        connection = _RecordingConnection(*args, **kwargs)
        connection.pings = self.pings
        return connection

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.paths.append(request.path)
        if self.reject_status is not None and (not self.reject_after_first or len(self.paths) > 1):
            return connection.respond(self.reject_status, "refused by the fake service\n")
        return None

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def push(self) -> None:
        """Send what the agent queued (frames are lost if no websocket is up; the agent resends)."""
        frames = self.agent.take_outbox()
        ws = self.current
        if ws is None:
            return
        for frame in frames:
            try:
                await ws.send(frame)
            except Exception:  # noqa: BLE001 - a dropped socket loses frames, as on the real service
                return

    async def send_raw(self, frame: bytes) -> None:
        if self.current is not None:
            await self.current.send(frame)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            self.agent.handle_timer(self.now())
            await self.push()

    async def _handler(self, ws: ServerConnection) -> None:
        text = await ws.recv()
        opening = json.loads(text)
        self.openings.append(opening)
        if opening.get("TokenValue") not in self.valid_tokens:
            await ws.close(1008, "invalid token")
            return
        seqs: list[int] = []
        self.client_seqs.append(seqs)
        self.current = ws
        if not self._started:
            self._started = True
            self.agent.start(self.now())
        loop = asyncio.get_running_loop()
        ticker = loop.create_task(self._ticker())
        closer: asyncio.Task[None] | None = None
        try:
            await self.push()
            async for message in ws:
                if closer is not None or isinstance(message, str):
                    continue  # closing: keep reading (flow control) but ignore what still arrives
                frame = decode_frame(message)
                if frame.message_type == "input_stream_data":
                    seqs.append(frame.sequence_number)
                self.agent.on_frame(message, self.now())
                await self.push()
                if self.close_when is not None and self.close_when(self.agent):
                    self.close_when = None
                    if self.current is ws:
                        self.current = None  # nothing more goes out on this socket
                    if self.abort_instead_of_close:
                        ws.transport.abort()
                        return
                    closer = loop.create_task(ws.close(1000, "Bye"))
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            if closer is not None:
                await closer
            if self.current is ws:
                self.current = None


# --- helpers shared by the driver tests ----------------------------------------------------------


def run(coro: Coroutine[Any, Any, None], guard: float = 30.0) -> None:
    """Run a test coroutine; ``guard`` only stops a hung test, nothing asserts on timing."""

    async def guarded() -> None:
        async with asyncio.timeout(guard):
            await coro

    asyncio.run(guarded())


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.005)


class Resumer:
    """The injected ResumeSession callback: hands out fresh tokens the fake service accepts."""

    def __init__(self, service: FakeService, *, gone: bool = False) -> None:
        self.service = service
        self.gone = gone
        self.calls = 0

    async def __call__(self) -> str | None:
        self.calls += 1
        if self.gone:
            return None
        token = f"tok-resumed-{self.calls}"
        self.service.valid_tokens.add(token)
        return token


def make_tunnel(
    service: FakeService, resume: Callable[[], Awaitable[str | None]] | None = None, **tuning: Any
) -> Tunnel:
    logs: list[str] = []
    tunnel = Tunnel(
        stream_url=service.url(),
        token="tok-1",
        session_id="sess-1",
        target="i-0123456789abcdef0",
        resume=resume if resume is not None else Resumer(service),
        ssl_context=None,
        log=logs.append,
        **tuning,
    )
    tunnel.test_logs = logs  # type: ignore[attr-defined]
    return tunnel


async def read_exactly(tunnel: Tunnel, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await tunnel.read()
        if not chunk:
            break
        data += chunk
    return bytes(data)


async def read_until_error(tunnel: Tunnel) -> None:
    """Read until read() raises; reaching the end of the stream (b"") is a failure here."""
    while True:
        if not await tunnel.read():
            raise AssertionError("the stream ended cleanly instead of failing")
