# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""EC2 Instance Connect: push a one-time SSH public key (valid 60 s) for one OS user.

PRIVATE to this collection. The key is pushed by the tunnel helper right before the tunnel opens,
so it is used within its 60 seconds by the SSH connection that the helper carries.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws.errors import AwsCallError

if TYPE_CHECKING:
    from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws.clients import AwsAccess

SERVICE = "ec2-instance-connect"
OPERATION = "SendSSHPublicKey"

#: ``InstanceId`` pattern of SendSSHPublicKey: EC2 instances only. Hybrid/managed nodes (``mi-*``)
#: and other SSM targets cannot receive keys this way.
_EC2_INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
#: Key types EC2 Instance Connect accepts (OpenSSH one-line format).
_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")
_MAX_KEY_FILE = 16 * 1024


class InstanceConnectError(ValueError):
    """A local reason why a key cannot be pushed (no AWS call was made); ``str()`` is the sentence."""


def check_target(instance_id: str) -> None:
    """Raise :class:`InstanceConnectError` unless ``instance_id`` can receive an EIC key."""
    if instance_id.startswith("mi-"):
        raise InstanceConnectError(
            f"EC2 Instance Connect ({SERVICE}:{OPERATION}) cannot push keys to managed (hybrid) nodes "
            "(mi-*), only to EC2 instances (i-*); drop --public-key-file and use a key that is already "
            "authorized on the node"
        )
    if not _EC2_INSTANCE_ID.match(instance_id):
        raise InstanceConnectError(
            f"{instance_id!r} is not an EC2 instance id (i- followed by 8 or 17 hex digits), which "
            f"{SERVICE}:{OPERATION} requires"
        )


def read_public_key(path: str) -> str:
    """Read an OpenSSH public key file (``<type> <base64> [comment]``) and return its first line.

    Raises:
        InstanceConnectError: unreadable file, or not a one-line OpenSSH public key (a *private*
            key given by mistake is refused without echoing any of its content).
    """
    expanded = os.path.expanduser(path)
    try:
        with open(expanded, "rb") as handle:
            raw = handle.read(_MAX_KEY_FILE + 1)
    except OSError as error:
        raise InstanceConnectError(f"cannot read the public key file {path}: {error.strerror}") from error
    text = raw.decode("ascii", errors="replace").strip()
    line = text.splitlines()[0].strip() if text else ""
    if "PRIVATE KEY" in text:
        raise InstanceConnectError(f"{path} holds a private key; pass the public key (.pub) instead")
    if len(raw) > _MAX_KEY_FILE or not line.startswith(_KEY_TYPES) or len(line.split()) < 2:
        raise InstanceConnectError(
            f"{path} is not an OpenSSH public key (expected one line starting with one of: "
            f"{', '.join(_KEY_TYPES)})"
        )
    return line


def push_public_key(
    aws: AwsAccess,
    *,
    instance_id: str,
    os_user: str,
    public_key: str,
    availability_zone: str | None = None,
) -> None:
    """Call ``ec2-instance-connect:SendSSHPublicKey`` for ``os_user`` on ``instance_id``.

    Raises:
        InstanceConnectError: the target cannot use EIC (checked before any call).
        AwsCallError: AWS refused (AccessDenied, unknown instance, throttling after retries, ...),
            or answered ``Success: false``.
    """
    check_target(instance_id)
    params = {"InstanceId": instance_id, "InstanceOSUser": os_user, "SSHPublicKey": public_key}
    if availability_zone:
        params["AvailabilityZone"] = availability_zone
    response = aws.call(SERVICE, OPERATION, **params)
    if response.get("Success") is not True:
        raise AwsCallError(
            operation=OPERATION,
            iam_action=f"{SERVICE}:{OPERATION}",
            code="",
            aws_message=f"AWS answered Success={response.get('Success')!r}",
            target=aws.target,
            region=aws.region,
            label=aws.label,
            category="aws-error",
        )
