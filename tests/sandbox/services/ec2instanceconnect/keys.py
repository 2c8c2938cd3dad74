"""Which SSH public keys EC2 Instance Connect accepts.

AWS documents RSA (2048-4096 bits) and ED25519 keys in OpenSSH format for Instance Connect; DSA
and ECDSA keys and security-key (``sk-``) types are refused. A key is ``<type> <base64 blob>
[comment]`` where the blob starts with the same type name (RFC 4253 §6.6). The sandbox parses the
blob, so a truncated or mislabelled key is refused here, not only at sshd.
"""

from __future__ import annotations

import base64
import binascii
import struct

from .exceptions import InvalidArgsException

RSA_MIN_BITS = 2048
RSA_MAX_BITS = 4096
SUPPORTED = ("ssh-rsa", "ssh-ed25519")


def _read_string(blob: bytes, offset: int) -> tuple[bytes, int]:
    if offset + 4 > len(blob):
        raise ValueError("truncated")
    (length,) = struct.unpack(">I", blob[offset : offset + 4])
    end = offset + 4 + length
    if end > len(blob):
        raise ValueError("truncated")
    return blob[offset + 4 : end], end


def check_public_key(text: str) -> str:
    """Return the key type if EIC would accept ``text``; raise InvalidArgsException otherwise."""
    parts = text.strip().split()
    if len(parts) < 2:
        raise InvalidArgsException("The SSH public key is not in OpenSSH format (<type> <base64> [comment]).")
    key_type, body = parts[0], parts[1]
    if key_type not in SUPPORTED:
        raise InvalidArgsException(
            f"Unsupported SSH public key type {key_type}. "
            "Supported types: ssh-rsa (2048-4096 bits), ssh-ed25519."
        )
    try:
        blob = base64.b64decode(body, validate=True)
        inner_type, offset = _read_string(blob, 0)
        if inner_type.decode("ascii", "replace") != key_type:
            raise ValueError("type mismatch")
        if key_type == "ssh-ed25519":
            point, offset = _read_string(blob, offset)
            if len(point) != 32:
                raise ValueError("bad ed25519 key")
        else:
            _exponent, offset = _read_string(blob, offset)
            modulus, offset = _read_string(blob, offset)
            bits = int.from_bytes(modulus, "big").bit_length()
            if not RSA_MIN_BITS <= bits <= RSA_MAX_BITS:
                raise InvalidArgsException(
                    f"Unsupported RSA key length {bits}. "
                    f"RSA keys must be {RSA_MIN_BITS} to {RSA_MAX_BITS} bits."
                )
        if offset != len(blob):
            raise ValueError("trailing data")
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgsException("The SSH public key is not valid: its key data cannot be parsed.") from exc
    return key_type
