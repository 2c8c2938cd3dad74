"""DataChannel (client core) against the independent ScriptedAgent, on virtual time.

Every scenario checks the property that matters: the byte stream delivered at each end equals
what the other end sent, exactly once and in order, whatever the link did to the frames.
"""

from __future__ import annotations

import heapq
import itertools
import json
import pathlib
import random
import uuid
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel import (
    ChannelClosed,
    ConnectToPortError,
    DataChannel,
    DataReceived,
    Flag,
    HandshakeCompleted,
    HandshakeFailed,
    LocalProtocolError,
    PublicationPaused,
    PublicationResumed,
    RetransmissionTimedOut,
    SessionMode,
    WindowFull,
    WindowOpen,
)
from ansible_collections.trek10.ec2ssm.tests.unit.plugins.plugin_utils.datachannel.scripted_agent import (
    ScriptedAgent,
    decode_frame,
    encode_frame,
)

VECTORS = pathlib.Path(__file__).parent / "vectors"


class Net:
    """Virtual-time link between a client core and a scripted agent, with fault injection.

    ``drop``/``dup`` are probabilities per frame and direction; ``jitter`` adds a random delay
    (which reorders frames); ``ack_delay`` delays the agent's acks. A seeded RNG keeps every run
    identical.
    """

    def __init__(
        self,
        client: DataChannel,
        agent: ScriptedAgent,
        *,
        latency: float = 0.005,
        drop: float = 0.0,
        dup: float = 0.0,
        jitter: float = 0.0,
        ack_delay: float = 0.0,
        seed: int = 7,
    ) -> None:
        self.client = client
        self.agent = agent
        self.latency = latency
        self.drop = drop
        self.dup = dup
        self.jitter = jitter
        self.ack_delay = ack_delay
        self.rng = random.Random(seed)
        self.now = 0.0
        self.queue: list[tuple[float, int, str, bytes]] = []
        self.counter = itertools.count()
        self.connected = False
        self.received = bytearray()
        self.events: list[object] = []
        self.to_send = bytearray()
        self.window_open = True
        self.max_counted_unacked = 0
        self.client_frames: list[bytes] = []

    def connect(self, token: str = "tok") -> str:  # noqa: S107 - a fake token
        text = self.client.connection_made(token, self.now)
        self.connected = True
        self.flush()
        return text

    def disconnect(self) -> None:
        self.client.connection_lost()
        self.connected = False
        self.queue.clear()  # frames on the dead websocket are lost

    def start(self) -> None:
        self.connect()
        self.agent.start(self.now)
        self.flush()
        self.run_until(lambda: self.client.handshake_complete)

    def _schedule(self, direction: str, frame: bytes) -> None:
        if not self.connected or self.rng.random() < self.drop:
            return
        copies = 2 if self.rng.random() < self.dup else 1
        for _unused in range(copies):
            delay = self.latency + self.rng.random() * self.jitter
            if (
                direction == "to_client"
                and self.ack_delay
                and decode_frame(frame).message_type == "acknowledge"
            ):
                delay += self.ack_delay
            heapq.heappush(self.queue, (self.now + delay, next(self.counter), direction, frame))

    def flush(self) -> None:
        while True:
            self._app()
            frames = self.client.frames_to_send()
            self.client_frames.extend(frames)
            for frame in frames:
                self._schedule("to_agent", frame)
            for frame in self.agent.take_outbox():
                self._schedule("to_client", frame)
            self.max_counted_unacked = max(self.max_counted_unacked, self.client._window.counted_messages)
            if not self.client._pending and not self.agent.outbox:
                return

    def _app(self) -> None:
        while (event := self.client.next_event()) is not None:
            self.events.append(event)
            if isinstance(event, DataReceived):
                self.received += event.data
            elif isinstance(event, WindowFull):
                self.window_open = False
            elif isinstance(event, WindowOpen):
                self.window_open = True
        if self.to_send and self.window_open and self.client.handshake_complete and not self.client.closed:
            accepted = self.client.send_data(bytes(self.to_send), self.now)
            del self.to_send[:accepted]

    def step(self) -> bool:
        candidates = [t for t in (self.client.get_timer(), self.agent.get_timer()) if t is not None]
        if self.queue:
            candidates.append(self.queue[0][0])
        if not candidates:
            return False
        self.now = max(self.now, min(candidates))
        while self.queue and self.queue[0][0] <= self.now:
            _due, _order, direction, frame = heapq.heappop(self.queue)
            if direction == "to_agent":
                self.agent.on_frame(frame, self.now)
            else:
                self.client.receive_frame(frame, self.now)
            self.flush()
        timer = self.client.get_timer()
        if timer is not None and timer <= self.now:
            self.client.handle_timer(self.now)
        timer = self.agent.get_timer()
        if timer is not None and timer <= self.now:
            self.agent.handle_timer(self.now)
        self.flush()
        return True

    def run_until(
        self, condition: Callable[[], bool], limit: float = 600.0, max_steps: int = 500_000
    ) -> None:
        for _unused in range(max_steps):
            if condition():
                return
            if self.now > limit:
                raise AssertionError(f"condition not reached by t={self.now:.3f}")
            if not self.step():
                raise AssertionError("nothing left to do and the condition is not met")
        raise AssertionError(
            f"no progress after {max_steps} steps (t={self.now:.3f}): a timer that never moves?"
        )

    def run_for(self, seconds: float, max_steps: int = 500_000) -> None:
        end = self.now + seconds
        for _unused in range(max_steps):
            if self.now >= end:
                return
            if not self.step():
                self.now = end
                return
            if (
                self.queue
                and self.queue[0][0] > end
                and all(t is None or t > end for t in (self.client.get_timer(), self.agent.get_timer()))
            ):
                self.now = end
                return
        raise AssertionError(f"no progress after {max_steps} steps (t={self.now:.3f})")


