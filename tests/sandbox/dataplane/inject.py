"""Applying the fault switches to one session's traffic (the "service" misbehaving on purpose).

``FaultInjector`` sits between a session and its websocket ``Link``: every frame the agent
sends, every ack the client sends, and every 100 ms tick passes through it. Decisions read the
current ``DataPlaneFaults`` each time and draw from the session's seeded generator, so the same
seed and session id give the same decisions for the same traffic.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from typing import Final

from .channel import FrameKind, OutFrame
from .codec import MessageType, encode_message, new_message_id
from .faults import DataPlaneFaults, corrupt_digest
from .link import Link

K_ACK_TYPE: Final = b"acknowledge".ljust(32)


class FaultInjector:
    def __init__(
        self,
        *,
        faults: Callable[[], DataPlaneFaults],
        rng: random.Random,
        count: Callable[[str, int], None],
        spawn: Callable[[Awaitable[None]], None],
    ) -> None:
        self._faults = faults
        self._rng = rng
        self._count = count
        self._spawn = spawn

    def send(self, link: Link, data: bytes) -> None:
        """Queue a frame as is (no fault decision)."""
        if link.post(data):
            self._count("frames_out", 1)

    def transmit(self, link: Link, out: OutFrame) -> None:
        """Queue one agent frame, corrupted, dropped, delayed, held back or doubled as switched."""
        faults = self._faults()
        rng = self._rng
        data = out.data
        if faults.corrupt_digest and rng.random() < faults.corrupt_digest:
            data = corrupt_digest(data)  # the buffered original stays intact for the resend
            self._count("fault_corrupted", 1)
        if out.kind is FrameKind.ACK:
            if faults.ack_loss and rng.random() < faults.ack_loss:
                self._count("fault_ack_dropped", 1)
            elif faults.ack_delay > 0:
                self._count("fault_ack_delayed", 1)
                link.post_later(faults.ack_delay, lambda: self.send(link, data))
            else:
                self.send(link, data)
            return
        if faults.reorder and link.held is None and rng.random() < faults.reorder:
            self._count("fault_reordered", 1)
            link.held = data  # sent after the next frame, or after reorder_hold at the latest
            link.post_later(faults.reorder_hold, lambda: self._flush_held(link))
            return
        self.send(link, data)
        if faults.duplicate and rng.random() < faults.duplicate:
            self._count("fault_duplicated", 1)
            self.send(link, data)
        self._flush_held(link)

    def _flush_held(self, link: Link) -> None:
        held, link.held = link.held, None
        if held is not None:
            self.send(link, held)

    def ignore_client_ack(self, data: bytes) -> bool:
        """The client_ack_loss switch: pretend this client ack never arrived."""
        probability = self._faults().client_ack_loss
        if probability and data[4:36] == K_ACK_TYPE and self._rng.random() < probability:
            self._count("fault_client_ack_ignored", 1)
            return True
        return False

    def tick(self, link: Link, now: float) -> None:
        """Per-connection timed faults: the 1000 "Bye" drop and pause/start_publication."""
        faults = self._faults()
        if (
            faults.ws_drop_every is not None
            and not link.dropping
            and now - link.opened >= faults.ws_drop_every
        ):
            link.dropping = True
            self._count("fault_ws_drops", 1)
            self._spawn(link.close(1000, "Bye"))
            return
        if faults.publication_pause_every is None:
            return
        if link.paused_at is None and now - link.last_publication >= faults.publication_pause_every:
            link.paused_at = now
            self._count("fault_publication_pauses", 1)
            self.send(link, publication(MessageType.PAUSE_PUBLICATION))
        elif link.paused_at is not None and now - link.paused_at >= faults.publication_pause_for:
            link.paused_at = None
            link.last_publication = now
            self.send(link, publication(MessageType.START_PUBLICATION))


def publication(message_type: MessageType) -> bytes:
    """pause/start_publication as the service sends them: empty payload (G18), seq 0, flags 0."""
    return encode_message(
        message_type, payload=b"", created_date=time.time_ns() // 1_000_000, message_id=new_message_id()
    )
