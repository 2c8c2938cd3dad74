"""``DataPlane``: the thread-safe façade the sandbox control plane calls.

It runs one asyncio loop in a background thread with the websocket endpoint and every
session. Public methods may be called from any thread (including from an ``on_end`` callback);
none of them waits for the loop except ``start`` and ``stop``. ``on_end`` callbacks run on a
small thread pool, so they may block or call back into the data plane.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import secrets
import socket
import ssl
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from websockets.asyncio.server import Server, serve

from .faults import DataPlaneFaults
from .server import TappedServerConnection, handle_connection, make_process_request
from .session import AgentSession, SessionServices
from .tokens import TokenStore

K_SESSION_ID_RE: Final = re.compile(r"^[^/?#%\s]{1,96}$")
K_ENDED_KEPT: Final = 10_000
"""Ended sessions remembered for ``session_state`` / ``session_stats``."""
K_STREAM_READ_LIMIT: Final = 1024 * 1024
K_COUNTERS: Final = (
    # traffic
    "frames_in", "frames_out", "bytes_in", "bytes_out", "acks_in", "acks_out", "retransmits",
    # client-side problems and protocol events (what "drops" means, one name per reason)
    "malformed_in", "digest_mismatch_in", "length_mismatch_in", "unknown_type_in", "text_frames_in",
    "acks_unknown_in", "duplicates_in", "out_of_order_in", "not_ready_in", "discarded_before_handshake",
    "incoming_buffer_full", "outgoing_buffer_full", "dropped_no_client", "stale_link_frames",
    "unexpected_payload_in", "unexpected_flag_in", "handshake_without_session_type", "open_shape_problems",
    "smux_protocol_errors",
    # connections and sessions
    "connections", "reconnects", "resumes", "client_id_changes", "tokens_rejected", "http_rejected",
    "sessions_created", "sessions_terminated", "sessions_failed", "handshakes_completed", "handshakes_failed",
    "idle_timeouts", "max_duration_ends", "port_dials", "port_dial_failures", "mux_streams_opened",
    "mux_dial_failures", "smux_keepalive_timeouts",
    # faults applied
    "fault_ack_dropped", "fault_ack_delayed", "fault_client_ack_ignored", "fault_duplicated",
    "fault_reordered", "fault_corrupted", "fault_ws_drops", "fault_publication_pauses",
    # bugs in the sandbox itself (tests assert 0)
    "internal_errors",
)  # fmt: skip
"""Every counter ``stats`` and ``session_stats`` report (0 until something happens)."""
K_DROP_COUNTERS: Final = (
    "malformed_in",
    "unknown_type_in",
    "not_ready_in",
    "incoming_buffer_full",
    "stale_link_frames",
    "dropped_no_client",
)
"""Summed into ``drops``: frames received and not acted on, or agent frames with no client."""

Dial = Callable[[str, str, int], socket.socket]


@dataclass(frozen=True)
class _Ended:
    state: str
    output: str
    path: str
    mode: str
    counters: dict[str, int]


def _cell_number() -> str:
    """An opaque value with the characters real ones have: ``+``, ``/`` and ``=`` (G15)."""
    while True:
        value = base64.b64encode(secrets.token_bytes(47)).decode("ascii")
        if "+" in value and "/" in value:
            return value


class DataPlane:
    """Thread-safe; runs its own asyncio loop in a background thread."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None,
        host: str = "127.0.0.1",
        port: int = 0,
        dial: Dial,
        log: logging.Logger | None = None,
    ) -> None:
        self._ssl = ssl_context
        self._host = host
        self._port = port
        self._dial_fn = dial
        self.log = log or logging.getLogger("trek10.sandbox.dataplane")
        self._lock = threading.Lock()
        self._faults = DataPlaneFaults()
        self._stats: Counter[str] = Counter()
        self._sessions: dict[str, AgentSession] = {}
        self._ended: OrderedDict[str, _Ended] = OrderedDict()
        self._tokens = TokenStore()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Server | None = None
        self._dial_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="dataplane-dial")
        self._callback_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dataplane-on-end")
        self._services = SessionServices(
            faults=lambda: self._faults,
            dial=self._dial,
            ended=self._session_ended,
            log=self.log,
        )

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the loop thread and the endpoint; returns once it is listening."""
        if self._thread is not None:
            raise RuntimeError("DataPlane already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._listen())
            except Exception as exc:  # noqa: BLE001 - re-raised by start() in the caller's thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="sandbox-dataplane", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            loop.close()
            raise failure[0]

    async def _listen(self) -> None:
        # websockets logs frame contents at DEBUG; an OpenDataChannel frame carries the token,
        # so its logger never goes below INFO (tokens must not reach any log).
        ws_log = logging.getLogger(f"{self.log.name}.websockets")
        ws_log.setLevel(max(ws_log.level, logging.INFO))
        self._server = await serve(
            lambda ws: handle_connection(self, ws),
            self._host,
            self._port,
            ssl=self._ssl,
            process_request=make_process_request(self),
            compression=None,
            max_size=None,
            # websockets' default queue of 16 incoming frames stops reading after 16 one-KiB
            # messages; port data has its own backpressure (``wait_writable``), so read more.
            max_queue=(1024, 256),
            write_limit=256 * 1024,
            create_connection=TappedServerConnection,
            ping_interval=None,
            close_timeout=2,
            server_header=None,
            logger=ws_log,
        )
        self._port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Close the endpoint and every session (no channel_closed, no on_end); idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
        self._loop = self._thread = None
        self._dial_pool.shutdown(wait=False, cancel_futures=True)
        self._callback_pool.shutdown(wait=False, cancel_futures=True)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close(close_connections=True)
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        await asyncio.gather(*(s.stop() for s in sessions), return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        # Ended sessions may still be closing their websocket; nothing may outlive the loop.
        leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    @property
    def base_url(self) -> str:
        """``wss://HOST:PORT`` (``ws://`` without TLS); valid after ``start``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{'wss' if self._ssl else 'ws'}://{host}:{self._port}"

    # --- sessions -------------------------------------------------------------------------

    def create_session(
        self,
        *,
        session_id: str,
        target: str,
        document_name: str,
        properties: dict[str, str],
        agent_version: str,
        on_end: Callable[[str, str], None] | None = None,
    ) -> tuple[str, str]:
        """Register a session and return ``(StreamUrl, TokenValue)`` for StartSession.

        The agent's handshake clock (``handshake_timeout``, 15 s) and the token's TTL start now.
        """
        if not K_SESSION_ID_RE.match(session_id):
            raise ValueError(f"session id not usable in a URL path: {session_id!r}")
        bad = [k for k, v in properties.items() if not isinstance(v, str)]
        if bad:
            raise TypeError(f"document properties must be strings (G8): {bad}")
        loop = self._running_loop()
        path = f"/v1/data-channel/{session_id}?role=publish_subscribe&cell-number={_cell_number()}"
        session = AgentSession(
            self._services,
            session_id=session_id,
            target=target,
            document_name=document_name,
            properties=properties,
            agent_version=agent_version,
            on_end=on_end,
            stream_path=path,
        )
        with self._lock:
            if session_id in self._sessions or session_id in self._ended:
                raise ValueError(f"session id already used: {session_id}")
            self._sessions[session_id] = session
        token = self._tokens.issue(session_id, self._faults.token_ttl)
        self.count("sessions_created")
        loop.call_soon_threadsafe(session.start)
        self.log.info("= %s created for %s (%s, agent %s)", session_id, target, document_name, agent_version)
        return self.base_url + path, token

    def resume_session(self, session_id: str) -> str | None:
        """A fresh token for a live session (older ones stop working); None if it is gone."""
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None or session.ended:
            return None
        self.count("resumes")
        return self._tokens.issue(session_id, self._faults.token_ttl)

    def terminate_session(self, session_id: str, output: str = "") -> None:
        """TerminateSession: channel_closed to the client, port side closed. Returns at once."""
        self._finish_soon(session_id, "Terminated", output)

    def end_sessions_for_target(self, target: str, output: str) -> None:
        """The instance stopped, terminated or lost its agent: end all its sessions."""
        with self._lock:
            ids = [sid for sid, s in self._sessions.items() if s.target == target]
        for session_id in ids:
            self._finish_soon(session_id, "Terminated", output)

    def _finish_soon(self, session_id: str, status: str, output: str) -> None:
        with self._lock:
            session = self._sessions.get(session_id)
        if session is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(session.finish, status, output)

    def session_state(self, session_id: str) -> str:
        """Connecting | Connected | Disconnected | Terminating | Terminated | Failed | Unknown."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None:
                return session.state
            ended = self._ended.get(session_id)
        return ended.state if ended is not None else "Unknown"

    def session_output(self, session_id: str) -> str | None:
        """The channel_closed Output of an ended session; None while it runs or if unknown."""
        with self._lock:
            ended = self._ended.get(session_id)
        return ended.output if ended is not None else None

    def session_stats(self, session_id: str) -> dict[str, Any]:
        """Per-session counters (see ``stats``) plus ``mode`` once the handshake is done."""
        with self._lock:
            session = self._sessions.get(session_id)
            ended = self._ended.get(session_id)
        zeros: dict[str, Any] = dict.fromkeys(K_COUNTERS, 0)
        if session is not None:
            return zeros | dict(session.counters) | {"mode": session.mode}
        if ended is not None:
            return zeros | ended.counters | {"mode": ended.mode}
        raise KeyError(session_id)

    # --- faults and stats -----------------------------------------------------------------

    def set_faults(self, **changes: Any) -> DataPlaneFaults:
        """Change switches while running; applies to the next frame/tick. Returns the result."""
        with self._lock:
            self._faults = self._faults.replace(**changes)
            return self._faults

    @property
    def faults(self) -> DataPlaneFaults:
        return self._faults

    def stats(self) -> dict[str, int]:
        """Counters summed over all sessions since start (names in README.md)."""
        with self._lock:
            totals = Counter(self._stats)
            live = list(self._sessions.values())
        for session in live:
            totals.update(dict(session.counters))  # dict() copies atomically under the GIL
        snapshot = dict.fromkeys(K_COUNTERS, 0) | dict(totals)
        snapshot["sessions_active"] = len(live)
        snapshot["drops"] = sum(snapshot[name] for name in K_DROP_COUNTERS)
        return snapshot

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._stats[name] += n

    # --- used by the endpoint and sessions (loop thread) ----------------------------------

    def issued_path(self, session_id: str) -> str | None:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None:
                return session.stream_path
            ended = self._ended.get(session_id)
        return ended.path if ended is not None else None

    def authenticate(self, session_id: str, token: str) -> tuple[AgentSession | None, str]:
        why = self._tokens.consume(token, session_id)
        if why is not None:
            return None, why
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None or session.ended:
            return None, "session is not active"
        return session, ""

    def _session_ended(self, session: AgentSession) -> None:
        self._tokens.revoke(session.session_id)
        with self._lock:
            self._sessions.pop(session.session_id, None)
            self._ended[session.session_id] = _Ended(
                session.state,
                session.end_output,
                session.stream_path,
                session.mode,
                dict(session.counters),
            )
            while len(self._ended) > K_ENDED_KEPT:
                self._ended.popitem(last=False)
            self._stats.update(session.counters)
        self.count("sessions_failed" if session.state == "Failed" else "sessions_terminated")
        if session.on_end is not None and self._loop is not None:
            self._loop.run_in_executor(self._callback_pool, self._call_on_end, session)

    def _call_on_end(self, session: AgentSession) -> None:
        assert session.on_end is not None
        try:
            session.on_end(session.session_id, session.state)
        except Exception:
            self.log.exception("! on_end callback for %s raised", session.session_id)

    async def _dial(
        self, target: str, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop = asyncio.get_running_loop()
        try:
            sock = await loop.run_in_executor(self._dial_pool, self._dial_fn, target, host, port)
        except OSError:
            raise
        except Exception as exc:
            raise OSError(f"dial failed: {exc}") from exc
        try:
            sock.setblocking(False)
            return await asyncio.open_connection(sock=sock, limit=K_STREAM_READ_LIMIT)
        except BaseException:
            sock.close()
            raise

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("DataPlane is not started")
        return self._loop
