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
from typing import Final, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .link import Link
from .payloads import PayloadError, parse_open_data_channel
from .session import AgentSession
from .tokens import fingerprint

K_PATH_RE: Final = re.compile(r"^/v1/data-channel/(?P<sid>[^/?#]+)(?:\?.*)?$")
K_OPEN_TIMEOUT: Final = 30.0
"""How long the server waits for the OpenDataChannel frame after the upgrade."""
K_CLOSE_POLICY: Final = 1008


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
    try:
        async for message in link.ws:
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
        session.detach(link)
