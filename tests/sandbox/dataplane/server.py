"""The ``ssmmessages`` websocket endpoint: URL check, OpenDataChannel, token, then frames (§1.3, §1.4).

Clients dial ``/v1/data-channel/<SessionId>?role=publish_subscribe&cell-number=<opaque>``.
The sandbox insists on the exact request target it handed out, so a client that re-encodes the
query (``+``, ``/``, ``=`` in cell-number, G15) gets HTTP 400 instead of silently working.
Authentication is the first TEXT frame; a bad one gets close code 1008 (policy violation). AWS's
own reaction to a bad token is not public; 1008 is our documented choice.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Final, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response

from .link import Link
from .payloads import PayloadError, parse_open_data_channel
from .session import AgentSession
from .tokens import fingerprint

K_PATH_RE: Final = re.compile(r"^/v1/data-channel/(?P<sid>[^/?#]+)(?:\?.*)?$")
K_OPEN_TIMEOUT: Final = 30.0
"""How long the server waits for the OpenDataChannel frame after the upgrade."""
K_CLOSE_POLICY: Final = 1008
K_EARLY_HIGH_WATER: Final = 1024
"""Binary messages held between OpenDataChannel and the session's attach; above it, reading pauses."""


class TappedServerConnection(ServerConnection):
    """A websockets server connection that hands complete binary messages to ``binary_tap``.

    A relay sees one small message per 1 KiB of port data plus one ack each way (§3.1, §2.3);
    queueing each for ``recv()`` and waking a task per message cost the sandbox about a quarter of
    its CPU. With a tap, binary messages go from websockets' parser straight to the session, in
    order. Before a tap is set: binary messages that follow the OpenDataChannel text frame are
    kept (in order) for ``start_tap``; any earlier one, text frames, fragments and control frames
    take websockets' normal path, so ``recv()`` still returns the open frame and reports the close.
    ``process_event`` is the per-frame hook websockets' own ServerConnection overrides.
    """

    binary_tap: Callable[[bytes], None] | None = None
    early: list[bytes] | None = None

    def process_event(self, event: Any) -> None:
        if type(event) is Frame:
            if event.opcode is Opcode.BINARY and event.fin:
                data = event.data if type(event.data) is bytes else bytes(event.data)
                if self.binary_tap is not None:
                    self.binary_tap(data)
                    return
                if self.early is not None:
                    self.early.append(data)
                    if len(self.early) == K_EARLY_HIGH_WATER:
                        self.transport.pause_reading()
                    return
            elif event.opcode is Opcode.TEXT and self.early is None and self.binary_tap is None:
                self.early = []  # the OpenDataChannel frame: binary messages behind it wait
        super().process_event(event)

    def start_tap(self, tap: Callable[[bytes], None]) -> None:
        """Deliver the kept messages, then every binary message, to ``tap``."""
        early, self.early = self.early or [], None
        for data in early:
            tap(data)
        self.binary_tap = tap
        if len(early) >= K_EARLY_HIGH_WATER and not self.transport.is_closing():
            self.transport.resume_reading()

    def stop_tap(self) -> None:
        self.binary_tap = None


class Registry(Protocol):
    """What the endpoint needs from the ``DataPlane``."""

    log: logging.Logger

    def issued_path(self, session_id: str) -> str | None: ...

    def authenticate(self, session_id: str, token: str) -> tuple[AgentSession | None, str]: ...

    def count(self, name: str, n: int = 1) -> None: ...


def _plain(status: HTTPStatus, text: str) -> Response:
    body = f"{text}\n".encode()
    headers = Headers([("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)


def make_process_request(registry: Registry) -> Callable[[ServerConnection, Request], Response | None]:
    """Reject wrong paths before the upgrade; everything else is decided by the token."""

    def process_request(_connection: ServerConnection, request: Request) -> Response | None:
        match = K_PATH_RE.match(request.path)
        if match is None:
            registry.count("http_rejected")
            return _plain(HTTPStatus.NOT_FOUND, "Not Found")
        issued = registry.issued_path(match["sid"])
        if issued is not None and request.path != issued:
            registry.count("http_rejected")
            return _plain(HTTPStatus.BAD_REQUEST, "StreamUrl must be used verbatim")
        return None

    return process_request


async def handle_connection(registry: Registry, ws: ServerConnection) -> None:
    """One client websocket from upgrade to close; never raises for client misbehaviour."""
    match = K_PATH_RE.match(ws.request.path if ws.request else "")
    if match is None:  # process_request already refused it
        return
    session_id = match["sid"]
    log = registry.log
    try:
        first = await asyncio.wait_for(ws.recv(), timeout=K_OPEN_TIMEOUT)
    except TimeoutError:
        registry.count("tokens_rejected")
        await ws.close(K_CLOSE_POLICY, "OpenDataChannel not received")
        return
    except ConnectionClosed:
        return
    if not isinstance(first, str):
        registry.count("tokens_rejected")
        await ws.close(K_CLOSE_POLICY, "first frame must be the OpenDataChannel text frame")
        return
    try:
        odc = parse_open_data_channel(first)
    except PayloadError as exc:
        registry.count("tokens_rejected")
        await ws.close(K_CLOSE_POLICY, str(exc))
        return
    session, why = registry.authenticate(session_id, odc.token_value)
    if session is None:
        registry.count("tokens_rejected")
        log.info("! %s: token %s refused: %s", session_id, fingerprint(odc.token_value), why)
        await ws.close(K_CLOSE_POLICY, "Unauthorized: invalid token")
        return
    for problem in odc.shape_problems():
        session.count("open_shape_problems")
        log.warning("! %s: OpenDataChannel: %s", session_id, problem)
    link = session.attach(ws, odc)
    await _pump(session, link)


async def _pump(session: AgentSession, link: Link) -> None:
    ws = link.ws
    tapped = isinstance(ws, TappedServerConnection)
    if tapped:

        def tap(data: bytes) -> None:
            try:
                session.frame_received(link, data)
            except Exception:
                session.log.exception("! %s: internal error handling a frame", session.session_id)
                session.count("internal_errors")

        ws.start_tap(tap)
    try:
        async for message in ws:
            if isinstance(message, str):
                session.count("text_frames_in")  # not expected after the open frame; ignored
                continue
            try:
                await session.on_frame(link, message)
            except Exception:
                session.log.exception("! %s: internal error handling a frame", session.session_id)
                session.count("internal_errors")
    except ConnectionClosed:
        pass  # G14: an abrupt TCP close is the official client's normal way to leave
    finally:
        if tapped:
            ws.stop_tap()
        session.detach(link)
