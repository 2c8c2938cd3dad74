"""Data-channel bearer tokens: short-lived, bound to one session, single use (§1.1, §6.4).

What AWS does exactly is not public; the sandbox picks the strictest behaviour a correct client
survives, so a sloppy client fails here rather than in production:

* a token is valid for ``ttl`` seconds after it was issued (default 60 s);
* it opens the data channel of exactly one session (the one in the StreamUrl path);
* it is consumed by the first OpenDataChannel that presents it; reconnecting needs a fresh
  token from ResumeSession, and issuing one revokes every older token of that session;
* ending a session revokes its tokens.

Token values are never logged; ``fingerprint`` gives a short, irreversible tag for logs.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Grant:
    session_id: str
    expires: float


class TokenStore:
    """Thread-safe: the control plane issues from its threads, the server checks on its loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._grants: dict[str, _Grant] = {}
        self._by_session: dict[str, set[str]] = {}

    def issue(self, session_id: str, ttl: float) -> str:
        """A new token for ``session_id``; all older tokens of that session stop working."""
        token = secrets.token_urlsafe(96)
        with self._lock:
            self._revoke_locked(session_id)
            self._grants[token] = _Grant(session_id, self._clock() + ttl)
            self._by_session[session_id] = {token}
        return token

    def consume(self, token: str, session_id: str) -> str | None:
        """None when the token is good for ``session_id`` (it is then used up), else why not."""
        with self._lock:
            grant = self._grants.get(token)
            if grant is None:
                return "unknown or already used token"
            if grant.session_id != session_id:
                return "token belongs to another session"
            del self._grants[token]
            self._by_session.get(session_id, set()).discard(token)
            if self._clock() > grant.expires:
                return "token expired"
            return None

    def revoke(self, session_id: str) -> None:
        with self._lock:
            self._revoke_locked(session_id)

    def _revoke_locked(self, session_id: str) -> None:
        for token in self._by_session.pop(session_id, set()):
            self._grants.pop(token, None)


def fingerprint(token: str) -> str:
    """Eight hex digits identifying a token in logs without revealing it."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:8]
