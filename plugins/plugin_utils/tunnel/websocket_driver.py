# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""asyncio driver: one SSM data channel over one (re)connecting websocket.

PRIVATE to this collection. The protocol lives in the sans-IO core
(``plugin_utils/datachannel``); this module only plumbs it (websockets/aioquic style):

* every frame received goes to :meth:`DataChannel.receive_frame`, then :meth:`Tunnel._pump`
  dispatches the core's events, hands its frames to the connection's writer task and re-arms the
  single timer from :meth:`DataChannel.get_timer`;
* backpressure is the core's: :meth:`Tunnel.write` waits while the core's window is full, and
  :meth:`Tunnel.read` lets the core stop acking when the reader falls behind (G6);
* a dropped websocket (the service closes them about hourly with 1000 "Bye", G16) calls the
  injected ``resume()`` (ResumeSession) and reconnects to the *original* StreamUrl with the same
  ClientId; the core keeps sequence state and queues outgoing data meanwhile (G9, §6.4).

There are no module globals and no signal handlers, so one event loop can run many tunnels.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import random
import ssl
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.constants import (
    K_CLIENT_VERSION,
    K_DEFAULT_CHUNK_SIZE,
    K_DEFAULT_GIVE_UP_AFTER,
    K_DEFAULT_MAX_UNACKED_BYTES,
    K_DEFAULT_MAX_UNACKED_MESSAGES,
    K_DEFAULT_REORDER_CAPACITY,
    K_DEFAULT_RETRANSMIT_BURST,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.events import (
    ChannelClosed,
    ConnectToPortError,
    DataReceived,
    Event,
    HandshakeCompleted,
    ProtocolWarning,
    PublicationPaused,
    PublicationResumed,
    RetransmissionTimedOut,
    SessionMode,
    WindowFull,
    WindowOpen,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.events import (
    HandshakeFailed as HandshakeFailedEvent,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.message import Flag
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.session import DataChannel
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.tunnel.errors import (
    ChannelClosedByService,
    HandshakeFailed,
    MissingDependency,
    PeerUnresponsive,
    SessionGone,
    TunnelClosed,
    TunnelError,
    WebSocketFailed,
)

try:
    from websockets.asyncio.client import ClientConnection as _ClientConnection
    from websockets.asyncio.client import connect as _ws_connect
    from websockets.exceptions import ConcurrencyError, ConnectionClosed, InvalidStatus, WebSocketException
    from websockets.frames import Frame as _Frame
    from websockets.frames import Opcode as _Opcode
    from websockets.protocol import State as _WsState
except ImportError as _exc:  # pragma: no cover - exercised by ansible-test's import sanity
    WEBSOCKETS_IMPORT_ERROR: ImportError | None = _exc
else:
    WEBSOCKETS_IMPORT_ERROR = None

    class _TappedConnection(_ClientConnection):
        """A websockets client connection that hands complete binary messages to ``binary_tap``
        as the parser produces them, instead of queueing each for ``recv()``.

        Every AgentMessage is one binary message (§1.4), usually of 1 KiB (§3.1): queueing it,
        waking a reader task and returning it from ``recv()`` cost about as much as everything the
        data-channel core does with it. Anything else (text, fragmented messages, or frames while
        no tap is set) takes websockets' normal path, and ``recv()`` still reports the close.
        ``process_event`` is the per-frame hook websockets' own client subclass overrides.
        """

        binary_tap: Callable[[bytes], None] | None = None

        def process_event(self, event: Any) -> None:
            tap = self.binary_tap
            if tap is not None and isinstance(event, _Frame) and event.fin and event.opcode is _Opcode.BINARY:
                data = event.data
                tap(data if isinstance(data, bytes) else bytes(data))
                return
            super().process_event(event)


if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection


__all__ = [
    "ChannelClosedByService",
    "HandshakeFailed",
    "HandshakeInfo",
    "MissingDependency",
    "PeerUnresponsive",
    "SessionGone",
    "Tunnel",
    "TunnelClosed",
    "TunnelError",
    "TunnelStats",
    "TunnelTuning",
    "WebSocketFailed",
]

HandshakeInfo = HandshakeCompleted
"""What :meth:`Tunnel.connect` returns: mode, agent version, properties, smux keepalive, ..."""

_PING_PAYLOAD = b"keepalive"  # §6.1
_WS_MAX_QUEUE = (1024, 256)
"""websockets' incoming frame queue (high, low). Its default of 16 frames stops reading the socket
after 16 one-KiB messages (§3.1), which means a pause/resume of the transport and more, smaller
reads per MiB. Our own limit on unread data is ``max_receive_buffer`` (the core stops acking, G6)."""
_WS_WRITE_LIMIT = 256 * 1024
"""Transport write buffer high-water mark (websockets' default is 32 KiB)."""
_WS_LOGGER = logging.getLogger("ansible_collections.trek10.ec2ssm.tunnel.websockets")
_WS_LOGGER.setLevel(logging.WARNING)  # our own logger: DEBUG frame dumps would show the token


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TunnelTuning:
    """Knobs of one tunnel (``Tunnel(**tuning)``); the defaults follow the spec where it has one."""

    chunk_size: int = K_DEFAULT_CHUNK_SIZE
    """Max payload bytes per data message (§3.1: 1024 "unless measured otherwise")."""
    max_unacked_messages: int = K_DEFAULT_MAX_UNACKED_MESSAGES
    max_unacked_bytes: int = K_DEFAULT_MAX_UNACKED_BYTES
    reorder_capacity: int = K_DEFAULT_REORDER_CAPACITY
    retransmit_burst: int = K_DEFAULT_RETRANSMIT_BURST
    give_up_after: float = K_DEFAULT_GIVE_UP_AFTER
    client_version: str = K_CLIENT_VERSION
    open_timeout: float = 45.0
    """Websocket opening handshake timeout (§1.3: the Go dialer uses 45 s)."""
    handshake_timeout: float = 30.0
    """connect(): from the websocket open to HandshakeComplete (the agent itself waits 15 s)."""
    ping_interval: float = 300.0
    """§6.1: ping "keepalive" on connect and every 5 minutes."""
    pong_timeout: float | None = None
    """§6.1: the Go client sets no pong deadline. If set, a missing pong counts as a dropped socket."""
    reconnect_attempts: int = 6
    """§6.4: at most 6 attempts (1 + 5 retries) per drop."""
    reconnect_initial_delay: float = 0.1
    """§6.4: first retry after a random 100-199 ms, doubling, reset once above ``reconnect_max_delay``."""
    reconnect_max_delay: float = 5.0
    terminate_timeout: float = 2.0
    """§5.6: wait up to about 2 s for the ack of TerminateSession."""
    close_timeout: float = 2.0
    max_message_size: int | None = 16 * 1024 * 1024
    max_receive_buffer: int = 4 * 1024 * 1024
    """Bytes received but not yet read; above it the core stops acking new data (G6)."""
    proxy: str | bool | None = True
    """True: HTTPS_PROXY/NO_PROXY from the environment (websockets' own resolution); None: direct."""
    user_agent: str | None = None
    """User-Agent of the websocket upgrade; None keeps websockets' default."""
    log_frames: bool = False
    """Log every frame (``>``/``<`` lines). Off by default: it is one line per KiB of data."""


@dataclasses.dataclass(frozen=True, slots=True)
class TunnelStats:
    """Snapshot of counters (``Tunnel.stats``)."""

    frames_sent: int
    frames_received: int
    bytes_sent: int
    bytes_received: int
    retransmits: int
    dropped_bad_frames: int
    duplicates: int
    reconnects: int
    connect_to_port_errors: int
    unacked_messages: int


@dataclasses.dataclass(eq=False, slots=True)
class _Connection:
    """One websocket and its writer queue. Frames queued here die with it; data frames are still
    in the core's window and are resent on the next connection."""

    ws: ClientConnection
    outq: collections.deque[bytes] = dataclasses.field(default_factory=collections.deque)
    wakeup: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    idle: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    """Set while the writer has nothing queued (or has stopped): lets aclose() flush first."""


def _require_websockets() -> None:
    if WEBSOCKETS_IMPORT_ERROR is not None:
        raise MissingDependency(
            "the 'websockets' Python library (version 15 or later) is required for the SSM data "
            f"channel; install it on the Ansible controller (pip install 'websockets>=15'): "
            f"{WEBSOCKETS_IMPORT_ERROR}"
        )


def _can_batch(ws: Any) -> bool:
    """Whether ``ws`` exposes what :func:`_send_batch` uses (websockets >= 15 asyncio connections)."""
    return all(hasattr(ws, name) for name in ("protocol", "transport", "drain")) and hasattr(
        ws.protocol, "data_to_send"
    )


async def _send_batch(ws: Any, frames: list[bytes]) -> bool:
    """Send ``frames`` as that many binary messages (one AgentMessage each, §1.4) with a single
    transport write, then wait while the transport's buffer is above its limit.

    ``ws.send()`` per frame costs a TLS record and a ``send()`` syscall each: with per-message acks
    at 1 KiB per message (§3.1) that was the largest single cost of the tunnel. Here the frames
    are serialized by websockets' own sans-I/O protocol (``send_binary``/``data_to_send``, exactly
    what ``send()`` does) and written together. Returns False once the connection is closing.
    """
    protocol = ws.protocol
    transport = ws.transport
    if protocol.state is not _WsState.OPEN or transport is None or transport.is_closing():
        return False
    for frame in frames:
        protocol.send_binary(frame)
    chunks = protocol.data_to_send()
    if all(chunks):
        transport.write(b"".join(chunks))
    else:  # pragma: no cover - only if websockets queued an end of stream meanwhile
        for chunk in chunks:
            if chunk:
                transport.write(chunk)
            elif transport.can_write_eof():
                transport.write_eof()
            else:
                transport.close()
    try:
        await ws.drain()
    except OSError:  # the connection was lost while we waited (websockets passes its error on)
        return False
    return True


def _describe_url(url: str) -> str:
    """StreamUrl without its query string, for logs."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class Tunnel:
    """A data channel to one SSM port session, driven by asyncio and ``websockets``.

    Typical use::

        tunnel = Tunnel(stream_url=..., token=..., session_id=..., target=..., resume=..., ssl_context=...)
        info = await tunnel.connect()          # websocket + OpenDataChannel + handshake
        await tunnel.write(b"...")             # waits while the unacked window is full
        data = await tunnel.read()             # b"" once the channel is closed
        await tunnel.terminate()               # TerminateSession flag, waits <= ~2 s for its ack
        await tunnel.aclose()
    """

    def __init__(
        self,
        *,
        stream_url: str,
        token: str,
        session_id: str,
        target: str,
        resume: Callable[[], Awaitable[str | None]],
        ssl_context: ssl.SSLContext | None,
        log: Callable[[str], None] | None = None,
        **tuning: Any,
    ) -> None:
        """Args:
        stream_url: StartSession's StreamUrl, used verbatim for every (re)connect (G15, §6.4).
        token: StartSession's TokenValue (never logged).
        session_id, target: for messages only.
        resume: async callback for a dropped websocket; calls ssm:ResumeSession and returns the
            new TokenValue, or None when the session is gone.
        ssl_context: for ``wss://``; None uses websockets' default (system store).
        log: receives one-line diagnostics (websockets prefixes: ``=`` state, ``x`` close, ``!`` error).
        tuning: :class:`TunnelTuning` fields.

        Raises:
            MissingDependency: websockets is not installed.
            TypeError: an unknown tuning keyword.
        """
        _require_websockets()
        self.tuning = TunnelTuning(**tuning)
        self.stream_url = stream_url
        self.session_id = session_id
        self.target = target
        self._token = token
        self._resume = resume
        self._ssl_context = ssl_context
        self._log_callback = log
        t = self.tuning
        self._core = DataChannel(
            client_version=t.client_version,
            chunk_size=t.chunk_size,
            max_unacked_messages=t.max_unacked_messages,
            max_unacked_bytes=t.max_unacked_bytes,
            reorder_capacity=t.reorder_capacity,
            retransmit_burst=t.retransmit_burst,
            give_up_after=t.give_up_after,
        )
        self.closed_output: str | None = None
        """Output of ``channel_closed`` once it arrived (may be ""), else None."""
        self._conn: _Connection | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._changed = asyncio.Event()
        self._recv: collections.deque[bytes] = collections.deque()
        self._recv_bytes = 0
        self._window_open = True
        self._started = False
        self._closing = False
        self._failure: TunnelError | None = None
        self._reconnects = 0
        self._connect_to_port_errors = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pump_scheduled = False

    # ------------------------------------------------------------------ public state

    @property
    def client_id(self) -> str:
        return str(self._core.client_id)

    @property
    def handshake_info(self) -> HandshakeInfo | None:
        return self._core.handshake_info

    @property
    def mode(self) -> SessionMode | None:
        return self._core.mode

    @property
    def failure(self) -> TunnelError | None:
        """The terminal error, if the tunnel failed."""
        return self._failure

    @property
    def stats(self) -> TunnelStats:
        s = self._core.stats
        return TunnelStats(
            frames_sent=s.frames_sent,
            frames_received=s.frames_received,
            bytes_sent=s.bytes_sent,
            bytes_received=s.bytes_received,
            retransmits=s.retransmits,
            dropped_bad_frames=s.dropped_bad_frames,
            duplicates=s.duplicates,
            reconnects=self._reconnects,
            connect_to_port_errors=self._connect_to_port_errors,
            unacked_messages=self._core.unacked_messages,
        )

    # ------------------------------------------------------------------ public API

    async def __aenter__(self) -> Tunnel:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def connect(self) -> HandshakeInfo:
        """Open the websocket, send OpenDataChannel and complete the handshake.

        Raises:
            WebSocketFailed: the websocket could not be opened (HTTP status in ``.status``).
            HandshakeFailed: the handshake failed (e.g. KMS requested) or timed out.
            ChannelClosedByService: the service closed the channel during the handshake.
            SessionGone, PeerUnresponsive: as during normal operation.
        """
        if self._started:
            raise TunnelError("Tunnel.connect() may only be called once")
        self._started = True
        loop = asyncio.get_running_loop()
        self._core.wall_clock_offset = time.time() - loop.time()
        try:
            conn = await self._open(self._token)
        except TunnelError as exc:
            self._fail(exc)
            raise
        self._supervisor = loop.create_task(self._supervise(conn))
        try:
            async with asyncio.timeout(self.tuning.handshake_timeout):
                await self._wait_until(lambda: self._core.handshake_complete or self._terminal)
        except TimeoutError:
            self._fail(
                HandshakeFailed(
                    f"{self.target}: no data-channel handshake within {self.tuning.handshake_timeout:g} s "
                    f"(session {self.session_id})"
                )
            )
        if not self._core.handshake_complete or self._terminal:
            error = self._terminal_error()
            await self.aclose()
            raise error
        info = self._core.handshake_info
        if info is None:  # pragma: no cover - implied by handshake_complete
            raise AssertionError("handshake complete without info")
        self._log(f"= handshake complete: mode {info.mode.value}, agent {info.agent_version}")
        return info

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send port bytes. Waits while the unacked window is full (backpressure); while the
        websocket is being re-established, data is queued in the window (G9).

        Raises:
            TunnelError: the tunnel failed, was closed, or the service closed the channel.
        """
        view = memoryview(data).cast("B")
        while True:
            self._check_can_send()
            accepted = self._core.send_data(view, self._now())
            self._pump()  # also dispatches WindowFull when nothing was accepted
            view = view[accepted:]
            if not view:
                return
            await self._wait_until(lambda: self._window_open or self._terminal)

    async def read(self) -> bytes:
        """Return the port bytes received so far (waiting for some), or b"" once the channel is
        closed (``channel_closed``) or the tunnel was closed locally.

        Raises:
            TunnelError: the tunnel failed (after all received data has been read).
        """
        while True:
            if self._pump_scheduled:
                # Frames already processed by the core whose events are not dispatched yet (the
                # pump runs once per batch): their data comes before a channel_closed behind them.
                self._pump()
            if self._recv:
                data = b"".join(self._recv)
                self._recv.clear()
                self._recv_bytes = 0
                if self._core.receiving_paused:
                    self._core.resume_receiving(self._now())
                    self._pump()
                return data
            if self._core.closed or self._closing:
                return b""
            if self._failure is not None:
                raise self._failure
            await self._wait_until(lambda: bool(self._recv) or self._terminal)

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until everything written has been acked; False on timeout or failure."""
        try:
            async with asyncio.timeout(timeout):
                await self._wait_until(lambda: self._core.unacked_messages == 0 or self._terminal)
        except TimeoutError:
            return False
        return self._core.unacked_messages == 0

    async def terminate(self) -> bool:
        """Send the TerminateSession flag and wait up to ``terminate_timeout`` for its ack (§5.6).

        Returns True when the agent acked it (or the channel closed). False means the flag could
        not be used (handshake incomplete, agent <= 2.3.722.0, tunnel down) or was not acked: the
        caller should then call the TerminateSession API.
        """
        if self._core.closed:
            return True  # the service already ended the session
        info = self._core.handshake_info
        if info is None or not info.terminate_flag_supported or self._terminal or not self._core.connected:
            return False
        sequence = self._core.send_flag(Flag.TERMINATE_SESSION, self._now())
        self._pump()
        self._log("> TerminateSession flag")
        try:
            async with asyncio.timeout(self.tuning.terminate_timeout):
                await self._wait_until(lambda: self._core.is_acknowledged(sequence) or self._terminal)
        except TimeoutError:
            return False
        return self._core.is_acknowledged(sequence) or self._core.closed

    async def disconnect_port(self) -> None:
        """Send the DisconnectToPort flag: the local TCP client went away (basic mode, §5.3)."""
        self._check_can_send()
        self._core.send_flag(Flag.DISCONNECT_TO_PORT, self._now())
        self._pump()

    async def wait_closed(self) -> None:
        """Wait until the tunnel ended: channel closed, closed locally, or failed. Never raises."""
        await self._wait_until(lambda: self._terminal)

    async def aclose(self) -> None:
        """Close the websocket and stop all tasks. Idempotent. Pending reads return b""."""
        if self._closing:
            if self._supervisor is not None:
                await asyncio.wait({self._supervisor})  # never raises, even if it was cancelled
            return
        self._closing = True
        self._cancel_timer()
        conn = self._conn
        if conn is not None:
            # Let the writer flush what is queued (a TerminateSession flag, a failed
            # HandshakeResponse) before the close frame.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.tuning.close_timeout):
                    await conn.idle.wait()
            await self._close_ws(conn)
        if self._supervisor is not None:
            if not self._supervisor.done():
                self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        self._changed.set()

    # ------------------------------------------------------------------ core plumbing

    @property
    def _terminal(self) -> bool:
        return self._failure is not None or self._core.closed or self._closing

    def _terminal_error(self) -> TunnelError:
        if self._failure is not None:
            return self._failure
        if self._core.closed:
            return ChannelClosedByService(
                f"{self.target}: the service closed session {self.session_id}"
                + (f": {self.closed_output}" if self.closed_output else ""),
                output=self.closed_output or "",
            )
        return TunnelClosed(f"{self.target}: the tunnel for session {self.session_id} is closed")

    def _check_can_send(self) -> None:
        if self._pump_scheduled:
            self._pump()
        if not self._core.handshake_complete:
            raise TunnelError("the tunnel is not connected yet (await connect() first)")
        if self._terminal:
            raise self._terminal_error()

    def _now(self) -> float:
        return self._now_loop().time()

    def _log(self, text: str) -> None:
        if self._log_callback is not None:
            self._log_callback(text)

    def _fail(self, error: TunnelError) -> None:
        if self._failure is None:
            self._failure = error
            self._log(f"! {error}")
        self._changed.set()
        if self._conn is not None:
            self._conn.wakeup.set()

    async def _wait_until(self, predicate: Callable[[], bool]) -> None:
        # Single-threaded: no await between the check and clear(), so no wakeup can be lost.
        # Pending events first, so nobody sees the core's state ahead of them (see read()).
        while True:
            if self._pump_scheduled:
                self._pump()
            if predicate():
                return
            self._changed.clear()
            await self._changed.wait()

    def _pump(self) -> None:
        """After every core input: dispatch events, queue frames, re-arm the timer, wake waiters."""
        self._pump_scheduled = False
        core = self._core
        while (event := core.next_event()) is not None:
            self._dispatch(event)
        frames = core.frames_to_send()
        conn = self._conn
        if frames and conn is not None:
            if self.tuning.log_frames:
                for frame in frames:
                    self._log(f"> {len(frame)} bytes")
            conn.outq.extend(frames)
            conn.idle.clear()
            conn.wakeup.set()
        self._arm_timer()
        self._changed.set()

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, DataReceived):
            self._recv.append(event.data)
            self._recv_bytes += len(event.data)
            if self._recv_bytes > self.tuning.max_receive_buffer:
                self._core.pause_receiving()
        elif isinstance(event, WindowFull):
            self._window_open = False
        elif isinstance(event, WindowOpen):
            self._window_open = True
        elif isinstance(event, ChannelClosed):
            self.closed_output = event.output
            self._log(f"x channel closed by the service{': ' + event.output if event.output else ''}")
        elif isinstance(event, HandshakeFailedEvent):
            self._fail(
                HandshakeFailed(
                    f"{self.target}: data-channel handshake failed for session {self.session_id}: "
                    f"{event.reason}",
                    encryption_requested=event.encryption_requested,
                )
            )
        elif isinstance(event, RetransmissionTimedOut):
            self._fail(
                PeerUnresponsive(
                    f"{self.target}: message {event.sequence_number} of session {self.session_id} was not "
                    f"acknowledged for {event.seconds:.0f} s ({event.resends} resends)"
                )
            )
        elif isinstance(event, ConnectToPortError):
            self._connect_to_port_errors += 1
            self._log("! Connection to destination port failed, check SSM Agent logs.")
        elif isinstance(event, PublicationPaused):
            self._log("= publication paused by the service")
        elif isinstance(event, PublicationResumed):
            self._log("= publication resumed")
        elif isinstance(event, ProtocolWarning):
            self._log(f"! {event.message}")

    def _arm_timer(self) -> None:
        deadline = self._core.get_timer()
        if deadline == self._timer_deadline and (deadline is None or self._timer is not None):
            return
        self._cancel_timer()
        if deadline is not None and not self._closing:
            self._timer_deadline = deadline
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer, deadline)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_deadline = None

    def _on_timer(self, deadline: float) -> None:
        self._timer = None
        self._timer_deadline = None
        try:
            # call_at may fire up to one clock tick early; the core must see the deadline reached.
            self._core.handle_timer(max(self._now(), deadline))
            self._pump()
        except Exception as exc:  # noqa: BLE001 - a bug must end the tunnel, not kill the timer silently
            self._fail(self._internal_error(exc))

    # ------------------------------------------------------------------ websocket lifecycle

    async def _open(self, token: str) -> _Connection:
        """Dial StreamUrl verbatim and send OpenDataChannel (§1.3, §1.4)."""
        t = self.tuning
        kwargs: dict[str, Any] = {
            "open_timeout": t.open_timeout,
            "ping_interval": None,  # our own ping, §6.1
            "ping_timeout": None,
            "close_timeout": t.close_timeout,
            "max_size": t.max_message_size,
            "max_queue": _WS_MAX_QUEUE,
            "write_limit": _WS_WRITE_LIMIT,
            "compression": None,  # §1.3: no extension
            "proxy": t.proxy,
            # websockets logs whole frames at DEBUG, the OpenDataChannel token included: never.
            "logger": _WS_LOGGER,
            "create_connection": _TappedConnection,
        }
        if t.user_agent is not None:
            kwargs["user_agent_header"] = t.user_agent
        if self.stream_url.startswith("wss:") and self._ssl_context is not None:
            kwargs["ssl"] = self._ssl_context
        where = _describe_url(self.stream_url)
        try:
            ws = await _ws_connect(self.stream_url, **kwargs)
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise WebSocketFailed(
                f"{self.target}: the data channel for session {self.session_id} was refused with HTTP "
                f"{status} at {where}",
                status=status,
            ) from exc
        except (OSError, TimeoutError, WebSocketException, ImportError) as exc:
            raise WebSocketFailed(
                f"{self.target}: cannot open the data channel websocket for session {self.session_id} "
                f"at {where}: {exc or type(exc).__name__}"
            ) from exc
        conn = _Connection(ws)
        text = self._core.connection_made(token, self._now())
        if isinstance(ws, _TappedConnection):
            ws.binary_tap = self._on_binary
        try:
            await ws.send(text)  # must precede every binary frame
        except ConnectionClosed as exc:
            self._core.connection_lost()
            raise WebSocketFailed(
                f"{self.target}: the data channel websocket closed before OpenDataChannel ({exc})"
            ) from exc
        self._log(f"= websocket open to {where} (connection {self._core.stats.connections})")
        self._conn = conn
        self._pump()  # resends everything unacked after a reconnect
        return conn

    async def _supervise(self, conn: _Connection) -> None:
        """Run connections until the tunnel ends; reconnect after drops (§6.4)."""
        try:
            while True:
                await self._run_connection(conn)
                self._conn = None
                self._core.connection_lost()
                self._pump()
                if self._terminal:
                    return
                try:
                    conn = await self._reconnect()
                except TunnelError as exc:
                    self._fail(exc)
                    return
        except Exception as exc:  # noqa: BLE001 - a bug must end the tunnel, never leave waiters hanging
            self._fail(self._internal_error(exc))
        finally:
            self._conn = None
            self._cancel_timer()
            self._changed.set()

    def _internal_error(self, exc: BaseException) -> TunnelError:
        error = TunnelError(
            f"{self.target}: internal error in the data-channel driver (session {self.session_id}): "
            f"{type(exc).__name__}: {exc}"
        )
        error.__cause__ = exc
        return error

    async def _run_connection(self, conn: _Connection) -> None:
        loop = asyncio.get_running_loop()
        reader = loop.create_task(self._read_loop(conn))
        writer = loop.create_task(self._write_loop(conn))
        pinger = loop.create_task(self._ping_loop(conn))
        try:
            done, _pending = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if isinstance(conn.ws, _TappedConnection):
                conn.ws.binary_tap = None  # from here on, frames are left unread, as before
            for task in (reader, writer, pinger):
                task.cancel()
            await asyncio.gather(reader, writer, pinger, return_exceptions=True)
            await self._close_ws(conn)
        for task in done:
            error = task.exception()
            if error is not None:
                raise error  # a bug, not a dropped socket: do not reconnect in a loop
        code, reason = conn.ws.close_code, conn.ws.close_reason
        if not self._closing:
            self._log(f"x websocket closed: code {code} {reason!r}")

    async def _read_loop(self, conn: _Connection) -> None:
        ws = conn.ws
        core = self._core
        log_frames = self.tuning.log_frames
        loop = asyncio.get_running_loop()
        while True:
            try:
                message = await ws.recv()
            except ConnectionClosed:
                return
            if isinstance(message, str):
                core.receive_text(message)
            else:
                if log_frames:
                    self._log(f"< {len(message)} bytes")
                core.receive_frame(message, loop.time())
            # recv() returns frames that are already buffered without yielding to the loop, so
            # this runs once the buffer is empty: one pump (and one write of all the acks) per
            # batch of frames instead of one per 1 KiB message.
            if not self._pump_scheduled:
                self._pump_scheduled = True
                loop.call_soon(self._pump_soon)

    def _on_binary(self, data: bytes) -> None:
        """One binary message, straight from the websocket's parser (:class:`_TappedConnection`)."""
        try:
            if self.tuning.log_frames:
                self._log(f"< {len(data)} bytes")
            self._core.receive_frame(data, self._now())
        except Exception as exc:  # noqa: BLE001 - a bug must end the tunnel, not the protocol callback
            self._fail(self._internal_error(exc))
            return
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self._now_loop().call_soon(self._pump_soon)

    def _now_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def _pump_soon(self) -> None:
        if not self._pump_scheduled:
            return  # someone pumped meanwhile
        try:
            self._pump()
        except Exception as exc:  # noqa: BLE001 - a bug must end the tunnel, not vanish in the loop
            self._fail(self._internal_error(exc))

    async def _write_loop(self, conn: _Connection) -> None:
        ws = conn.ws
        batched = _can_batch(ws)
        try:
            while True:
                while conn.outq:
                    if batched:
                        frames = list(conn.outq)
                        conn.outq.clear()
                        if not await _send_batch(ws, frames):
                            return
                        continue
                    frame = conn.outq.popleft()
                    try:
                        await ws.send(frame)
                    except ConnectionClosed:
                        return
                conn.idle.set()
                if self._failure is not None:
                    return  # after flushing, e.g. the failed HandshakeResponse the agent must see
                conn.wakeup.clear()
                await conn.wakeup.wait()
        finally:
            conn.idle.set()

    async def _ping_loop(self, conn: _Connection) -> None:
        ws = conn.ws
        timeout = self.tuning.pong_timeout
        while True:
            try:
                pong = await ws.ping(_PING_PAYLOAD)
            except ConcurrencyError:
                pong = None  # the previous "keepalive" ping is still unanswered
            except ConnectionClosed:
                return
            if timeout is not None and pong is not None:
                try:
                    async with asyncio.timeout(timeout):
                        await pong
                except TimeoutError:
                    self._log(f"! no pong within {timeout:g} s; treating the websocket as dropped")
                    await self._close_ws(conn)
                    return
                except ConnectionClosed:
                    return
            await asyncio.sleep(self.tuning.ping_interval)

    async def _close_ws(self, conn: _Connection) -> None:
        try:
            await conn.ws.close()
        except (OSError, WebSocketException):
            conn.ws.transport.abort()

    async def _reconnect(self) -> _Connection:
        """ResumeSession + dial the original StreamUrl, with the §6.4 retry policy."""
        t = self.tuning
        base = t.reconnect_initial_delay
        last_error: BaseException | None = None
        for attempt in range(1, t.reconnect_attempts + 1):
            if attempt > 1:
                delay = base * (1 + random.random())  # noqa: S311 - jitter, not a secret
                await asyncio.sleep(delay)
                base *= 2
                if base > t.reconnect_max_delay:
                    base = t.reconnect_initial_delay
            self._log(f"= resuming session {self.session_id} (attempt {attempt}/{t.reconnect_attempts})")
            try:
                token = await self._resume()
            except TunnelError:
                raise
            except Exception as exc:  # noqa: BLE001 - any AWS/network error is one failed attempt
                last_error = exc
                self._log(f"! ResumeSession failed: {exc}")
                continue
            if not token:
                raise SessionGone(f"{self.target}: session {self.session_id} timed out or was terminated")
            try:
                conn = await self._open(token)
            except WebSocketFailed as exc:
                last_error = exc
                self._log(f"! {exc}")
                continue
            self._reconnects += 1
            return conn
        raise WebSocketFailed(
            f"{self.target}: lost the data channel of session {self.session_id} and could not "
            f"reconnect after {t.reconnect_attempts} attempts: {last_error}"
        )
