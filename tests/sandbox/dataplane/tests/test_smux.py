"""smux v1 framing against the library's and the official client's byte streams."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane.smux import (
    Command,
    SmuxFrame,
    SmuxParser,
    SmuxProtocolError,
    encode_data,
    encode_frame,
)
from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane.tests.helpers import load_vectors, vector

SMUX = load_vectors("smux_frames.json")


def _data(entry: dict[str, Any], frame: SmuxFrame) -> None:
    if "data_hex" in entry:
        assert frame.data.hex() == entry["data_hex"]
    else:
        assert hashlib.sha256(frame.data).hexdigest() == entry["data_sha256"]


@pytest.mark.parametrize("vec", SMUX, ids=[v["name"] for v in SMUX])
def test_parse_and_reencode_stream(vec: dict[str, Any]) -> None:
    stream = bytes.fromhex(vec["stream_hex"])
    frames = SmuxParser().feed(stream)
    assert len(frames) == len(vec["frames"])
    rebuilt = b""
    for frame, entry in zip(frames, vec["frames"], strict=True):
        assert (frame.cmd, frame.stream_id, len(frame.data)) == (
            entry["cmd"],
            entry["stream_id"],
            entry["length"],
        )
        _data(entry, frame)
        encoded = encode_frame(frame.cmd, frame.stream_id, frame.data)
        assert encoded[:8].hex() == entry["header_hex"]
        rebuilt += encoded
    assert rebuilt == stream


def test_byte_at_a_time_gives_the_same_frames() -> None:
    stream = bytes.fromhex(vector("smux.capture.client", "smux_frames.json")["stream_hex"])
    parser = SmuxParser()
    frames = [f for i in range(len(stream)) for f in parser.feed(stream[i : i + 1])]
    assert frames == SmuxParser().feed(stream)
    assert parser.buffered == 0


def test_capture_split_exactly_as_the_official_client_sent_it() -> None:
    """Feed the payloads of the captured input_stream_data messages one by one."""
    names = [
        "mux.input.seq1_smux_SYN3",
        "mux.input.seq2_smux_PSH3",
        "mux.input.seq3_smux_PSH3",
        "mux.input.seq4_smux_SYN5",
        "mux.input.seq5_smux_PSH5",
        "mux.input.seq6_smux_NOP0",
        "mux.input.seq7_smux_FIN3",
        "mux.input.seq8_smux_FIN5",
    ]
    parser = SmuxParser()
    frames = [f for name in names for f in parser.feed(bytes.fromhex(vector(name)["payload_hex"]))]
    assert [(f.cmd, f.stream_id) for f in frames] == [
        (Command.SYN, 3),
        (Command.PSH, 3),
        (Command.PSH, 3),
        (Command.SYN, 5),
        (Command.PSH, 5),
        (Command.NOP, 0),
        (Command.FIN, 3),
        (Command.FIN, 5),
    ]
    assert frames[1].data == b"mux-hello-public"


def test_large_write_is_split_like_smux() -> None:
    (vec,) = [v for v in SMUX if v["name"] == "smux.lib.large.client"]
    payload = b"abcdefghijklmnopqrstuvwxyz012345" * 1250
    expected = bytes.fromhex(vec["stream_hex"])[8:-8]  # without the SYN and the FIN
    assert encode_data(3, payload) == expected


@pytest.mark.parametrize(
    ("header", "reason"), [("0200000003000000", "version 2"), ("0104000003000000", "command 4")]
)
def test_protocol_errors(header: str, reason: str) -> None:
    with pytest.raises(SmuxProtocolError, match=reason):
        SmuxParser().feed(bytes.fromhex(header))


@given(
    st.lists(st.tuples(st.sampled_from(list(Command)), st.integers(0, 2**32 - 1), st.binary(max_size=300)))
)
def test_round_trip(frames: list[tuple[Command, int, bytes]]) -> None:
    wanted = [SmuxFrame(cmd, sid, data if cmd is Command.PSH else b"") for cmd, sid, data in frames]
    stream = b"".join(encode_frame(f.cmd, f.stream_id, f.data) for f in wanted)
    assert SmuxParser().feed(stream) == wanted
