"""Tokens, the StreamUrl contract, reconnect with ResumeSession, TLS and log hygiene."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane import DataPlane
from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane.tests.helpers import (
    Dialer,
    TcpServer,
    open_session,
    self_signed,
    wait_until,
)
from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane.tests.scripted import ScriptedClient


def test_stream_url_shape(plane: DataPlane, echo_server: TcpServer) -> None:
    opened = open_session(plane, echo_server.port)
    parts = urlsplit(opened.url)
    assert parts.scheme == "ws"
    assert parts.path == f"/v1/data-channel/{opened.session_id}"
    role, cell = parts.query.split("&")
    assert role == "role=publish_subscribe"
    assert cell.startswith("cell-number=")
    value = cell.removeprefix("cell-number=")
    assert {"+", "/", "="} <= set(value)  # G15: must survive verbatim
    assert opened.url.startswith(plane.base_url)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda url: url.replace("+", "%2B"),
        lambda url: url.split("?")[0] + "?" + url.split("?")[1].replace("/", "%2F"),
        lambda url: url.split("&")[0],
        lambda url: url.replace("=", "%3D", 3),
    ],
    ids=["plus-encoded", "slash-encoded", "cell-dropped", "equals-encoded"],
)
def test_stream_url_must_be_used_verbatim(plane: DataPlane, echo_server: TcpServer, mangle: object) -> None:
    opened = open_session(plane, echo_server.port)
    url = mangle(opened.url)  # type: ignore[operator]
    assert url != opened.url
    with pytest.raises(InvalidStatus) as info:
        ScriptedClient(url).connect(opened.token)
    assert info.value.response.status_code == 400


def test_unknown_path_is_404(plane: DataPlane) -> None:
    with pytest.raises(InvalidStatus) as info:
        ScriptedClient(plane.base_url + "/v2/other").connect("token")
    assert info.value.response.status_code == 404


def _refused(url: str, token: str) -> tuple[int | None, str]:
    client = ScriptedClient(url)
    client.connect(token)
    return client.close_code()


def test_bad_tokens_get_close_1008(plane: DataPlane, echo_server: TcpServer) -> None:
    a = open_session(plane, echo_server.port)
    b = open_session(plane, echo_server.port)
    assert _refused(a.url, "not-a-token") == (1008, "Unauthorized: invalid token")
    assert _refused(a.url, b.token) == (1008, "Unauthorized: invalid token")  # bound to session b
    client = ScriptedClient(a.url)
    client.connect(a.token)
    client.handshake()
    assert _refused(a.url, a.token)[0] == 1008  # single use
    assert plane.stats()["tokens_rejected"] == 3
    # b's token survived being presented for the wrong session
    other = ScriptedClient(b.url)
    other.connect(b.token)
    other.handshake()


def test_expired_token(plane: DataPlane, echo_server: TcpServer) -> None:
    plane.set_faults(token_ttl=0.2, handshake_timeout=60)
    opened = open_session(plane, echo_server.port)
    time.sleep(0.3)
    assert _refused(opened.url, opened.token)[0] == 1008
    token = plane.resume_session(opened.session_id)
    assert token is not None
    client = ScriptedClient(opened.url)
    client.connect(token)
    client.handshake()


def test_first_frame_must_be_open_data_channel(plane: DataPlane, echo_server: TcpServer) -> None:
    opened = open_session(plane, echo_server.port)
    client = ScriptedClient(opened.url)
    client.connect(opened.token)  # valid open...
    client.handshake()
    # ... but a second connection that starts with a binary frame is refused.
    raw = ScriptedClient(opened.url)
    raw.ws = connect(opened.url, legacy=True)
    raw.ws.send(b"\x00" * 200)
    assert raw.close_code()[0] == 1008


def test_resume_keeps_sequence_state_and_port(plane: DataPlane, echo_server: TcpServer) -> None:
    """§6.4: a reconnect with a ResumeSession token continues both sequence spaces."""
    opened = open_session(plane, echo_server.port)
    client = ScriptedClient(opened.url)
    client.connect(opened.token)
    client.handshake()
    client.send_reliably(b"before ")
    client.expect_stream(b"before ")
    # An unacked message of ours is in flight when the connection dies without a close frame.
    seq, raw = client.send_stream(b"in-flight ")
    client.abort()  # G14
    wait_until(lambda: plane.session_state(opened.session_id) == "Disconnected")
    assert _refused(opened.url, opened.token)[0] == 1008  # the old token is spent
    token = plane.resume_session(opened.session_id)
    assert token is not None
    client.connect(token)  # same ClientId
    if seq not in client.acked:
        client.send_raw(raw)  # our resend: re-acked if it had arrived, processed otherwise
    client.wait_for(lambda: seq in client.acked, what="ack of the in-flight message")
    client.send_reliably(b"after")
    client.expect_stream(b"in-flight after")
    stats = plane.session_stats(opened.session_id)
    assert stats["reconnects"] == 1
    assert stats["client_id_changes"] == 0
    assert stats["port_dials"] == 1  # the destination connection survived
    assert plane.session_state(opened.session_id) == "Connected"


def test_reconnect_with_another_client_id_is_reported(plane: DataPlane, echo_server: TcpServer) -> None:
    opened = open_session(plane, echo_server.port)
    client = ScriptedClient(opened.url)
    client.connect(opened.token)
    client.handshake()
    client.abort()
    token = plane.resume_session(opened.session_id)
    assert token is not None
    client.connect(token, client_id="5d7c0bb4-0000-4000-8000-000000000000")
    client.send_reliably(b"x")
    assert plane.session_stats(opened.session_id)["client_id_changes"] == 1


def test_new_connection_replaces_the_old_one(plane: DataPlane, echo_server: TcpServer) -> None:
    opened = open_session(plane, echo_server.port)
    first = ScriptedClient(opened.url)
    first.connect(opened.token)
    first.handshake()
    token = plane.resume_session(opened.session_id)
    assert token is not None
    second = ScriptedClient(opened.url)
    second.client_id = first.client_id
    second.next_seq, second.agent_expected = first.next_seq, first.agent_expected
    second.connect(token)
    assert first.close_code() == (1000, "Bye")
    second.send_reliably(b"y")
    second.expect_stream(b"y")


def test_ws_drop_fault_needs_resume(plane: DataPlane, echo_server: TcpServer) -> None:
    """G16: the service closes with 1000 "Bye"; the client resumes and carries on."""
    opened = open_session(plane, echo_server.port)
    client = ScriptedClient(opened.url)
    client.connect(opened.token)
    client.handshake()
    plane.set_faults(ws_drop_every=0.5)
    assert client.close_code() == (1000, "Bye")
    plane.set_faults(ws_drop_every=None)
    token = plane.resume_session(opened.session_id)
    assert token is not None
    client.connect(token)
    client.send_reliably(b"resumed")
    client.expect_stream(b"resumed")
    assert plane.stats()["fault_ws_drops"] == 1


def test_resume_of_an_ended_session_is_none(plane: DataPlane, echo_server: TcpServer) -> None:
    opened = open_session(plane, echo_server.port)
    plane.terminate_session(opened.session_id)
    wait_until(lambda: plane.session_state(opened.session_id) == "Terminated")
    assert plane.resume_session(opened.session_id) is None
    assert plane.resume_session("never-existed") is None
    assert plane.session_state("never-existed") == "Unknown"


def test_create_session_validates(plane: DataPlane) -> None:
    with pytest.raises(TypeError, match="strings"):
        plane.create_session(
            session_id="s-1",
            target="i-1",
            document_name="AWS-StartSSHSession",
            properties={"portNumber": 22},  # type: ignore[dict-item]
            agent_version="3.3.987.0",
        )
    plane.create_session(
        session_id="s-2",
        target="i-1",
        document_name="d",
        properties={"portNumber": "22"},
        agent_version="3.3.987.0",
    )
    with pytest.raises(ValueError, match="already used"):
        plane.create_session(
            session_id="s-2",
            target="i-1",
            document_name="d",
            properties={"portNumber": "22"},
            agent_version="3.3.987.0",
        )
    with pytest.raises(ValueError, match="URL path"):
        plane.create_session(
            session_id="a/b", target="i-1", document_name="d", properties={}, agent_version="3.3.987.0"
        )


def test_logs_never_contain_token_values(
    plane: DataPlane, echo_server: TcpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    opened = open_session(plane, echo_server.port)
    _refused(opened.url, opened.token + "x")
    client = ScriptedClient(opened.url)
    client.connect(opened.token)
    client.handshake()
    client.abort()
    token = plane.resume_session(opened.session_id)
    assert token is not None
    client.connect(token)
    client.send_reliably(b"z")
    plane.terminate_session(opened.session_id)
    client.channel_closed()
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("test.dataplane"))
    assert "refused" in text  # the bad token was logged (by fingerprint)
    for secret in (opened.token, token):
        assert secret not in text
        assert secret[:16] not in text


def test_tls_endpoint(tmp_path: Path, echo_server: TcpServer) -> None:
    server_ctx, client_ctx, _ = self_signed(tmp_path)
    plane = DataPlane(ssl_context=server_ctx, dial=Dialer())
    plane.start()
    try:
        assert plane.base_url.startswith("wss://127.0.0.1:")
        opened = open_session(plane, echo_server.port)
        assert opened.url.startswith("wss://")
        client = ScriptedClient(opened.url, ssl_context=client_ctx)
        client.connect(opened.token)
        client.handshake()
        client.send_reliably(b"over tls")
        client.expect_stream(b"over tls")
    finally:
        plane.stop()
