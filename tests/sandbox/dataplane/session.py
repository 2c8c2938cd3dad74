"""One Session Manager session on the service + agent side: the asyncio driver.

``AgentSession`` owns the sans-IO ``AgentChannel``, the port handler chosen after the
handshake, the currently attached client websocket (if any), the fault decisions on the way
out and the session's timers. It outlives websockets: a client that reconnects with a
ResumeSession token gets the same sequence spaces, buffers and port connections (§6.4).

The service half is [inferred] (MGS is closed source). Choices made here:

* While no client websocket is attached the service tells the agent ``pause_publication``:
  the agent stops resending, and (a deliberate simplification, documented in README.md) stops
  reading its port instead of queueing up to 100 000 messages. On (re)attach the service says
  ``start_publication`` and the agent resends its oldest unacked message at once.
* The session ends by ``channel_closed`` to the client after the agent's up-to-2-s wait for
  outstanding acks; the websocket is closed 1 s later if the client has not gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from websockets.asyncio.server import ServerConnection

from .channel import (
    AgentChannel,
    HandshakeCompleted,
    HandshakeFailed,
    OutFrame,
    Output,
    PeerClosed,
)
from .codec import K_FLAG_FIN, K_FLAG_SYN, MessageType, PayloadType, encode_message, new_message_id
from .faults import K_IDLE_TIMEOUT_OUTPUT, K_MAX_DURATION_OUTPUT, DataPlaneFaults, session_rng
from .inject import FaultInjector
from .link import Link
from .modes import PlanError, plan_port
from .mux import MuxPort
from .payloads import OpenDataChannel, channel_closed_payload
from .ports import BasicPort
from .reliability import K_RESEND_INTERVAL

K_CLOSE_GRACE: Final = 1.0

Dial = Callable[[str, str, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


@dataclass
class SessionServices:
    """What a session borrows from the ``DataPlane``."""

    faults: Callable[[], DataPlaneFaults]
    dial: Dial
    ended: Callable[[AgentSession], None]
    log: logging.Logger


class _Gate:
    """The StreamHandler the channel sees: the port handler once it exists, else not ready."""

    def __init__(self, session: AgentSession) -> None:
        self._session = session

    def ready(self) -> bool:
        port = self._session.port
        return port is not None and port.ready()

    def deliver(self, payload_type: int, payload: bytes) -> None:
        session = self._session
        if payload_type == PayloadType.OUTPUT:
            session.last_activity = time.monotonic()
            session.count("bytes_in", len(payload))
        assert session.port is not None
        session.port.deliver(payload_type, payload)


class AgentSession:
    def __init__(
        self,
        services: SessionServices,
        *,
        session_id: str,
        target: str,
        document_name: str,
        properties: dict[str, str],
        agent_version: str,
        on_end: Callable[[str, str], None] | None,
        stream_path: str,
    ) -> None:
        self.services = services
        self.session_id = session_id
        self.target = target
        self.document_name = document_name
        self.agent_version = agent_version
        self.on_end = on_end
        self.stream_path = stream_path
        self.log = services.log
        self.state = "Connecting"
        self.end_output = ""
        self.mode = ""
        self.counters: dict[str, int] = {}
        self.created = time.monotonic()
        self.last_activity = self.created
        self.link: Link | None = None
        self.port: BasicPort | MuxPort | None = None
        self.client_id: str | None = None
        self._injector = FaultInjector(
            faults=services.faults,
            rng=session_rng(services.faults(), session_id),
            count=self.count,
            spawn=self._spawn,
        )
        self._ending = False
        self._attached = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._tick_task: asyncio.Task[None] | None = None
        self.channel = AgentChannel(
            agent_version=agent_version,
            properties=properties,
            handshake_timeout=services.faults().handshake_timeout,
            count=self.count,
        )
        self.channel.paused = True
        self._gate = _Gate(self)

    # --- PortHost -------------------------------------------------------------------------

    @property
    def chunk_size(self) -> int:
        return self.services.faults().chunk_size

    def count(self, name: str, n: int = 1) -> None:
        """Per-session counter; the DataPlane sums sessions for ``stats`` (no lock per frame)."""
        counters = self.counters
        counters[name] = counters.get(name, 0) + n

    async def dial(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await self.services.dial(self.target, host, port)

    def port_finished(self, status: str, output: str) -> None:
        self.finish(status, output)

    async def send_output(self, payload_type: int, payload: bytes) -> bool:
        """Sequence and send one port payload; waits while no client is attached."""
        while not self._ending and not self._is_attached():
            await self._attached.wait()
        if self._ending:
            return False
        now = time.monotonic()
        frame = self.channel.send_data(payload_type, payload, now)
        if payload_type == PayloadType.OUTPUT:
            self.last_activity = now
            self.count("bytes_out", len(payload))
        link = self.link
        self._transmit(frame)
        if link is not None:
            await link.wait_writable()
        return True

    async def send_outputs(self, payload_type: int, payloads: Sequence[bytes]) -> bool:
        """``send_output`` for consecutive payloads of one socket read: each is its own
        sequenced message, as the agent sends them; only the wait for room happens once."""
        while not self._ending and not self._is_attached():
            await self._attached.wait()
        if self._ending:
            return False
        now = time.monotonic()
        link = self.link
        channel = self.channel
        for payload in payloads:
            self._transmit(channel.send_data(payload_type, payload, now))
        if payload_type == PayloadType.OUTPUT:
            self.last_activity = now
            self.count("bytes_out", sum(map(len, payloads)))
        if link is not None:
            await link.wait_writable()
        return True

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Run on the loop: the agent sends its HandshakeRequest as soon as the session exists."""
        if self._tick_task is not None:
            return
        self.channel.start(time.monotonic())  # held until a client attaches (paused)
        self._tick_task = asyncio.get_running_loop().create_task(self._tick())

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _is_attached(self) -> bool:
        return self.link is not None and not self.link.closed

    @property
    def ended(self) -> bool:
        return self._ending

    def attach(self, ws: ServerConnection, odc: OpenDataChannel) -> Link:
        """A client presented a valid token: it replaces any previous websocket."""
        self.start()
        old = self.link
        link = Link(ws, opened=time.monotonic(), client_id=odc.client_id, on_closed=self.detach)
        self.link = link
        self.count("connections")
        if self.client_id is None:
            self.client_id = odc.client_id
        else:
            self.count("reconnects")
            if odc.client_id != self.client_id:
                self.log.warning("! %s: ClientId changed on reconnect", self.session_id)
                self.count("client_id_changes")
        if old is not None and not old.closed:
            old.mark_closed()
            self._spawn(old.ws.close(1000, "Bye"))
        if self.state in ("Connecting", "Disconnected"):
            self.state = "Connected"
        self.channel.paused = False  # start_publication to the agent
        self._attached.set()
        self._process(self.channel.resend_head(time.monotonic()))
        return link

    def detach(self, link: Link) -> None:
        """The websocket is gone (closed by either side or dropped); the session stays."""
        if not link.closed:
            link.mark_closed()  # calls back here with link.closed set
            return
        if self.link is link:
            self.link = None
            self.channel.paused = True
            self._attached.clear()
            if not self._ending:
                self.state = "Disconnected"

    def finish(self, status: str, output: str) -> None:
        """End the session for any reason; idempotent."""
        if self._ending:
            return
        self._ending = True
        self.state = "Terminating"
        self.channel.closing = True  # from now on client data is not acked (the port is going)
        self._attached.set()  # release port tasks waiting for a client
        self.log.info("= %s ending: %s %s", self.session_id, status, output or "")
        self._spawn(self._finish(status, output))

    async def _finish(self, status: str, output: str) -> None:
        if self.port is not None:
            await self.port.close()
        linger = self.services.faults().close_linger
        deadline = time.monotonic() + linger
        while len(self.channel.outgoing) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # the tick keeps resending meanwhile
        self.state = status
        self.end_output = output
        if self._tick_task is not None:
            self._tick_task.cancel()
        self.services.ended(self)
        link = self.link
        if link is not None and not link.closed:
            self._injector.send(link, self._channel_closed(output))
            await link.flush()
            await asyncio.sleep(K_CLOSE_GRACE)
            if not link.closed:
                await link.close(1000, "Session ended", flush=True)

    async def stop(self) -> None:
        """Tear down without channel_closed (the whole data plane is stopping)."""
        self._ending = True
        self._attached.set()
        if self.port is not None:
            await self.port.close()
        if self.link is not None:
            await self.link.stop()
        tasks = [*self._tasks, *([self._tick_task] if self._tick_task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _channel_closed(self, output: str) -> bytes:
        message_id = new_message_id()
        now_ms = time.time_ns() // 1_000_000
        payload = channel_closed_payload(
            message_id=message_id,
            created_ms=now_ms,
            destination_id=self.target,
            session_id=self.session_id,
            output=output,
        )
        return encode_message(
            MessageType.CHANNEL_CLOSED,
            payload=payload,
            created_date=now_ms,
            message_id=message_id,
            flags=K_FLAG_SYN | K_FLAG_FIN,
        )

    # --- incoming -------------------------------------------------------------------------

    async def on_frame(self, link: Link, data: bytes) -> None:
        """One binary message from the client on ``link``, read with ``recv()``."""
        self.frame_received(link, data)
        port = self.port
        if port is not None:
            await port.wait_writable()

    def frame_received(self, link: Link, data: bytes) -> None:
        """One binary message from the client on ``link``: everything but the wait for room.

        Messages handed over by the websocket's parser (``server.TappedServerConnection``) come
        here directly; when the port side is full, reading the websocket pauses until it has
        room, which is what awaiting ``wait_writable`` after each message does in ``on_frame``.
        """
        if link is not self.link:
            self.count("stale_link_frames")
            return
        self.count("frames_in")
        if self._injector.ignore_client_ack(data):
            return
        self._process(self.channel.receive(data, time.monotonic(), self._gate))
        port = self.port
        if port is not None and not port.writable:
            link.hold_reading_until(port.wait_writable)

    def _process(self, outputs: list[Output]) -> None:
        for item in outputs:
            if isinstance(item, OutFrame):
                self._transmit(item)
            elif isinstance(item, HandshakeCompleted):
                self._on_handshake_completed(item.client_version)
            elif isinstance(item, HandshakeFailed):
                self.count("handshakes_failed")
                self.finish("Failed", item.reason)
            elif isinstance(item, PeerClosed):
                self.finish("Terminated", "")

    def _on_handshake_completed(self, client_version: str) -> None:
        self.count("handshakes_completed")
        try:
            plan = plan_port(self.channel.properties, self.agent_version, client_version)
        except PlanError as exc:
            self.finish("Failed", str(exc))
            return
        self.mode = plan.mode
        self.log.info("= %s handshake done, client %s, %s mode", self.session_id, client_version, plan.mode)
        if plan.mode == "mux":
            self.port = MuxPort(
                self, dest_host=plan.dest_host, dest_port=plan.dest_port, keepalive=plan.keepalive
            )
        else:
            self.port = BasicPort(
                self,
                dest_host=plan.dest_host,
                dest_port=plan.dest_port,
                local_port_forwarding=plan.mode == "basic",
                terminate_flag=plan.terminate_flag,
            )
        self._spawn(self._start_port(self.port))

    async def _start_port(self, port: BasicPort | MuxPort) -> None:
        await port.start()
        if port.ready():
            self.channel.drain(self._gate)

    # --- outgoing -------------------------------------------------------------------------

    def _transmit(self, out: OutFrame) -> None:
        link = self.link
        if link is None or link.closed:
            self.count("dropped_no_client")  # it stays in the outgoing buffer for the resend
            return
        self._injector.transmit(link, out)

    # --- timers ---------------------------------------------------------------------------

    async def _tick(self) -> None:
        """The agent's resend scheduler plus the service's timers, every 100 ms."""
        while True:
            await asyncio.sleep(K_RESEND_INTERVAL)
            now = time.monotonic()
            try:
                self._process(self.channel.handle_timer(now))
                self._check_limits(now)
                link = self.link
                if link is not None and not link.closed and not self._ending:
                    self._injector.tick(link, now)
            except Exception:
                self.log.exception("! %s: internal error in the session timer", self.session_id)
                self.count("internal_errors")

    def _check_limits(self, now: float) -> None:
        if self._ending:
            return
        faults = self.services.faults()
        if faults.max_duration is not None and now - self.created >= faults.max_duration:
            self.count("max_duration_ends")
            self.finish("Terminated", K_MAX_DURATION_OUTPUT)
        elif faults.idle_timeout is not None and now - self.last_activity >= faults.idle_timeout:
            self.count("idle_timeouts")
            self.finish("Terminated", K_IDLE_TIMEOUT_OUTPUT)
