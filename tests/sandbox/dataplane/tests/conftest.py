"""Fixtures: a running DataPlane on ws://127.0.0.1:0, TCP destinations, a controllable dial."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator

import pytest

from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane import DataPlane
from ansible_collections.trek10.ec2ssm.tests.sandbox.dataplane.tests.helpers import Dialer, TcpServer, echo


@pytest.fixture
def tcp_server() -> Iterator[Callable[..., TcpServer]]:
    servers: list[TcpServer] = []

    def make(behaviour: Callable[[socket.socket], None] = echo) -> TcpServer:
        server = TcpServer(behaviour)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def echo_server(tcp_server: Callable[..., TcpServer]) -> TcpServer:
    return tcp_server(echo)


@pytest.fixture
def dialer() -> Dialer:
    return Dialer()


@pytest.fixture
def plane(dialer: Dialer) -> Iterator[DataPlane]:
    data_plane = DataPlane(ssl_context=None, dial=dialer, log=logging.getLogger("test.dataplane"))
    data_plane.start()
    yield data_plane
    stats = data_plane.stats()
    data_plane.stop()
    assert stats.get("internal_errors", 0) == 0, stats
