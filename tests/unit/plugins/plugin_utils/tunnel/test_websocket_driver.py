"""Tunnel (asyncio + websockets) against a real in-process websocket server and the scripted agent."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid

import pytest
import websockets.frames

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.events import SessionMode
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.tunnel import websocket_driver
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.tunnel.errors import (
    ChannelClosedByService,
    HandshakeFailed,
    MissingDependency,
    SessionGone,
    TunnelError,
    WebSocketFailed,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.tunnel.websocket_driver import Tunnel
from ansible_collections.trek10.ec2ssm.tests.unit.plugins.plugin_utils.datachannel.scripted_agent import (
    ScriptedAgent,
    encode_frame,
)
from ansible_collections.trek10.ec2ssm.tests.unit.plugins.plugin_utils.tunnel.fake_service import (
    HARD_TIMEOUT,
    FakeService,
    Resumer,
    make_tunnel,
    read_exactly,
    read_until_error,
    run,
    until,
)

pytestmark = HARD_TIMEOUT


def test_handshake_data_both_ways_and_wire_details() -> None:
    async def main() -> None:
        async with FakeService(ScriptedAgent(echo=True)) as service:
            tunnel = make_tunnel(service)
            info = await tunnel.connect()
            assert info.mode is SessionMode.STDIO
            payload = random.Random(1).randbytes(256 * 1024)
            writer = asyncio.get_running_loop().create_task(tunnel.write(payload))
            echoed = await read_exactly(tunnel, len(payload))
            await writer
            assert echoed == payload
            assert bytes(service.agent.received) == payload
            assert service.paths == [service.url().split(str(service.port), 1)[1]]  # verbatim (G15)
            (opening,) = service.openings
            assert list(opening) == [
                "MessageSchemaVersion",
                "RequestId",
                "TokenValue",
                "ClientId",
                "ClientVersion",
            ]
            assert opening["TokenValue"] == "tok-1"
            assert opening["ClientVersion"] == "1.2.650.0"
            assert opening["ClientId"] == tunnel.client_id
            assert service.pings[:1] == [b"keepalive"]
            assert tunnel.stats.bytes_sent == len(payload)
            await tunnel.aclose()
            assert await tunnel.read() == b""

    run(main())


@pytest.mark.parametrize("abort", [False, True], ids=["close_1000_bye", "abrupt_tcp_close"])
def test_reconnect_resumes_with_same_client_id_and_sequence_state(abort: bool) -> None:
    async def main() -> None:
        agent = ScriptedAgent()
        async with FakeService(agent) as service:
            service.abort_instead_of_close = abort
            service.close_when = lambda a: len(a.received) >= 20 * 1024
            resumer = Resumer(service)
            tunnel = make_tunnel(service, resumer)
            await tunnel.connect()
            up = random.Random(2).randbytes(100 * 1024)
            await tunnel.write(up)
            assert await tunnel.drain(timeout=20)
            assert bytes(agent.received) == up
            assert agent.delivered_seqs == list(range(1, 101))  # exactly once, in order
            # Agent -> client after the reconnect too.
            down = random.Random(3).randbytes(30 * 1024)
            agent.send_data(down, service.now())
            await service.push()
            assert await read_exactly(tunnel, len(down)) == down
            assert resumer.calls == 1
            first, second = service.openings
            assert second["ClientId"] == first["ClientId"]
            assert second["RequestId"] != first["RequestId"]
            uuid.UUID(second["RequestId"])
            assert second["TokenValue"] == "tok-resumed-1"
            conn1, conn2 = service.client_seqs
            assert 0 in conn1
            assert conn2
            assert min(conn2) >= 1  # sequence numbers continue; the acked HandshakeResponse is not resent
            assert tunnel.stats.reconnects == 1
            assert len(service.paths) == 2
            assert service.paths[0] == service.paths[1]  # the original StreamUrl
            await tunnel.aclose()

    run(main())


def test_resume_without_token_means_session_gone() -> None:
    async def main() -> None:
        async with FakeService() as service:
            service.close_when = lambda a: len(a.received) > 0
            tunnel = make_tunnel(service, Resumer(service, gone=True))
            await tunnel.connect()
            await tunnel.write(b"first")
            with pytest.raises(SessionGone):
                await read_until_error(tunnel)
            with pytest.raises(SessionGone):
                await tunnel.write(b"more")
            await tunnel.aclose()

    run(main())


def test_reconnect_is_bounded_and_fails_clearly() -> None:
    async def main() -> None:
        async with FakeService() as service:
            service.close_when = lambda a: len(a.received) > 0
            service.reject_status = 503
            service.reject_after_first = True
            resumer = Resumer(service)
            tunnel = make_tunnel(service, resumer, reconnect_initial_delay=0.001)
            await tunnel.connect()
            await tunnel.write(b"x")
            with pytest.raises(WebSocketFailed) as info:
                await tunnel.read()
            assert resumer.calls == 6  # §6.4: 1 + 5 retries
            assert "6 attempts" in str(info.value)
            assert "HTTP 503" in str(info.value)
            await tunnel.aclose()

    run(main())


def test_channel_closed_by_service() -> None:
    async def main() -> None:
        async with FakeService() as service:
            tunnel = make_tunnel(service)
            await tunnel.connect()
            service.agent.send_data(b"last words", service.now())
            service.agent.channel_closed("Session terminated: idle timeout.")
            await service.push()
            assert await read_exactly(tunnel, 10) == b"last words"
            assert await tunnel.read() == b""
            assert tunnel.closed_output == "Session terminated: idle timeout."
            with pytest.raises(ChannelClosedByService) as info:
                await tunnel.write(b"too late")
            assert info.value.output == "Session terminated: idle timeout."
            await tunnel.aclose()

    run(main())


def test_backpressure_write_waits_while_acks_are_withheld() -> None:
    async def main() -> None:
        agent = ScriptedAgent()
        async with FakeService(agent) as service:
            tunnel = make_tunnel(service, max_unacked_messages=8)
            await tunnel.connect()
            agent.hold_acks = True
            data = random.Random(4).randbytes(64 * 1024)
            writer = asyncio.get_running_loop().create_task(tunnel.write(data))
            await until(lambda: len(agent.received) == 8 * 1024)
            for _unused in range(50):  # give the writer every chance to (wrongly) push more
                await asyncio.sleep(0.01)
            assert not writer.done()
            assert len(agent.received) == 8 * 1024
            assert tunnel.stats.unacked_messages == 8
            agent.release_acks()
            await service.push()
            await writer
            assert await tunnel.drain(timeout=20)
            assert bytes(agent.received) == data
            assert agent.delivered_seqs == list(range(1, 65))
            await tunnel.aclose()

    run(main())


def test_kms_request_fails_the_handshake() -> None:
    async def main() -> None:
        async with FakeService(ScriptedAgent(request_kms=True)) as service:
            tunnel = make_tunnel(service)
            with pytest.raises(HandshakeFailed) as info:
                await tunnel.connect()
            assert info.value.encryption_requested
            assert "encryption not supported for port sessions" in str(info.value)
            await until(lambda: service.agent.handshake_response is not None)
            assert service.agent.handshake_response["ProcessedClientActions"][1]["ActionStatus"] == 2

    run(main())


def test_refused_websocket_reports_the_http_status() -> None:
    async def main() -> None:
        async with FakeService() as service:
            service.reject_status = 403
            tunnel = make_tunnel(service)
            with pytest.raises(WebSocketFailed) as info:
                await tunnel.connect()
            assert info.value.status == 403
            assert "i-0123456789abcdef0" in str(info.value)
            assert "tok-1" not in str(info.value)

    run(main())


def test_terminate_sends_the_flag_and_waits_for_its_ack() -> None:
    async def main() -> None:
        async with FakeService() as service:
            tunnel = make_tunnel(service)
            await tunnel.connect()
            assert await tunnel.terminate() is True
            assert service.agent.flags == [2]
            await tunnel.aclose()

    run(main())


def test_disconnect_port_flag_in_basic_mode() -> None:
    async def main() -> None:
        agent = ScriptedAgent(
            agent_version="3.0.196.0", properties={"portNumber": "80", "type": "LocalPortForwarding"}
        )
        async with FakeService(agent) as service:
            tunnel = make_tunnel(service)
            info = await tunnel.connect()
            assert info.mode is SessionMode.BASIC
            await tunnel.write(b"GET / HTTP/1.0\r\n\r\n")
            await tunnel.disconnect_port()
            assert await tunnel.drain(timeout=10)
            assert agent.flags == [1]
            await tunnel.aclose()

    run(main())


def test_a_bad_frame_never_stops_the_reader() -> None:
    async def main() -> None:
        async with FakeService() as service:
            tunnel = make_tunnel(service)
            await tunnel.connect()
            bad = bytearray(encode_frame("output_stream_data", seq=2, payload_type=1, payload=b"evil"))
            bad[0:4] = b"\xff\xff\xff\xff"  # HeaderLength pointing past the end (G17)
            await service.send_raw(bytes(bad))
            await service.send_raw(b"short")
            service.agent.send_data(b"still alive", service.now())
            await service.push()
            assert await read_exactly(tunnel, 11) == b"still alive"
            assert tunnel.stats.dropped_bad_frames == 2
            await tunnel.aclose()

    run(main())


def test_many_tunnels_share_one_event_loop() -> None:
    async def one(index: int) -> None:
        async with FakeService(ScriptedAgent(echo=True)) as service:
            tunnel = make_tunnel(service)
            await tunnel.connect()
            payload = random.Random(index).randbytes(32 * 1024 + index)
            writer = asyncio.get_running_loop().create_task(tunnel.write(payload))
            assert await read_exactly(tunnel, len(payload)) == payload
            await writer
            await tunnel.aclose()

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(5)))

    run(main())


def test_missing_websockets_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        websocket_driver, "WEBSOCKETS_IMPORT_ERROR", ImportError("No module named 'websockets'")
    )
    with pytest.raises(MissingDependency, match="websockets"):
        Tunnel(
            stream_url="wss://x",
            token="t",
            session_id="s",
            target="i",
            resume=Resumer(None),
            ssl_context=None,
        )  # type: ignore[arg-type]


def test_unknown_tuning_keyword_is_rejected() -> None:
    with pytest.raises(TypeError):
        Tunnel(
            stream_url="wss://x",
            token="t",
            session_id="s",
            target="i",
            resume=Resumer(None),  # type: ignore[arg-type]
            ssl_context=None,
            chunk_sise=10,
        )


class ConnectProxy:
    """A minimal HTTP CONNECT proxy recording the targets it was asked for."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> ConnectProxy:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        target = head.split(b" ")[1].decode()
        self.targets.append(target)
        host, port = target.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.mark.parametrize("bypass", [False, True], ids=["via_https_proxy", "no_proxy_bypass"])
