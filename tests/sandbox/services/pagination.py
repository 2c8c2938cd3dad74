"""Opaque, tamper-evident NextToken values (offset + a hash of the request's filters).

AWS tokens are opaque; clients must pass them back verbatim with the same filters. A token that
does not decode, or that was issued for other filters, is ``InvalidNextToken``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode(offset: int, request_fingerprint: str) -> str:
    raw = json.dumps({"o": offset, "f": request_fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(b"ec2ssm-sandbox:" + raw).decode()


def decode(token: str, request_fingerprint: str) -> int | None:
    """The offset in ``token``, or None if it is not a token of this request."""
    try:
        raw = base64.urlsafe_b64decode(token.encode())
        if not raw.startswith(b"ec2ssm-sandbox:"):
            return None
        data = json.loads(raw[len(b"ec2ssm-sandbox:") :])
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("f") != request_fingerprint:
        return None
    offset = data.get("o")
    return offset if isinstance(offset, int) and offset >= 0 else None
