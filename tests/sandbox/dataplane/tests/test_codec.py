"""The agent-side codec against every reference vector, both ways, plus rejects and fuzzing."""

from __future__ import annotations

import hashlib
import json
import struct
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane.codec import (
    K_PREFIX_SIZE,
    AgentMessage,
    Flag,
    MalformedFrame,
    decode_message,
    encode_message,
    flag_payload,
    parse_flag,
    uuid_from_wire,
    uuid_to_wire,
)
from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane.payloads import (
    ack_payload,
    channel_closed_payload,
    handshake_complete_payload,
    handshake_request_payload,
    parse_ack,
    parse_handshake_response,
    parse_open_data_channel,
)
from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane.tests.helpers import (
    binary_vectors,
    load_vectors,
)

ALL_BINARY = binary_vectors("agent_frames.json") + binary_vectors("client_frames.json")
CANONICAL = [v for v in ALL_BINARY if v.get("canonical_encoding")]


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["name"] for v in vectors]


def test_vector_files_are_complete() -> None:
    assert len(binary_vectors("agent_frames.json")) == 21
    assert len(load_vectors("client_frames.json")) == 52
    assert len(CANONICAL) >= 60


@pytest.mark.parametrize("vec", ALL_BINARY, ids=_ids(ALL_BINARY))
def test_decode_every_binary_vector(vec: dict[str, Any]) -> None:
    message = decode_message(bytes.fromhex(vec["hex"]))
    fields = vec["fields"]
    assert message.header_length == fields["HeaderLength"]
    assert message.message_type == fields["MessageType"]
    assert message.schema_version == fields["SchemaVersion"]
    assert message.created_date == fields["CreatedDate"]
    assert message.sequence_number == fields["SequenceNumber"]
    assert message.flags == fields["Flags"]
    assert str(message.message_id) == fields["MessageId"]
    assert message.payload_digest.hex() == fields["PayloadDigest"]
    assert message.payload_type == fields["PayloadType"]
    assert message.payload_length == fields["PayloadLength"]
    assert message.payload.hex() == vec["payload_hex"]
    assert message.length_ok
    assert message.digest_ok is vec.get("digest_matches_payload", True)


@pytest.mark.parametrize("vec", CANONICAL, ids=_ids(CANONICAL))
def test_encode_every_canonical_vector(vec: dict[str, Any]) -> None:
    fields = vec["fields"]
    frame = encode_message(
        fields["MessageType"],
        payload=bytes.fromhex(vec["payload_hex"]),
        created_date=fields["CreatedDate"],
        message_id=uuid.UUID(fields["MessageId"]),
        sequence_number=fields["SequenceNumber"],
        flags=fields["Flags"],
        payload_type=fields["PayloadType"],
        schema_version=fields["SchemaVersion"],
    )
    assert frame.hex() == vec["hex"]


def test_digest_mismatch_vector_is_flagged_not_fixed() -> None:
    (vec,) = [v for v in ALL_BINARY if v["name"] == "agent.malformed.digest_mismatch"]
    message = decode_message(bytes.fromhex(vec["hex"]))
    assert not message.digest_ok
    assert message.payload_digest.hex() != hashlib.sha256(message.payload).hexdigest()


def test_worked_example_ack_from_spec() -> None:
    """Spec §2.4: ack of agent seq 5, 296 bytes, the swapped MessageId halves."""
    payload = ack_payload("output_stream_data", uuid.UUID("d3b07384-d9a0-4c9b-8f3e-2a1b0c9d8e7f"), 5)
    assert len(payload) == 176
    frame = encode_message(
        "acknowledge",
        payload=payload,
        created_date=1700000000000,
        message_id=uuid.UUID("6f1c9a52-3b7d-4e28-9a41-0c5d7e8f9b10"),
        flags=3,
    )
    assert len(frame) == 296
    assert frame[64:80].hex() == "9a410c5d7e8f9b10" + "6f1c9a523b7d4e28"
    assert frame[80:112].hex() == "d3c565c4f780367a18195fa6e9048bce4a5317437408451aca9240dcafaf87fc"
    assert frame[4:36] == b"acknowledge".ljust(32, b" ")


# --- agent payload builders reproduce the official serializer's bytes --------------------


def _agent(name: str) -> dict[str, Any]:
    (vec,) = [v for v in binary_vectors("agent_frames.json") if v["name"] == name]
    return vec


@pytest.mark.parametrize("name", ["agent.handshake_request.ssh", "agent.handshake_request.port_forwarding"])
def test_handshake_request_payload_matches(name: str) -> None:
    build = _agent(name)["inputs"]["build"]
    payload = handshake_request_payload(build["agent_version"], build["properties"], build["session_type"])
    assert payload.hex() == _agent(name)["payload_hex"]


def test_handshake_complete_payload_matches() -> None:
    vec = _agent("agent.handshake_complete")
    assert (
        handshake_complete_payload(vec["inputs"]["build"]["time_to_complete_ns"]).hex() == vec["payload_hex"]
    )


@pytest.mark.parametrize("name", ["agent.acknowledge", "agent.acknowledge.handshake_response"])
def test_ack_payload_matches(name: str) -> None:
    build = _agent(name)["inputs"]["build"]
    payload = ack_payload(build["ack_type"], uuid.UUID(build["ack_id"]), build["ack_seq"])
    assert payload.hex() == _agent(name)["payload_hex"]
    assert parse_ack(payload) == build["ack_seq"]


