# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""TLS context for the data-channel websocket (private to this collection).

The websocket must trust exactly what botocore trusts for the API calls, so that a custom CA
(a corporate TLS proxy, or the local sandbox) works the same way for both. Callers take the path
from botocore's resolved configuration (``AWS_CA_BUNDLE`` or the profile's ``ca_bundle``; to
mirror botocore's default exactly, pass ``botocore.httpsession.get_cert_path(True)``) and build
the context here. Stdlib only.
"""

from __future__ import annotations

import os
import ssl

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.tunnel.errors import TlsConfigError

__all__ = ["build_ssl_context", "ssl_context"]


def build_ssl_context(
    ca_bundle: str | os.PathLike[str] | None = None, *, verify: bool = True
) -> ssl.SSLContext:
    """Return a client context that verifies server certificates and host names.

    Args:
        ca_bundle: a PEM file (or a hashed certificate directory) with the trusted CAs; None
            uses the system default store.
        verify: False disables verification, like botocore's ``verify=False`` (``--no-verify-ssl``).

    Raises:
        TlsConfigError: the bundle does not exist or holds no usable certificate.
    """
    cafile: str | None = None
    capath: str | None = None
    if ca_bundle is not None:
        path = os.fspath(ca_bundle)
        if os.path.isdir(path):
            capath = path
        elif os.path.isfile(path):
            cafile = path
        else:
            raise TlsConfigError(f"CA bundle {path!r} does not exist (check AWS_CA_BUNDLE / ca_bundle)")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile, capath=capath)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise TlsConfigError(f"CA bundle {os.fspath(ca_bundle or '')!r} cannot be loaded: {exc}") from exc
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


ssl_context = build_ssl_context
"""Alias of :func:`build_ssl_context` (the name the tunnel helper uses)."""
