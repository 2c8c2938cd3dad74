"""RTO arithmetic with explicit values, window bounds, reorder-buffer classification (§3)."""

from __future__ import annotations

import uuid

import pytest

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.reliability import (
    Arrival,
    OutgoingEntry,
    OutgoingWindow,
    ReorderBuffer,
    RtoEstimator,
)


def test_rto_initial_values() -> None:
    rto = RtoEstimator()
    assert (rto.srtt, rto.rttvar, rto.rto) == (0.1, 0.0, 0.2)


def test_rto_updates_exactly_per_spec() -> None:
    rto = RtoEstimator()
    rto.update(0.05)
    # RTTVAR = 3/4*0 + 1/4*|0.1-0.05|; SRTT = 7/8*0.1 + 1/8*0.05; RTO = SRTT + max(G, 4*RTTVAR)
    assert rto.rttvar == pytest.approx(0.0125)
    assert rto.srtt == pytest.approx(0.09375)
    assert rto.rto == pytest.approx(0.09375 + 0.05)
    rto.update(0.09375)
    assert rto.rttvar == pytest.approx(0.75 * 0.0125)
    assert rto.srtt == pytest.approx(0.09375)
    assert rto.rto == pytest.approx(0.09375 + 4 * 0.75 * 0.0125)


def test_rto_granularity_floor_and_cap() -> None:
    rto = RtoEstimator()
    for _unused in range(200):
        rto.update(0.001)
    assert rto.rto == pytest.approx(rto.srtt + 0.01)  # G = 10 ms once RTTVAR has decayed
    for _unused in range(50):
        rto.update(30.0)
    assert rto.rto == 1.0  # capped at 1 s


def _entry(seq: int, size: int = 10, counted: bool = True) -> OutgoingEntry:
    return OutgoingEntry(seq, uuid.uuid4().bytes, b"f", size, counted)


def test_window_bounds_by_count_and_bytes() -> None:
    window = OutgoingWindow(max_messages=3, max_bytes=25)
    assert window.can_add(1000)  # an empty window accepts one message of any size
    window.add(_entry(0, 10))
    assert window.can_add(15)
    assert not window.can_add(16)
    window.add(_entry(1, 10))
    window.add(_entry(2, 1))
    assert not window.can_add(1)  # count limit
    window.add(_entry(3, 4, counted=False))  # flags bypass the limits
    assert len(window) == 4
    assert window.counted_messages == 3


def test_window_acks_are_selective_and_never_evict() -> None:
    window = OutgoingWindow(max_messages=10, max_bytes=1000)
    for seq in range(5):
        window.add(_entry(seq))
    assert window.acknowledge(2) is not None
    assert window.acknowledge(2) is None  # repeated ack
    assert window.acknowledge(99) is None  # unknown ack
    assert [e.sequence_number for e in window] == [0, 1, 3, 4]
    assert window.head().sequence_number == 0
    window.acknowledge(0)
    assert window.head().sequence_number == 1


def test_window_low_water() -> None:
    window = OutgoingWindow(max_messages=4, max_bytes=100)
    for seq in range(4):
        window.add(_entry(seq, 25))
    assert not window.below_low_water()
    window.acknowledge(0)
    assert not window.below_low_water()
    window.acknowledge(1)
    assert window.below_low_water()


def test_reorder_buffer_classification() -> None:
    buffer = ReorderBuffer(capacity=4)
    assert buffer.classify(0) is Arrival.NEXT
    assert buffer.classify(3) is Arrival.EARLY
    assert buffer.classify(4) is Arrival.TOO_FAR
    buffer.advance()
    assert buffer.classify(0) is Arrival.DUPLICATE
    assert buffer.classify(-5) is Arrival.DUPLICATE
    assert buffer.classify(2**63 - 1) is Arrival.TOO_FAR