@pytest.mark.parametrize("name", ["agent.channel_closed", "agent.channel_closed.with_output"])
def test_channel_closed_payload_matches(name: str) -> None:
    cc = _agent(name)["inputs"]["build"]["cc"]
    payload = channel_closed_payload(
        message_id=uuid.UUID(cc["MessageId"]),
        created_ms=int(cc["CreatedDate"]),
        destination_id=cc["DestinationId"],
        session_id=cc["SessionId"],
        output=cc["Output"],
    )
    assert payload.hex() == _agent(name)["payload_hex"]


def test_flag_payload_matches() -> None:
    vec = _agent("agent.flag.connect_to_port_error")
    assert flag_payload(Flag.CONNECT_TO_PORT_ERROR).hex() == vec["payload_hex"]
    assert parse_flag(bytes.fromhex(vec["payload_hex"])) == Flag.CONNECT_TO_PORT_ERROR


def test_handshake_request_refuses_non_string_properties() -> None:
    with pytest.raises(TypeError, match="must be a string"):
        handshake_request_payload("3.3.987.0", {"portNumber": 22})  # type: ignore[dict-item]


# --- what the official client sent parses ---------------------------------------------------


def test_official_client_payloads_parse() -> None:
    vectors = load_vectors("client_frames.json")
    acks = [v for v in vectors if v["name"].split(".")[1] == "ack"]
    for vec in acks:
        assert (
            parse_ack(bytes.fromhex(vec["payload_hex"])) == vec["context"]["acknowledges"]["SequenceNumber"]
        )
    responses = [v for v in vectors if "handshake_response" in v["name"]]
    assert len(responses) == 4
    for vec in responses:
        response = parse_handshake_response(bytes.fromhex(vec["payload_hex"]))
        assert response.client_version == "1.2.650.0"
        assert response.failure() is None
        assert [a.action_type for a in response.actions] == ["SessionType"]
    texts = [v for v in vectors if v["kind"] == "text"]
    assert len(texts) == 5
    for vec in texts:
        odc = parse_open_data_channel(vec["text"])
        assert odc.token_value == vec["json"]["TokenValue"]
        assert odc.client_id == vec["json"]["ClientId"]
        assert odc.shape_problems() == []
        assert odc.token_value not in repr(odc)


def test_handshake_response_failure_reason() -> None:
    payload = json.dumps(
        {
            "ClientVersion": "1.2.650.0",
            "ProcessedClientActions": [{"ActionType": "KMSEncryption", "ActionStatus": 2, "Error": "no kms"}],
            "Errors": ["no kms"],
        }
    ).encode()
    assert (
        parse_handshake_response(payload).failure()
        == "KMSEncryption failed on client with status 2 error: no kms"
    )


# --- rejects --------------------------------------------------------------------------------


def _frame(**overrides: Any) -> bytearray:
    base = encode_message(
        "input_stream_data",
        payload=b"hello",
        created_date=1700000000123,
        message_id=uuid.uuid4(),
        sequence_number=1,
    )
    frame = bytearray(base)
    for offset, value in overrides.items():
        start = int(offset[1:])
        frame[start : start + len(value)] = value
    return frame


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "shorter than"),
        (bytes(_frame())[:119], "shorter than"),
        (bytes(_frame(o0=struct.pack(">I", 120))), "HeaderLength is 120"),
        (bytes(_frame(o0=struct.pack(">I", 0))), "HeaderLength is 0"),
        (bytes(_frame(o0=struct.pack(">I", 5000))), "HeaderLength is 5000"),
        (bytes(_frame(o4=b" " * 32)), "MessageType is empty"),
        (bytes(_frame(o4=b"\x00" * 32)), "MessageType is empty"),
        (bytes(_frame(o4=b"\xff" * 4)), "not ASCII"),
        (bytes(_frame(o40=b"\x00" * 8)), "CreatedDate is 0"),
    ],
)
def test_reject_malformed(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedFrame, match=reason):
        decode_message(data)


def test_nul_padded_message_type_is_accepted() -> None:
    frame = _frame(o4=b"input_stream_data".ljust(32, b"\x00"))
    assert decode_message(bytes(frame)).message_type == "input_stream_data"


def test_uuid_halves_quirk() -> None:
    value = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
    assert uuid_to_wire(value).hex() == "8899aabbccddeeff0011223344556677"
    assert uuid_from_wire(uuid_to_wire(value)) == value


@given(st.binary(max_size=400))
def test_decode_never_raises_anything_else(data: bytes) -> None:
    try:
        message = decode_message(data)
    except MalformedFrame:
        return
    assert isinstance(message, AgentMessage)
    assert len(message.payload) == len(data) - K_PREFIX_SIZE


@given(
    message_type=st.sampled_from(
        ["input_stream_data", "output_stream_data", "acknowledge", "channel_closed"]
    ),
    payload=st.binary(max_size=2048),
    created=st.integers(min_value=1, max_value=2**64 - 1),
    seq=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    flags=st.integers(min_value=0, max_value=2**64 - 1),
    payload_type=st.integers(min_value=0, max_value=2**32 - 1),
    message_id=st.uuids(),
)
def test_round_trip(
    *,
    message_type: str,
    payload: bytes,
    created: int,
    seq: int,
    flags: int,
    payload_type: int,
    message_id: uuid.UUID,
) -> None:
    frame = encode_message(
        message_type,
        payload=payload,
        created_date=created,
        message_id=message_id,
        sequence_number=seq,
        flags=flags,
        payload_type=payload_type,
    )
    message = decode_message(frame)
    assert (message.message_type, message.payload, message.created_date) == (message_type, payload, created)
    assert (message.sequence_number, message.flags, message.payload_type) == (seq, flags, payload_type)
    assert message.message_id == message_id
    assert message.digest_ok
    assert message.length_ok
