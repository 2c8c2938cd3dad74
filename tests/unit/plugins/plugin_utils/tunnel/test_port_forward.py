"""Local port forwarding (basic and mux) with real TCP sockets, websocket and scripted agent."""

from __future__ import annotations

import asyncio
import random
import struct

import pytest

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.tunnel import port_forward
from ansible_collections.trek10.ec2ssm.tests.unit.plugins.plugin_utils.datachannel.scripted_agent import (
    ScriptedAgent,
)
from ansible_collections.trek10.ec2ssm.tests.unit.plugins.plugin_utils.tunnel.fake_service import (
    HARD_TIMEOUT,
    FakeService,
    make_tunnel,
    run,
    until,
)

pytestmark = HARD_TIMEOUT

_SMUX = struct.Struct("<BBHI")  # §5.4, written here independently of the product's smux module


class MiniSmuxServer:
    """The agent's smux v1 server side, reduced to what the tests need: echo per stream."""

    def __init__(self, agent: ScriptedAgent, service: FakeService, *, refuse: set[int] | None = None) -> None:
        self.agent = agent
        self.service = service
        self.refuse = refuse or set()
        self.buffer = bytearray()
        self.frames: list[tuple[int, int, int]] = []  # (cmd, stream id, length)
        self.received: dict[int, bytearray] = {}
        agent.on_data = self.feed

    def _send(self, cmd: int, sid: int, data: bytes = b"") -> None:
        self.agent.send_data(_SMUX.pack(1, cmd, len(data), sid) + data, self.service.now())

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 8:
            version, cmd, length, sid = _SMUX.unpack_from(self.buffer)
            if version != 1:
                raise AssertionError(f"smux version {version}")
            if len(self.buffer) < 8 + length:
                return
            payload = bytes(self.buffer[8 : 8 + length])
            del self.buffer[: 8 + length]
            self.frames.append((cmd, sid, length))
            if cmd == 0 and sid in self.refuse:
                # §5.4: the dial failed: ConnectToPortError flag, then FIN for the stream.
                self.agent.send_flag(3, self.service.now())
                self._send(1, sid)
            elif cmd == 0:
                self.received[sid] = bytearray()
            elif cmd == 2 and sid in self.received:
                self.received[sid] += payload
                self._send(2, sid, payload.upper())
            elif cmd == 1 and sid in self.received:
                self._send(1, sid)


async def _exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    received = await reader.readexactly(len(data))
    writer.close()
    await writer.wait_closed()
    return received


def test_mux_mode_one_stream_per_connection() -> None:
    async def main() -> None:
        agent = ScriptedAgent(
            properties={"portNumber": "80", "type": "LocalPortForwarding", "localPortNumber": "0"}
        )
        async with FakeService(agent) as service:
            smux = MiniSmuxServer(agent, service)
            tunnel = make_tunnel(service)
            await tunnel.connect()
            listener = await port_forward.serve(tunnel, port=0)
            payloads = [random.Random(i).randbytes(96 * 1024).lower() for i in range(3)]
            results = await asyncio.gather(*(_exchange(listener.port, p) for p in payloads))
            assert results == [p.upper() for p in payloads]
            await until(lambda: sum(1 for f in smux.frames if f[0] == 1) == 3)
            opened = [sid for cmd, sid, _length in smux.frames if cmd == 0]
            assert sorted(opened) == [3, 5, 7]  # odd, from 3 (§5.4)
            assert sorted(bytes(v) for v in smux.received.values()) == sorted(payloads)
            assert all(length <= 32768 for cmd, _sid, length in smux.frames if cmd == 2)
            assert not [f for f in smux.frames if f[0] == 3]  # agent 3.3.987.0: no keepalive NOPs
            await listener.aclose()
            await tunnel.aclose()

    run(main())


def test_mux_connect_to_port_error_closes_the_local_connection() -> None:
    async def main() -> None:
        agent = ScriptedAgent(properties={"portNumber": "81", "type": "LocalPortForwarding"})
        async with FakeService(agent) as service:
            MiniSmuxServer(agent, service, refuse={3})
            tunnel = make_tunnel(service)
            await tunnel.connect()
            listener = await port_forward.serve(tunnel, port=0)
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(b"hello?")
            assert await reader.read() == b""  # closed by the agent's FIN
            writer.close()
            await until(lambda: tunnel.stats.connect_to_port_errors == 1)
            assert any("Connection to destination port failed" in line for line in tunnel.test_logs)  # type: ignore[attr-defined]
            await listener.aclose()
            await tunnel.aclose()

    run(main())


def test_basic_mode_one_connection_at_a_time_with_disconnect_flags() -> None:
    async def main() -> None:
        agent = ScriptedAgent(
            agent_version="3.0.196.0",
            properties={"portNumber": "80", "type": "LocalPortForwarding"},
            echo=True,
        )
        async with FakeService(agent) as service:
            tunnel = make_tunnel(service)
            await tunnel.connect()
            seen: list[int] = []
            task = asyncio.get_running_loop().create_task(
                port_forward.serve_port_forward(tunnel, port=0, on_listening=seen.append)
            )
            await until(lambda: bool(seen))
            assert await _exchange(seen[0], b"first connection") == b"first connection"
            await until(lambda: agent.flags == [1])  # §5.3: DisconnectToPort when it ends
            assert await _exchange(seen[0], b"second one") == b"second one"
            await until(lambda: agent.flags == [1, 1])
            agent.channel_closed("")
            await service.push()
            await task  # the session ended: the listener stops
            await tunnel.aclose()

    run(main())


def test_stdio_session_cannot_port_forward() -> None:
    async def main() -> None:
        async with FakeService() as service:
            tunnel = make_tunnel(service)
            await tunnel.connect()
            with pytest.raises(ValueError, match="basic or mux"):
                await port_forward.serve(tunnel)
            await tunnel.aclose()

    run(main())
