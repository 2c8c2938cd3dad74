# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""DataChannel: the sans-IO client side of one SSM port session (ssm-data-channel.md §1.5-§6).

PRIVATE to this collection. No sockets, no asyncio, no clock: every entry point that depends on
time takes ``now`` (seconds, any monotonic origin); ``wall_clock_offset`` turns it into the Unix
time written to CreatedDate.

Driving it (websockets/aioquic style)::

    text = channel.connection_made(token, now)      # send as the first TEXT frame
    channel.receive_frame(frame, now)               # for every BINARY frame received
    channel.handle_timer(now)                       # when now >= channel.get_timer()
    n = channel.send_data(data, now)                # accepts n bytes (backpressure: maybe 0)
    frames = channel.frames_to_send()               # send them in order, as BINARY frames
    while (event := channel.next_event()) is not None: ...
    channel.connection_lost()                       # websocket dropped: hold data, reconnect later

Rules of this file:

1. Peer input never raises. A frame that fails to decode, or whose payload we cannot use, is
   dropped without an ack and counted (§6.6); one bad frame never stops the reader (G17).
2. Every incoming stream message is acked individually (§2.3). Handshake messages are acked before
   they are processed, data after it was accepted (§3.2). Early messages are buffered and acked;
   duplicates are re-acked and never redelivered (the spec's recommendation, unlike the Go client).
3. A stream message that cannot be consumed yet (receiving paused by the driver) is *not* acked,
   the protocol's "not ready, resend later" signal (G6). Messages already acked are never dropped.
4. No data before HandshakeComplete (G7). The ack of our HandshakeResponse is accepted whenever it
   arrives, before or after HandshakeComplete (G17).
5. A message enters the outgoing window *before* its frame is handed out (G19). The window is
   bounded; when it is full :meth:`send_data` accepts fewer bytes (maybe 0) and a ``WindowFull``
   event tells the driver to stop reading local input; ``WindowOpen`` follows once acks bring usage
   down to half. Nothing is ever evicted (G10).
6. While disconnected or paused by ``pause_publication``, new messages are held in the window and
   nothing is resent; acks generated meanwhile are dropped (the peer resends, we re-ack). On
   (re)connect every unacked message is sent again in order (G9, §6.4); on ``start_publication``
   the held ones are sent.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import itertools
import re
import uuid
from collections.abc import Callable

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel import handshake
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.constants import (
    K_ACK_FLAGS,
    K_CLIENT_STREAM_FLAGS,
    K_CLIENT_VERSION,
    K_DEFAULT_CHUNK_SIZE,
    K_DEFAULT_GIVE_UP_AFTER,
    K_DEFAULT_MAX_UNACKED_BYTES,
    K_DEFAULT_MAX_UNACKED_MESSAGES,
    K_DEFAULT_REORDER_CAPACITY,
    K_DEFAULT_RETRANSMIT_BURST,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.errors import (
    LocalProtocolError,
    MalformedMessage,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.events import (
    ChannelClosed,
    ConnectToPortError,
    DataReceived,
    Event,
    HandshakeCompleted,
    HandshakeFailed,
    ProtocolWarning,
    PublicationPaused,
    PublicationResumed,
    RetransmissionTimedOut,
    SessionMode,
    WindowFull,
    WindowOpen,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.message import (
    HEADER,
    TYPES_BY_WIRE,
    WIRE_TYPES,
    AgentMessage,
    Flag,
    MessageIdSource,
    MessageType,
    PayloadType,
    decode,
    encode_fields,
    uuid_to_wire,
    wire_id_to_str,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.payloads import (
    Acknowledge,
    ChannelClosedPayload,
    HandshakeComplete,
    HandshakeRequest,
    OpenDataChannel,
    decode_flag,
    encode_flag,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.reliability import (
    Arrival,
    OutgoingEntry,
    OutgoingWindow,
    ReorderBuffer,
    RtoEstimator,
)

__all__ = ["ChannelStats", "DataChannel"]

_HANDSHAKE_PAYLOADS = frozenset(
    {PayloadType.HANDSHAKE_REQUEST, PayloadType.HANDSHAKE_COMPLETE, PayloadType.ENC_CHALLENGE_REQUEST}
)

# --- hot-path constants: every data message costs one frame each way plus its ack (§2.3) ---------
_HEADER_SIZE = HEADER.size
_HEADER_LENGTH = 116
_UNPACK_HEADER = HEADER.unpack_from
_SHA256 = hashlib.sha256
_OUTPUT = int(PayloadType.OUTPUT)
_WIRE_INPUT = WIRE_TYPES[MessageType.INPUT_STREAM_DATA]
_WIRE_ACK = WIRE_TYPES[MessageType.ACKNOWLEDGE]
_OUTPUT_STREAM_DATA = MessageType.OUTPUT_STREAM_DATA
_ACKNOWLEDGE = MessageType.ACKNOWLEDGE
_COMPLETE = handshake.HandshakeState.COMPLETE
# §2.3: the ack payload exactly as Go marshals Acknowledge{...} for an output_stream_data message
# (compact, this key order; the id is a lowercase UUID and the type needs no escaping).
_ACK_HEAD = b'{"AcknowledgedMessageType":"output_stream_data","AcknowledgedMessageId":"'
_ACK_MID = b'","AcknowledgedMessageSequenceNumber":'
_ACK_TAIL = b',"IsSequentialMessage":true}'
# An ack in exactly the compact form every official peer emits (§2.3): parsed with one regex.
# Anything else (other key order, whitespace, escapes) goes through the JSON parser, so the
# accepted language is unchanged; only the common case is faster.
_GO_ACK = re.compile(
    rb'\{"AcknowledgedMessageType":"[\x20\x21\x23-\x5b\x5d-\x7e]*",'
    rb'"AcknowledgedMessageId":"[\x20\x21\x23-\x5b\x5d-\x7e]*",'
    rb'"AcknowledgedMessageSequenceNumber":(-?(?:0|[1-9][0-9]{0,17})),'
    rb'"IsSequentialMessage":(?:true|false)\}'
).fullmatch
"""Strings of printable ASCII without quote or backslash, an integer of at most 18 digits:
whatever this matches, ``json.loads`` parses to the same sequence number."""


@dataclasses.dataclass(slots=True)
class ChannelStats:
    """Counters for logs, tests and benchmarks. Monotonic over the channel's life."""

    frames_received: int = 0
    frames_sent: int = 0
    """Frames handed out by :meth:`DataChannel.frames_to_send` (acks included)."""
    data_messages_sent: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    retransmits: int = 0
    dropped_bad_frames: int = 0
    duplicates: int = 0
    early_buffered: int = 0
    dropped_not_ready: int = 0
    acks_received: int = 0
    unknown_acks: int = 0
    connections: int = 0


class DataChannel:
    """Client side of one data channel. Not thread-safe; drive it from one task."""

    def __init__(
        self,
        *,
        client_id: uuid.UUID | None = None,
        client_version: str = K_CLIENT_VERSION,
        chunk_size: int = K_DEFAULT_CHUNK_SIZE,
        max_unacked_messages: int = K_DEFAULT_MAX_UNACKED_MESSAGES,
        max_unacked_bytes: int = K_DEFAULT_MAX_UNACKED_BYTES,
        reorder_capacity: int = K_DEFAULT_REORDER_CAPACITY,
        retransmit_burst: int = K_DEFAULT_RETRANSMIT_BURST,
        give_up_after: float = K_DEFAULT_GIVE_UP_AFTER,
        wall_clock_offset: float = 0.0,
        id_factory: Callable[[], uuid.UUID] | None = None,
    ) -> None:
        """Args:
        client_id: kept across reconnects (§1.4); generated when omitted.
        client_version: reported in OpenDataChannel and HandshakeResponse; keep it > 1.2.331.0 (G1).
        chunk_size: max payload bytes per data message (§3.1 default 1024).
        max_unacked_messages, max_unacked_bytes: the outgoing window (backpressure bounds).
        reorder_capacity: how far ahead of ``expected`` an early message may be buffered.
        retransmit_burst: overdue messages resent per timer firing, oldest first (§3.5: 1).
        give_up_after: seconds the oldest message may stay unacked while transmitting.
        wall_clock_offset: added to ``now`` to obtain Unix time for CreatedDate.
        id_factory: MessageId/RequestId/ClientId source (tests inject fixed UUIDs). By default
            RequestId and ClientId are ``uuid.uuid4()`` and MessageIds come from a seeded
            :class:`MessageIdSource` (unique, not secret; one per frame, so it must be cheap).
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        if retransmit_burst < 1:
            raise ValueError("retransmit_burst must be positive")
        if id_factory is None:
            self._ids: Callable[[], uuid.UUID] = uuid.uuid4
            self._wire_id: Callable[[], bytes] = MessageIdSource().wire
        else:
            self._ids = id_factory
            self._wire_id = lambda: uuid_to_wire(id_factory())
        self.client_id = client_id if client_id is not None else self._ids()
        self.client_version = client_version
        self.chunk_size = chunk_size
        self.retransmit_burst = retransmit_burst
        self.give_up_after = give_up_after
        self.wall_clock_offset = wall_clock_offset
        self.rto = RtoEstimator()
        self.stats = ChannelStats()
        self._window = OutgoingWindow(max_messages=max_unacked_messages, max_bytes=max_unacked_bytes)
        self._incoming = ReorderBuffer(capacity=reorder_capacity)
        self._next_seq = 0
        self._pending: list[bytes] = []
        self._events: collections.deque[Event] = collections.deque()
        self._connected = False
        self._publication_paused = False
        self._receiving_paused = False
        self._window_full_signalled = False
        self._gave_up = False
        self._closed = False
        self._handshake_state = handshake.HandshakeState.AWAIT_REQUEST
        self._request: HandshakeRequest | None = None
        self._outcome: handshake.RequestOutcome | None = None
        self._completed: HandshakeCompleted | None = None

    # ------------------------------------------------------------------ state

    @property
    def handshake_complete(self) -> bool:
        return self._handshake_state is handshake.HandshakeState.COMPLETE

    @property
    def handshake_info(self) -> HandshakeCompleted | None:
        return self._completed

    @property
    def mode(self) -> SessionMode | None:
        return self._completed.mode if self._completed is not None else None

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def closed(self) -> bool:
        """True once ``channel_closed`` arrived: nothing more is sent or delivered."""
        return self._closed

    @property
    def publication_paused(self) -> bool:
        return self._publication_paused

    @property
    def receiving_paused(self) -> bool:
        return self._receiving_paused

    @property
    def writable(self) -> bool:
        """Whether :meth:`send_data` would accept at least one full chunk now."""
        return self._window.can_add(self.chunk_size)

    @property
    def unacked_messages(self) -> int:
        return len(self._window)

    @property
    def unacked_bytes(self) -> int:
        return self._window.counted_bytes

    @property
    def next_sequence_number(self) -> int:
        return self._next_seq

    @property
    def expected_sequence_number(self) -> int:
        return self._incoming.expected

    def is_acknowledged(self, sequence_number: int) -> bool:
        """True once our message ``sequence_number`` has been acked (or was never ours to track)."""
        return sequence_number < self._next_seq and sequence_number not in self._window

    # ------------------------------------------------------------------ output side

    def frames_to_send(self) -> list[bytes]:
        """Binary frames to write, in order. Clears the internal list."""
        frames, self._pending = self._pending, []
        self.stats.frames_sent += len(frames)
        return frames

    def next_event(self) -> Event | None:
        """The next event, or None when there is none."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """Absolute time at which :meth:`handle_timer` must run, or None (nothing outstanding)."""
        if not self._transmitting or self._gave_up:
            return None
        head = self._window.head()
        if head is None or head.last_sent is None:
            return None
        return head.last_sent + self.rto.rto

    # ------------------------------------------------------------------ transport

    def connection_made(self, token: str, now: float) -> str:
        """A websocket is open: return the OpenDataChannel text to send first (§1.4), then queue
        every unacked message again, oldest first (§6.4: sequence state survives reconnects)."""
        opening = OpenDataChannel(
            request_id=str(self._ids()),
            token_value=token,
            client_id=str(self.client_id),
            client_version=self.client_version,
        )
        self._connected = True
        self.stats.connections += 1
        was_paused = self._publication_paused
        self._publication_paused = False  # a pause belongs to the previous connection
        if was_paused:
            self._events.append(PublicationResumed())
        self._pending = []
        self._flush_window(now, everything=True)
        return opening.to_text()

    def connection_lost(self) -> None:
        """The websocket is gone. Unsent acks are discarded; unacked messages stay in the window."""
        self._connected = False
        self._pending = []

    # ------------------------------------------------------------------ input side

    def receive_text(self, text: str) -> None:
        """A TEXT frame after OpenDataChannel is not expected (§6.6): log it, otherwise ignore."""
        self._warn(f"ignored unexpected text frame of {len(text)} characters")

    def receive_frame(self, frame: bytes | bytearray | memoryview, now: float) -> None:
        """Process one BINARY websocket message. Never raises for peer input (rule 1).

        The two messages that make up almost all traffic, an ``acknowledge`` and an in-order
        ``output_stream_data`` with port bytes, are handled inline here from the unpacked header:
        the same checks and the same outcome as :func:`decode` plus the general handlers (which
        every other frame, and every frame that fails a check, still goes through), without
        building an :class:`AgentMessage` or parsing JSON per message.
        """
        self.stats.frames_received += 1
        data = frame if isinstance(frame, bytes) else bytes(frame)
        if len(data) >= _HEADER_SIZE:
            (header_length, raw_type, _sv, created, seq, _flags, raw_id, digest, payload_type, length) = (
                _UNPACK_HEADER(data)
            )
            message_type = TYPES_BY_WIRE.get(raw_type)
            if (
                header_length == _HEADER_LENGTH
                and created != 0
                and length == len(data) - _HEADER_SIZE
                and (message_type is _OUTPUT_STREAM_DATA or message_type is _ACKNOWLEDGE)
            ):
                payload = data[_HEADER_SIZE:]
                if _SHA256(payload).digest() == digest:
                    if message_type is _ACKNOWLEDGE:
                        match = _GO_ACK(payload)
                        if match is not None:
                            self._acknowledged(int(match[1]), now)
                            return
                    elif (
                        payload_type == _OUTPUT
                        and seq == self._incoming.expected
                        and not self._receiving_paused
                        and not self._closed
                        and self._handshake_state is _COMPLETE
                    ):
                        # _on_stream_data, case seq == expected and ready (§3.2): ack, deliver, drain.
                        self._queue_ack_for(raw_id, seq, now)
                        self._incoming.advance()
                        if payload:
                            self.stats.bytes_received += length
                            self._events.append(DataReceived(payload))
                        if len(self._incoming):
                            self._drain_early(now)
                        return
        self._receive_general(data, now)

    def _receive_general(self, frame: bytes, now: float) -> None:
        warnings: list[str] = []
        try:
            message = decode(frame, warnings=warnings)
        except MalformedMessage as exc:
            self._drop_bad_frame(f"dropped malformed frame: {exc}")
            return
        for text in warnings:
            self._warn(text)
        handler = self._HANDLERS.get(message.message_type)
        if handler is None:
            self._warn(f"ignored {message.message_type.value} message")
            return
        handler(self, message, now)

    def pause_receiving(self) -> None:
        """Stop consuming stream data: it stays unacked so the agent resends it later (G6)."""
        self._receiving_paused = True

    def resume_receiving(self, now: float) -> None:
        """Consume again, starting with early messages already buffered and acked."""
        if not self._receiving_paused:
            return
        self._receiving_paused = False
        self._drain_early(now)

    # ------------------------------------------------------------------ sending

    def send_data(self, data: bytes | bytearray | memoryview, now: float) -> int:
        """Queue port bytes as PayloadType 1 messages of at most ``chunk_size`` bytes.

        Returns how many leading bytes of ``data`` were accepted: fewer than ``len(data)`` (maybe
        0) when the outgoing window is full, in which case a ``WindowFull`` event is queued (once
        until the next ``WindowOpen``). Accepted bytes are never dropped.

        Raises:
            LocalProtocolError: before HandshakeComplete (G7) or after the channel closed.
        """
        self._check_can_send("send data")
        view = memoryview(data).cast("B")
        total = len(view)
        chunk_size = self.chunk_size
        window = self._window
        # _new_stream_message, unrolled for the one case that runs per KiB of upload (§3.1).
        created = self._created_date(now)
        transmitting = self._transmitting
        pending = self._pending
        wire_id = self._wire_id
        offset = messages = 0
        while offset < total:
            size = min(chunk_size, total - offset)
            if not window.can_add(size):
                break
            payload = bytes(view[offset : offset + size])
            sequence_number = self._next_seq
            self._next_seq = sequence_number + 1
            message_id = wire_id()
            frame = encode_fields(
                _WIRE_INPUT, created, sequence_number, K_CLIENT_STREAM_FLAGS, message_id, _OUTPUT, payload
            )
            entry = OutgoingEntry(sequence_number, message_id, frame, size, True)
            window.add(entry)  # G19: registered before the frame is handed out
            if transmitting:
                entry.last_sent = entry.first_sent = now
                pending.append(frame)
            messages += 1
            offset += size
        self.stats.data_messages_sent += messages
        self.stats.bytes_sent += offset
        if offset < total and not self._window_full_signalled:
            self._window_full_signalled = True
            self._events.append(
                WindowFull(unacked_messages=len(self._window), unacked_bytes=self._window.counted_bytes)
            )
        return offset

    def send_flag(self, flag: Flag, now: float) -> int:
        """Queue a Flag message (§2.2) and return its sequence number.

        Flags are sequenced and acked like data but bypass the window limit, so TerminateSession
        can always be sent.

        Raises:
            LocalProtocolError: before HandshakeComplete (the agent would discard it, G7) or after close.
        """
        self._check_can_send(f"send flag {Flag(flag).name}")
        return self._new_stream_message(PayloadType.FLAG, encode_flag(flag), now, counted=False)

    def handle_timer(self, now: float) -> None:
        """Resend overdue messages (§3.5) and detect the give-up condition."""
        if not self._transmitting or self._gave_up:
            return
        head = self._window.head()
        if head is None or head.last_sent is None:
            return
        if head.first_sent is not None and now - head.first_sent >= self.give_up_after:
            self._gave_up = True
            self._events.append(
                RetransmissionTimedOut(head.sequence_number, head.resends, now - head.first_sent)
            )
            return
        # Same expression as get_timer(), so firing exactly at the deadline always resends.
        if now < head.last_sent + self.rto.rto:
            return
        overdue = [
            entry
            for entry in itertools.islice(self._window, self.retransmit_burst)
            if entry.last_sent is not None and now >= entry.last_sent + self.rto.rto
        ]
        for entry in overdue:
            entry.last_sent = now  # the agent's behaviour; the Go client's omission is a bug (G10)
            entry.resends += 1
            self._pending.append(entry.frame)
            self.stats.retransmits += 1

    # ------------------------------------------------------------------ internals: sending

    @property
    def _transmitting(self) -> bool:
        return self._connected and not self._publication_paused and not self._closed

    def _check_can_send(self, what: str) -> None:
        if self._closed:
            raise LocalProtocolError(f"cannot {what}: the channel is closed")
        if not self.handshake_complete:
            raise LocalProtocolError(f"cannot {what} before HandshakeComplete")

    def _created_date(self, now: float) -> int:
        return max(1, round((now + self.wall_clock_offset) * 1000))

    def _new_stream_message(
        self, payload_type: PayloadType, payload: bytes, now: float, *, counted: bool
    ) -> int:
        sequence_number = self._next_seq
        self._next_seq += 1
        wire_id = self._wire_id()
        frame = encode_fields(
            _WIRE_INPUT,
            self._created_date(now),
            sequence_number,
            K_CLIENT_STREAM_FLAGS,
            wire_id,
            payload_type,
            payload,
        )
        entry = OutgoingEntry(sequence_number, wire_id, frame, len(payload), counted)
        self._window.add(entry)  # G19: registered before the frame is handed out
        if self._transmitting:
            entry.last_sent = entry.first_sent = now
            self._pending.append(entry.frame)
        return sequence_number

    def _flush_window(self, now: float, *, everything: bool) -> None:
        """Send held entries (or all of them after a reconnect) and restart their stall clocks."""
        for entry in self._window:
            if everything or entry.last_sent is None:
                entry.last_sent = now
                self._pending.append(entry.frame)
            entry.first_sent = now
        self._gave_up = False

    def _queue_ack(self, message: AgentMessage, now: float) -> None:
        # Only output_stream_data reaches here (_HANDLERS); _queue_ack_for's payload is the
        # Acknowledge JSON for exactly that type (tests compare it with Acknowledge.to_json).
        self._queue_ack_for(uuid_to_wire(message.message_id), message.sequence_number, now)

    def _queue_ack_for(self, raw_id: bytes, sequence_number: int, now: float) -> None:
        """Queue the ack of the agent's ``output_stream_data`` ``sequence_number`` whose MessageId
        is ``raw_id`` (wire order): §2.3's frame, built directly from bytes."""
        if not self._connected:
            return
        payload = b"".join(
            (_ACK_HEAD, wire_id_to_str(raw_id).encode("ascii"), _ACK_MID, b"%d" % sequence_number, _ACK_TAIL)
        )
        self._pending.append(
            encode_fields(
                _WIRE_ACK,
                self._created_date(now),
                0,
                K_ACK_FLAGS,
                self._wire_id(),
                PayloadType.NONE,
                payload,
            )
        )

    # ------------------------------------------------------------------ internals: receiving

    def _warn(self, text: str) -> None:
        self._events.append(ProtocolWarning(text))

    def _drop_bad_frame(self, text: str) -> None:
        self.stats.dropped_bad_frames += 1
        self._warn(text)

    def _on_acknowledge(self, message: AgentMessage, now: float) -> None:
        try:
            ack = Acknowledge.from_json(message.payload)
        except MalformedMessage as exc:
            self._drop_bad_frame(f"dropped acknowledge: {exc}")
            return
        self._acknowledged(ack.sequence_number, now)

    def _acknowledged(self, sequence_number: int, now: float) -> None:
        """An ack for our message ``sequence_number`` arrived (§3.3)."""
        self.stats.acks_received += 1
        entry = self._window.acknowledge(sequence_number)
        if entry is None:
            self.stats.unknown_acks += 1
            return
        if entry.last_sent is not None:
            self.rto.update(now - entry.last_sent)  # §3.3, §3.4
        if self._window_full_signalled and self._window.below_low_water():
            self._window_full_signalled = False
            self._events.append(WindowOpen())

    def _on_stream_data(self, message: AgentMessage, now: float) -> None:
        if self._closed:
            return
        arrival = self._incoming.classify(message.sequence_number)
        if arrival is Arrival.DUPLICATE:
            self.stats.duplicates += 1
            self._queue_ack(message, now)  # §3.2 recommendation: re-ack, never redeliver
            return
        if arrival is Arrival.EARLY:
            if self._incoming.is_stored(message.sequence_number):
                self.stats.duplicates += 1
                self._queue_ack(message, now)
            elif not self._receiving_paused:
                self.stats.early_buffered += 1
                self._incoming.store(message)
                self._queue_ack(message, now)
            else:
                self.stats.dropped_not_ready += 1
            return
        if arrival is Arrival.TOO_FAR:
            self.stats.dropped_not_ready += 1
            self._warn(f"dropped output_stream_data seq {message.sequence_number}: too far ahead")
            return
        if not self._ready_for(message):
            self.stats.dropped_not_ready += 1  # G6: no ack; the agent resends it later
            return
        self._queue_ack(message, now)
        self._incoming.advance()
        self._consume(message, now)
        self._drain_early(now)

    def _drain_early(self, now: float) -> None:
        while not self._closed:
            message = self._incoming.pop_expected()
            if message is None:
                return
            if not self._ready_for(message):
                self._incoming.put_back(message)  # already acked: keep it (rule 3)
                return
            self._incoming.advance()
            self._consume(message, now)

    def _ready_for(self, message: AgentMessage) -> bool:
        if message.payload_type in _HANDSHAKE_PAYLOADS or not self.handshake_complete:
            return True
        return not self._receiving_paused

    def _consume(self, message: AgentMessage, now: float) -> None:
        payload_type = message.payload_type
        if payload_type == PayloadType.OUTPUT and self.handshake_complete:
            if message.payload:
                self.stats.bytes_received += len(message.payload)
                self._events.append(DataReceived(message.payload))
        elif payload_type == PayloadType.HANDSHAKE_REQUEST:
            self._on_handshake_request(message, now)
        elif payload_type == PayloadType.HANDSHAKE_COMPLETE:
            self._on_handshake_complete(message)
        elif payload_type == PayloadType.FLAG:
            self._on_flag(message)
        elif payload_type == PayloadType.ENC_CHALLENGE_REQUEST:
            self._warn("ignored EncChallengeRequest: encryption is never negotiated for port sessions")
        else:
            # §6.6: other payload types in port modes (or data before the handshake) are ignored.
            self._warn(
                f"ignored output_stream_data seq {message.sequence_number} with payload type {payload_type}"
            )

    def _on_handshake_request(self, message: AgentMessage, now: float) -> None:
        if self._handshake_state is not handshake.HandshakeState.AWAIT_REQUEST:
            self._warn("ignored a second HandshakeRequest")
            return
        try:
            request = HandshakeRequest.from_json(message.payload)
        except MalformedMessage as exc:
            # Already acked (handshake messages are acked first), so the agent will not resend it:
            # the handshake cannot complete. Say so instead of waiting for the agent's 15 s timeout.
            self._handshake_state = handshake.HandshakeState.FAILED
            self._events.append(HandshakeFailed(f"unreadable HandshakeRequest: {exc}"))
            return
        outcome = handshake.process_request(request, self.client_version)
        self._request, self._outcome = request, outcome
        for text in outcome.warnings:
            self._warn(text)
        self._new_stream_message(
            PayloadType.HANDSHAKE_RESPONSE, outcome.response.to_json(), now, counted=False
        )
        if outcome.failure is not None:
            self._handshake_state = handshake.HandshakeState.FAILED
            self._events.append(
                HandshakeFailed(outcome.failure, encryption_requested=outcome.encryption_requested)
            )
        else:
            self._handshake_state = handshake.HandshakeState.AWAIT_COMPLETE

    def _on_handshake_complete(self, message: AgentMessage) -> None:
        if self._handshake_state is not handshake.HandshakeState.AWAIT_COMPLETE:
            self._warn(f"ignored HandshakeComplete in state {self._handshake_state.value}")
            return
        try:
            complete = HandshakeComplete.from_json(message.payload)
        except MalformedMessage as exc:
            self._warn(f"HandshakeComplete payload unreadable ({exc}); proceeding")
            complete = HandshakeComplete(time_to_complete_ns=0, customer_message="")
        if self._request is None or self._outcome is None:  # pragma: no cover - guarded by the state
            raise AssertionError("HandshakeComplete accepted without a processed request")
        self._completed = handshake.completed_event(
            self._request, self._outcome, complete, self.client_version
        )
        self._handshake_state = handshake.HandshakeState.COMPLETE
        self._events.append(self._completed)

    def _on_flag(self, message: AgentMessage) -> None:
        try:
            value = decode_flag(message.payload)
        except MalformedMessage as exc:
            self._warn(f"ignored flag message: {exc}")
            return
        if value == Flag.CONNECT_TO_PORT_ERROR:
            self._events.append(ConnectToPortError())
        else:
            self._warn(f"ignored flag {value} from the agent")

    def _on_channel_closed(self, message: AgentMessage, now: float) -> None:
        del now
        if self._closed:
            return
        try:
            payload = ChannelClosedPayload.from_json(message.payload)
        except MalformedMessage as exc:
            self._warn(f"channel_closed payload unreadable ({exc})")
            payload = ChannelClosedPayload()
        self._closed = True
        self._events.append(
            ChannelClosed(
                output=payload.output, session_id=payload.session_id, destination_id=payload.destination_id
            )
        )

    def _on_pause_publication(self, message: AgentMessage, now: float) -> None:
        del message, now
        if not self._publication_paused:
            self._publication_paused = True
            self._events.append(PublicationPaused())

    def _on_start_publication(self, message: AgentMessage, now: float) -> None:
        del message
        if self._publication_paused:
            self._publication_paused = False
            self._events.append(PublicationResumed())
            if self._connected and not self._closed:
                self._flush_window(now, everything=False)

    def _on_unexpected(self, message: AgentMessage, now: float) -> None:
        del now
        self._warn(f"ignored {message.message_type.value} message (not meant for a client)")

    _HANDLERS: dict[MessageType, Callable[[DataChannel, AgentMessage, float], None]] = {
        MessageType.ACKNOWLEDGE: _on_acknowledge,
        MessageType.OUTPUT_STREAM_DATA: _on_stream_data,
        MessageType.CHANNEL_CLOSED: _on_channel_closed,
        MessageType.PAUSE_PUBLICATION: _on_pause_publication,
        MessageType.START_PUBLICATION: _on_start_publication,
        MessageType.INPUT_STREAM_DATA: _on_unexpected,
        MessageType.AGENT_SESSION_STATE: _on_unexpected,
    }
