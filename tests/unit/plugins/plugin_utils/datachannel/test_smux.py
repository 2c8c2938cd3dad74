"""smux v1 client against the frames written by the vendored xtaci/smux and the mux capture."""

from __future__ import annotations

import hashlib
import json
import pathlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.errors import (
    LocalProtocolError,
    MalformedMessage,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.smux import (
    MuxFailed,
    SmuxClient,
    SmuxCommand,
    SmuxFrame,
    StreamDataReceived,
    StreamFinished,
    parse_frames,
)

VECTORS = {
    v["name"]: v
    for v in json.loads((pathlib.Path(__file__).parent / "vectors" / "smux_frames.json").read_text())[
        "vectors"
    ]
}


@pytest.mark.parametrize("name", list(VECTORS))
def test_parse_recorded_streams(name: str) -> None:
    vector = VECTORS[name]
    stream = bytes.fromhex(vector["stream_hex"])
    frames, used = parse_frames(stream)
    assert used == len(stream)
    assert len(frames) == len(vector["frames"])
    for frame, expected in zip(frames, vector["frames"], strict=True):
        assert frame.command == expected["cmd"]
        assert frame.command.name == expected["cmd_name"]
        assert frame.stream_id == expected["stream_id"]
        assert len(frame.data) == expected["length"]
        if "data_hex" in expected:
            assert frame.data.hex() == expected["data_hex"]
        else:
            assert hashlib.sha256(frame.data).hexdigest() == expected["data_sha256"]
        assert frame.encode()[:8].hex() == expected["header_hex"]


def test_client_reproduces_the_library_client_stream() -> None:
    # smux.lib.basic.client: open 3, write p1, open 5, write p3, close 5, close 3.
    expected = bytes.fromhex(VECTORS["smux.lib.basic.client"]["stream_hex"])
    client = SmuxClient()
    first = client.open_stream()
    client.send(first, b"GET /index.html HTTP/1.0\r\n\r\n")
    second = client.open_stream()
    client.send(second, b"second-stream")
    client.close_stream(second)
    client.close_stream(first)
    assert (first, second) == (3, 5)
    assert client.data_to_send() == expected


def test_client_reproduces_the_capture_split_at_32768() -> None:
    vector = VECTORS["smux.lib.large.client"]
    data = (b"abcdefghijklmnopqrstuvwxyz012345" * 1250)[:40000]
    client = SmuxClient()
    stream = client.open_stream()
    client.send(stream, data)
    client.close_stream(stream)
    assert client.data_to_send() == bytes.fromhex(vector["stream_hex"])


def test_keepalive_nops_only_when_enabled() -> None:
    client = SmuxClient(keepalive_interval=10.0, now=100.0)
    assert client.get_timer() == 110.0
    client.handle_timer(109.9)
    assert client.data_to_send() == b""
    for tick in (110.0, 120.0, 130.0):
        client.handle_timer(tick)
    assert client.data_to_send() == bytes.fromhex(VECTORS["smux.lib.keepalive.client"]["stream_hex"])
    silent = SmuxClient()
    assert silent.get_timer() is None


def test_server_stream_reassembled_across_any_split() -> None:
    stream = bytes.fromhex(VECTORS["smux.lib.basic.server"]["stream_hex"])
    for split in range(len(stream) + 1):
        client = SmuxClient()
        sid = client.open_stream()
        client.data_to_send()
        client.receive_data(stream[:split])
        client.receive_data(stream[split:])
        events = list(iter(client.next_event, None))
        data = b"".join(e.data for e in events if isinstance(e, StreamDataReceived))
        assert data == b"HTTP/1.0 200 OK\r\n", split
        assert [e for e in events if isinstance(e, StreamFinished)] == [StreamFinished(sid)]


def test_byte_by_byte_reassembly() -> None:
    client = SmuxClient()
    sid = client.open_stream()
    payload = b"x" * 70000
    wire = SmuxFrame(SmuxCommand.PSH, sid, payload[:40000]).encode()
    wire += SmuxFrame(SmuxCommand.PSH, sid, payload[40000:]).encode()
    for i in range(0, len(wire), 7):
        client.receive_data(wire[i : i + 7])
    received = b"".join(e.data for e in iter(client.next_event, None) if isinstance(e, StreamDataReceived))
    assert received == payload


def test_unknown_streams_and_agent_syn_are_ignored() -> None:
    client = SmuxClient()
    client.receive_data(SmuxFrame(SmuxCommand.PSH, 9, b"nobody").encode())
    client.receive_data(SmuxFrame(SmuxCommand.FIN, 11).encode())
    client.receive_data(SmuxFrame(SmuxCommand.SYN, 2).encode())
    client.receive_data(SmuxFrame(SmuxCommand.NOP, 0).encode())
    assert client.next_event() is None
    assert client.ignored_frames == 3
    assert not client.failed


@pytest.mark.parametrize("wire", [bytes.fromhex("0202000003000000"), bytes.fromhex("0104000003000000")])
def test_bad_version_or_command_fails_the_mux(wire: bytes) -> None:
    client = SmuxClient()
    client.open_stream()
    client.receive_data(wire)
    event = client.next_event()
    assert isinstance(event, MuxFailed)
    assert client.failed
    with pytest.raises(LocalProtocolError):
        client.open_stream()
    client.receive_data(SmuxFrame(SmuxCommand.PSH, 3, b"late").encode())
    assert client.next_event() is None


def test_stream_state_fin_both_ways() -> None:
    client = SmuxClient()
    sid = client.open_stream()
    client.close_stream(sid)
    client.close_stream(sid)  # idempotent: one FIN
    assert (
        client.data_to_send()
        == SmuxFrame(SmuxCommand.SYN, sid).encode() + SmuxFrame(SmuxCommand.FIN, sid).encode()
    )
    with pytest.raises(LocalProtocolError):
        client.send(sid, b"after fin")
    client.receive_data(SmuxFrame(SmuxCommand.PSH, sid, b"still delivered").encode())
    client.receive_data(SmuxFrame(SmuxCommand.FIN, sid).encode())
    events = list(iter(client.next_event, None))
    assert events == [StreamDataReceived(sid, b"still delivered"), StreamFinished(sid)]
    assert sid not in client.open_streams


@given(st.binary(max_size=200))
def test_parse_garbage_only_raises_malformed(data: bytes) -> None:
    try:
        frames, used = parse_frames(data)
    except MalformedMessage:
        return
    assert used <= len(data)
    assert all(isinstance(f, SmuxFrame) for f in frames)


def test_client_reproduces_the_official_mux_capture() -> None:
    # mux scenario (agent 3.1.1511.0, so keepalive on): SYN 3, PSH 3 x2, SYN 5, PSH 5, NOP, FIN 3, FIN 5.
    vector = VECTORS["smux.capture.client"]
    client = SmuxClient(keepalive_interval=10.0, now=0.0)
    three = client.open_stream()
    client.send(three, b"mux-hello-public")
    client.send(three, b"second-psh")
    five = client.open_stream()
    client.send(five, b"stream-five")
    client.handle_timer(10.0)
    client.close_stream(three)
    client.close_stream(five)
    assert client.data_to_send() == bytes.fromhex(vector["stream_hex"])
