"""Port forwarding: basic mode (old agent) and mux mode (smux v1 server), scripted client."""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from collections.abc import Callable

import pytest

from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane import DataPlane
from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane.modes import PlanError, plan_port
from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane.mux import MuxPort
from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane.tests.helpers import (
    AGENT_BASIC,
    AGENT_MUX,
    PF,
    Dialer,
    TcpServer,
    banner_then_close,
    open_session,
    wait_until,
)
from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane.tests.scripted import ScriptedClient


# smux v1 written out by hand for the client side (§5.4, little-endian).
def smux(cmd: int, sid: int, data: bytes = b"") -> bytes:
    return struct.pack("<BBHI", 1, cmd, len(data), sid) + data


SYN, FIN, PSH, NOP = 0, 1, 2, 3


def smux_frames(stream: bytes) -> tuple[list[tuple[int, int, bytes]], bytes]:
    frames, offset = [], 0
    while len(stream) - offset >= 8:
        version, cmd, length, sid = struct.unpack_from("<BBHI", stream, offset)
        assert version == 1
        body = length if cmd == PSH else 0
        if offset + 8 + body > len(stream):
            break
        frames.append((cmd, sid, stream[offset + 8 : offset + 8 + body]))
        offset += 8 + body
    return frames, stream[offset:]


class MuxClient:
    """The scripted client plus an smux view of the agent's byte stream."""

    def __init__(self, client: ScriptedClient) -> None:
        self.client = client
        self.frames: list[tuple[int, int, bytes]] = []
        self._rest = b""

    def send(self, *frames: bytes) -> None:
        self.client.send_reliably(b"".join(frames))

    def poll(self) -> None:
        data = self._rest + bytes(self.client.stream)
        self.client.stream.clear()
        new, self._rest = smux_frames(data)
        self.frames.extend(new)

    def data_for(self, sid: int) -> bytes:
        self.poll()
        return b"".join(d for cmd, s, d in self.frames if cmd == PSH and s == sid)

    def wait_data(self, sid: int, data: bytes, timeout: float = 20.0) -> None:
        self.client.wait_for(
            lambda: len(self.data_for(sid)) >= len(data), timeout, f"{len(data)} bytes on {sid}"
        )
        assert self.data_for(sid) == data

    def has_fin(self, sid: int) -> bool:
        self.poll()
        return (FIN, sid, b"") in self.frames

    def wait_fin(self, sid: int) -> None:
        self.client.wait_for(lambda: self.has_fin(sid), what=f"FIN for {sid}")


def connected(plane: DataPlane, port: int, agent_version: str) -> tuple[ScriptedClient, str]:
    opened = open_session(plane, port, document=PF, agent_version=agent_version)
    client = ScriptedClient(opened.url)
    client.connect(opened.token)
    client.handshake()
    return client, opened.session_id


# --- mode selection (pure) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("props", "agent", "client", "mode", "keepalive"),
    [
        ({"portNumber": "22"}, "3.3.987.0", "1.2.650.0", "stdio", False),
        ({"portNumber": "80", "type": "LocalPortForwarding"}, "3.3.987.0", "1.2.650.0", "mux", False),
        ({"portNumber": "80", "type": "LocalPortForwarding"}, "3.0.196.0", "1.2.650.0", "basic", False),
        ({"portNumber": "80", "type": "LocalPortForwarding"}, "3.0.196.1", "1.2.650.0", "mux", True),
        ({"portNumber": "80", "type": "LocalPortForwarding"}, "3.3.987.0", "1.2.331.0", "mux", True),  # G1
        ({"portNumber": "80", "type": "LocalPortForwarding"}, "3.3.987.0", "1.1.69.0", "basic", False),
        ({"portNumber": "80", "type": "LocalPortForwarding"}, "3.3.987.0", "", "basic", False),
    ],
)
def test_plan_port(props: dict[str, str], agent: str, client: str, mode: str, keepalive: bool) -> None:
    plan = plan_port(props, agent, client)
    assert (plan.mode, plan.keepalive) == (mode, keepalive)
    assert plan.dest_host == "localhost"


def test_plan_port_remote_host_and_errors() -> None:
    plan = plan_port(
        {"portNumber": "5432", "type": "LocalPortForwarding", "host": "db.internal"}, AGENT_MUX, "1.2.650.0"
    )
    assert (plan.dest_host, plan.dest_port) == ("db.internal", 5432)
    assert not plan_port({"portNumber": "22"}, "2.3.722.0", "1.2.650.0").terminate_flag
    with pytest.raises(PlanError, match="Port number is empty"):
        plan_port({}, AGENT_MUX, "1.2.650.0")
    with pytest.raises(PlanError, match="invalid port"):
        plan_port({"portNumber": "http"}, AGENT_MUX, "1.2.650.0")


