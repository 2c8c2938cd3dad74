"""The OFFICIAL session-manager-plugin as the client peer: the strongest independence check.

The plugin is driven the way the AWS CLI drives it (spec §1.2): the StartSession response in an
``AWS_SSM_START_SESSION_RESPONSE`` variable, region, ``StartSession``, an empty profile, the
request JSON and the SSM endpoint URL, which is a tiny in-test JSON 1.1 stub answering
ResumeSession and TerminateSession from the DataPlane. Dummy credentials are in the environment.

Binary: ``$SESSION_MANAGER_PLUGIN``, else the source builds under /opt/session-manager-plugin
(the release-stamped one first: the pristine build reports 1.2.0.0, which makes the agent keep
smux keepalive on, G1). The tests skip with the reason when none exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane import DataPlane
from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane.tests.helpers import (
    AGENT_BASIC,
    AGENT_MUX,
    PF,
    SSH,
    Dialer,
    TcpServer,
    open_session,
    self_signed,
    wait_until,
)

pytestmark = pytest.mark.official_plugin

CANDIDATES = [
    os.environ.get("SESSION_MANAGER_PLUGIN", ""),
    "/opt/session-manager-plugin/bin-release-version/session-manager-plugin",
    "/opt/session-manager-plugin/bin/session-manager-plugin",
]
TARGET = "i-0123456789abcdef0"
STARTING = re.compile(rb"Starting session with SessionId: (\S+)\n")
PORT_OPENED = re.compile(rb"Port (\d+) opened for sessionId")


@pytest.fixture(scope="module")
def plugin() -> str:
    for candidate in CANDIDATES:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip(
        "official session-manager-plugin binary not found (set SESSION_MANAGER_PLUGIN or build it at "
        "/opt/session-manager-plugin/bin/session-manager-plugin)"
    )


class SsmStub:
    """ResumeSession / TerminateSession over HTTP JSON 1.1, backed by the DataPlane."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self.calls: list[tuple[str, str]] = []
        self.stream_urls: dict[str, str] = {}
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                operation = self.headers.get("X-Amz-Target", "").removeprefix("AmazonSSM.")
                session_id = body.get("SessionId", "")
                stub.calls.append((operation, session_id))
                if operation == "ResumeSession":
                    token = stub.plane.resume_session(session_id)
                    reply: dict[str, Any] = {
                        "SessionId": session_id,
                        "StreamUrl": stub.stream_urls.get(session_id, ""),
                    }
                    if token is not None:
                        reply["TokenValue"] = token
                elif operation == "TerminateSession":
                    stub.plane.terminate_session(session_id)
                    reply = {"SessionId": session_id}
                else:
                    self.send_error(400)
                    return
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub(plane: DataPlane) -> Iterator[SsmStub]:
    ssm = SsmStub(plane)
    yield ssm
    ssm.stop()


