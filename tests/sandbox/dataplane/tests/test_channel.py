"""AgentChannel on virtual time: the agent column of §3.2, the handshake of §4, RTO of §3.4/3.5.

Inputs are either frames the official client really sent (client_frames.json) or frames built
here with ``struct`` from the spec; no sleeping, ``now`` is a number.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import struct
import uuid
from collections import Counter

import pytest

from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane.channel import (
    K_HANDSHAKE_TIMEOUT_MESSAGE,
    AgentChannel,
    FrameKind,
    HandshakeCompleted,
    HandshakeFailed,
    HandshakeState,
    OutFrame,
    Output,
    PeerClosed,
)
from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane.codec import decode_message
from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane.reliability import RtoEstimator
from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane.tests.helpers import RecordingHandler, vector

CLIENT_VERSION = "1.2.650.0"


def client_frame(
    seq: int,
    payload: bytes,
    payload_type: int = 1,
    message_type: str = "input_stream_data",
    digest: bytes | None = None,
) -> bytes:
    """An input frame built by hand from §2 (independent of the codec under test)."""
    header = struct.pack(
        ">I32sIQqQ16s32sII",
        116,
        message_type.encode().ljust(32),
        1,
        1_700_000_000_000,
        seq,
        0 if message_type != "acknowledge" else 3,
        uuid.uuid4().bytes,
        digest if digest is not None else hashlib.sha256(payload).digest(),
        payload_type,
        len(payload),
    )
    return header + payload


def handshake_response(status: int = 1, version: str = CLIENT_VERSION) -> bytes:
    body = {
        "ClientVersion": version,
        "ProcessedClientActions": [
            {"ActionType": "SessionType", "ActionStatus": status, "ActionResult": None, "Error": ""}
        ],
        "Errors": None,
    }
    return client_frame(0, json.dumps(body).encode(), payload_type=6)


def client_ack(seq: int) -> bytes:
    body = {
        "AcknowledgedMessageType": "output_stream_data",
        "AcknowledgedMessageId": str(uuid.uuid4()),
        "AcknowledgedMessageSequenceNumber": seq,
        "IsSequentialMessage": True,
    }
    return client_frame(0, json.dumps(body).encode(), payload_type=0, message_type="acknowledge")


class Clock:
    def __init__(self) -> None:
        self.ms = itertools.count(1_800_000_000_000)

    def __call__(self) -> int:
        return next(self.ms)


def make_channel(props: dict[str, str] | None = None, **kwargs: object) -> tuple[AgentChannel, Counter[str]]:
    counts: Counter[str] = Counter()

    def count(name: str, n: int) -> None:
        counts[name] += n

    channel = AgentChannel(
        agent_version="3.3.987.0",
        properties=props or {"portNumber": "22"},
        wall_ms=Clock(),
        count=count,
        **kwargs,  # type: ignore[arg-type]
    )
    return channel, counts


def frames(outputs: list[Output]) -> list[OutFrame]:
    return [o for o in outputs if isinstance(o, OutFrame)]


def acked(outputs: list[Output]) -> list[int]:
    return [o.seq for o in frames(outputs) if o.kind is FrameKind.ACK]


def started(now: float = 0.0) -> tuple[AgentChannel, Counter[str], RecordingHandler]:
    channel, counts = make_channel()
    channel.start(now)
    handler = RecordingHandler()
    out = channel.receive(handshake_response(), now, handler)
    assert channel.handshake_state is HandshakeState.COMPLETE, out
    return channel, counts, handler


# --- handshake ------------------------------------------------------------------------------


def test_handshake_request_is_seq0_syn_with_string_properties() -> None:
    channel, _ = make_channel({"portNumber": "8080", "type": "LocalPortForwarding", "localPortNumber": "0"})
    (out,) = channel.start(0.0)
    assert isinstance(out, OutFrame)
    message = decode_message(out.data)
    assert (message.message_type, message.sequence_number, message.flags, message.payload_type) == (
        "output_stream_data",
        0,
        1,
        5,
    )
    body = json.loads(message.payload)
    assert body["AgentVersion"] == "3.3.987.0"
    (action,) = body["RequestedClientActions"]
    assert action["ActionType"] == "SessionType"
    assert action["ActionParameters"]["SessionType"] == "Port"
    assert action["ActionParameters"]["Properties"] == {
        "localPortNumber": "0",
        "portNumber": "8080",
        "type": "LocalPortForwarding",
    }
    assert len(channel.outgoing) == 1


def test_official_handshake_response_is_acked_before_handshake_complete() -> None:
    """G17: the ack of the HandshakeResponse goes out before HandshakeComplete."""
    channel, _ = make_channel()
    channel.start(0.0)
    data = bytes.fromhex(vector("mux.input.seq0_handshake_response")["hex"])
    out = channel.receive(data, 0.048, RecordingHandler())
    assert [type(o).__name__ for o in out] == ["OutFrame", "OutFrame", "HandshakeCompleted"]
    ack, complete = frames(out)
    assert ack.kind is FrameKind.ACK
    ack_body = json.loads(decode_message(ack.data).payload)
    assert ack_body == {
        "AcknowledgedMessageType": "input_stream_data",
        "AcknowledgedMessageId": str(decode_message(data).message_id),
        "AcknowledgedMessageSequenceNumber": 0,
        "IsSequentialMessage": True,
    }
    assert decode_message(ack.data).flags == 3
    message = decode_message(complete.data)
    assert (message.sequence_number, message.flags, message.payload_type) == (1, 0, 7)
    body = json.loads(message.payload)
    assert body == {"HandshakeTimeToComplete": 48_000_000, "CustomerMessage": ""}
    assert isinstance(body["HandshakeTimeToComplete"], int)
    assert out[2] == HandshakeCompleted(CLIENT_VERSION)


def test_data_before_handshake_complete_is_acked_and_discarded() -> None:
    """G7: client seq 0 that is not a HandshakeResponse is consumed."""
    channel, counts = make_channel()
    channel.start(0.0)
    handler = RecordingHandler()
    out = channel.receive(client_frame(0, b"too early"), 0.01, handler)
    assert acked(out) == [0]
    assert handler.delivered == []
    assert counts["discarded_before_handshake"] == 1
    assert channel.expected_seq == 1
    assert channel.handshake_state is HandshakeState.PENDING


def test_failed_action_fails_the_handshake() -> None:
    channel, _ = make_channel()
    channel.start(0.0)
    out = channel.receive(handshake_response(status=2), 0.01, RecordingHandler())
    assert acked(out) == [0]
    failures = [o for o in out if isinstance(o, HandshakeFailed)]
    assert failures
    assert "SessionType failed on client with status 2" in failures[0].reason
    assert channel.handshake_state is HandshakeState.FAILED


def test_handshake_deadline() -> None:
    channel, _ = make_channel(handshake_timeout=15.0)
    channel.start(100.0)
    assert not [o for o in channel.handle_timer(114.9) if isinstance(o, HandshakeFailed)]
    assert channel.handle_timer(115.0) == [HandshakeFailed(K_HANDSHAKE_TIMEOUT_MESSAGE)]
    assert not [o for o in channel.handle_timer(116.0) if isinstance(o, HandshakeFailed)]  # reported once


# --- receiving ------------------------------------------------------------------------------


def test_in_order_data_is_delivered_then_acked() -> None:
    channel, _, handler = started()
    out = channel.receive(client_frame(1, b"SSH-2.0-test\r\n"), 1.0, handler)
    assert acked(out) == [1]
    assert handler.delivered == [(1, b"SSH-2.0-test\r\n")]
    assert channel.expected_seq == 2


def test_not_ready_is_neither_acked_nor_consumed() -> None:
    """G6: the client must resend; when it does and the port is up, it gets through."""
    channel, counts, handler = started()
    handler.is_ready = False
    assert channel.receive(client_frame(1, b"a"), 1.0, handler) == []
    assert channel.expected_seq == 1
    assert counts["not_ready_in"] == 1
    handler.is_ready = True
    assert acked(channel.receive(client_frame(1, b"a"), 1.2, handler)) == [1]
    assert handler.delivered == [(1, b"a")]


def test_reorder_buffer_acks_early_messages_and_delivers_in_order() -> None:
    channel, counts, handler = started()
    assert acked(channel.receive(client_frame(3, b"c"), 1.0, handler)) == [3]
    assert acked(channel.receive(client_frame(2, b"b"), 1.0, handler)) == [2]
    assert handler.delivered == []
    assert acked(channel.receive(client_frame(1, b"a"), 1.0, handler)) == [1]
    assert [p for _, p in handler.delivered] == [b"a", b"b", b"c"]
    assert channel.expected_seq == 4
    assert counts["out_of_order_in"] == 2


def test_buffered_data_waits_for_a_ready_port_then_drains() -> None:
    channel, _, handler = started()
    handler.is_ready = False
    channel.receive(client_frame(2, b"b"), 1.0, handler)
    handler.is_ready = True
    channel.receive(client_frame(1, b"a"), 1.0, handler)
    assert [p for _, p in handler.delivered] == [b"a", b"b"]
    handler.delivered.clear()
    # Drain stops at a not-ready port and resumes when asked, without losing acked data.
    channel.receive(client_frame(4, b"d"), 1.0, handler)
    handler.is_ready = False
    channel.drain(handler)
    handler.is_ready = True
    channel.receive(client_frame(3, b"c"), 1.0, handler)
    assert [p for _, p in handler.delivered] == [b"c", b"d"]


def test_duplicates_are_reacked_not_redelivered() -> None:
    channel, counts, handler = started()
    frame = client_frame(1, b"once")
    channel.receive(frame, 1.0, handler)
    for _ in range(5):  # G10: the Go client's resend bursts
        assert acked(channel.receive(frame, 1.1, handler)) == [1]
    assert handler.delivered == [(1, b"once")]
    assert counts["duplicates_in"] == 5


def test_official_reconnect_capture_duplicate_is_reacked() -> None:
    """reconnect scenario: seq 1 unacked before the drop, resent identically after it."""
    channel, counts = make_channel()
    channel.start(0.0)
    handler = RecordingHandler()
    for name in [
        "reconnect.input.seq0_handshake_response",
        "reconnect.input.seq1_data",
        "reconnect.input.seq1_data.retransmission1",
        "reconnect.input.seq2_data",
    ]:
        out = channel.receive(bytes.fromhex(vector(name)["hex"]), 1.0, handler)
        assert acked(out) == [int(name.split(".")[2][3])], name
    assert len(handler.delivered) == 2
    assert counts["duplicates_in"] == 1


def test_official_mux_capture_replays_cleanly() -> None:
    channel, counts = make_channel(
        {"portNumber": "5432", "type": "LocalPortForwarding", "localPortNumber": "0"}
    )
    channel.start(0.0)
    handler = RecordingHandler()
    names = [
        v
        for v in [
            "mux.input.seq0_handshake_response",
            "mux.input.seq1_smux_SYN3",
            "mux.input.seq2_smux_PSH3",
            "mux.input.seq3_smux_PSH3",
            "mux.input.seq4_smux_SYN5",
            "mux.input.seq5_smux_PSH5",
            "mux.input.seq6_smux_NOP0",
            "mux.input.seq7_smux_FIN3",
            "mux.input.seq8_smux_FIN5",
            "mux.input.seq9_flag_TerminateSession",
        ]
    ]
    for seq, name in enumerate(names):
        assert acked(channel.receive(bytes.fromhex(vector(name)["hex"]), 1.0, handler)) == [seq]
    assert [pt for pt, _ in handler.delivered] == [1] * 8 + [10]
    assert handler.delivered[-1][1] == b"\x00\x00\x00\x02"
    assert counts["digest_mismatch_in"] == 0


def test_incoming_buffer_full_drops_without_ack() -> None:
    channel, counts = make_channel(incoming_capacity=2)
    channel.start(0.0)
    handler = RecordingHandler()
    channel.receive(handshake_response(), 0.0, handler)
    assert acked(channel.receive(client_frame(5, b"e"), 1.0, handler)) == [5]
    assert acked(channel.receive(client_frame(6, b"f"), 1.0, handler)) == [6]
    assert channel.receive(client_frame(7, b"g"), 1.0, handler) == []
    assert counts["incoming_buffer_full"] == 1


def test_client_digest_mismatch_is_accepted_like_the_agent_but_counted() -> None:
    channel, counts, handler = started()
    out = channel.receive(client_frame(1, b"abc", digest=b"\x00" * 32), 1.0, handler)
    assert acked(out) == [1]
    assert counts["digest_mismatch_in"] == 1


def test_malformed_and_unknown_frames_are_dropped_silently() -> None:
    channel, counts, handler = started()
    assert channel.receive(b"\x00" * 50, 1.0, handler) == []
    assert channel.receive(client_frame(0, b"x", message_type="start_publication"), 1.0, handler) == []
    assert counts["malformed_in"] == 1
    assert counts["unknown_type_in"] == 1
    assert channel.receive(client_frame(0, b"{}", message_type="channel_closed"), 1.0, handler) == [
        PeerClosed()
    ]


def test_closing_channel_stops_acking_data_but_processes_acks() -> None:
    channel, _, handler = started()
    channel.closing = True
    assert channel.receive(client_frame(1, b"late"), 1.0, handler) == []
    assert len(channel.outgoing) == 2
    channel.receive(client_ack(0), 1.0, handler)
    assert len(channel.outgoing) == 1


# --- sending, acks, RTO, resend ---------------------------------------------------------------


def test_acks_match_on_sequence_number_and_update_rto() -> None:
    channel, counts = make_channel()
    channel.start(0.0)
    handler = RecordingHandler()
    channel.receive(client_ack(0), 0.05, handler)
    assert len(channel.outgoing) == 0
    expected = RtoEstimator()
    expected.update(0.05)
    assert channel.rto.rto == pytest.approx(expected.rto)
    assert channel.rto.rto == pytest.approx(0.09375 + 0.05)
    channel.receive(client_ack(0), 0.06, handler)
    assert counts["acks_unknown_in"] == 1


def test_rto_formula() -> None:
    rto = RtoEstimator()
    assert (rto.srtt, rto.rttvar, rto.rto) == (0.1, 0.0, 0.2)
    rto.update(0.1)
    assert rto.rto == pytest.approx(0.1 + 0.01)  # G floor
    for _ in range(50):
        rto.update(5.0)
    assert rto.rto == 1.0  # cap


def test_only_the_head_is_resent_after_rto_and_last_sent_moves() -> None:
    channel, counts, handler = started(now=0.0)
    first = channel.send_data(1, b"one", 0.0)
    channel.send_data(1, b"two", 0.0)
    channel.receive(client_ack(1), 0.0, handler)  # HandshakeComplete acked; RTT sample 0
    channel.receive(client_ack(0), 0.0, handler)
    rto = channel.rto.rto
    assert channel.handle_timer(rto - 0.001) == []
    (resent,) = channel.handle_timer(rto + 0.001)
    assert isinstance(resent, OutFrame)
    assert resent.kind is FrameKind.RETRANSMIT
    assert (resent.seq, resent.data) == (first.seq, first.data)  # byte-identical
    assert channel.handle_timer(rto + 0.05) == []  # last_sent updated (agent, not Go client)
    assert frames(channel.handle_timer(2 * rto + 0.01))[0].seq == first.seq
    channel.receive(client_ack(first.seq), 1.0, handler)
    assert frames(channel.handle_timer(5.0))[0].seq == first.seq + 1
    assert counts["retransmits"] == 3


def test_paused_channel_does_not_resend_and_resend_head_forces_one() -> None:
    channel, _ = make_channel()
    channel.start(0.0)
    channel.paused = True
    assert channel.handle_timer(10.0) == []
    (out,) = channel.resend_head(10.0)
    assert isinstance(out, OutFrame)
    assert out.seq == 0


def test_agent_sequence_numbers_and_flags() -> None:
    channel, _, _ = started()
    data = [decode_message(channel.send_data(1, bytes([i]), 1.0).data) for i in range(3)]
    assert [m.sequence_number for m in data] == [2, 3, 4]  # first agent data is seq 2
    assert {m.flags for m in data} == {0}
    assert len({m.message_id for m in data}) == 3


def test_send_before_handshake_is_a_bug() -> None:
    channel, _ = make_channel()
    channel.start(0.0)
    with pytest.raises(RuntimeError):
        channel.send_data(1, b"x", 0.0)


def test_outgoing_buffer_full_sends_unbuffered() -> None:
    channel, counts = make_channel(outgoing_capacity=3)
    channel.start(0.0)
    channel.receive(handshake_response(), 0.0, RecordingHandler())
    out = channel.send_data(1, b"x", 0.0)
    assert out.kind is FrameKind.DATA
    assert len(channel.outgoing) == 3
    channel.send_data(1, b"y", 0.0)
    assert len(channel.outgoing) == 3
    assert counts["outgoing_buffer_full"] == 1
