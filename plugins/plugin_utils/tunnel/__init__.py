# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""asyncio drivers of the SSM data channel: websocket tunnel, stdio bridge, local port forward.

PRIVATE to this collection. ``websockets`` is imported behind a guard: importing this package
never fails; constructing a :class:`Tunnel` without it raises :class:`MissingDependency`.
"""

from __future__ import annotations

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.tunnel.errors import (
    ChannelClosedByService,
    HandshakeFailed,
    MissingDependency,
    PeerUnresponsive,
    SessionGone,
    TlsConfigError,
    TunnelClosed,
    TunnelError,
    WebSocketFailed,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.tunnel.websocket_driver import (
    HandshakeInfo,
    Tunnel,
    TunnelStats,
    TunnelTuning,
)

__all__ = [
    "ChannelClosedByService",
    "HandshakeFailed",
    "HandshakeInfo",
    "MissingDependency",
    "PeerUnresponsive",
    "SessionGone",
    "TlsConfigError",
    "Tunnel",
    "TunnelClosed",
    "TunnelError",
    "TunnelStats",
    "TunnelTuning",
    "WebSocketFailed",
]
