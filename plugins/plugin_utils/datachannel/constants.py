# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Protocol constants of the SSM data channel for port sessions (private to this collection).

Names follow aioquic's ``K_`` style. Every value cites the section of
``shared/spec/ssm-data-channel.md`` it comes from; values that are *our* choices (window sizes,
give-up time) say so.
"""

from __future__ import annotations

# --- AgentMessage framing (ssm-data-channel.md §2) -------------------------------------------
K_HEADER_LENGTH = 116
"""Value of the HeaderLength field: the offset of PayloadLength, excluding PayloadLength (§2, G3)."""
K_HEADER_SIZE = 120
"""Bytes before the payload: HeaderLength + the 4-byte PayloadLength field."""
K_MESSAGE_TYPE_SIZE = 32
K_SCHEMA_VERSION = 1
K_FLAG_SYN = 1
K_FLAG_FIN = 2
K_ACK_FLAGS = K_FLAG_SYN | K_FLAG_FIN
"""Flags of every ``acknowledge`` frame (§2, flags table)."""
K_CLIENT_STREAM_FLAGS = 0
"""Flags of every client ``input_stream_data`` frame, including seq 0 (§2, flags table)."""

# --- Reliability (§3) ---------------------------------------------------------------------------
K_INITIAL_SRTT = 0.1
K_INITIAL_RTTVAR = 0.0
K_INITIAL_RTO = 0.2
K_RTT_ALPHA = 1 / 8
K_RTT_BETA = 1 / 4
K_CLOCK_GRANULARITY = 0.01
K_RTO_MAX = 1.0
K_DEFAULT_CHUNK_SIZE = 1024
"""Max payload bytes per data message we send. §3.1: both official peers send at most 1024
(``StreamDataPayloadSize`` in session-manager-plugin ``src/config/config.go`` and in
amazon-ssm-agent ``agent/session/config/config.go``); "keep payloads <= 1024 bytes for safety unless
measured otherwise". We cannot measure against AWS here, and the public evidence is mixed:

* larger payloads do pass the service: mmmorris1975/ssm-session-client (and its fork
  alexbacchin/ssm-session-client) send up to 1536 bytes per message (``datachannel/data_channel.go``
  ``ReadFrom``), and dacort/pyssm-client's port forwarding sends whole smux frames of up to
  32 KiB + 8 as one message (``cli/port_forward.py`` with ``communicator/smux.py``);
* but Hanschad/session-proxy measured against AWS (``docs/large-transfer-stability.md``, commit
  bdc28b9, 2026-01) that 8192-byte payloads under sustained upload drew ``pause_publication`` and
  then ``channel_closed`` from the service, where 1024 with the same window completed, and capped
  its chunk at 1024; and a session moves well under 1 MB/s on AWS anyway (0.6-0.8 MB/s in
  amazon-ssm-agent issue #664; alexbacchin's client throttles uploads for that reason), so there
  bigger chunks would save CPU, not time.

So the default stays 1024, the one size every peer is known to accept. ``--chunk-size`` /
``TREK10_EC2SSM_CHUNK_SIZE`` on the helper (``chunk_size`` here) raise it where it is known to work
(the sandbox accepts any size: 32 KiB cuts the helper's CPU per uploaded byte by about 3x)."""
K_DEFAULT_MAX_UNACKED_MESSAGES = 1024
"""Our choice: the bounded outgoing window (count). The Go client evicts at 10 000 (G10); we
apply backpressure instead, so the bound only caps memory and in-flight data."""
K_DEFAULT_MAX_UNACKED_BYTES = 4 * 1024 * 1024
"""Our choice: the bounded outgoing window (payload bytes)."""
K_DEFAULT_REORDER_CAPACITY = 4096
"""Our choice: how far ahead of ``expected`` an early message may be and still be buffered and
acked (§3.2: the Go client buffers up to 10 000). Beyond it: dropped without ack, resent later."""
K_DEFAULT_RETRANSMIT_BURST = 1
"""§3.5: the official peers resend only the oldest unacked message per tick."""
K_DEFAULT_GIVE_UP_AFTER = 300.0
"""§3.5/§6.3: the Go client gives up after ~5 min of resending one message. We measure the
same five minutes as time the oldest message stays unacked while we are able to transmit."""

# --- Handshake and versions (§4, §5.1) ------------------------------------------------------------
K_CLIENT_VERSION = "1.2.650.0"
"""ClientVersion we report. It must be > 1.2.331.0 or agents keep smux keepalive on (G1). This is
the release whose wire behaviour the spec and the vectors record, so our frames match them."""
K_MUX_AFTER_AGENT_VERSION = "3.0.196.0"
K_SMUX_KEEPALIVE_OFF_AFTER_AGENT_VERSION = "3.1.1511.0"
K_TERMINATE_FLAG_AFTER_AGENT_VERSION = "2.3.722.0"
K_PORT_SESSION_TYPE = "Port"
K_LOCAL_PORT_FORWARDING = "LocalPortForwarding"

# --- OpenDataChannel (§1.4) ------------------------------------------------------------------------
K_MESSAGE_SCHEMA_VERSION = "1.0"
