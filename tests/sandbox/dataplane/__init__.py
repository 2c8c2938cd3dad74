"""Sandbox data plane: the ``ssmmessages`` service and the SSM Agent side of port sessions.

This package emulates what an unmodified client (boto3 + the official session-manager-plugin,
or our own client) talks to after StartSession: the websocket endpoint behind ``StreamUrl``
and the agent on the instance, as specified in ``shared/spec/ssm-data-channel.md``.

Independence, on purpose: this package contains its own AgentMessage codec, reliability layer,
handshake and smux implementation, written from the spec. It never imports the collection's
client core (``plugins/plugin_utils/datachannel``) and the client never imports it. The
duplication is deliberate: a misunderstanding of the protocol shared by both sides would make
tests pass against the sandbox and fail against AWS, and keeping two independent
implementations (checked against the official implementation's byte vectors and, when its
binary is present, against the official plugin itself) is what stops that from hiding.

Entry points: ``DataPlane`` (the thread-safe façade the control plane uses) and
``DataPlaneFaults`` (fault and limit switches). See README.md for fidelity notes.
"""

from .dataplane import DataPlane
from .faults import DataPlaneFaults

__all__ = ["DataPlane", "DataPlaneFaults"]
