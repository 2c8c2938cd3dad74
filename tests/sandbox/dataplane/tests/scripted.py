"""A scripted data-channel client for the tests, written from the spec with ``struct``.

Deliberately not the collection's client and not the sandbox's codec: frames are packed and
unpacked here by hand (§2), so the data plane is checked against a third reading of the spec
(and against the official plugin in ``test_official_plugin.py``).
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import struct
import time
import uuid
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

HEADER = struct.Struct(">I32sIQqQ16s32sII")
CLIENT_VERSION = "1.2.650.0"


@dataclass(frozen=True)
class Frame:
    type: str
    seq: int
    flags: int
    message_id: uuid.UUID
    payload_type: int
    payload: bytes
    digest_ok: bool
    created: int
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.payload)


def pack(message_type: str, payload: bytes, *, seq: int = 0, flags: int = 0, payload_type: int = 0) -> bytes:
    raw_id = uuid.uuid4().bytes
    return (
        HEADER.pack(
            116,
            message_type.encode().ljust(32, b" "),
            1,
            time.time_ns() // 1_000_000,
            seq,
            flags,
            raw_id[8:] + raw_id[:8],
            hashlib.sha256(payload).digest(),
            payload_type,
            len(payload),
        )
        + payload
    )


def unpack(data: bytes) -> Frame:
    hl, mtype, _schema, created, seq, flags, wire_id, digest, ptype, plen = HEADER.unpack_from(data)
    assert hl == 116
    payload = data[120:]
    assert plen == len(payload)
    return Frame(
        type=mtype.decode().strip(),
        seq=seq,
        flags=flags,
        message_id=uuid.UUID(bytes=wire_id[8:] + wire_id[:8]),
        payload_type=ptype,
        payload=payload,
        digest_ok=hashlib.sha256(payload).digest() == digest,
        created=created,
        raw=data,
    )


class ScriptedClient:
    """One client: websocket (replaceable on reconnect) plus both sequence spaces.

    ``pump`` reads one frame and does what a correct client does: acks agent stream frames
    (unless ``auto_ack`` is off), drops frames with a bad digest, reorders, and appends
    in-order Output payloads to ``stream``. Everything is recorded for assertions.
    """

    def __init__(self, url: str, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.url = url
        self.ssl_context = ssl_context
        self.client_id = str(uuid.uuid4())
        self.ws: ClientConnection | None = None
        self.auto_ack = True
        self.next_seq = 0
        self.agent_expected = 0
        self.stream = bytearray()
        self.acked: set[int] = set()
        self.events: list[tuple[str, int, int]] = []
        """("ack", acked seq, 0) or ("data", seq, payload type), in arrival order."""
        self.agent_frames: list[Frame] = []
        self.delivered: list[Frame] = []
        """In-order agent stream frames other than Output (handshake, flags)."""
        self.others: list[Frame] = []
        """channel_closed, pause/start_publication, anything else."""
        self.bad_digest: list[Frame] = []
        self._pending: dict[int, Frame] = {}

    # --- connection -------------------------------------------------------------------------

    def connect(self, token: str, *, client_id: str | None = None) -> None:
        self.ws = connect(
            self.url, ssl=self.ssl_context, compression=None, max_size=None, open_timeout=10, legacy=True
        )
        opening = {
            "MessageSchemaVersion": "1.0",
            "RequestId": str(uuid.uuid4()),
            "TokenValue": token,
            "ClientId": client_id or self.client_id,
            "ClientVersion": CLIENT_VERSION,
        }
        self.ws.send(json.dumps(opening, separators=(",", ":")))

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (G14: what the Go client does)."""
        assert self.ws is not None
        self.ws.socket.shutdown(socket.SHUT_RDWR)
        self.ws.close_socket()
        self.ws = None

    def close_code(self, timeout: float = 10.0) -> tuple[int | None, str]:
        """Pump until the server closes; returns its close code and reason."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.pump(max(0.01, deadline - time.monotonic()))
        except ConnectionClosed as exc:
            self.ws = None
            return (None, "") if exc.rcvd is None else (exc.rcvd.code, exc.rcvd.reason)
        raise AssertionError("server did not close the websocket")

    # --- frames -----------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        assert self.ws is not None
        self.ws.send(data)

    def recv(self, timeout: float = 10.0) -> Frame:
        assert self.ws is not None
        message = self.ws.recv(timeout=timeout)
        assert isinstance(message, bytes), f"unexpected text frame {message!r}"
        return unpack(message)

    def pump(self, timeout: float) -> Frame | None:
        """Handle one incoming frame; None on timeout. Raises ConnectionClosed."""
        try:
            frame = self.recv(timeout=timeout)
        except TimeoutError:
            return None
        self.handle(frame)
        return frame

    def handle(self, frame: Frame) -> None:
        if not frame.digest_ok:
            self.bad_digest.append(frame)  # §2: drop silently, no ack
            return
        if frame.type == "acknowledge":
            seq = frame.json()["AcknowledgedMessageSequenceNumber"]
            self.acked.add(seq)
            self.events.append(("ack", seq, 0))
            return
        if frame.type != "output_stream_data":
            self.others.append(frame)
            return
        self.agent_frames.append(frame)
        self.events.append(("data", frame.seq, frame.payload_type))
        if self.auto_ack:
            self.ack(frame)
        if frame.seq >= self.agent_expected:
            self._pending[frame.seq] = frame
        while self.agent_expected in self._pending:
            ready = self._pending.pop(self.agent_expected)
            self.agent_expected += 1
            if ready.payload_type == 1:
                self.stream += ready.payload
            else:
                self.delivered.append(ready)

    def wait_for(self, predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}; events={self.events[-10:]}")
            self.pump(min(remaining, 0.2))

    def ack(self, frame: Frame) -> None:
        body = {
            "AcknowledgedMessageType": frame.type,
            "AcknowledgedMessageId": str(frame.message_id),
            "AcknowledgedMessageSequenceNumber": frame.seq,
            "IsSequentialMessage": True,
        }
        self.send_raw(pack("acknowledge", json.dumps(body, separators=(",", ":")).encode(), flags=3))

    def send_stream(self, payload: bytes, payload_type: int = 1) -> tuple[int, bytes]:
        """Send the next input_stream_data; returns (seq, raw frame) for resending."""
        seq = self.next_seq
        self.next_seq += 1
        raw = pack("input_stream_data", payload, seq=seq, payload_type=payload_type)
        self.send_raw(raw)
        return seq, raw

    def send_reliably(
        self, payload: bytes, payload_type: int = 1, *, timeout: float = 20.0, resend_every: float = 0.3
    ) -> int:
        """Send and resend every ``resend_every`` seconds until acked (what a client's RTO does)."""
        seq, raw = self.send_stream(payload, payload_type)
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while seq not in self.acked:
            if time.monotonic() > deadline:
                raise AssertionError(f"seq {seq} never acked; events={self.events[-10:]}")
            if time.monotonic() - last > resend_every:
                self.send_raw(raw)
                last = time.monotonic()
            self.pump(min(0.05, resend_every))
        return seq

    def send_flag(self, value: int) -> int:
        """Send a Flag message (resent until acked, like any stream message)."""
        return self.send_reliably(struct.pack(">I", value), payload_type=10)

    def expect_stream(self, data: bytes, timeout: float = 20.0) -> None:
        """Wait until ``stream`` holds ``data`` (then consume it)."""
        self.wait_for(lambda: len(self.stream) >= len(data), timeout, f"{len(data)} echoed bytes")
        got = bytes(self.stream[: len(data)])
        del self.stream[: len(data)]
        assert got == data

    def channel_closed(self, timeout: float = 10.0) -> dict[str, Any]:
        def closed() -> bool:
            return any(f.type == "channel_closed" for f in self.others)

        self.wait_for(closed, timeout, "channel_closed")
        frame = next(f for f in self.others if f.type == "channel_closed")
        body: dict[str, Any] = frame.json()
        return body

    # --- handshake --------------------------------------------------------------------------

    def handshake(self, client_version: str = CLIENT_VERSION) -> Frame:
        """Answer the HandshakeRequest; checks the agent acks before HandshakeComplete (G17)."""
        self.wait_for(lambda: any(f.payload_type == 5 for f in self.delivered), what="HandshakeRequest")
        request = next(f for f in self.delivered if f.payload_type == 5)
        response = {
            "ClientVersion": client_version,
            "ProcessedClientActions": [
                {"ActionType": "SessionType", "ActionStatus": 1, "ActionResult": None, "Error": ""}
            ],
            "Errors": None,
        }
        mark = len(self.events)
        seq, _ = self.send_stream(json.dumps(response).encode(), payload_type=6)
        assert seq == 0
        self.wait_for(lambda: any(f.payload_type == 7 for f in self.delivered), what="HandshakeComplete")
        after = self.events[mark:]
        assert after.index(("ack", 0, 0)) < after.index(("data", 1, 7)), after
        return request
