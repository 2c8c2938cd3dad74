"""Shared test helpers: vectors, a recording StreamHandler, TCP destinations, session setup."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import itertools
import json
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane import DataPlane

VECTORS = Path(__file__).parent / "vectors"


def load_vectors(name: str) -> list[dict[str, Any]]:
    data = json.loads((VECTORS / name).read_text())
    assert data["format"] == "ssm-port-session-vectors/1"
    assert len(data["vectors"]) == data["count"]
    vectors: list[dict[str, Any]] = data["vectors"]
    return vectors


def binary_vectors(name: str) -> list[dict[str, Any]]:
    return [v for v in load_vectors(name) if v.get("kind") == "binary"]


def vector(name: str, file: str = "client_frames.json") -> dict[str, Any]:
    for v in load_vectors(file):
        if v["name"] == name:
            return v
    raise KeyError(name)


class RecordingHandler:
    """A StreamHandler that records deliveries; readiness is switchable."""

    def __init__(self, *, ready: bool = True) -> None:
        self.is_ready = ready
        self.delivered: list[tuple[int, bytes]] = []

    def ready(self) -> bool:
        return self.is_ready

    def deliver(self, payload_type: int, payload: bytes) -> None:
        self.delivered.append((payload_type, payload))


class _Handler(socketserver.BaseRequestHandler):
    server: TcpServer

    def handle(self) -> None:
        self.server.connections += 1
        try:
            self.server.behaviour(self.request)
        finally:
            self.server.closed += 1


class TcpServer(socketserver.ThreadingTCPServer):
    """A destination inside the "instance": echo by default, or any per-connection function."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, behaviour: Callable[[socket.socket], None]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviour = behaviour
        self.connections = 0
        """Connections accepted so far."""
        self.closed = 0
        """Connections whose handler has finished (the peer closed or the behaviour ended)."""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        port: int = self.server_address[1]
        return port

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def echo(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := sock.recv(65536):
            sock.sendall(data)


def banner_then_echo(sock: socket.socket) -> None:
    sock.sendall(b"SSH-2.0-OpenSSH_9.2 sandbox\r\n")
    echo(sock)


def banner_then_close(sock: socket.socket) -> None:
    sock.sendall(b"SSH-2.0-OpenSSH_9.2 sandbox\r\n")
    sock.shutdown(socket.SHUT_WR)
    with contextlib.suppress(OSError):
        sock.recv(1)


@dataclass
class Dialer:
    """``dial`` for the DataPlane: plain TCP on this host, recorded, optionally held back."""

    calls: list[tuple[str, str, int]] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.gate.set()

    def __call__(self, target: str, host: str, port: int) -> socket.socket:
        self.calls.append((target, host, port))
        if not self.gate.wait(timeout=30):
            raise OSError("test dial gate never opened")
        return socket.create_connection(("127.0.0.1" if host == "localhost" else host, port), timeout=5)


_ids = itertools.count(1)

SSH = "AWS-StartSSHSession"
PF = "AWS-StartPortForwardingSession"
AGENT_MUX = "3.3.987.0"
AGENT_BASIC = "3.0.196.0"


@dataclass
class Opened:
    session_id: str
    url: str
    token: str
    ended: list[tuple[str, str]]


def open_session(
    plane: DataPlane,
    port: int,
    *,
    document: str = SSH,
    agent_version: str = AGENT_MUX,
    extra: dict[str, str] | None = None,
    target: str = "i-0123456789abcdef0",
    session_id: str | None = None,
) -> Opened:
    """StartSession as the control plane would call it, with the document's properties."""
    properties: dict[str, str] = {"portNumber": str(port)}
    if document != SSH:
        properties |= {"type": "LocalPortForwarding", "localPortNumber": "0"}
    properties |= extra or {}
    ended: list[tuple[str, str]] = []
    session_id = session_id or f"tester-{next(_ids):017x}"
    url, token = plane.create_session(
        session_id=session_id,
        target=target,
        document_name=document,
        properties=properties,
        agent_version=agent_version,
        on_end=lambda sid, status: ended.append((sid, status)),
    )
    return Opened(session_id, url, token, ended)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition that another thread makes true; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext, Path]:
    """A throwaway CA-style certificate for 127.0.0.1: (server context, client context, PEM path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client, cert_file