# --- basic mode -------------------------------------------------------------------------------


def test_basic_mode_disconnect_and_lazy_redial(
    plane: DataPlane, echo_server: TcpServer, dialer: Dialer
) -> None:
    client, session_id = connected(plane, echo_server.port, AGENT_BASIC)
    wait_until(lambda: plane.session_stats(session_id)["mode"] == "basic")
    client.send_reliably(b"first connection")
    client.expect_stream(b"first connection")
    client.send_flag(1)  # DisconnectToPort: the local TCP client went away
    wait_until(lambda: echo_server.closed == 1)
    client.send_reliably(b"second connection")
    client.expect_stream(b"second connection")
    assert echo_server.connections == 2
    assert len(dialer.calls) == 2
    assert plane.session_state(session_id) == "Connected"


def test_basic_mode_does_not_tell_the_client_when_the_destination_closes(
    plane: DataPlane, tcp_server: Callable[..., TcpServer]
) -> None:
    """G11: the agent redials on the next data instead."""
    server = tcp_server(banner_then_close)
    client, _ = connected(plane, server.port, AGENT_BASIC)
    client.expect_stream(b"SSH-2.0-OpenSSH_9.2 sandbox\r\n")
    client.send_reliably(b"anyone there?")
    client.expect_stream(b"SSH-2.0-OpenSSH_9.2 sandbox\r\n")  # a new connection's banner
    assert server.connections == 2
    assert not [f for f in client.others if f.type == "channel_closed"]


def test_basic_mode_remote_host(plane: DataPlane, echo_server: TcpServer, dialer: Dialer) -> None:
    """AWS-StartPortForwardingSessionToRemoteHost: the agent dials ``host``."""
    opened = open_session(
        plane, echo_server.port, document=PF, agent_version=AGENT_BASIC, extra={"host": "127.0.0.1"}
    )
    client = ScriptedClient(opened.url)
    client.connect(opened.token)
    client.handshake()
    client.send_reliably(b"remote")
    client.expect_stream(b"remote")
    assert dialer.calls == [("i-0123456789abcdef0", "127.0.0.1", echo_server.port)]


def test_old_agent_ignores_terminate_flag(plane: DataPlane, echo_server: TcpServer) -> None:
    opened = open_session(plane, echo_server.port, agent_version="2.3.722.0")
    client = ScriptedClient(opened.url)
    client.connect(opened.token)
    client.handshake()
    client.send_flag(2)
    client.send_reliably(b"still up")
    client.expect_stream(b"still up")
    assert plane.session_stats(opened.session_id)["unexpected_flag_in"] == 1


# --- mux mode ---------------------------------------------------------------------------------


def test_mux_streams_echo_and_close(plane: DataPlane, echo_server: TcpServer) -> None:
    client, session_id = connected(plane, echo_server.port, AGENT_MUX)
    wait_until(lambda: plane.session_stats(session_id)["mode"] == "mux")
    mux = MuxClient(client)
    # SYN+PSH in one message, like the official client (§5.4)
    mux.send(smux(SYN, 3), smux(PSH, 3, b"stream three"))
    mux.send(smux(SYN, 5))
    mux.send(smux(PSH, 5, b"stream five"))
    mux.wait_data(3, b"stream three")
    mux.wait_data(5, b"stream five")
    big = os.urandom(200_000)
    # One smux frame split over many SSM messages, several frames in one message.
    wire = b"".join(smux(PSH, 3, big[i : i + 32768]) for i in range(0, len(big), 32768))
    for start in range(0, len(wire), 7000):
        mux.send(wire[start : start + 7000])
    mux.wait_data(3, b"stream three" + big)
    mux.send(smux(FIN, 3))
    mux.wait_fin(3)  # the agent closes its side too (smux v1 has no half-close)
    mux.send(smux(PSH, 5, b" still open"))
    mux.wait_data(5, b"stream five still open")
    mux.send(smux(NOP, 0))
    assert echo_server.connections == 2
    assert max(len(f.payload) for f in client.agent_frames if f.payload_type == 1) <= 1024
    stats = plane.session_stats(session_id)
    assert stats["mux_streams_opened"] == 2
    assert stats["smux_protocol_errors"] == 0