class PluginRun:
    """One plugin process; stdout is collected by a thread."""

    def __init__(
        self, binary: str, stub: SsmStub, opened: Any, *, document: str, home: Path, extra_env: dict[str, str]
    ) -> None:
        response = {"SessionId": opened.session_id, "TokenValue": opened.token, "StreamUrl": opened.url}
        stub.stream_urls[opened.session_id] = opened.url
        request = {"Target": TARGET, "DocumentName": document}
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "AWS_ACCESS_KEY_ID": "AKIDSANDBOXEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "sandbox/secret/key/not/real/0000000000",
            "AWS_REGION": "us-east-1",
            "AWS_SSM_START_SESSION_RESPONSE": json.dumps(response),
            **extra_env,
        }
        self.session_id = opened.session_id
        self.proc = subprocess.Popen(
            [
                binary,
                "AWS_SSM_START_SESSION_RESPONSE",
                "us-east-1",
                "StartSession",
                "",
                json.dumps(request),
                stub.url,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        self.out = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := os.read(self.proc.stdout.fileno(), 65536):
            self.out += chunk

    def wait_out(
        self, predicate: Callable[[bytes], bool], timeout: float = 30.0, what: str = "output"
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(bytes(self.out)):
            if time.monotonic() > deadline:
                raise AssertionError(f"plugin never printed {what}; stdout={bytes(self.out)[-500:]!r}")
            if self.proc.poll() is not None and not predicate(bytes(self.out)):
                self._reader.join(timeout=1)
                if not predicate(bytes(self.out)):
                    raise AssertionError(
                        f"plugin exited {self.proc.returncode}; stdout={bytes(self.out)[-500:]!r}"
                    )
            time.sleep(0.01)

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def local_port(self) -> int:
        self.wait_out(lambda out: PORT_OPENED.search(out) is not None, what="its local port")
        match = PORT_OPENED.search(bytes(self.out))
        assert match is not None
        return int(match[1])

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=20)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


@pytest.fixture
def run_plugin(plugin: str, stub: SsmStub, tmp_path: Path) -> Iterator[Callable[..., PluginRun]]:
    runs: list[PluginRun] = []

    def start(opened: Any, document: str, env: dict[str, str] | None = None) -> PluginRun:
        run = PluginRun(plugin, stub, opened, document=document, home=tmp_path, extra_env=env or {})
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.stop()


def _clean(plane: DataPlane, session_id: str) -> None:
    stats = plane.session_stats(session_id)
    for name in (
        "malformed_in",
        "digest_mismatch_in",
        "length_mismatch_in",
        "unknown_type_in",
        "open_shape_problems",
    ):
        assert stats[name] == 0, (name, stats)


def _quiet(plane: DataPlane, session_id: str) -> None:
    """Wait until the websocket is idle before signalling the plugin.

    On SIGINT the plugin sends the TerminateSession flag and exits at once (§5.6). If anything
    of ours is still unread in its socket then, the kernel answers with RST and Linux drops the
    flag we had not read yet; the session then simply stays open, as it would on AWS.
    """
    previous = -1
    while True:
        frames = plane.session_stats(session_id)["frames_in"] + plane.session_stats(session_id)["frames_out"]
        if frames == previous:
            return
        previous = frames
        time.sleep(0.5)


def _echo_through(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(got)} of {len(data)} bytes"
        got += chunk
    return got


# --- standard stream (SSH ProxyCommand) ------------------------------------------------------


def test_stdio_echo_through_the_official_plugin(
    plane: DataPlane, echo_server: TcpServer, run_plugin: Callable[..., PluginRun]
) -> None:
    opened = open_session(plane, echo_server.port, document=SSH)
    run = run_plugin(opened, SSH)
    run.wait_out(lambda out: STARTING.search(out) is not None, what="the session banner")
    start = run.out.index(b"\n", 1) + 1  # tunnel bytes follow "\nStarting session with SessionId: X\n"
    message = b"hello from the official plugin\r\n"
    run.write(message)
    run.wait_out(lambda out: len(out) >= start + len(message), what="the echo")
    assert bytes(run.out[start : start + len(message)]) == message
    payload = bytes(range(256)) * 600  # 150 KiB both ways, many 1024-byte messages
    run.write(payload)
    end = start + len(message) + len(payload)
    run.wait_out(lambda out: len(out) >= end, timeout=60, what="the large echo")
    assert bytes(run.out[start + len(message) : end]) == payload
    # G2: a stdin read that is exactly one 0x0A byte is sent as 0x0D by the official client.
    time.sleep(0.2)  # let the previous write drain so the next read is the lone byte
    run.write(b"\n")
    run.wait_out(lambda out: len(out) >= end + 1, what="the lone newline")
    assert bytes(run.out[end : end + 1]) == b"\r"
    assert run.proc.stdin is not None
    run.proc.stdin.close()  # stdin EOF: the plugin just exits (§5.5)
    assert run.proc.wait(timeout=20) == 0
    _clean(plane, opened.session_id)
    stats = plane.session_stats(opened.session_id)
    assert stats["mode"] == "stdio"
    assert stats["handshakes_completed"] == 1
    wait_until(lambda: plane.session_state(opened.session_id) == "Disconnected")  # G14: no close frame


def test_stdio_channel_closed_ends_the_plugin(
    plane: DataPlane, echo_server: TcpServer, run_plugin: Callable[..., PluginRun]
) -> None:
    opened = open_session(plane, echo_server.port, document=SSH)
    run = run_plugin(opened, SSH)
    run.wait_out(lambda out: STARTING.search(out) is not None, what="the session banner")
    run.write(b"ping\r\n")
    run.wait_out(lambda out: out.endswith(b"ping\r\n"), what="the echo")
    plane.terminate_session(opened.session_id, "Terminated by the sandbox test.")
    assert run.proc.wait(timeout=20) == 0
    run.stop()
    assert f"SessionId: {opened.session_id} : Terminated by the sandbox test.".encode() in run.out
    assert plane.session_state(opened.session_id) == "Terminated"


def test_stdio_reconnects_after_close_1000(
    plane: DataPlane, echo_server: TcpServer, run_plugin: Callable[..., PluginRun], stub: SsmStub
) -> None:
    """G16 / §6.4: the service says 1000 "Bye"; the plugin calls ResumeSession and reconnects."""
    opened = open_session(plane, echo_server.port, document=SSH)
    run = run_plugin(opened, SSH)
    run.wait_out(lambda out: STARTING.search(out) is not None, what="the session banner")
    run.write(b"before the drop\r\n")
    run.wait_out(lambda out: out.endswith(b"before the drop\r\n"), what="the first echo")
    wait_until(lambda: plane.session_stats(opened.session_id)["acks_in"] >= 3)  # nothing in flight
    plane.set_faults(ws_drop_every=0.5)
    wait_until(lambda: plane.stats()["fault_ws_drops"] >= 1)
    plane.set_faults(ws_drop_every=None)
    wait_until(lambda: plane.session_stats(opened.session_id)["reconnects"] >= 1, timeout=30)
    run.write(b"after the drop\r\n")
    run.wait_out(lambda out: out.endswith(b"after the drop\r\n"), what="the echo after reconnecting")
    assert ("ResumeSession", opened.session_id) in stub.calls
    stats = plane.session_stats(opened.session_id)
    assert stats["client_id_changes"] == 0
    assert stats["port_dials"] == 1
    _clean(plane, opened.session_id)


def test_stdio_over_tls(
    plugin: str, echo_server: TcpServer, tmp_path: Path, run_plugin: Callable[..., PluginRun]
) -> None:
    """The sandbox serves wss:// with its own CA; Go trusts it through SSL_CERT_FILE."""
    server_ctx, _, cert = self_signed(tmp_path)
    plane = DataPlane(ssl_context=server_ctx, dial=Dialer())
    plane.start()
    try:
        opened = open_session(plane, echo_server.port, document=SSH)
        assert opened.url.startswith("wss://127.0.0.1:")
        run = run_plugin(opened, SSH, {"SSL_CERT_FILE": str(cert)})
        run.wait_out(lambda out: STARTING.search(out) is not None, what="the session banner")
        run.write(b"over wss\r\n")
        run.wait_out(lambda out: out.endswith(b"over wss\r\n"), what="the echo")
        _clean(plane, opened.session_id)
        run.stop()
    finally:
        plane.stop()


# --- port forwarding ---------------------------------------------------------------------------


def test_basic_port_forwarding(
    plane: DataPlane, echo_server: TcpServer, run_plugin: Callable[..., PluginRun]
) -> None:
    opened = open_session(plane, echo_server.port, document=PF, agent_version=AGENT_BASIC)
    run = run_plugin(opened, PF)
    port = run.local_port()
    with socket.create_connection(("localhost", port), timeout=20) as sock:
        assert _echo_through(sock, b"basic mode, first connection") == b"basic mode, first connection"
        big = os.urandom(100_000)
        assert _echo_through(sock, big) == big
    # The plugin sends DisconnectToPort: the agent closes the destination, redials on new data.
    wait_until(lambda: echo_server.closed == 1)
    with socket.create_connection(("localhost", port), timeout=20) as sock:
        assert _echo_through(sock, b"second connection") == b"second connection"
    assert echo_server.connections == 2
    assert plane.session_stats(opened.session_id)["mode"] == "basic"
    _quiet(plane, opened.session_id)
    assert run.interrupt() == 0  # SIGINT: TerminateSession flag (agent > 2.3.722.0), then exit
    wait_until(lambda: plane.session_state(opened.session_id) == "Terminated")
    _clean(plane, opened.session_id)


def test_mux_port_forwarding(
    plane: DataPlane, echo_server: TcpServer, run_plugin: Callable[..., PluginRun]
) -> None:
    opened = open_session(plane, echo_server.port, document=PF, agent_version=AGENT_MUX)
    run = run_plugin(opened, PF)
    port = run.local_port()
    one = socket.create_connection(("localhost", port), timeout=20)
    two = socket.create_connection(("localhost", port), timeout=20)
    with one, two:
        assert _echo_through(one, b"stream one") == b"stream one"
        assert _echo_through(two, b"stream two") == b"stream two"
        big = os.urandom(300_000)
        assert _echo_through(one, big) == big
    with socket.create_connection(("localhost", port), timeout=20) as three:
        assert _echo_through(three, b"\n") == b"\n"  # no G2 newline rewrite inside smux
    stats = plane.session_stats(opened.session_id)
    assert stats["mode"] == "mux"
    assert stats["mux_streams_opened"] == 3
    assert echo_server.connections == 3
    _quiet(plane, opened.session_id)
    assert run.interrupt() == 0
    wait_until(lambda: plane.session_state(opened.session_id) == "Terminated")
    _clean(plane, opened.session_id)


def test_mux_connect_to_port_error(
    plane: DataPlane, tcp_server: Callable[..., TcpServer], run_plugin: Callable[..., PluginRun]
) -> None:
    server = tcp_server()
    closed_port = server.port
    server.stop()
    opened = open_session(plane, closed_port, document=PF, agent_version=AGENT_MUX)
    run = run_plugin(opened, PF)
    port = run.local_port()
    with socket.create_connection(("localhost", port), timeout=20) as sock:
        sock.sendall(b"anyone?")
        sock.settimeout(20)
        assert sock.recv(100) == b""  # the stream is closed (FIN) by the agent
    run.wait_out(
        lambda out: b"Connection to destination port failed" in out, what="the ConnectToPortError message"
    )
    assert plane.session_stats(opened.session_id)["mux_dial_failures"] == 1
    assert run.interrupt() == 0
