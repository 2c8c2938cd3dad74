"""AgentMessage codec against the official vectors (both directions), rejects, and properties."""

from __future__ import annotations

import hashlib
import json
import pathlib
import struct
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.errors import (
    LocalProtocolError,
    MalformedMessage,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.message import (
    AgentMessage,
    MessageType,
    PayloadType,
    decode,
    encode,
)

VECTORS = pathlib.Path(__file__).parent / "vectors"


def _binary_vectors(*names: str) -> list[dict]:
    result = []
    for name in names:
        for vector in json.loads((VECTORS / name).read_text())["vectors"]:
            if vector["kind"] == "binary":
                result.append(vector)
    return result


ALL_BINARY = _binary_vectors("agent_frames.json", "client_frames.json")
ACCEPTED = [v for v in ALL_BINARY if v.get("expectation") != "reject"]
REJECTED = [v for v in ALL_BINARY if v.get("expectation") == "reject"]
CANONICAL = [v for v in ALL_BINARY if v.get("canonical_encoding")]


def test_vector_files_are_complete() -> None:
    # Guards the parametrisation below against an empty or truncated copy.
    assert len(ALL_BINARY) == 20 + 47 + 1
    assert len(REJECTED) == 1
    assert len(CANONICAL) == 67


@pytest.mark.parametrize("vector", ACCEPTED, ids=lambda v: v["name"])
def test_decode_vector(vector: dict) -> None:
    frame = bytes.fromhex(vector["hex"])
    warnings: list[str] = []
    message = decode(frame, warnings=warnings)
    fields = vector["fields"]
    assert fields["HeaderLength"] == 116
    assert message.message_type == fields["MessageType"]
    assert message.schema_version == fields["SchemaVersion"]
    assert message.created_date == fields["CreatedDate"]
    assert message.sequence_number == fields["SequenceNumber"]
    assert message.flags == fields["Flags"]
    assert str(message.message_id) == fields["MessageId"]
    assert message.payload_type == fields["PayloadType"]
    assert len(message.payload) == fields["PayloadLength"]
    assert hashlib.sha256(message.payload).hexdigest() == fields["PayloadDigest"]
    assert message.payload.hex() == vector["payload_hex"]
    assert warnings == []


@pytest.mark.parametrize("vector", CANONICAL, ids=lambda v: v["name"])
def test_encode_vector_from_fields(vector: dict) -> None:
    fields = vector["fields"]
    message = AgentMessage(
        message_type=MessageType(fields["MessageType"]),
        schema_version=fields["SchemaVersion"],
        created_date=fields["CreatedDate"],
        sequence_number=fields["SequenceNumber"],
        flags=fields["Flags"],
        message_id=uuid.UUID(fields["MessageId"]),
        payload_type=fields["PayloadType"],
        payload=bytes.fromhex(vector["payload_hex"]),
    )
    assert encode(message).hex() == vector["hex"]


@pytest.mark.parametrize("vector", REJECTED, ids=lambda v: v["name"])
def test_decode_rejects_vector(vector: dict) -> None:
    with pytest.raises(MalformedMessage) as info:
        decode(bytes.fromhex(vector["hex"]))
    assert info.value.field == "PayloadDigest"


def test_worked_example_ack_section_2_4() -> None:
    payload = (
        b'{"AcknowledgedMessageType":"output_stream_data","AcknowledgedMessageId":'
        b'"d3b07384-d9a0-4c9b-8f3e-2a1b0c9d8e7f","AcknowledgedMessageSequenceNumber":5,'
        b'"IsSequentialMessage":true}'
    )
    frame = encode(
        AgentMessage(
            message_type=MessageType.ACKNOWLEDGE,
            created_date=1700000000000,
            message_id=uuid.UUID("6f1c9a52-3b7d-4e28-9a41-0c5d7e8f9b10"),
            flags=3,
            payload=payload,
        )
    )
    assert len(frame) == 296
    assert frame[:4].hex() == "00000074"
    assert frame[4:36] == b"acknowledge" + b" " * 21
    assert frame[40:48].hex() == "0000018bcfe56800"
    assert frame[56:64].hex() == "0000000000000003"
    assert frame[64:80].hex() == "9a410c5d7e8f9b106f1c9a523b7d4e28"
    assert frame[80:112].hex() == "d3c565c4f780367a18195fa6e9048bce4a5317437408451aca9240dcafaf87fc"
    assert frame[112:120].hex() == "00000000000000b0"


def test_worked_example_data_section_2_4() -> None:
    frame = encode(
        AgentMessage(
            message_type=MessageType.INPUT_STREAM_DATA,
            created_date=1700000000123,
            message_id=uuid.UUID("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"),
            sequence_number=1,
            payload_type=PayloadType.OUTPUT,
            payload=b"hello",
        )
    )
    expected = (
        "00000074" + "696e7075745f73747265616d5f64617461" + "20" * 15 + "00000001" + "0000018bcfe5687b"
        "0000000000000001" + "0000000000000000" + "8c7d9e0f1a2b3c4d0a1b2c3d4e5f4a6b"
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" + "00000001" + "00000005"
        "68656c6c6f"
    )
    assert frame.hex() == expected


# --- rejects (one per malformed shape) --------------------------------------------------------------


def _valid_frame(**overrides: object) -> bytearray:
    message = AgentMessage(
        message_type=MessageType.OUTPUT_STREAM_DATA,
        created_date=1767225603021,
        message_id=uuid.UUID("19a8b7c6-d5e4-4f3a-9b2c-1d0e9f8a7b6c"),
        sequence_number=2,
        payload_type=1,
        payload=b"payload",
    )
    return bytearray(encode(message))


@pytest.mark.parametrize("length", [0, 1, 4, 36, 119])
def test_reject_short_frame(length: int) -> None:
    with pytest.raises(MalformedMessage) as info:
        decode(_valid_frame()[:length])
    assert info.value.field == "header"


@pytest.mark.parametrize("header_length", [0, 115, 117, 120, 2**31, 2**32 - 1])
def test_reject_header_length(header_length: int) -> None:
    frame = _valid_frame()
    struct.pack_into(">I", frame, 0, header_length)
    with pytest.raises(MalformedMessage) as info:
        decode(frame)
    assert info.value.field == "HeaderLength"


@pytest.mark.parametrize(
    "raw_type",
    [b"output_stream_dat", b"bogus", b"", b"\xff\xfe", "ausgabe_\u00fc".encode(), b"output_stream_data\x01"],
)
def test_reject_message_type(raw_type: bytes) -> None:
    frame = _valid_frame()
    frame[4:36] = raw_type.ljust(32, b" ")[:32]
    with pytest.raises(MalformedMessage) as info:
        decode(frame)
    assert info.value.field == "MessageType"


def test_accept_nul_padded_message_type() -> None:
    frame = _valid_frame()
    frame[4:36] = b"output_stream_data".ljust(32, b"\x00")
    assert decode(frame).message_type is MessageType.OUTPUT_STREAM_DATA


def test_reject_digest_mismatch() -> None:
    frame = _valid_frame()
    frame[-1] ^= 0x01
    with pytest.raises(MalformedMessage) as info:
        decode(frame)
    assert info.value.field == "PayloadDigest"


def test_reject_created_date_zero() -> None:
    frame = _valid_frame()
    struct.pack_into(">Q", frame, 40, 0)
    with pytest.raises(MalformedMessage) as info:
        decode(frame)
    assert info.value.field == "CreatedDate"


def test_payload_length_mismatch_is_a_warning() -> None:
    frame = _valid_frame()
    struct.pack_into(">I", frame, 116, 999)
    warnings: list[str] = []
    message = decode(frame, warnings=warnings)
    assert message.payload == b"payload"  # sliced to the end of the frame (§2), not by PayloadLength
    assert len(warnings) == 1
    assert "999" in warnings[0]


@pytest.mark.parametrize("message_type", ["start_publication", "pause_publication"])
def test_publication_messages_skip_validation(message_type: str) -> None:
    # §6.6 / plugin issue #22: they may come without valid CreatedDate or digest.
    frame = bytearray(120)
    struct.pack_into(">I", frame, 0, 116)
    frame[4:36] = message_type.encode().ljust(32, b" ")
    assert decode(frame).message_type == message_type


def test_uuid_halves_are_swapped_on_the_wire() -> None:
    frame = _valid_frame()
    message_id = uuid.UUID("00112233-4455-4677-8899-aabbccddeeff")
    frame[64:80] = bytes.fromhex("8899aabbccddeeff0011223344554677")
    frame[80:112] = hashlib.sha256(bytes(frame[120:])).digest()
    assert decode(frame).message_id == message_id


def test_repr_is_log_safe() -> None:
    secret = b"very-secret-port-data"
    message = AgentMessage(
        message_type=MessageType.INPUT_STREAM_DATA,
        created_date=1,
        message_id=uuid.uuid4(),
        sequence_number=7,
        payload_type=PayloadType.OUTPUT,
        payload=secret,
    )
    text = repr(message)
    assert "seq=7" in text
    assert "OUTPUT" in text
    assert "very-secret" not in text


@pytest.mark.parametrize(
    "overrides",
    [
        {"sequence_number": 2**63},
        {"created_date": -1},
        {"flags": 2**64},
        {"payload_type": 2**32},
        {"schema_version": -1},
        {"message_type": "input_stream_data"},
        {"payload": bytearray(b"x")},
        {"payload_type": True},
        {"sequence_number": 1.0},
    ],
)
def test_encode_refuses_values_that_do_not_fit(overrides: dict) -> None:
    fields: dict = {
        "message_type": MessageType.INPUT_STREAM_DATA,
        "created_date": 1,
        "message_id": uuid.uuid4(),
    }
    fields.update(overrides)
    with pytest.raises(LocalProtocolError):
        AgentMessage(**fields)


# --- properties -----------------------------------------------------------------------------------------

_UNVALIDATED = {MessageType.START_PUBLICATION, MessageType.PAUSE_PUBLICATION}

messages = st.builds(
    AgentMessage,
    message_type=st.sampled_from(list(MessageType)),
    schema_version=st.integers(0, 2**32 - 1),
    created_date=st.integers(1, 2**64 - 1),
    sequence_number=st.integers(-(2**63), 2**63 - 1),
    flags=st.integers(0, 2**64 - 1),
    message_id=st.uuids(),
    payload_type=st.integers(0, 2**32 - 1),
    payload=st.binary(max_size=2048),
)


@given(messages)
def test_roundtrip(message: AgentMessage) -> None:
    assert decode(encode(message)) == message


@given(st.binary(max_size=400))
def test_arbitrary_bytes_decode_or_malformed(data: bytes) -> None:
    try:
        result = decode(data)
    except MalformedMessage:
        return
    assert isinstance(result, AgentMessage)


@settings(max_examples=300)
@given(
    header_length=st.one_of(st.just(116), st.integers(0, 2**32 - 1)),
    raw_type=st.one_of(st.sampled_from([t.value.encode() for t in MessageType]), st.binary(max_size=32)),
    rest=st.binary(min_size=84, max_size=84),
    payload=st.binary(max_size=64),
    fix_digest=st.booleans(),
)
def test_structured_garbage_decode_or_malformed(
    header_length: int, raw_type: bytes, rest: bytes, payload: bytes, fix_digest: bool
) -> None:
    frame = bytearray(struct.pack(">I", header_length) + raw_type.ljust(32, b" ")[:32] + rest + payload)
    if fix_digest:
        frame[80:112] = hashlib.sha256(payload).digest()
    try:
        result = decode(frame)
    except MalformedMessage:
        return
    assert result.payload == payload
    if result.message_type not in _UNVALIDATED:
        assert result.created_date != 0
