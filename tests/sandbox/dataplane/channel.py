"""The SSM Agent's end of one data channel, sans-IO (§3, §4).

``AgentChannel`` turns incoming websocket binary messages into acks, handshake replies and
in-order deliveries to a port handler, and turns outgoing port data into sequenced
``output_stream_data`` frames that it keeps until acked. It never touches a socket or a clock:
callers pass ``now`` (monotonic seconds) and a wall-clock function for CreatedDate.

Rules of this file (the agent column of §3.2):

1. ``seq == expected`` during the handshake: a HandshakeResponse is acked, *then* answered with
   HandshakeComplete (G17 order); any other payload is acked and thrown away (G7).
2. ``seq == expected`` afterwards: if the port side is not ready the message is neither acked
   nor consumed, so the client resends it (G6); otherwise deliver, ack, advance, drain.
3. ``seq > expected``: store and ack while the reorder buffer has room, else drop silently.
4. ``seq < expected``: re-ack (the agent does; the Go client does not, G5).
5. Outgoing frames enter the outgoing buffer before they are handed out (G19); the resend
   check looks only at the head and, unlike the Go client, updates ``last_sent`` (§3.5).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Final, Protocol

from .codec import (
    K_FLAG_FIN,
    K_FLAG_SYN,
    MalformedFrame,
    MessageType,
    PayloadType,
    decode_message,
    encode_message,
    new_message_id,
    new_wire_id,
    uuid_to_wire,
)
from .payloads import (
    PayloadError,
    ack_payload,
    handshake_complete_payload,
    handshake_request_payload,
    parse_ack,
    parse_handshake_response,
)
from .reliability import (
    K_INCOMING_CAPACITY,
    K_OUTGOING_CAPACITY,
    IncomingBuffer,
    OutgoingBuffer,
    RtoEstimator,
)

K_HANDSHAKE_TIMEOUT: Final = 15.0
K_HANDSHAKE_TIMEOUT_MESSAGE: Final = (
    "Encountered error while initiating handshake. Handshake timed out. "
    "Please ensure that you have the latest version of the session manager plugin."
)
K_ACK_FLAGS: Final = K_FLAG_SYN | K_FLAG_FIN


class FrameKind(Enum):
    """Why a frame is being sent; the fault injector treats each kind differently."""

    DATA = "data"
    RETRANSMIT = "retransmit"
    ACK = "ack"


@dataclass(frozen=True, slots=True)
class OutFrame:
    """A websocket binary message to send to the client."""

    kind: FrameKind
    data: bytes
    seq: int
    """Stream seq for DATA/RETRANSMIT; the acknowledged client seq for ACK."""


@dataclass(frozen=True, slots=True)
class HandshakeCompleted:
    """The client accepted the session; the port side may start now."""

    client_version: str


@dataclass(frozen=True, slots=True)
class HandshakeFailed:
    """The handshake was refused or timed out; ``reason`` becomes channel_closed Output."""

    reason: str


@dataclass(frozen=True, slots=True)
class PeerClosed:
    """A channel_closed arrived from the client side; the agent cancels the session."""


Output = OutFrame | HandshakeCompleted | HandshakeFailed | PeerClosed


class StreamHandler(Protocol):
    """The port side as the channel sees it (``IsConnectionAvailable`` + handler in the agent)."""

    def ready(self) -> bool:
        """False means "not ready, resend later": the message is not acked (G6)."""
        ...

    def deliver(self, payload_type: int, payload: bytes) -> None:
        """Accept one in-order payload; must not block (queue it)."""
        ...


class HandshakeState(Enum):
    NOT_STARTED = "not-started"
    PENDING = "pending"
    COMPLETE = "complete"
    FAILED = "failed"


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class AgentChannel:
    """Sequence numbers, acks, reorder buffer, RTO, resend and handshake for one session."""

    def __init__(
        self,
        *,
        agent_version: str,
        properties: dict[str, str],
        session_type: str = "Port",
        handshake_timeout: float = K_HANDSHAKE_TIMEOUT,
        outgoing_capacity: int = K_OUTGOING_CAPACITY,
        incoming_capacity: int = K_INCOMING_CAPACITY,
        wall_ms: Callable[[], int] = _wall_ms,
        new_id: Callable[[], uuid.UUID] = new_message_id,
        count: Callable[[str, int], None] | None = None,
    ) -> None:
        self.agent_version = agent_version
        self.properties = dict(properties)
        self.session_type = session_type
        self.handshake_timeout = handshake_timeout
        self.handshake_state = HandshakeState.NOT_STARTED
        self.client_version = ""
        self.paused = False
        """While True (client away, or pause_publication) nothing is resent (§3.5)."""
        self.closing = False
        """After the port side stopped: acks are still processed, stream data is not acked."""
        self.rto = RtoEstimator()
        self.outgoing = OutgoingBuffer(outgoing_capacity)
        self.incoming = IncomingBuffer(incoming_capacity)
        self.next_seq = 0
        self.expected_seq = 0
        self._wall_ms = wall_ms
        self._new_wire = new_wire_id if new_id is new_message_id else (lambda: uuid_to_wire(new_id()))
        self._count = count or (lambda _name, _n: None)
        self._handshake_started = 0.0
        self._handshake_deadline = 0.0

    # --- sending --------------------------------------------------------------------------

    def start(self, now: float) -> list[Output]:
        """Begin the handshake: HandshakeRequest as agent seq 0 with SYN (§4.1)."""
        if self.handshake_state is not HandshakeState.NOT_STARTED:
            raise RuntimeError("handshake already started")
        self.handshake_state = HandshakeState.PENDING
        self._handshake_started = now
        self._handshake_deadline = now + self.handshake_timeout
        payload = handshake_request_payload(self.agent_version, self.properties, self.session_type)
        return [self._send_stream(PayloadType.HANDSHAKE_REQUEST, payload, now)]

    def send_data(self, payload_type: int, payload: bytes, now: float) -> OutFrame:
        """Sequence one port payload (Output or Flag) after the handshake."""
        if self.handshake_state is not HandshakeState.COMPLETE:
            raise RuntimeError("port data before HandshakeComplete")
        return self._send_stream(payload_type, payload, now)

    def _send_stream(self, payload_type: int, payload: bytes, now: float) -> OutFrame:
        seq = self.next_seq
        frame = encode_message(
            MessageType.OUTPUT_STREAM_DATA,
            payload=payload,
            created_date=self._wall_ms(),
            wire_id=self._new_wire(),
            sequence_number=seq,
            flags=K_FLAG_SYN if seq == 0 else 0,
            payload_type=payload_type,
        )
        # G19: buffer first, so an ack racing the write always finds its entry.
        if not self.outgoing.add(seq, frame, now):
            self._count("outgoing_buffer_full", 1)
        self.next_seq += 1
        return OutFrame(FrameKind.DATA, frame, seq)

    def _ack(self, message_type: str, message_id: uuid.UUID | str, seq: int) -> OutFrame:
        frame = encode_message(
            MessageType.ACKNOWLEDGE,
            payload=ack_payload(message_type, message_id, seq),
            created_date=self._wall_ms(),
            wire_id=self._new_wire(),
            flags=K_ACK_FLAGS,
        )
        self._count("acks_out", 1)
        return OutFrame(FrameKind.ACK, frame, seq)

    # --- timers ---------------------------------------------------------------------------

    def handle_timer(self, now: float) -> list[Output]:
        """One tick of the agent's 100 ms resend scheduler plus the handshake deadline."""
        out: list[Output] = []
        if self.handshake_state is HandshakeState.PENDING and now >= self._handshake_deadline:
            self.handshake_state = HandshakeState.FAILED
            out.append(HandshakeFailed(K_HANDSHAKE_TIMEOUT_MESSAGE))
            return out
        if not self.paused:
            head = self.outgoing.head()
            if head is not None and now - head.last_sent > self.rto.rto:
                out.append(self._resend(head.seq, now))
        return out

    def resend_head(self, now: float) -> list[Output]:
        """Resend the oldest unacked message at once (used when a client (re)attaches)."""
        head = self.outgoing.head()
        return [] if head is None else [self._resend(head.seq, now)]

    def _resend(self, seq: int, now: float) -> OutFrame:
        head = self.outgoing.head()
        assert head is not None
        assert head.seq == seq
        head.last_sent = now  # the agent updates it; the Go client does not (§3.5)
        self._count("retransmits", 1)
        return OutFrame(FrameKind.RETRANSMIT, head.data, seq)

    # --- receiving ------------------------------------------------------------------------

    def receive(self, data: bytes, now: float, handler: StreamHandler) -> list[Output]:
        """Process one websocket binary message from the client."""
        try:
            message = decode_message(data)
        except MalformedFrame:
            self._count("malformed_in", 1)
            return []
        if not message.digest_ok:
            # The real agent never checks; we accept like it does but make the bug visible.
            self._count("digest_mismatch_in", 1)
        if not message.length_ok:
            self._count("length_mismatch_in", 1)
        kind = message.message_type
        if kind == MessageType.INPUT_STREAM_DATA:
            return self._on_stream(
                seq=message.sequence_number,
                payload_type=message.payload_type,
                payload=message.payload,
                message_id=message.message_id_text,
                now=now,
                handler=handler,
            )
        if kind == MessageType.ACKNOWLEDGE:
            self._on_ack(message.payload, now)
            return []
        if kind == MessageType.CHANNEL_CLOSED:
            return [PeerClosed()]
        self._count("unknown_type_in", 1)
        return []

    def _on_ack(self, payload: bytes, now: float) -> None:
        try:
            seq = parse_ack(payload)
        except PayloadError:
            self._count("malformed_in", 1)
            return
        sample = self.outgoing.ack(seq, now)
        if sample is None:
            self._count("acks_unknown_in", 1)
            return
        self._count("acks_in", 1)
        self.rto.update(sample)

    def _on_stream(
        self,
        *,
        seq: int,
        payload_type: int,
        payload: bytes,
        message_id: uuid.UUID | str,
        now: float,
        handler: StreamHandler,
    ) -> list[Output]:
        kind = MessageType.INPUT_STREAM_DATA
        if self.closing or self.handshake_state is HandshakeState.FAILED:
            self._count("not_ready_in", 1)
            return []
        if seq < self.expected_seq:
            self._count("duplicates_in", 1)
            return [self._ack(kind, message_id, seq)]
        if seq > self.expected_seq:
            if not self.incoming.store(seq, payload_type, payload):
                self._count("incoming_buffer_full", 1)
                return []
            self._count("out_of_order_in", 1)
            return [self._ack(kind, message_id, seq)]
        if self.handshake_state is HandshakeState.PENDING:
            out: list[Output] = [self._ack(kind, message_id, seq)]
            self.expected_seq += 1
            if payload_type == PayloadType.HANDSHAKE_RESPONSE:
                out.extend(self._on_handshake_response(payload, now))
            else:
                self._count("discarded_before_handshake", 1)
            return out
        if not handler.ready():
            self._count("not_ready_in", 1)
            return []
        self._deliver(payload_type, payload, handler)
        out = [self._ack(kind, message_id, seq)]
        self.expected_seq += 1
        self.drain(handler)
        return out

    def drain(self, handler: StreamHandler) -> None:
        """Deliver buffered messages that are now in order, while the handler is ready.

        The agent stops on a not-ready handler and never comes back; we call this again when
        the port side becomes ready, so acked data is never stranded.
        """
        while self.handshake_state is HandshakeState.COMPLETE and not self.closing:
            entry = self.incoming.peek(self.expected_seq)
            if entry is None or not handler.ready():
                break
            self.incoming.remove(self.expected_seq)
            self._deliver(entry[0], entry[1], handler)
            self.expected_seq += 1

    def _deliver(self, payload_type: int, payload: bytes, handler: StreamHandler) -> None:
        if payload_type == PayloadType.HANDSHAKE_RESPONSE:
            # A second HandshakeResponse after completion: acked, otherwise ignored.
            self._count("unexpected_payload_in", 1)
            return
        handler.deliver(payload_type, payload)

    def _on_handshake_response(self, payload: bytes, now: float) -> list[Output]:
        try:
            response = parse_handshake_response(payload)
        except PayloadError as exc:
            self.handshake_state = HandshakeState.FAILED
            return [HandshakeFailed(f"Encountered error while initiating handshake. {exc}")]
        reason = response.failure()
        if reason is not None:
            self.handshake_state = HandshakeState.FAILED
            return [HandshakeFailed(f"Encountered error while initiating handshake. {reason}")]
        if not any(action.action_type == "SessionType" for action in response.actions):
            self._count("handshake_without_session_type", 1)
        self.client_version = response.client_version
        elapsed_ns = max(0, round((now - self._handshake_started) * 1e9))
        complete = self._send_stream(
            PayloadType.HANDSHAKE_COMPLETE, handshake_complete_payload(elapsed_ns), now
        )
        self.handshake_state = HandshakeState.COMPLETE
        return [complete, HandshakeCompleted(response.client_version)]
