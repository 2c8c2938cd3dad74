"""JSON payloads: what we write equals the official client's bytes; what we read is lenient."""

from __future__ import annotations

import json
import pathlib

import pytest

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.errors import MalformedMessage
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.handshake import process_request
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.payloads import (
    Acknowledge,
    ChannelClosedPayload,
    HandshakeComplete,
    HandshakeRequest,
    OpenDataChannel,
    decode_flag,
    encode_flag,
    go_json,
)

VECTORS = pathlib.Path(__file__).parent / "vectors"
CLIENT = json.loads((VECTORS / "client_frames.json").read_text())["vectors"]
AGENT = {v["name"]: v for v in json.loads((VECTORS / "agent_frames.json").read_text())["vectors"]}


def _client(kind: str) -> list[dict]:
    return [v for v in CLIENT if kind in v["name"]]


@pytest.mark.parametrize("vector", _client(".ack."), ids=lambda v: v["name"])
def test_ack_json_matches_official_client(vector: dict) -> None:
    acked = vector["context"]["acknowledges"]
    ours = Acknowledge(
        message_type=acked["MessageType"],
        message_id=acked["MessageId"],
        sequence_number=acked["SequenceNumber"],
    ).to_json()
    assert ours.hex() == vector["payload_hex"]


@pytest.mark.parametrize("vector", _client("handshake_response"), ids=lambda v: v["name"])
def test_handshake_response_matches_official_client(vector: dict) -> None:
    request = HandshakeRequest.from_json(vector["context"]["in_reply_to_handshake_request_payload"].encode())
    outcome = process_request(request, "1.2.650.0")
    assert outcome.failure is None
    assert outcome.response.to_json().hex() == vector["payload_hex"]


@pytest.mark.parametrize("vector", _client("open_data_channel"), ids=lambda v: v["name"])
def test_open_data_channel_matches_official_client(vector: dict) -> None:
    fields = vector["json"]
    ours = OpenDataChannel(
        request_id=fields["RequestId"],
        token_value=fields["TokenValue"],
        client_id=fields["ClientId"],
        client_version=fields["ClientVersion"],
    ).to_text()
    assert ours == vector["text"]


def test_open_data_channel_redacts_token() -> None:
    opening = OpenDataChannel(request_id="r", token_value="SECRET-TOKEN", client_id="c", client_version="v")
    assert "SECRET-TOKEN" not in repr(opening)
    assert "SECRET-TOKEN" not in str(opening)
    assert "SECRET-TOKEN" in opening.to_text()


@pytest.mark.parametrize("name", ["agent.acknowledge", "agent.acknowledge.handshake_response"])
def test_read_agent_ack(name: str) -> None:
    vector = AGENT[name]
    ack = Acknowledge.from_json(bytes.fromhex(vector["payload_hex"]))
    expected = vector["payload_json"]
    assert ack.sequence_number == expected["AcknowledgedMessageSequenceNumber"]
    assert ack.message_id == expected["AcknowledgedMessageId"]
    assert ack.message_type == expected["AcknowledgedMessageType"]


def test_read_ack_any_key_order_and_whitespace() -> None:
    payload = b'{ "IsSequentialMessage": true, "AcknowledgedMessageSequenceNumber": 12 }'
    assert Acknowledge.from_json(payload).sequence_number == 12


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[]",
        b'{"AcknowledgedMessageSequenceNumber":"5"}',
        b'{"AcknowledgedMessageSequenceNumber":5.0}',
        b'{"AcknowledgedMessageSequenceNumber":true}',
        b"{}",
        b"\xff\xfe",
        b"[" * 100000,
    ],
)
def test_reject_bad_ack(payload: bytes) -> None:
    with pytest.raises(MalformedMessage):
        Acknowledge.from_json(payload)


def test_read_handshake_request_vectors() -> None:
    request = HandshakeRequest.from_json(
        bytes.fromhex(AGENT["agent.handshake_request.port_forwarding"]["payload_hex"])
    )
    assert request.agent_version == "3.3.987.0"
    assert request.actions[0].action_type == "SessionType"
    assert request.actions[0].parameters["Properties"]["type"] == "LocalPortForwarding"


def test_read_handshake_complete_vector() -> None:
    complete = HandshakeComplete.from_json(bytes.fromhex(AGENT["agent.handshake_complete"]["payload_hex"]))
    assert complete == HandshakeComplete(time_to_complete_ns=48210777, customer_message="")


@pytest.mark.parametrize("name", ["agent.channel_closed", "agent.channel_closed.with_output"])
def test_read_channel_closed_vectors(name: str) -> None:
    vector = AGENT[name]
    closed = ChannelClosedPayload.from_json(bytes.fromhex(vector["payload_hex"]))
    assert closed.output == vector["payload_json"]["Output"]
    assert closed.session_id == vector["payload_json"]["SessionId"]
    assert closed.destination_id == vector["payload_json"]["DestinationId"]


def test_flags_roundtrip_and_vector() -> None:
    assert encode_flag(3).hex() == AGENT["agent.flag.connect_to_port_error"]["payload_hex"]
    assert decode_flag(bytes.fromhex("00000002")) == 2
    with pytest.raises(MalformedMessage):
        decode_flag(b"\x00\x01")


def test_go_json_escapes_like_go() -> None:
    assert go_json({"a": "<b>&\u2028\u2029", "n": None, "t": True}) == (
        b'{"a":"\\u003cb\\u003e\\u0026\\u2028\\u2029","n":null,"t":true}'
    )
    assert go_json({"u": "Gr\u00fc\u00dfe"}) == '{"u":"Gr\u00fc\u00dfe"}'.encode()