def _payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _assert_exactly_once(agent: ScriptedAgent) -> None:
    seqs = agent.delivered_seqs
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True


def _new_client(**kwargs: object) -> DataChannel:
    return DataChannel(**kwargs)  # type: ignore[arg-type]


# --- handshake -------------------------------------------------------------------------------------


def test_handshake_stdio_frames_in_order() -> None:
    client = _new_client()
    net = Net(client, ScriptedAgent())
    net.start()
    first = [decode_frame(f) for f in net.client_frames[:3]]
    assert [(f.message_type, f.sequence_number, f.payload_type, f.flags) for f in first] == [
        ("acknowledge", 0, 0, 3),  # ack of HandshakeRequest first (Go order)
        ("input_stream_data", 0, 6, 0),  # HandshakeResponse is client seq 0
        ("acknowledge", 0, 0, 3),  # ack of HandshakeComplete
    ]
    assert json.loads(first[0].payload)["AcknowledgedMessageSequenceNumber"] == 0
    assert json.loads(first[2].payload)["AcknowledgedMessageSequenceNumber"] == 1
    completed = [e for e in net.events if isinstance(e, HandshakeCompleted)]
    assert len(completed) == 1
    assert completed[0].mode is SessionMode.STDIO
    assert json.loads(first[1].payload)["ClientVersion"] == "1.2.650.0"


@pytest.mark.parametrize("ack_first", [True, False])
def test_handshake_response_ack_before_or_after_complete(ack_first: bool) -> None:
    # G17: the ack of HandshakeResponse may arrive after HandshakeComplete.
    client = _new_client()
    net = Net(client, ScriptedAgent(ack_response_before_complete=ack_first))
    net.start()
    net.run_until(lambda: client.unacked_messages == 0)
    net.to_send += b"after-handshake"
    net.run_until(lambda: bytes(net.agent.received) == b"after-handshake")


@pytest.mark.parametrize(
    ("agent_version", "mode"),
    [("3.3.987.0", SessionMode.MUX), ("3.0.196.0", SessionMode.BASIC)],
)
def test_handshake_port_forwarding_modes(agent_version: str, mode: SessionMode) -> None:
    client = _new_client()
    agent = ScriptedAgent(
        agent_version=agent_version,
        properties={"portNumber": "80", "type": "LocalPortForwarding", "localPortNumber": "0"},
    )
    Net(client, agent).start()
    assert client.mode is mode
    assert client.handshake_info is not None
    assert client.handshake_info.properties["localPortNumber"] == "0"


