"""The data plane over a real websocket with the scripted client: SSH (standard stream) mode."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import pytest

from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane import DataPlane
from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane.tests.helpers import (
    Dialer,
    TcpServer,
    banner_then_close,
    banner_then_echo,
    open_session,
    wait_until,
)
from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane.tests.scripted import ScriptedClient


def connected(
    plane: DataPlane, port: int, **kwargs: object
) -> tuple[ScriptedClient, str, list[tuple[str, str]]]:
    opened = open_session(plane, port, **kwargs)  # type: ignore[arg-type]
    client = ScriptedClient(opened.url)
    client.connect(opened.token)
    client.handshake()
    return client, opened.session_id, opened.ended


def test_handshake_request_shape_and_retransmission(plane: DataPlane, echo_server: TcpServer) -> None:
    opened = open_session(plane, echo_server.port)
    client = ScriptedClient(opened.url)
    client.auto_ack = False
    client.connect(opened.token)
    client.wait_for(lambda: len(client.agent_frames) >= 2, what="a resend of the unacked HandshakeRequest")
    first, again = client.agent_frames[:2]
    assert first.raw == again.raw  # §3.5: identical bytes, same seq and MessageId
    assert (first.seq, first.flags, first.payload_type) == (0, 1, 5)
    body = first.json()
    assert len(body["AgentVersion"].split(".")) == 4  # G12
    (action,) = body["RequestedClientActions"]
    assert action["ActionParameters"] == {
        "SessionType": "Port",
        "Properties": {"portNumber": str(echo_server.port)},
    }
    client.ack(first)
    client.auto_ack = True
    client.handshake()
    assert plane.session_state(opened.session_id) == "Connected"
    wait_until(lambda: plane.session_stats(opened.session_id)["mode"] == "stdio")


def test_stdio_echo_chunks_and_acks(plane: DataPlane, echo_server: TcpServer) -> None:
    client, session_id, _ = connected(plane, echo_server.port)
    seq = client.send_reliably(b"hello\n")
    assert seq == 1  # the first data after the HandshakeResponse
    client.expect_stream(b"hello\n")
    payload = os.urandom(300_000)
    for start in range(0, len(payload), 8192):
        client.send_reliably(payload[start : start + 8192])
    client.expect_stream(payload)
    data_frames = [f for f in client.agent_frames if f.payload_type == 1]
    assert data_frames[0].seq == 2  # first agent data is seq 2
    assert max(len(f.payload) for f in data_frames) == 1024  # the agent's chunk size
    assert {f.flags for f in data_frames} == {0}
    stats = plane.session_stats(session_id)
    assert stats["bytes_in"] == stats["bytes_out"] == len(payload) + 6
    assert stats["digest_mismatch_in"] == 0


def test_chunk_size_is_configurable(plane: DataPlane, echo_server: TcpServer) -> None:
    plane.set_faults(chunk_size=100)
    client, _, _ = connected(plane, echo_server.port)
    client.send_reliably(b"x" * 1000)
    client.expect_stream(b"x" * 1000)
    assert max(len(f.payload) for f in client.agent_frames if f.payload_type == 1) == 100


def test_unacked_agent_data_is_resent_identically(
    plane: DataPlane, tcp_server: Callable[..., TcpServer]
) -> None:
    server = tcp_server(banner_then_echo)
    client, _, _ = connected(plane, server.port)
    client.auto_ack = False
    client.wait_for(lambda: sum(f.seq == 2 for f in client.agent_frames) >= 2, what="the banner twice")
    banners = [f for f in client.agent_frames if f.seq == 2]
    assert banners[0].raw == banners[1].raw
    assert bytes(client.stream) == b"SSH-2.0-OpenSSH_9.2 sandbox\r\n"  # delivered once
    client.ack(banners[0])
    mark = len(client.agent_frames)
    client.auto_ack = True
    client.send_reliably(b"ping")
    client.expect_stream(b"SSH-2.0-OpenSSH_9.2 sandbox\r\nping")
    assert all(f.seq != 2 for f in client.agent_frames[mark:])


def test_data_before_the_port_is_ready_is_not_acked(
    plane: DataPlane, echo_server: TcpServer, dialer: Dialer
) -> None:
    """G6: until the agent's dial finishes it leaves client data unacked; the resend gets through."""
    dialer.gate.clear()
    client, session_id, _ = connected(plane, echo_server.port)
    seq, raw = client.send_stream(b"early")
    client.wait_for(
        lambda: plane.session_stats(session_id).get("not_ready_in", 0) >= 1, what="a not-ready drop"
    )
    assert seq not in client.acked
    dialer.gate.set()
    deadline = time.monotonic() + 10
    while seq not in client.acked and time.monotonic() < deadline:
        client.send_raw(raw)
        client.pump(0.3)
    assert seq in client.acked
    client.expect_stream(b"early")


