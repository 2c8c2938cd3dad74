"""Each fault switch, observed the way a client sees it (scripted client over a real websocket)."""

from __future__ import annotations

import collections
import threading
import time

import pytest

from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane import DataPlane, DataPlaneFaults
from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane import session as session_module
from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane.faults import (
    K_IDLE_TIMEOUT_OUTPUT,
    K_MAX_DURATION_OUTPUT,
)
from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane.tests.helpers import (
    Dialer,
    TcpServer,
    open_session,
    wait_until,
)
from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane.tests.scripted import ScriptedClient


def connected(
    plane: DataPlane, port: int, session_id: str | None = None, *, port_echoes: bool = True
) -> tuple[ScriptedClient, str]:
    opened = open_session(plane, port, session_id=session_id)
    client = ScriptedClient(opened.url)
    client.connect(opened.token)
    client.handshake()
    if port_echoes:  # one round trip, so the agent's port side is known to be up
        client.send_reliably(b"warm-up")
        client.expect_stream(b"warm-up")
    return client, opened.session_id


def test_set_faults_validates_and_returns_current(plane: DataPlane) -> None:
    assert plane.faults == DataPlaneFaults()
    assert plane.set_faults(ack_loss=0.25).ack_loss == 0.25
    with pytest.raises(ValueError, match="unknown fault"):
        plane.set_faults(packet_loss=0.1)
    with pytest.raises(ValueError, match="probability"):
        plane.set_faults(duplicate=1.5)
    with pytest.raises(ValueError, match="positive or None"):
        plane.set_faults(idle_timeout=0)
    assert plane.faults.ack_loss == 0.25  # a refused change leaves the switches alone


def test_ack_loss(plane: DataPlane, echo_server: TcpServer) -> None:
    client, session_id = connected(plane, echo_server.port)
    plane.set_faults(ack_loss=1.0)
    seq, raw = client.send_stream(b"lost acks")
    client.expect_stream(b"lost acks")  # delivered, yet never acknowledged
    for _ in range(3):
        client.send_raw(raw)  # our resends are re-acked, and those acks are lost too
        client.pump(0.2)
    assert seq not in client.acked
    plane.set_faults(ack_loss=0.0)
    client.send_raw(raw)
    client.wait_for(lambda: seq in client.acked, what="the ack once the fault is off")
    stats = plane.session_stats(session_id)
    assert stats["fault_ack_dropped"] >= 4
    assert stats["duplicates_in"] >= 3
    assert stats["bytes_in"] == len(b"warm-up") + len(b"lost acks")  # resends not delivered twice
    totals = plane.stats()
    assert totals["drops"] == totals["not_ready_in"] + totals["dropped_no_client"] + totals["malformed_in"]


def test_partial_ack_loss_still_delivers_everything(plane: DataPlane, echo_server: TcpServer) -> None:
    client, session_id = connected(plane, echo_server.port)
    plane.set_faults(ack_loss=0.4, seed=7)
    sent = b""
    for i in range(20):
        chunk = f"message {i};".encode()
        client.send_reliably(chunk, resend_every=0.1)
        sent += chunk
    client.expect_stream(sent)
    assert plane.session_stats(session_id)["fault_ack_dropped"] > 0


def test_ack_delay(plane: DataPlane, echo_server: TcpServer) -> None:
    client, session_id = connected(plane, echo_server.port)
    plane.set_faults(ack_delay=0.5)
    mark = len(client.events)
    seq, _ = client.send_stream(b"slow ack")
    client.wait_for(lambda: seq in client.acked, what="the delayed ack")
    after = client.events[mark:]
    first_echo = next(i for i, e in enumerate(after) if e[0] == "data" and e[2] == 1)
    assert first_echo < after.index(("ack", seq, 0))  # the echo overtook our ack
    assert plane.session_stats(session_id)["fault_ack_delayed"] >= 1


def test_duplicate(plane: DataPlane, echo_server: TcpServer) -> None:
    client, session_id = connected(plane, echo_server.port)
    plane.set_faults(duplicate=1.0)
    mark = len(client.agent_frames)
    client.send_reliably(b"twice")
    client.expect_stream(b"twice")
    client.wait_for(lambda: len(client.agent_frames) >= mark + 2, what="the copy")
    copies = collections.Counter(f.raw for f in client.agent_frames[mark:] if f.payload_type == 1)
    assert set(copies.values()) == {2}
    assert bytes(client.stream) == b""  # delivered once
    assert plane.session_stats(session_id)["fault_duplicated"] >= 1


def test_reorder(plane: DataPlane, echo_server: TcpServer) -> None:
    client, session_id = connected(plane, echo_server.port)
    plane.set_faults(reorder=1.0, seed=3)
    payload = bytes(range(256)) * 40  # ten agent messages of 1024 bytes
    client.send_reliably(payload)
    client.expect_stream(payload)
    seqs = [f.seq for f in client.agent_frames if f.payload_type == 1]
    assert seqs != sorted(seqs)
    assert plane.session_stats(session_id)["fault_reordered"] >= 1


def test_corrupt_digest_then_repair_by_resend(plane: DataPlane, echo_server: TcpServer) -> None:
    client, session_id = connected(plane, echo_server.port)
    plane.set_faults(corrupt_digest=1.0)
    client.send_stream(b"damaged")
    client.wait_for(lambda: len(client.bad_digest) >= 2, what="frames with a bad digest")
    assert bytes(client.stream) == b""  # a bad digest is dropped, never delivered
    plane.set_faults(corrupt_digest=0.0)
    client.expect_stream(b"damaged")  # the agent's resend is intact
    good = next(f for f in client.agent_frames if f.payload == b"damaged")
    bad = next(f for f in client.bad_digest if f.payload == b"damaged")
    assert bad.raw[:80] == good.raw[:80]
    assert bad.raw[112:] == good.raw[112:]
    assert plane.session_stats(session_id)["fault_corrupted"] >= 2