def test_kms_request_fails_the_handshake_clearly() -> None:
    client = _new_client()
    agent = ScriptedAgent(request_kms=True)
    net = Net(client, agent)
    net.connect()
    agent.start(net.now)
    net.flush()
    net.run_until(lambda: agent.handshake_response is not None)
    failed = [e for e in net.events if isinstance(e, HandshakeFailed)]
    assert len(failed) == 1
    assert failed[0].encryption_requested
    assert "encryption not supported for port sessions" in failed[0].reason
    kms = agent.handshake_response["ProcessedClientActions"][1]
    assert kms["ActionStatus"] == 2
    assert not client.handshake_complete
    with pytest.raises(LocalProtocolError):
        client.send_data(b"x", net.now)


def test_no_data_before_handshake_complete() -> None:
    client = _new_client()
    client.connection_made("tok", 0.0)
    with pytest.raises(LocalProtocolError):
        client.send_data(b"too early", 0.0)
    with pytest.raises(LocalProtocolError):
        client.send_flag(Flag.TERMINATE_SESSION, 0.0)


# --- transfers under faults --------------------------------------------------------------------------

FAULTS = {
    "clean": {},
    "loss": {"drop": 0.1},
    "duplication": {"dup": 0.25},
    "reordering": {"jitter": 0.05},
    "delayed_acks": {"ack_delay": 1.5},
    "everything": {"drop": 0.05, "dup": 0.1, "jitter": 0.03, "ack_delay": 0.3},
}


@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
def test_transfer_both_ways_exactly_once_in_order(fault: str) -> None:
    client = _new_client(max_unacked_messages=32)
    agent = ScriptedAgent(resend_all=fault != "clean")
    net = Net(client, agent, **FAULTS[fault])  # type: ignore[arg-type]
    net.start()
    up = _payload(96 * 1024 + 17, 1)
    down = _payload(80 * 1024 + 5, 2)
    net.to_send += up
    agent.send_data(down, net.now)
    net.flush()
    net.run_until(
        lambda: bytes(agent.received) == up and bytes(net.received) == down and client.unacked_messages == 0
    )
    _assert_exactly_once(agent)
    assert net.max_counted_unacked <= 32  # the window bound held throughout
    if fault in ("loss", "everything", "delayed_acks"):
        assert client.stats.retransmits > 0
    if fault in ("duplication", "everything"):
        assert client.stats.duplicates > 0
    if fault in ("reordering", "everything"):
        assert client.stats.early_buffered > 0


def test_window_full_applies_backpressure_and_loses_nothing() -> None:
    client = _new_client(max_unacked_messages=16)
    agent = ScriptedAgent()
    net = Net(client, agent)
    net.start()
    agent.hold_acks = True
    data = _payload(200 * 1024, 3)
    accepted = client.send_data(data, net.now)
    assert accepted == 16 * 1024
    full = [e for e in (client.next_event(), client.next_event()) if isinstance(e, WindowFull)]
    assert len(full) == 1
    assert client.send_data(data[accepted:], net.now) == 0  # still full: nothing accepted
    assert client.next_event() is None  # WindowFull is signalled once
    net.to_send += data[accepted:]
    net.window_open = False
    net.flush()
    net.run_for(20.0)
    # 20 s without acks: only the window went out (plus head resends), nothing new, nothing lost.
    highest = max(decode_frame(f).sequence_number for f in net.client_frames)
    assert highest == 16  # seqs 1..16 carry data (seq 0 was the HandshakeResponse)
    assert bytes(agent.received) == data[:accepted]
    assert client.unacked_messages == 16
    assert not any(isinstance(e, WindowOpen) for e in net.events)
    agent.release_acks()
    net.flush()
    net.run_until(lambda: bytes(agent.received) == data and client.unacked_messages == 0)
    assert any(isinstance(e, WindowOpen) for e in net.events)
    _assert_exactly_once(agent)


def test_agent_not_ready_messages_are_resent_until_accepted() -> None:
    # G6: an unacked message means "not ready, resend later".
    client = _new_client()
    agent = ScriptedAgent()
    net = Net(client, agent)
    net.start()
    agent.not_ready = True
    net.to_send += b"first"
    net.flush()
    net.run_for(3.0)
    assert client.stats.retransmits >= 2
    assert agent.received == b""
    agent.not_ready = False
    net.run_until(lambda: agent.received == b"first" and client.unacked_messages == 0)


