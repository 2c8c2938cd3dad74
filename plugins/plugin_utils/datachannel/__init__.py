# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sans-IO core of the SSM Session Manager data channel for port sessions.

PRIVATE to this collection. Stdlib only: no sockets, no asyncio, no clock (``now`` is passed in).
The wire protocol is described in ``shared/spec/ssm-data-channel.md``; the I/O drivers live in
``plugin_utils/tunnel``. The public names are re-exported here (h11 style).
"""

from __future__ import annotations

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.errors import (
    DataChannelError,
    LocalProtocolError,
    MalformedMessage,
    RemoteProtocolError,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.events import (
    ChannelClosed,
    ConnectToPortError,
    DataReceived,
    Event,
    HandshakeCompleted,
    HandshakeFailed,
    ProtocolWarning,
    PublicationPaused,
    PublicationResumed,
    RetransmissionTimedOut,
    SessionMode,
    WindowFull,
    WindowOpen,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.message import (
    AgentMessage,
    Flag,
    MessageType,
    PayloadType,
    decode,
    encode,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.session import (
    ChannelStats,
    DataChannel,
)

__all__ = [
    "AgentMessage",
    "ChannelClosed",
    "ChannelStats",
    "ConnectToPortError",
    "DataChannel",
    "DataChannelError",
    "DataReceived",
    "Event",
    "Flag",
    "HandshakeCompleted",
    "HandshakeFailed",
    "LocalProtocolError",
    "MalformedMessage",
    "MessageType",
    "PayloadType",
    "ProtocolWarning",
    "PublicationPaused",
    "PublicationResumed",
    "RemoteProtocolError",
    "RetransmissionTimedOut",
    "SessionMode",
    "WindowFull",
    "WindowOpen",
    "decode",
    "encode",
]
