"""A small scripted SSM agent (+ service) peer for tests, written from the spec only.

It deliberately does NOT import the collection's data-channel core: it has its own ~40-line
codec (ssm-data-channel.md §2) and its own reliability rules (§3.2 agent column, §3.5 agent
column, §4 agent side), so that a misunderstanding in the client core cannot hide by being shared.
It is sans-IO like the core: time is passed in, frames go in and out as bytes.

Knobs used by the tests:

* ``hold_acks``: process in-order data but keep the acks (the "peer withholds acks" case);
  :meth:`release_acks` sends them;
* ``ack_response_before_complete``: order of the HandshakeResponse ack and HandshakeComplete (G17);
* ``echo``: send every received data chunk back;
* ``not_ready``: the agent's handler is not ready, in-order data is not acked (G6);
* ``request_kms``: add a KMSEncryption action to the HandshakeRequest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
import uuid
from collections.abc import Callable
from typing import Any

HEADER = struct.Struct(">I32sIQqQ16s32sII")


@dataclasses.dataclass
class Frame:
    message_type: str
    created_date: int
    sequence_number: int
    flags: int
    message_id: str
    payload_type: int
    payload: bytes
    header_length: int = 116
    digest_ok: bool = True


def encode_frame(
    message_type: str,
    *,
    seq: int = 0,
    flags: int = 0,
    payload_type: int = 0,
    payload: bytes = b"",
    created_ms: int = 1_700_000_000_000,
    message_id: str | None = None,
) -> bytes:
    """Build one AgentMessage from the §2 table (independent of the product encoder)."""
    raw_id = uuid.UUID(message_id).bytes if message_id else uuid.uuid4().bytes
    return (
        HEADER.pack(
            116,
            message_type.encode().ljust(32, b" "),
            1,
            created_ms,
            seq,
            flags,
            raw_id[8:] + raw_id[:8],
            hashlib.sha256(payload).digest(),
            payload_type,
            len(payload),
        )
        + payload
    )


def decode_frame(frame: bytes) -> Frame:
    hl, mtype, _sv, created, seq, flags, raw_id, digest, ptype, _plen = HEADER.unpack_from(frame)
    payload = frame[120:]
    return Frame(
        message_type=mtype.strip(b"\x00").strip().decode(),
        created_date=created,
        sequence_number=seq,
        flags=flags,
        message_id=str(uuid.UUID(bytes=raw_id[8:] + raw_id[:8])),
        payload_type=ptype,
        payload=payload,
        header_length=hl,
        digest_ok=hashlib.sha256(payload).digest() == digest,
    )


def ack_payload(frame: Frame) -> bytes:
    return json.dumps(
        {
            "AcknowledgedMessageType": frame.message_type,
            "AcknowledgedMessageId": frame.message_id,
            "AcknowledgedMessageSequenceNumber": frame.sequence_number,
            "IsSequentialMessage": True,
        },
        separators=(",", ":"),
    ).encode()


@dataclasses.dataclass
class _Unacked:
    frame: bytes
    last_sent: float


class ScriptedAgent:
    """Agent side of one session: seq/ack/reorder/resend per the spec's agent column."""

    def __init__(
        self,
        *,
        agent_version: str = "3.3.987.0",
        properties: dict[str, Any] | None = None,
        session_type: str = "Port",
        echo: bool = False,
        ack_response_before_complete: bool = True,
        request_kms: bool = False,
        rto: float = 0.2,
        resend_all: bool = False,
        chunk: int = 1024,
    ) -> None:
        self.agent_version = agent_version
        self.properties = {"portNumber": "22"} if properties is None else properties
        self.session_type = session_type
        self.echo = echo
        self.ack_response_before_complete = ack_response_before_complete
        self.request_kms = request_kms
        self.rto = rto
        self.resend_all = resend_all
        self.chunk = chunk
        self.next_seq = 0
        self.expected = 0
        self.early: dict[int, Frame] = {}
        self.unacked: dict[int, _Unacked] = {}
        self.outbox: list[bytes] = []
        self.hold_acks = False
        self.held_acks: list[bytes] = []
        self.not_ready = False
        self.handshake_response: dict[str, Any] | None = None
        self.handshake_done = False
        self.received = bytearray()
        self.delivered_seqs: list[int] = []
        self.flags: list[int] = []
        self.discarded_before_handshake = 0
        self.duplicates = 0
        self.bad_digest = 0
        self.acks_seen = 0
        self.on_data: Callable[[bytes], None] | None = None

    # -- sending -------------------------------------------------------------------------------
    def _send_stream(self, payload_type: int, payload: bytes, now: float) -> int:
        seq = self.next_seq
        self.next_seq += 1
        frame = encode_frame(
            "output_stream_data",
            seq=seq,
            flags=1 if seq == 0 else 0,
            payload_type=payload_type,
            payload=payload,
            created_ms=int(now * 1000) + 1,
        )
        self.unacked[seq] = _Unacked(frame, now)
        self.outbox.append(frame)
        return seq

    def start(self, now: float) -> None:
        actions: list[dict[str, Any]] = [
            {
                "ActionType": "SessionType",
                "ActionParameters": {"SessionType": self.session_type, "Properties": self.properties},
            }
        ]
        if self.request_kms:
            actions.append(
                {
                    "ActionType": "KMSEncryption",
                    "ActionParameters": {"KMSKeyId": "arn:aws:kms:x", "Challenge": "c"},
                }
            )
        request = {"AgentVersion": self.agent_version, "RequestedClientActions": actions}
        self._send_stream(5, json.dumps(request, separators=(",", ":")).encode(), now)

    def send_data(self, data: bytes, now: float) -> None:
        for start in range(0, len(data), self.chunk):
            self._send_stream(1, data[start : start + self.chunk], now)

    def send_flag(self, value: int, now: float) -> None:
        self._send_stream(10, struct.pack(">I", value), now)

    def send_control(self, message_type: str, payload: bytes = b"", now: float = 0.0) -> None:
        self.outbox.append(
            encode_frame(message_type, flags=3, payload=payload, created_ms=int(now * 1000) + 1)
        )

    def channel_closed(self, output: str = "", now: float = 0.0) -> None:
        payload = json.dumps(
            {
                "MessageId": str(uuid.uuid4()),
                "CreatedDate": str(int(now * 1000) + 1),
                "DestinationId": "i-0123456789abcdef0",
                "SessionId": "sess-1",
                "MessageType": "channel_closed",
                "SchemaVersion": 1,
                "Output": output,
            },
            separators=(",", ":"),
        ).encode()
        self.send_control("channel_closed", payload, now)

    def take_outbox(self) -> list[bytes]:
        out, self.outbox = self.outbox, []
        return out

    def release_acks(self) -> None:
        self.hold_acks = False
        self.outbox.extend(self.held_acks)
        self.held_acks = []

    def _ack(self, frame: Frame, now: float, *, holdable: bool = True) -> None:
        ack = encode_frame("acknowledge", flags=3, payload=ack_payload(frame), created_ms=int(now * 1000) + 1)
        if self.hold_acks and holdable:
            self.held_acks.append(ack)
        else:
            self.outbox.append(ack)

    # -- timers (§3.5 agent column: resend, update last_sent) -------------------------------------
    def get_timer(self) -> float | None:
        if not self.unacked:
            return None
        return min(u.last_sent for u in self.unacked.values()) + self.rto

    def handle_timer(self, now: float) -> None:
        for seq in sorted(self.unacked):
            entry = self.unacked[seq]
            if now >= entry.last_sent + self.rto:
                entry.last_sent = now
                self.outbox.append(entry.frame)
                if not self.resend_all:
                    break

    # -- receiving ------------------------------------------------------------------------------
    def on_frame(self, raw: bytes, now: float) -> None:
        frame = decode_frame(raw)
        if not frame.digest_ok:
            self.bad_digest += 1
        if frame.message_type == "acknowledge":
            self.acks_seen += 1
            seq = json.loads(frame.payload)["AcknowledgedMessageSequenceNumber"]
            self.unacked.pop(seq, None)
            return
        if frame.message_type != "input_stream_data":
            return
        seq = frame.sequence_number
        if seq < self.expected:
            self.duplicates += 1
            self._ack(frame, now)  # agent re-acks duplicates (§3.2)
            return
        if seq > self.expected:
            if seq not in self.early:
                self.early[seq] = frame
            self._ack(frame, now)
            return
        if not self._process(frame, now):
            return
        while self.expected in self.early:
            self._process(self.early.pop(self.expected), now, already_acked=True)

    def _process(self, frame: Frame, now: float, *, already_acked: bool = False) -> bool:
        if frame.payload_type == 6:
            self.handshake_response = json.loads(frame.payload)
            self.expected += 1
            ok = all(a.get("ActionStatus") == 1 for a in self.handshake_response["ProcessedClientActions"])
            if not already_acked and self.ack_response_before_complete:
                self._ack(frame, now, holdable=False)
            if ok:
                self._send_stream(7, b'{"HandshakeTimeToComplete":48210777,"CustomerMessage":""}', now)
                self.handshake_done = True
            if not already_acked and not self.ack_response_before_complete:
                self._ack(frame, now, holdable=False)
            return True
        if not self.handshake_done:
            # G7: data before HandshakeComplete is acked and thrown away.
            self.discarded_before_handshake += 1
            self.expected += 1
            if not already_acked:
                self._ack(frame, now)
            return True
        if self.not_ready and not already_acked:
            return False  # G6: no ack, the client resends later
        self.expected += 1
        self.delivered_seqs.append(frame.sequence_number)
        if frame.payload_type == 10:
            self.flags.append(struct.unpack(">I", frame.payload)[0])
        elif frame.payload_type == 1:
            self.received += frame.payload
            if self.on_data is not None:
                self.on_data(frame.payload)
            if self.echo:
                self.send_data(frame.payload, now)
        if not already_acked:
            self._ack(frame, now)
        return True