# --- explicit-time RTO and retransmission --------------------------------------------------------------


def _client_after_handshake(now: float = 0.0, **kwargs: object) -> tuple[DataChannel, ScriptedAgent]:
    client = _new_client(**kwargs)
    agent = ScriptedAgent()
    client.connection_made("tok", now)
    agent.start(now)
    for _unused in range(3):
        for frame in agent.take_outbox():
            client.receive_frame(frame, now)
        for frame in client.frames_to_send():
            agent.on_frame(frame, now)
    assert client.handshake_complete
    while client.next_event() is not None:
        pass
    return client, agent


def test_rto_arithmetic_and_resend_timing_with_explicit_now() -> None:
    client, agent = _client_after_handshake(0.0)
    # The HandshakeResponse was acked with R = 0: RTTVAR = 0.025, SRTT = 0.0875, RTO = 0.1875.
    assert client.rto.srtt == pytest.approx(0.0875)
    assert client.rto.rto == pytest.approx(0.0875 + 4 * 0.025)
    rto = client.rto.rto
    assert client.send_data(b"hello", 10.0) == 5
    (original,) = client.frames_to_send()
    assert client.get_timer() == pytest.approx(10.0 + rto)
    client.handle_timer(10.0 + rto - 1e-6)
    assert client.frames_to_send() == []
    client.handle_timer(client.get_timer())
    assert client.frames_to_send() == [original]  # identical bytes: same seq, id, CreatedDate
    # last_sent moved (unlike the Go client): next resend one RTO later, not on the next tick.
    assert client.get_timer() == pytest.approx(10.0 + 2 * rto)
    # Ack 50 ms after the resend: R = 0.05 (Karn's rule not applied, §3.4).
    agent.on_frame(original, 10.0 + rto)
    for frame in agent.take_outbox():
        client.receive_frame(frame, 10.0 + rto + 0.05)
    rttvar = 0.75 * 0.025 + 0.25 * abs(0.0875 - 0.05)
    srtt = 0.875 * 0.0875 + 0.125 * 0.05
    assert client.rto.rttvar == pytest.approx(rttvar)
    assert client.rto.srtt == pytest.approx(srtt)
    assert client.rto.rto == pytest.approx(srtt + max(0.01, 4 * rttvar))
    assert client.get_timer() is None
    assert client.stats.retransmits == 1


def test_only_the_head_is_resent_by_default() -> None:
    client, _agent = _client_after_handshake(0.0)
    client.send_data(b"a" * 3000, 1.0)  # three messages
    assert len(client.frames_to_send()) == 3
    client.handle_timer(5.0)
    resent = client.frames_to_send()
    assert [decode_frame(f).sequence_number for f in resent] == [1]


def test_retransmit_burst_resends_several_overdue_messages() -> None:
    client, _agent = _client_after_handshake(0.0, retransmit_burst=2)
    client.send_data(b"a" * 3000, 1.0)
    client.frames_to_send()
    client.handle_timer(5.0)
    assert [decode_frame(f).sequence_number for f in client.frames_to_send()] == [1, 2]


def test_gives_up_after_the_configured_time() -> None:
    client, _agent = _client_after_handshake(0.0, give_up_after=30.0)
    client.send_data(b"never acked", 100.0)
    client.frames_to_send()
    events = []
    while (deadline := client.get_timer()) is not None:
        client.handle_timer(deadline)
        client.frames_to_send()
        events.extend(iter(client.next_event, None))
    (timed_out,) = [e for e in events if isinstance(e, RetransmissionTimedOut)]
    assert timed_out.sequence_number == 1
    assert timed_out.seconds >= 30.0
    assert timed_out.resends >= 29  # at most one RTO (<= 1 s) apart


# --- reconnect (§6.4, G9) ------------------------------------------------------------------------------


