"""Session Manager sessions: the records DescribeSessions lists, and the data plane they live in.

The control plane keeps a ``SessionRecord`` per StartSession (id, target, owner, document,
reason, dates, status); the data plane (``dataplane/``) owns the websocket side and tells us when a
session ends (``on_end``). ``SessionBroker`` is the slice of the data plane's interface SSM uses.
"""

from __future__ import annotations

import datetime
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .nodes import utcnow

ACTIVE_STATUSES = ("Connected", "Connecting", "Disconnected", "Terminating")
HISTORY_STATUSES = ("Terminated", "Failed")


class SessionBroker(Protocol):
    """The data plane, as the SSM service sees it."""

    def create_session(
        self,
        *,
        session_id: str,
        target: str,
        document_name: str,
        properties: dict[str, str],
        agent_version: str,
        on_end: Callable[..., None],
    ) -> tuple[str, str]: ...

    def resume_session(self, session_id: str) -> str | None: ...

    def terminate_session(self, session_id: str, output: str = "") -> None: ...

    def end_sessions_for_target(self, target: str, output: str) -> None: ...

    def session_state(self, session_id: str) -> Any: ...


def new_session_id(caller_name: str) -> str:
    """``<user or role session name>-<17 hex>``, the shape AWS gives (IAM policies match on it)."""
    return f"{caller_name}-{random.getrandbits(68):017x}"


@dataclass
class SessionRecord:
    session_id: str
    target: str
    region: str
    owner: str
    document_name: str
    reason: str | None
    stream_url: str
    start_date: datetime.datetime = field(default_factory=utcnow)
    end_date: datetime.datetime | None = None
    status: str = "Connecting"

    def describe(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "SessionId": self.session_id,
            "Target": self.target,
            "Status": self.status,
            "StartDate": self.start_date,
            "DocumentName": self.document_name,
            "Owner": self.owner,
            "OutputUrl": {},
            "AccessType": "Standard",
        }
        if self.reason:
            item["Reason"] = self.reason
        if self.end_date is not None:
            item["EndDate"] = self.end_date
        return item


class SessionStore:
    """Thread-safe session records, in start order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, SessionRecord] = {}

    def add(self, record: SessionRecord) -> None:
        with self._lock:
            self._records[record.session_id] = record

    def get(self, session_id: str) -> SessionRecord | None:
        with self._lock:
            return self._records.get(session_id)

    def all(self) -> list[SessionRecord]:
        with self._lock:
            return list(self._records.values())

    def end(self, session_id: str, status: str = "Terminated") -> None:
        """Mark a session over (idempotent; the first end wins)."""
        with self._lock:
            record = self._records.get(session_id)
            if record is not None and record.end_date is None:
                record.status = status
                record.end_date = utcnow()


_DATAPLANE_STATES = {
    "connecting": "Connecting",
    "connected": "Connected",
    "disconnected": "Disconnected",
    "terminating": "Terminating",
    "terminated": "Terminated",
    "failed": "Failed",
    "closed": "Terminated",
    "ended": "Terminated",
}


def status_from_dataplane(state: Any, fallback: str) -> str:
    """Map whatever ``DataPlane.session_state`` returns to SSM's SessionStatus enum."""
    if state is None:
        return fallback
    if isinstance(state, dict):
        state = state.get("status") or state.get("state")
    name = getattr(state, "name", None) or getattr(state, "value", None) or state
    return _DATAPLANE_STATES.get(str(name).lower(), fallback)