def test_client_ack_loss_makes_the_agent_resend(plane: DataPlane, echo_server: TcpServer) -> None:
    client, session_id = connected(plane, echo_server.port)
    # Our acks so far must have reached the agent, or its resend head would be stuck on one
    # of them (the head is all it ever resends, G5) and nothing newer would come back.
    sent = len({f.seq for f in client.agent_frames})
    wait_until(lambda: plane.session_stats(session_id)["acks_in"] >= sent)
    plane.set_faults(client_ack_loss=1.0)
    client.send_reliably(b"echo me")
    client.expect_stream(b"echo me")
    (echo,) = [f for f in client.agent_frames if f.payload == b"echo me"]
    client.wait_for(
        lambda: sum(f.seq == echo.seq for f in client.agent_frames) >= 3, what="resends of an acked frame"
    )
    plane.set_faults(client_ack_loss=0.0)
    assert {f.raw for f in client.agent_frames if f.seq == echo.seq} == {echo.raw}
    assert bytes(client.stream) == b""  # the client saw duplicates, delivered nothing twice
    stats = plane.session_stats(session_id)
    assert stats["fault_client_ack_ignored"] >= 2
    assert stats["retransmits"] >= 2


class SessionClock:
    """The sessions' monotonic clock, moved by the test: idle time is what the test says has
    passed, not whatever a busy machine happened to take between two messages (the session's
    100 ms timer still runs in real time). ``reads`` counts how often a session looked at it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now = time.monotonic()
        self.reads = 0

    def monotonic(self) -> float:
        with self._lock:
            self.reads += 1
            return self._now

    def time_ns(self) -> int:
        return time.time_ns()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def wait_for_a_tick(self) -> None:
        """Until the session timer has checked its limits at the current time. While the scripted
        client is not pumping, the session reads the clock once per timer tick, plus at most once
        for the ack of our last echo still in flight: three more reads take a whole tick."""
        start = self.reads
        wait_until(lambda: self.reads >= start + 3)


def test_idle_timeout(plane: DataPlane, echo_server: TcpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SessionClock()
    monkeypatch.setattr(session_module, "time", clock)
    plane.set_faults(idle_timeout=0.6, close_linger=0.0)  # no linger: the clock stands still
    client, session_id = connected(plane, echo_server.port)
    for _ in range(5):  # data resets the timer: 2 s in all, never 0.6 s without data
        client.send_reliably(b".")
        client.expect_stream(b".")
        clock.advance(0.4)
        clock.wait_for_a_tick()
        assert plane.session_state(session_id) == "Connected"
    clock.advance(0.6)
    closed = client.channel_closed(timeout=10)
    assert closed["Output"] == K_IDLE_TIMEOUT_OUTPUT
    assert plane.session_state(session_id) == "Terminated"
    assert plane.session_output(session_id) == K_IDLE_TIMEOUT_OUTPUT


def test_max_duration(plane: DataPlane, echo_server: TcpServer) -> None:
    plane.set_faults(max_duration=0.8)
    client, session_id = connected(plane, echo_server.port)
    deadline = time.monotonic() + 10
    while not any(f.type == "channel_closed" for f in client.others):  # busy, never idle
        assert time.monotonic() < deadline
        client.send_stream(b"busy")
        client.pump(0.1)
    assert client.channel_closed()["Output"] == K_MAX_DURATION_OUTPUT
    assert plane.session_state(session_id) == "Terminated"


def test_publication_injection(plane: DataPlane, echo_server: TcpServer) -> None:
    client, _ = connected(plane, echo_server.port)
    plane.set_faults(publication_pause_every=0.2, publication_pause_for=0.2)
    client.wait_for(
        lambda: [f.type for f in client.others][:2] == ["pause_publication", "start_publication"],
        what="pause then start publication",
    )
    for frame in client.others[:2]:
        assert (frame.payload, frame.seq, frame.payload_type) == (b"", 0, 0)
        assert frame.digest_ok
    client.send_reliably(b"unaffected")
    client.expect_stream(b"unaffected")


def test_duplicate_bursts_from_the_client(plane: DataPlane, echo_server: TcpServer) -> None:
    """G10: the Go client resends its head every 100 ms once overdue; all re-acked, delivered once."""
    client, _ = connected(plane, echo_server.port)
    seq, raw = client.send_stream(b"burst")
    for _ in range(50):
        client.send_raw(raw)
    client.wait_for(lambda: sum(e == ("ack", seq, 0) for e in client.events) >= 51, what="51 acks")
    client.expect_stream(b"burst")
    assert bytes(client.stream) == b""


def _duplicated_seqs(seed: int, session_id: str, port: int) -> list[int]:
    plane = DataPlane(ssl_context=None, dial=Dialer())
    plane.start()
    try:
        plane.set_faults(duplicate=0.5, seed=seed)
        client, _ = connected(plane, port, session_id=session_id)
        for i in range(20):
            client.send_reliably(b"%02d" % i)
            client.expect_stream(b"%02d" % i)
        counts = collections.Counter(f.seq for f in client.agent_frames if f.payload_type == 1)
        return sorted(seq for seq, n in counts.items() if n > 1)
    finally:
        plane.stop()


def test_fault_decisions_are_reproducible(echo_server: TcpServer) -> None:
    first = _duplicated_seqs(11, "seeded-session", echo_server.port)
    assert first == _duplicated_seqs(11, "seeded-session", echo_server.port)
    assert first  # the probability did something
    assert first != _duplicated_seqs(12, "seeded-session", echo_server.port)