def test_reconnect_keeps_client_id_and_sequence_state_and_queues_data() -> None:
    client = _new_client(max_unacked_messages=8)
    agent = ScriptedAgent()
    net = Net(client, agent)
    first_text = net.connect("token-1")
    agent.start(net.now)
    net.flush()
    net.run_until(lambda: client.handshake_complete)
    data = _payload(40 * 1024, 4)
    net.to_send += data[:10240]
    net.flush()
    net.run_until(lambda: len(agent.received) >= 3072)
    net.disconnect()
    # While disconnected: writes are queued in the window (up to its bound), nothing goes out.
    net.to_send += data[10240:]
    net.flush()
    assert client.frames_to_send() == []
    assert client.get_timer() is None
    assert client.unacked_messages <= 8
    second_text = net.connect("token-2")
    first, second = json.loads(first_text), json.loads(second_text)
    assert second["ClientId"] == first["ClientId"]
    assert second["RequestId"] != first["RequestId"]
    assert second["TokenValue"] == "token-2"
    uuid.UUID(second["RequestId"])
    net.run_until(lambda: bytes(agent.received) == data and client.unacked_messages == 0)
    _assert_exactly_once(agent)
    assert client.stats.connections == 2


# --- pause/start publication ---------------------------------------------------------------------------


def test_pause_publication_holds_data_and_resends_until_start() -> None:
    client, agent = _client_after_handshake(0.0)
    client.send_data(b"before", 1.0)
    (before,) = client.frames_to_send()
    agent.send_control("pause_publication")
    for frame in agent.take_outbox():
        client.receive_frame(frame, 1.0)
    assert isinstance(client.next_event(), PublicationPaused)
    assert client.get_timer() is None  # no resends while paused
    client.send_data(b"held", 2.0)
    assert client.frames_to_send() == []
    # Acks still flow while paused.
    agent.on_frame(before, 2.0)
    agent.send_data(b"incoming", 2.0)
    for frame in agent.take_outbox():
        client.receive_frame(frame, 2.5)
    out = [decode_frame(f) for f in client.frames_to_send()]
    assert [f.message_type for f in out] == ["acknowledge"]
    agent.send_control("start_publication")
    for frame in agent.take_outbox():
        client.receive_frame(frame, 3.0)
    events = list(iter(client.next_event, None))
    assert any(isinstance(e, PublicationResumed) for e in events)
    held = [decode_frame(f) for f in client.frames_to_send()]
    assert [(f.sequence_number, f.payload) for f in held] == [(2, b"held")]


# --- receive side ------------------------------------------------------------------------------------


def _deliver(client: DataChannel, frames: list[bytes], now: float) -> tuple[list[dict], list[object]]:
    for frame in frames:
        client.receive_frame(frame, now)
    out = [decode_frame(f) for f in client.frames_to_send()]
    acks = [json.loads(f.payload) for f in out if f.message_type == "acknowledge"]
    return acks, list(iter(client.next_event, None))


def test_duplicates_are_reacked_never_redelivered() -> None:
    client, agent = _client_after_handshake(0.0)
    agent.send_data(b"once", 1.0)
    (frame,) = agent.take_outbox()
    acks, events = _deliver(client, [frame, frame, frame], 1.0)
    assert [a["AcknowledgedMessageSequenceNumber"] for a in acks] == [2, 2, 2]
    assert [e.data for e in events if isinstance(e, DataReceived)] == [b"once"]
    assert client.stats.duplicates == 2


def test_early_messages_are_acked_buffered_and_delivered_in_order() -> None:
    client, agent = _client_after_handshake(0.0)
    for chunk in (b"two", b"three", b"four"):
        agent.send_data(chunk, 1.0)
    two, three, four = agent.take_outbox()
    acks, events = _deliver(client, [four, three], 1.0)
    assert [a["AcknowledgedMessageSequenceNumber"] for a in acks] == [4, 3]
    assert not [e for e in events if isinstance(e, DataReceived)]
    acks, events = _deliver(client, [two], 1.0)
    assert [a["AcknowledgedMessageSequenceNumber"] for a in acks] == [2]
    assert [e.data for e in events if isinstance(e, DataReceived)] == [b"two", b"three", b"four"]


def test_receiving_paused_withholds_acks_then_delivers_once() -> None:
    client, agent = _client_after_handshake(0.0)
    client.pause_receiving()
    agent.send_data(b"wait for me", 1.0)
    (frame,) = agent.take_outbox()
    acks, events = _deliver(client, [frame], 1.0)
    assert acks == []  # G6: not acked, the agent will resend
    assert not [e for e in events if isinstance(e, DataReceived)]
    client.resume_receiving(2.0)
    acks, events = _deliver(client, [frame], 2.0)  # the agent's resend
    assert [a["AcknowledgedMessageSequenceNumber"] for a in acks] == [2]
    assert [e.data for e in events if isinstance(e, DataReceived)] == [b"wait for me"]


