"""The hot paths of the client core against its general paths (differential tests).

``DataChannel.receive_frame`` handles an ``acknowledge`` and an in-order ``output_stream_data``
inline, and acks/data frames are packed directly (``encode_fields``) rather than through
``AgentMessage``/``encode``/``Acknowledge.to_json``. These tests feed the same frames, whatever
their shape, to a channel with the fast paths and to one whose ``receive_frame`` always takes the
general path, and require byte-identical output, identical events and identical counters.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import struct
import uuid
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel import (
    AgentMessage,
    DataChannel,
    MessageType,
    PayloadType,
    decode,
    encode,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.message import (
    WIRE_TYPES,
    MessageIdSource,
    encode_fields,
    uuid_to_wire,
    wire_id_to_str,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.payloads import Acknowledge

HEADER = struct.Struct(">I32sIQqQ16s32sII")
REQUEST = (
    b'{"AgentVersion":"3.3.987.0","RequestedClientActions":[{"ActionType":"SessionType",'
    b'"ActionParameters":{"SessionType":"Port","Properties":{"portNumber":"22"}}}]}'
)
COMPLETE = b'{"HandshakeTimeToComplete":1000,"CustomerMessage":""}'


class GeneralOnly(DataChannel):
    """The reference: every frame through decode() and the per-type handlers."""

    def receive_frame(self, frame: bytes | bytearray | memoryview, now: float) -> None:
        self.stats.frames_received += 1
        self._receive_general(bytes(frame), now)


def ids() -> Callable[[], uuid.UUID]:
    counter = itertools.count(1)
    return lambda: uuid.UUID(int=next(counter) * 0x1000_0000_0001, version=4)


def frame(
    message_type: bytes,
    *,
    seq: int = 0,
    payload_type: int = 0,
    payload: bytes = b"",
    header_length: int = 116,
    created: int = 1_700_000_000_000,
    digest: bytes | None = None,
    length: int | None = None,
    raw_id: bytes = bytes(range(16)),
) -> bytes:
    return (
        HEADER.pack(
            header_length,
            message_type,
            1,
            created,
            seq,
            0,
            raw_id,
            hashlib.sha256(payload).digest() if digest is None else digest,
            payload_type,
            len(payload) if length is None else length,
        )
        + payload
    )


OUTPUT = b"output_stream_data".ljust(32, b" ")
ACK = b"acknowledge".ljust(32, b" ")


def go_ack(seq: int) -> bytes:
    return (
        b'{"AcknowledgedMessageType":"input_stream_data","AcknowledgedMessageId":'
        b'"0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d","AcknowledgedMessageSequenceNumber":'
        + str(seq).encode()
        + b',"IsSequentialMessage":true}'
    )


def after_handshake(cls: type[DataChannel]) -> DataChannel:
    channel = cls(id_factory=ids(), wall_clock_offset=1_700_000_000.0, reorder_capacity=8)
    channel.connection_made("tok", 0.0)
    channel.receive_frame(frame(OUTPUT, seq=0, payload_type=5, payload=REQUEST), 0.0)
    channel.receive_frame(frame(OUTPUT, seq=1, payload_type=7, payload=COMPLETE), 0.0)
    channel.receive_frame(frame(ACK, payload=go_ack(0)), 0.0)
    assert channel.handshake_complete
    return channel


ack_payloads = st.one_of(
    st.integers(-3, 12).map(go_ack),
    st.integers(0, 12).map(
        lambda n: json.dumps(
            {"AcknowledgedMessageSequenceNumber": n, "AcknowledgedMessageType": "x"}
        ).encode()
    ),
    st.integers(0, 12).map(lambda n: go_ack(n).replace(b":", b": ", 1)),
    st.integers(0, 12).map(lambda n: go_ack(n).replace(b"input", b"in\\u0070ut")),
    st.integers(0, 12).map(lambda n: go_ack(n).replace(b"input", b"in\npu")),
    st.integers(0, 12).map(lambda n: go_ack(n).replace(b"input", "in\u00e9".encode())),
    st.just(go_ack(1).replace(b"1,", b"01,")),
    st.just(go_ack(1).replace(b"1,", b"1.0,")),
    st.just(go_ack(10**20)),
    st.just(b"not json"),
    st.binary(max_size=40),
)
stream_frames = st.builds(
    lambda seq, pt, payload: frame(OUTPUT, seq=seq, payload_type=pt, payload=payload),
    st.integers(0, 20),
    st.sampled_from([1, 1, 1, 10, 2, 5, 7]),
    st.binary(max_size=24),
)
corrupted = st.one_of(
    st.builds(
        lambda s: frame(OUTPUT, seq=s, payload_type=1, payload=b"x", digest=bytes(32)), st.integers(2, 6)
    ),
    st.builds(lambda s: frame(OUTPUT, seq=s, payload_type=1, payload=b"x", created=0), st.integers(2, 6)),
    st.builds(lambda s: frame(OUTPUT, seq=s, payload_type=1, payload=b"xy", length=1), st.integers(2, 6)),
    st.builds(
        lambda s: frame(OUTPUT, seq=s, payload_type=1, payload=b"x", header_length=112), st.integers(2, 6)
    ),
    st.builds(
        lambda s: frame(b"output_stream_data".ljust(32, b"\x00"), seq=s, payload_type=1, payload=b"z"),
        st.integers(2, 6),
    ),
    st.builds(lambda p: frame(ACK, payload=p, digest=bytes(32)), ack_payloads),
    st.binary(max_size=130),
)
steps = st.lists(
    st.one_of(
        stream_frames,
        st.builds(lambda p: frame(ACK, payload=p), ack_payloads),
        corrupted,
        st.sampled_from(["pause", "resume", "lost", "made", "send"]),
    ),
    max_size=60,
)


def outputs(channel: DataChannel) -> tuple[list[bytes], list[object]]:
    events = []
    while (event := channel.next_event()) is not None:
        events.append(event)
    return channel.frames_to_send(), events


@settings(max_examples=300, deadline=None)
@given(steps)
def test_fast_paths_behave_like_the_general_paths(script: list[bytes | str]) -> None:
    fast, slow = after_handshake(DataChannel), after_handshake(GeneralOnly)
    assert outputs(fast) == outputs(slow)
    now = 1.0
    for step in script:
        now += 0.01
        for channel in (fast, slow):
            if step == "pause":
                channel.pause_receiving()
            elif step == "resume":
                channel.resume_receiving(now)
            elif step == "lost":
                channel.connection_lost()
            elif step == "made":
                channel.connection_made("tok", now)
            elif step == "send":
                channel.send_data(b"abc", now)
            else:
                assert isinstance(step, bytes)
                channel.receive_frame(step, now)
        assert outputs(fast) == outputs(slow), step
        assert fast.stats == slow.stats
        assert fast.expected_sequence_number == slow.expected_sequence_number
        assert fast.unacked_messages == slow.unacked_messages


def test_the_ack_is_the_acknowledge_payload_and_frame_encode_would_write() -> None:
    client = after_handshake(DataChannel)
    outputs(client)
    agent_id = uuid.UUID("d3b07384-d9a0-4c9b-8f3e-2a1b0c9d8e7f")
    client.receive_frame(
        frame(OUTPUT, seq=2, payload_type=1, payload=b"hi", raw_id=uuid_to_wire(agent_id)), 5.0
    )
    (ack,) = client.frames_to_send()
    message = decode(ack)
    assert (
        message.payload
        == Acknowledge(
            message_type="output_stream_data", message_id=str(agent_id), sequence_number=2
        ).to_json()
    )
    assert encode(message) == ack
    assert (message.message_type, message.flags, message.sequence_number) == (MessageType.ACKNOWLEDGE, 3, 0)


@given(st.uuids(), st.binary(max_size=64), st.integers(0, 2**63 - 1), st.sampled_from(list(MessageType)))
def test_encode_fields_is_encode(message_id: uuid.UUID, payload: bytes, seq: int, kind: MessageType) -> None:
    message = AgentMessage(
        message_type=kind,
        created_date=1_700_000_000_123,
        message_id=message_id,
        sequence_number=seq,
        flags=3,
        payload_type=PayloadType.OUTPUT,
        payload=payload,
    )
    wire = encode_fields(WIRE_TYPES[kind], 1_700_000_000_123, seq, 3, uuid_to_wire(message_id), 1, payload)
    assert wire == encode(message)


@given(st.uuids())
def test_wire_id_to_str_is_the_canonical_uuid(value: uuid.UUID) -> None:
    assert wire_id_to_str(uuid_to_wire(value)) == str(value)


def test_message_ids_are_version_4_uuids_in_wire_order() -> None:
    source = MessageIdSource(seed=b"seed")
    seen = set()
    for _unused in range(2000):
        wire = source.wire()
        value = uuid.UUID(bytes=wire[8:] + wire[:8])
        assert value.version == 4
        assert value.variant == uuid.RFC_4122
        seen.add(wire)
    assert len(seen) == 2000
    assert MessageIdSource().wire() != MessageIdSource().wire()  # seeded from os.urandom