def test_https_proxy_and_no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch, bypass: bool) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)

    async def main() -> None:
        async with ConnectProxy() as proxy, FakeService(ScriptedAgent(echo=True)) as service:
            monkeypatch.setenv("HTTPS_PROXY", proxy.url)
            if bypass:
                monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
            tunnel = make_tunnel(service)
            await tunnel.connect()
            await tunnel.write(b"through")
            assert await read_exactly(tunnel, 7) == b"through"
            await tunnel.aclose()
            if bypass:
                assert proxy.targets == []
            else:
                assert proxy.targets == [f"127.0.0.1:{service.port}"]

    run(main())


def test_logs_never_contain_the_token() -> None:
    async def main() -> None:
        async with FakeService() as service:
            service.close_when = lambda a: len(a.received) > 0
            tunnel = make_tunnel(service, log_frames=True)
            await tunnel.connect()
            await tunnel.write(b"x" * 3000)
            assert await tunnel.drain(timeout=20)
            await tunnel.aclose()
            logs = "\n".join(tunnel.test_logs)  # type: ignore[attr-defined]
            assert "tok-1" not in logs
            assert "tok-resumed" not in logs
            assert "websocket closed: code 1000 'Bye'" in logs

    run(main())


def test_handshake_info_is_json_safe_for_logs() -> None:
    async def main() -> None:
        async with FakeService() as service:
            tunnel = make_tunnel(service)
            info = await tunnel.connect()
            assert json.loads(json.dumps(dict(info.properties))) == {"portNumber": "22"}
            assert "tok-1" not in repr(info)
            await tunnel.aclose()

    run(main())