def test_acked_early_messages_survive_a_receive_pause() -> None:
    client, agent = _client_after_handshake(0.0)
    agent.send_data(b"A", 1.0)
    agent.send_data(b"B", 1.0)
    a, b = agent.take_outbox()
    _deliver(client, [b], 1.0)  # acked and buffered
    client.pause_receiving()
    acks, events = _deliver(client, [a], 1.0)
    assert acks == []
    client.resume_receiving(1.5)
    acks, events = _deliver(client, [a], 1.5)
    assert [e.data for e in events if isinstance(e, DataReceived)] == [b"A", b"B"]


def test_channel_closed_ends_the_session() -> None:
    client, agent = _client_after_handshake(0.0)
    agent.channel_closed("Session terminated by the user.")
    _acks, events = _deliver(client, agent.take_outbox(), 1.0)
    (closed,) = [e for e in events if isinstance(e, ChannelClosed)]
    assert closed.output == "Session terminated by the user."
    assert client.closed
    with pytest.raises(LocalProtocolError):
        client.send_data(b"late", 1.0)


# --- the official agent frames, fed in order ------------------------------------------------------------


def _agent_vectors() -> dict[str, bytes]:
    vectors = json.loads((VECTORS / "agent_frames.json").read_text())["vectors"]
    return {v["name"]: bytes.fromhex(v["hex"]) for v in vectors}


def test_official_agent_frames_through_the_session() -> None:
    frames = _agent_vectors()
    client = _new_client()
    client.connection_made("tok", 0.0)

    def feed(name: str) -> tuple[list[dict], list[object]]:
        return _deliver(client, [frames[name]], 1.0)

    acks, _frames = feed("agent.handshake_request.ssh")
    assert [a["AcknowledgedMessageId"] for a in acks] == ["5d0f7c3e-8a21-4b6e-9f40-1c2d3e4f5a6b"]
    _acks, events = feed("agent.handshake_complete")
    assert any(isinstance(e, HandshakeCompleted) for e in events)
    # The reject vector: dropped, no ack, no delivery, counted; the reader carries on (G17).
    acks, events = feed("agent.malformed.digest_mismatch")
    assert acks == []
    assert not [e for e in events if isinstance(e, DataReceived)]
    assert client.stats.dropped_bad_frames == 1
    delivered: list[bytes] = []
    for name in (
        "agent.output.text",
        "agent.output.binary",
        "agent.output.empty_payload",
        "agent.output.payload_1024",
        "agent.output.non_ascii_utf8",
        "agent.output.smux_from_server",
        "agent.flag.connect_to_port_error",
        "agent.output.message_id_halves",
        "agent.output.large_created_date",
    ):
        acks, events = feed(name)
        assert len(acks) == 1, name
        delivered += [e.data for e in events if isinstance(e, DataReceived)]
        if name == "agent.flag.connect_to_port_error":
            assert any(isinstance(e, ConnectToPortError) for e in events)
    assert delivered[0] == b"SSH-2.0-OpenSSH_8.7\r\n"
    assert len(delivered) == 7  # the empty payload delivers nothing, the flag is an event
    assert client.expected_sequence_number == 11
    for name in ("agent.output.large_sequence_number_a", "agent.output.large_sequence_number_b"):
        acks, _frames = feed(name)
        assert acks == []  # far beyond the reorder window: not buffered, not acked
    for name in ("agent.acknowledge", "agent.acknowledge.handshake_response"):
        acks, _frames = feed(name)
        assert acks == []
    assert client.unacked_messages == 0  # the HandshakeResponse (seq 0) was acked
    _acks, events = feed("agent.pause_publication")
    assert any(isinstance(e, PublicationPaused) for e in events)
    _acks, events = feed("agent.start_publication")
    assert any(isinstance(e, PublicationResumed) for e in events)
    _acks, events = feed("agent.channel_closed.with_output")
    (closed,) = [e for e in events if isinstance(e, ChannelClosed)]
    assert closed.output.startswith("Plugin with name Port is not supported")


# --- replay of the official client's captured behaviour ---------------------------------------------------


