"""Which port machinery the emulated agent runs for a session (§5.1, §5.6).

The agent decides on its own, from the document properties, its own version and the
ClientVersion of the HandshakeResponse; the client decides independently from the
AgentVersion of the HandshakeRequest. Both must agree, and a mismatch (e.g. a 3-part agent
version, G12) is exactly what a faithful emulator should let happen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .payloads import compare_versions

K_LPF: Final = "LocalPortForwarding"
K_AGENT_MUX_SINCE: Final = "3.0.196.0"
"""Agents newer than this serve smux (the client's threshold, §5.1)."""
K_CLIENT_MUX_SINCE: Final = "1.1.70"
K_AGENT_KEEPALIVE_SWITCH_SINCE: Final = "3.1.1511.0"
"""Agents newer than this can turn smux keepalive off; older ones always keep it on."""
K_CLIENT_KEEPALIVE_OFF_AFTER: Final = "1.2.331.0"
K_AGENT_TERMINATE_FLAG_AFTER: Final = "2.3.722.0"
K_DEFAULT_HOST: Final = "localhost"
"""What the agent dials when the document has no ``host`` (``DialCall``)."""


class PlanError(ValueError):
    """The agent refuses the session; the message becomes channel_closed Output."""


@dataclass(frozen=True)
class PortPlan:
    mode: str
    """"stdio" (SSH document), "basic" (LocalPortForwarding, one connection) or "mux"."""
    dest_host: str
    dest_port: int
    keepalive: bool
    """mux only: the agent keeps smux keepalive on (G1)."""
    terminate_flag: bool
    """The agent understands the TerminateSession flag."""


def plan_port(properties: dict[str, str], agent_version: str, client_version: str) -> PortPlan:
    """The agent's ``GetSession`` decision plus the version-dependent details."""
    port_text = properties.get("portNumber", "")
    if not port_text:
        raise PlanError(f"Port number is empty in session properties. {properties}")
    try:
        dest_port = int(port_text)
    except ValueError as exc:
        raise PlanError(f"Unable to connect to specified port: invalid port {port_text!r}") from exc
    if not 0 < dest_port < 65536:
        raise PlanError(f"Unable to connect to specified port: invalid port {port_text!r}")
    lpf = properties.get("type", "") == K_LPF
    mux = (
        lpf
        and compare_versions(agent_version, K_AGENT_MUX_SINCE) > 0
        and compare_versions(client_version, K_CLIENT_MUX_SINCE) >= 0
    )
    keepalive = mux and (
        compare_versions(agent_version, K_AGENT_KEEPALIVE_SWITCH_SINCE) <= 0
        or compare_versions(client_version, K_CLIENT_KEEPALIVE_OFF_AFTER) <= 0
    )
    return PortPlan(
        mode="mux" if mux else ("basic" if lpf else "stdio"),
        dest_host=properties.get("host") or K_DEFAULT_HOST,
        dest_port=dest_port,
        keepalive=keepalive,
        terminate_flag=compare_versions(agent_version, K_AGENT_TERMINATE_FLAG_AFTER) > 0,
    )