def test_sshd_eof_ends_the_session(plane: DataPlane, tcp_server: Callable[..., TcpServer]) -> None:
    server = tcp_server(banner_then_close)
    client, session_id, ended = connected(plane, server.port)
    closed = client.channel_closed()
    assert bytes(client.stream) == b"SSH-2.0-OpenSSH_9.2 sandbox\r\n"  # data first, then channel_closed
    assert closed["MessageType"] == "channel_closed"
    assert closed["SessionId"] == session_id
    assert closed["DestinationId"] == "i-0123456789abcdef0"
    assert closed["Output"] == ""
    assert isinstance(closed["CreatedDate"], str)
    assert closed["SchemaVersion"] == 1
    assert client.close_code() == (1000, "Session ended")
    assert plane.session_state(session_id) == "Terminated"
    wait_until(lambda: ended == [(session_id, "Terminated")])
    assert plane.resume_session(session_id) is None


def test_dial_failure_fails_the_session(plane: DataPlane, tcp_server: Callable[..., TcpServer]) -> None:
    server = tcp_server()
    port = server.port
    server.stop()
    client, session_id, ended = connected(plane, port)
    closed = client.channel_closed()
    assert closed["Output"].startswith("Unable to connect to specified port: dial tcp localhost:")
    assert "connection refused" in closed["Output"]
    assert plane.session_state(session_id) == "Failed"
    wait_until(lambda: ended == [(session_id, "Failed")])


def test_terminate_session_api(plane: DataPlane, echo_server: TcpServer) -> None:
    client, session_id, ended = connected(plane, echo_server.port)
    client.send_reliably(b"abc")
    plane.terminate_session(session_id)
    assert client.channel_closed()["Output"] == ""
    assert plane.session_state(session_id) == "Terminated"
    wait_until(lambda: ended == [(session_id, "Terminated")])


def test_terminate_flag_is_acked_then_session_closes(plane: DataPlane, echo_server: TcpServer) -> None:
    client, session_id, _ = connected(plane, echo_server.port)
    seq = client.send_flag(2)
    client.channel_closed()
    assert seq in client.acked
    assert plane.session_state(session_id) == "Terminated"


def test_end_sessions_for_target(plane: DataPlane, echo_server: TcpServer) -> None:
    a, sid_a, _ = connected(plane, echo_server.port, target="i-00000000000000aaa")
    b, sid_b, _ = connected(plane, echo_server.port, target="i-00000000000000bbb")
    plane.end_sessions_for_target("i-00000000000000aaa", "Instance i-00000000000000aaa is stopping.")
    assert a.channel_closed()["Output"] == "Instance i-00000000000000aaa is stopping."
    b.send_reliably(b"still here")
    b.expect_stream(b"still here")
    assert plane.session_state(sid_b) == "Connected"
    assert plane.session_state(sid_a) == "Terminated"


def test_handshake_timeout(plane: DataPlane, echo_server: TcpServer) -> None:
    plane.set_faults(handshake_timeout=0.5)
    opened = open_session(plane, echo_server.port)
    client = ScriptedClient(opened.url)
    client.connect(opened.token)
    closed = client.channel_closed()
    assert "Handshake timed out" in closed["Output"]
    assert plane.session_state(opened.session_id) == "Failed"


def test_refused_handshake_action(plane: DataPlane, echo_server: TcpServer) -> None:
    opened = open_session(plane, echo_server.port)
    client = ScriptedClient(opened.url)
    client.connect(opened.token)
    client.wait_for(lambda: bool(client.delivered), what="HandshakeRequest")
    response = {
        "ClientVersion": "1.2.650.0",
        "ProcessedClientActions": [{"ActionType": "SessionType", "ActionStatus": 3, "Error": "unsupported"}],
        "Errors": ["unsupported"],
    }
    client.send_stream(json.dumps(response).encode(), payload_type=6)
    closed = client.channel_closed()
    assert "SessionType failed on client with status 3 error: unsupported" in closed["Output"]
    assert plane.session_state(opened.session_id) == "Failed"


def test_text_frames_after_open_are_ignored(plane: DataPlane, echo_server: TcpServer) -> None:
    client, session_id, _ = connected(plane, echo_server.port)
    assert client.ws is not None
    client.ws.send('{"unexpected": true}')
    client.send_reliably(b"ok")
    client.expect_stream(b"ok")
    assert plane.session_stats(session_id)["text_frames_in"] == 1


@pytest.mark.parametrize("chunk", [1, 65536 + 17, 3 * 1024 * 1024])
def test_any_client_payload_size_is_accepted(plane: DataPlane, echo_server: TcpServer, chunk: int) -> None:
    client, _, _ = connected(plane, echo_server.port)
    payload = os.urandom(chunk)
    client.send_reliably(payload)
    client.expect_stream(payload, timeout=60)