def _client_vectors(prefix: str) -> dict[str, dict]:
    vectors = json.loads((VECTORS / "client_frames.json").read_text())["vectors"]
    return {v["name"][len(prefix) + 1 :]: v for v in vectors if v["name"].startswith(prefix + ".")}


def _agent_frame(seq: int, message_id: str, payload_type: int, payload: bytes) -> bytes:
    return encode_frame(
        "output_stream_data",
        seq=seq,
        flags=1 if seq == 0 else 0,
        payload_type=payload_type,
        payload=payload,
        message_id=message_id,
    )


def _agent_ack(seq: int, message_id: str = "00000000-0000-4000-8000-000000000000") -> bytes:
    payload = json.dumps(
        {
            "AcknowledgedMessageType": "input_stream_data",
            "AcknowledgedMessageId": message_id,
            "AcknowledgedMessageSequenceNumber": seq,
            "IsSequentialMessage": True,
        },
        separators=(",", ":"),
    ).encode()
    return encode_frame("acknowledge", flags=3, payload=payload)


def _same_as_vector(frame: bytes, vector: dict) -> None:
    ours = decode_frame(frame)
    fields = vector["fields"]
    assert ours.message_type == fields["MessageType"], vector["name"]
    assert ours.sequence_number == fields["SequenceNumber"], vector["name"]
    assert ours.flags == fields["Flags"], vector["name"]
    assert ours.payload_type == fields["PayloadType"], vector["name"]
    assert ours.payload.hex() == vector["payload_hex"], vector["name"]
    assert len(frame) == vector["length"]
    uuid.UUID(ours.message_id)  # random fields: shape only
    assert abs(ours.created_date / 1000 - 1_800_000_000.0) < 86400


def _ids_then(vector_ids: Iterator[uuid.UUID]) -> Callable[[], uuid.UUID]:
    return lambda: next(vector_ids, None) or uuid.uuid4()


def test_replay_stdio_capture() -> None:
    v = _client_vectors("stdio")
    opening = v["open_data_channel.conn1"]["json"]
    client = _new_client(client_id=uuid.UUID(opening["ClientId"]), wall_clock_offset=1_800_000_000.0)
    text = json.loads(client.connection_made(opening["TokenValue"], 0.0))
    assert list(text) == list(opening)
    assert {k: text[k] for k in ("MessageSchemaVersion", "TokenValue", "ClientId", "ClientVersion")} == {
        k: opening[k] for k in ("MessageSchemaVersion", "TokenValue", "ClientId", "ClientVersion")
    }
    request = v["input.seq0_handshake_response"]["context"]["in_reply_to_handshake_request_payload"].encode()
    hr_id = v["ack.agent_seq0_handshake_request"]["context"]["acknowledges"]["MessageId"]
    client.receive_frame(_agent_frame(0, hr_id, 5, request), 0.0)
    ack0, response = client.frames_to_send()
    _same_as_vector(ack0, v["ack.agent_seq0_handshake_request"])
    _same_as_vector(response, v["input.seq0_handshake_response"])
    hc_id = v["ack.agent_seq1_handshake_complete"]["context"]["acknowledges"]["MessageId"]
    client.receive_frame(_agent_ack(0), 0.0)
    client.receive_frame(
        _agent_frame(1, hc_id, 7, b'{"HandshakeTimeToComplete":1,"CustomerMessage":""}'), 0.0
    )
    (ack1,) = client.frames_to_send()
    _same_as_vector(ack1, v["ack.agent_seq1_handshake_complete"])
    for seq in (1, 2):
        data = bytes.fromhex(v[f"input.seq{seq}_data"]["payload_hex"])
        assert client.send_data(data, 1.0) == len(data)
        (frame,) = client.frames_to_send()
        _same_as_vector(frame, v[f"input.seq{seq}_data"])
        acked = v[f"ack.agent_seq{seq + 1}_output"]["context"]["acknowledges"]
        client.receive_frame(_agent_frame(seq + 1, acked["MessageId"], 1, b"out"), 1.0)
        client.receive_frame(_agent_ack(seq), 1.0)
        (ack,) = client.frames_to_send()
        _same_as_vector(ack, v[f"ack.agent_seq{seq + 1}_output"])
    data3 = bytes.fromhex(v["input.seq3_data"]["payload_hex"])
    data4 = bytes.fromhex(v["input.seq4_data"]["payload_hex"])
    assert client.send_data(data3 + data4, 2.0) == len(data3) + len(data4)
    frame3, frame4 = client.frames_to_send()
    _same_as_vector(frame3, v["input.seq3_data"])
    _same_as_vector(frame4, v["input.seq4_data"])
    client.receive_frame(_agent_ack(4), 2.0)  # the emulator withheld the ack of seq 3
    client.handle_timer(client.get_timer())
    (resent,) = client.frames_to_send()
    assert resent == frame3  # byte-identical retransmission
    _same_as_vector(resent, v["input.seq3_data.retransmission1"])