def test_token_never_reaches_python_logging_even_at_debug(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    # As if the user set WEBSOCKETS_MAX_LOG_SIZE: websockets would then log whole text frames.
    monkeypatch.setattr(websockets.frames.Frame, "MAX_LOG_SIZE", 100_000)

    async def main() -> None:
        async with FakeService(ScriptedAgent(echo=True)) as service:
            tunnel = make_tunnel(service)
            await tunnel.connect()
            await tunnel.write(b"ping")
            assert await read_exactly(tunnel, 4) == b"ping"
            await tunnel.aclose()

    run(main())
    client_records = [r for r in caplog.records if "client" in r.name or "ec2ssm" in r.name]
    assert "tok-1" not in "\n".join(r.getMessage() for r in client_records)


def test_an_internal_error_ends_the_tunnel_instead_of_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with FakeService() as service:
            tunnel = make_tunnel(service)
            await tunnel.connect()

            def broken(frame: bytes, now: float) -> None:
                raise RuntimeError("simulated bug")

            monkeypatch.setattr(tunnel._core, "receive_frame", broken)
            service.agent.send_data(b"trigger", service.now())
            await service.push()
            with pytest.raises(TunnelError, match=r"internal error.*simulated bug"):
                await read_until_error(tunnel)
            await tunnel.aclose()

    run(main())


def test_aclose_is_idempotent_and_concurrent_safe() -> None:
    async def main() -> None:
        async with FakeService() as service:
            tunnel = make_tunnel(service)
            await tunnel.connect()
            reader = asyncio.get_running_loop().create_task(tunnel.read())
            await asyncio.gather(tunnel.aclose(), tunnel.aclose())
            await tunnel.aclose()
            assert await reader == b""
            await tunnel.wait_closed()
            with pytest.raises(TunnelError, match="closed"):
                await tunnel.write(b"x")
            assert await tunnel.terminate() is False

    run(main())


def test_writes_during_a_reconnect_are_queued_not_failed() -> None:
    # G9: the Go client fails the send while reconnecting; we queue it in the window.
    async def main() -> None:
        agent = ScriptedAgent()
        async with FakeService(agent) as service:
            gate = asyncio.Event()
            resumer = Resumer(service)
            resuming: list[bool] = []

            async def slow_resume() -> str | None:
                resuming.append(True)
                await gate.wait()
                return await resumer()

            service.close_when = lambda a: len(a.received) >= 5
            tunnel = make_tunnel(service, slow_resume)
            await tunnel.connect()
            await tunnel.write(b"first")
            await until(lambda: bool(resuming))  # the websocket is down, ResumeSession in flight
            await tunnel.write(b"-queued-while-down")  # returns: accepted into the window
            assert bytes(agent.received) == b"first"
            gate.set()
            assert await tunnel.drain(timeout=20)
            assert bytes(agent.received) == b"first-queued-while-down"
            assert tunnel.stats.reconnects == 1
            await tunnel.aclose()

    run(main())


@pytest.mark.parametrize("path", ["fast", "recv_and_send"])
def test_bulk_data_through_the_fast_and_the_plain_websocket_paths(
    monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """Frames normally reach the core straight from websockets' parser (``_TappedConnection``) and
    leave in batches (``_send_batch``); without those hooks, ``recv()``/``send()`` per frame must
    give the same result."""
    if path == "recv_and_send":
        monkeypatch.setattr(websocket_driver, "_TappedConnection", websocket_driver._ClientConnection)
        monkeypatch.setattr(websocket_driver, "_can_batch", lambda ws: False)

    async def main() -> None:
        async with FakeService(ScriptedAgent(echo=True)) as service:
            tunnel = make_tunnel(service)
            await tunnel.connect()
            conn = tunnel._conn
            assert conn is not None
            assert (type(conn.ws).__name__ == "_TappedConnection") is (path == "fast")
            payload = random.Random(2).randbytes(300 * 1024 + 17)
            writer = asyncio.get_running_loop().create_task(tunnel.write(payload))
            echoed = await read_exactly(tunnel, len(payload))
            await writer
            assert echoed == payload
            assert tunnel.stats.frames_received >= len(payload) // 1024
            await tunnel.aclose()

    run(main())


def test_data_then_channel_closed_in_one_batch_delivers_the_data_first() -> None:
    async def main() -> None:
        async with FakeService() as service:
            tunnel = make_tunnel(service)
            await tunnel.connect()
            for n in range(50):
                service.agent.send_data(b"%04d" % n, service.now())
            service.agent.channel_closed("")
            await service.push()
            await tunnel.wait_closed()
            assert await read_exactly(tunnel, 200) == b"".join(b"%04d" % n for n in range(50))
            assert await tunnel.read() == b""
            await tunnel.aclose()

    run(main())
