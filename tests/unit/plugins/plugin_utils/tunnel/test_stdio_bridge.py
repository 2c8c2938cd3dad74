"""bridge_stdio with real pipes, a real websocket server and the scripted agent."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import random
import termios

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.tunnel.stdio_bridge import bridge_stdio
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


async def _bytes_in_pipe(fd: int) -> int:
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), "little")


class Pipes:
    """stdin/stdout pipes as ssh would hand them to a ProxyCommand."""

    def __init__(self) -> None:
        self.stdin_r, self.stdin_w = os.pipe()
        self.stdout_r, self.stdout_w = os.pipe()
        os.set_blocking(self.stdin_w, False)
        os.set_blocking(self.stdout_r, False)

    def close(self) -> None:
        for fd in (self.stdin_r, self.stdin_w, self.stdout_r, self.stdout_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    async def feed(self, data: bytes, *, close: bool = True) -> int:
        """Write into stdin as fast as the pipe takes it; returns bytes written."""
        view = memoryview(data)
        loop = asyncio.get_running_loop()
        while view:
            try:
                view = view[os.write(self.stdin_w, view) :]
            except BlockingIOError:
                ready = loop.create_future()
                loop.add_writer(self.stdin_w, ready.set_result, None)
                try:
                    await ready
                finally:
                    loop.remove_writer(self.stdin_w)
        if close:
            os.close(self.stdin_w)
        return len(data)

    async def collect(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            try:
                chunk = os.read(self.stdout_r, 65536)
            except BlockingIOError:
                await asyncio.sleep(0.002)
                continue
            if not chunk:
                break
            data += chunk
        return bytes(data)


def test_bridge_copies_both_ways_and_ends_on_stdin_eof() -> None:
    async def main() -> None:
        pipes = Pipes()
        try:
            agent = ScriptedAgent()
            async with FakeService(agent) as service:
                tunnel = make_tunnel(service)
                await tunnel.connect()
                up = random.Random(5).randbytes(300 * 1024)
                down = random.Random(6).randbytes(200 * 1024)
                loop = asyncio.get_running_loop()
                bridge = loop.create_task(bridge_stdio(tunnel, pipes.stdin_r, pipes.stdout_w))
                agent.send_data(down, service.now())
                await service.push()
                assert await pipes.collect(len(down)) == down
                await pipes.feed(up)  # then EOF
                await bridge  # stdin EOF ends the bridge once the last bytes were acked
                assert bytes(agent.received) == up
                assert tunnel.stats.unacked_messages == 0
                assert os.get_blocking(pipes.stdin_r)  # descriptor modes are restored
                await tunnel.aclose()
        finally:
            pipes.close()

    run(main())


def test_full_window_stops_reading_stdin_and_loses_nothing() -> None:
    async def main() -> None:
        pipes = Pipes()
        try:
            agent = ScriptedAgent()
            async with FakeService(agent) as service:
                tunnel = make_tunnel(service, max_unacked_messages=8)
                await tunnel.connect()
                agent.hold_acks = True
                payload = random.Random(6).randbytes(2 * 1024 * 1024)
                loop = asyncio.get_running_loop()
                bridge = loop.create_task(bridge_stdio(tunnel, pipes.stdin_r, pipes.stdout_w))
                feeder = loop.create_task(pipes.feed(payload))
                await until(lambda: len(agent.received) == 8 * 1024)
                for _unused in range(50):
                    await asyncio.sleep(0.01)
                # The bridge stopped reading stdin: the feeder is stuck on a full pipe, and what the
                # bridge did read is at most the window plus one read plus the pipe's capacity.
                pipe_size = fcntl.fcntl(pipes.stdin_w, 1032)  # F_GETPIPE_SZ
                assert not feeder.done()
                assert len(agent.received) == 8 * 1024
                assert tunnel.stats.unacked_messages == 8
                assert tunnel.stats.bytes_sent <= 8 * 1024 + 65536  # the window, plus one read at most
                assert await _bytes_in_pipe(pipes.stdin_r) >= pipe_size - 65536  # stdin backs up
                agent.release_acks()
                await service.push()
                await feeder
                await bridge
                assert bytes(agent.received) == payload
                await tunnel.aclose()
        finally:
            pipes.close()

    run(main())


def test_tunnel_end_ends_the_bridge_and_stdout_has_only_tunnel_bytes() -> None:
    async def main() -> None:
        pipes = Pipes()
        try:
            async with FakeService() as service:
                tunnel = make_tunnel(service)
                await tunnel.connect()
                bridge = asyncio.get_running_loop().create_task(
                    bridge_stdio(tunnel, pipes.stdin_r, pipes.stdout_w)
                )
                service.agent.send_data(b"SSH-2.0-OpenSSH_9.6\r\n", service.now())
                service.agent.channel_closed("")
                await service.push()
                await bridge
                os.close(pipes.stdout_w)
                assert await pipes.collect(1 << 20) == b"SSH-2.0-OpenSSH_9.6\r\n"
                await tunnel.aclose()
        finally:
            pipes.close()

    run(main())


def test_stdout_epipe_ends_the_bridge_quietly() -> None:
    async def main() -> None:
        pipes = Pipes()
        try:
            async with FakeService() as service:
                tunnel = make_tunnel(service)
                await tunnel.connect()
                os.close(pipes.stdout_r)  # ssh went away
                bridge = asyncio.get_running_loop().create_task(
                    bridge_stdio(tunnel, pipes.stdin_r, pipes.stdout_w)
                )
                service.agent.send_data(b"nobody reads this", service.now())
                await service.push()
                await bridge  # returns without raising
                await tunnel.aclose()
        finally:
            pipes.close()

    run(main())