def test_replay_reconnect_capture() -> None:
    v = _client_vectors("reconnect")
    conn1, conn2 = v["open_data_channel.conn1"]["json"], v["open_data_channel.conn2"]["json"]
    client = _new_client(client_id=uuid.UUID(conn1["ClientId"]), wall_clock_offset=1_800_000_000.0)
    first = json.loads(client.connection_made(conn1["TokenValue"], 0.0))
    request = v["input.seq0_handshake_response"]["context"]["in_reply_to_handshake_request_payload"].encode()
    client.receive_frame(_agent_frame(0, str(uuid.uuid4()), 5, request), 0.0)
    client.receive_frame(_agent_ack(0), 0.0)
    client.receive_frame(_agent_frame(1, str(uuid.uuid4()), 7, b'{"HandshakeTimeToComplete":1}'), 0.0)
    client.frames_to_send()
    data1 = bytes.fromhex(v["input.seq1_data"]["payload_hex"])
    client.send_data(data1, 1.0)
    (original,) = client.frames_to_send()
    _same_as_vector(original, v["input.seq1_data"])
    client.connection_lost()  # the service closed the websocket; the ack of seq 1 never came
    second = json.loads(client.connection_made(conn2["TokenValue"], 2.0))
    assert second["ClientId"] == first["ClientId"] == conn2["ClientId"]
    assert second["RequestId"] != first["RequestId"]
    assert second["TokenValue"] == "tok-public-5f0e9d1c-resumed-1"
    (resent,) = client.frames_to_send()  # sequence state survived: seq 1 goes out again, identical
    assert resent == original
    _same_as_vector(resent, v["input.seq1_data.retransmission1"])
    data2 = bytes.fromhex(v["input.seq2_data"]["payload_hex"])
    client.send_data(data2, 3.0)
    (frame2,) = client.frames_to_send()
    _same_as_vector(frame2, v["input.seq2_data"])


# --- properties ------------------------------------------------------------------------------------------

_TYPES = [
    "input_stream_data",
    "output_stream_data",
    "acknowledge",
    "channel_closed",
    "start_publication",
    "pause_publication",
    "agent_session_state",
]
_PAYLOADS = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"{}",
            b'{"AcknowledgedMessageSequenceNumber":0}',
            b'{"AcknowledgedMessageSequenceNumber":-3}',
            b'{"AgentVersion":5,"RequestedClientActions":{}}',
            b'{"AgentVersion":"3.3.987.0","RequestedClientActions":[{"ActionType":"SessionType",'
            b'"ActionParameters":{"SessionType":"Port","Properties":{"type":"LocalPortForwarding"}}}]}',
            b'{"HandshakeTimeToComplete":"x"}',
            b"\x00\x00\x00\x03",
            b"null",
            b"[1,2]",
        ]
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_TYPES),
            st.integers(-2, 6),
            st.integers(0, 13),
            _PAYLOADS,
            st.booleans(),
        ),
        max_size=25,
    )
)
def test_session_never_raises_on_peer_input(frames: list[tuple[str, int, int, bytes, bool]]) -> None:
    client = _new_client()
    client.connection_made("tok", 0.0)
    for index, (message_type, seq, payload_type, payload, corrupt) in enumerate(frames):
        raw = bytearray(encode_frame(message_type, seq=seq, payload_type=payload_type, payload=payload))
        if corrupt:
            raw[index % len(raw)] ^= 0xFF
        client.receive_frame(bytes(raw), float(index))
        client.frames_to_send()
        while client.next_event() is not None:
            pass
        deadline = client.get_timer()
        if deadline is not None:
            client.handle_timer(deadline)