def test_mux_destination_close_sends_fin(plane: DataPlane, tcp_server: Callable[..., TcpServer]) -> None:
    server = tcp_server(banner_then_close)
    client, _ = connected(plane, server.port, AGENT_MUX)
    mux = MuxClient(client)
    mux.send(smux(SYN, 3))
    mux.wait_data(3, b"SSH-2.0-OpenSSH_9.2 sandbox\r\n")
    mux.wait_fin(3)
    assert not [f for f in client.others if f.type == "channel_closed"]  # the session lives on


def test_mux_dial_failure_sends_connect_to_port_error(
    plane: DataPlane, tcp_server: Callable[..., TcpServer]
) -> None:
    server = tcp_server()
    port = server.port
    server.stop()
    client, session_id = connected(plane, port, AGENT_MUX)
    mux = MuxClient(client)
    mux.send(smux(SYN, 3), smux(PSH, 3, b"GET / HTTP/1.0\r\n\r\n"))
    client.wait_for(lambda: any(f.payload_type == 10 for f in client.delivered), what="ConnectToPortError")
    (flag,) = [f for f in client.delivered if f.payload_type == 10]
    assert flag.payload == b"\x00\x00\x00\x03"
    mux.wait_fin(3)
    flag_index = client.agent_frames.index(flag)
    assert all(f.seq > flag.seq for f in client.agent_frames[flag_index + 1 :] if f.payload_type == 1)
    assert plane.session_stats(session_id)["mux_dial_failures"] == 1


def test_mux_terminate_flag(plane: DataPlane, echo_server: TcpServer) -> None:
    client, session_id = connected(plane, echo_server.port, AGENT_MUX)
    mux = MuxClient(client)
    mux.send(smux(SYN, 3), smux(PSH, 3, b"x"))
    mux.wait_data(3, b"x")
    client.send_flag(2)
    assert client.channel_closed()["Output"] == ""
    assert plane.session_state(session_id) == "Terminated"


def test_mux_protocol_error_fails_the_session(plane: DataPlane, echo_server: TcpServer) -> None:
    client, session_id = connected(plane, echo_server.port, AGENT_MUX)
    client.send_reliably(b"\x02\x00\x00\x00\x03\x00\x00\x00")  # smux version 2
    client.channel_closed()
    assert plane.session_state(session_id) == "Failed"


# --- smux keepalive (G1), on virtual-ish time with tiny intervals ------------------------------


class FakeHost:
    def __init__(self) -> None:
        self.target = "i-1"
        self.log = logging.getLogger("test.fakehost")
        self.sent: list[tuple[int, bytes]] = []
        self.finished: list[tuple[str, str]] = []

    @property
    def chunk_size(self) -> int:
        return 1024

    async def send_output(self, payload_type: int, payload: bytes) -> bool:
        self.sent.append((payload_type, payload))
        return True

    async def send_outputs(self, payload_type: int, payloads: list[bytes]) -> bool:
        self.sent.extend((payload_type, payload) for payload in payloads)
        return True

    async def dial(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        raise OSError("no dialing here")

    def port_finished(self, status: str, output: str) -> None:
        self.finished.append((status, output))

    def count(self, name: str, n: int = 1) -> None:
        pass


def test_mux_keepalive_sends_nops_and_closes_a_silent_mux() -> None:
    async def scenario() -> FakeHost:
        host = FakeHost()
        port = MuxPort(host, dest_host="localhost", dest_port=1, keepalive=True, keepalive_interval=0.05,
                       keepalive_timeout=0.15)  # fmt: skip
        await port.start()
        for _ in range(200):
            if host.finished:
                break
            await asyncio.sleep(0.01)
        await port.close()
        return host

    host = asyncio.run(scenario())
    assert host.finished == [("Failed", "")]
    nops = b"".join(p for t, p in host.sent if t == 1)
    assert nops[:8] == smux(NOP, 0)


def test_mux_keepalive_survives_while_the_client_talks() -> None:
    async def scenario() -> FakeHost:
        host = FakeHost()
        port = MuxPort(host, dest_host="localhost", dest_port=1, keepalive=True, keepalive_interval=0.05,
                       keepalive_timeout=0.15)  # fmt: skip
        await port.start()
        for _ in range(40):
            port.deliver(1, smux(NOP, 0))
            await asyncio.sleep(0.01)
        await port.close()
        return host

    assert asyncio.run(scenario()).finished == []
