"""Who is calling, from which region: read off the SigV4 ``Authorization`` header.

The sandbox does **not** verify signatures (it has no secret to verify against that a test could
not also read); it trusts the credential scope. That is the one deliberate unfaithfulness of the
authentication layer, and README.md says so. What it does keep: an unsigned request is refused,
and the region and signing service come from the scope exactly as AWS routes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")


@dataclass(frozen=True)
class SigV4Scope:
    """The parts of a SigV4 credential scope the sandbox routes on."""

    access_key_id: str
    date: str
    region: str
    service: str


def parse_authorization(header: str | None) -> SigV4Scope | None:
    """Return the credential scope of an ``AWS4-HMAC-SHA256`` header, or None if there is none."""
    if not header or not header.startswith("AWS4-HMAC-SHA256"):
        return None
    match = _CREDENTIAL.search(header)
    if match is None:
        return None
    return SigV4Scope(*match.groups())
