# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Key material of ``trek10.ec2ssm.ssm_ssh``: the per-run key pair and the public half of a user's key.

PRIVATE to this collection.

**One key pair per playbook run.** ansible-core forks a worker per task and host, and a worker's
memory dies with it (ansible.md §2), so the pair lives in a file: under the run's private
directory ``C.DEFAULT_LOCAL_TMP`` (``ansible-local-<pid>…``, mode 0700, created by the
``ansible-playbook`` process and deleted by it at exit). Whichever worker needs it first creates
it under an ``fcntl`` lock; every other worker reads the same files. The files are published by
``rename`` (private key first, public key last), so "the public key exists" means "the pair is
complete" and the common path takes no lock at all.

The key never needs to outlive the run: EC2 Instance Connect accepts a pushed key for 60 s, and an
established ControlPersist master no longer needs it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

try:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
except ImportError as _error:  # pragma: no cover - cryptography ships with ansible-core
    CRYPTOGRAPHY_IMPORT_ERROR: ImportError | None = _error
else:
    CRYPTOGRAPHY_IMPORT_ERROR = None

RUN_SUBDIR = "trek10.ec2ssm"
"""Our directory inside the run's local temporary directory."""
RUN_KEY_NAME = "id_ed25519"
KEY_COMMENT = "trek10.ec2ssm"
"""Comment of the per-run public key, so the pushed key is recognisable in sshd's logs."""
EIC_KEY_TYPES = ("ssh-ed25519", "ssh-rsa")
"""Key types EC2 Instance Connect accepts (SendSSHPublicKey: OpenSSH RSA or ED25519)."""


class KeyMaterialError(Exception):
    """A key cannot be used; the message says which file and what to do."""


@dataclass(frozen=True)
class KeyPair:
    private_key_file: str
    public_key_file: str


def _require_cryptography() -> None:
    if CRYPTOGRAPHY_IMPORT_ERROR is not None:
        raise KeyMaterialError(
            f"the Python package 'cryptography' is required on the controller: {CRYPTOGRAPHY_IMPORT_ERROR}"
        )


def private_dir(local_tmp: str) -> str:
    """Our 0700 directory inside the run's local temporary directory, created if needed.

    ``mkdir`` with mode 0700 cannot yield more (the umask only removes bits), and the parent is
    ansible's own 0700 run directory; so an existing one needs no check on this per-task path.
    """
    path = os.path.join(local_tmp, RUN_SUBDIR)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    return path


@contextlib.contextmanager
def _locked(directory: str) -> Iterator[None]:
    fd = os.open(os.path.join(directory, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _publish(directory: str, name: str, data: bytes) -> str:
    """Write ``data`` to ``directory/name`` with mode 0600, atomically (temp file + rename)."""
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, os.path.join(directory, name))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return os.path.join(directory, name)


def run_key_pair(local_tmp: str) -> KeyPair:
    """The run's ed25519 key pair in ``local_tmp``, created by the first caller (see module doc)."""
    directory = private_dir(local_tmp)
    pair = KeyPair(
        private_key_file=os.path.join(directory, RUN_KEY_NAME),
        public_key_file=os.path.join(directory, RUN_KEY_NAME + ".pub"),
    )
    if os.path.exists(pair.public_key_file):
        return pair
    _require_cryptography()
    with _locked(directory):
        if os.path.exists(pair.public_key_file):  # another worker won the race
            return pair
        key = ed25519.Ed25519PrivateKey.generate()
        private_bytes = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        public_bytes = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        _publish(directory, RUN_KEY_NAME, private_bytes)
        _publish(directory, RUN_KEY_NAME + ".pub", public_bytes + b" " + KEY_COMMENT.encode() + b"\n")
    return pair


def _check_public_key(text: str, source: str) -> None:
    key_type = text.split(maxsplit=1)[0] if text.strip() else ""
    if key_type not in EIC_KEY_TYPES:
        raise KeyMaterialError(
            f"{source}: EC2 Instance Connect accepts only ssh-ed25519 and ssh-rsa keys, not "
            f"{key_type or 'an empty file'!r}; use an ed25519 or RSA key, or set eic_push: false"
        )


def public_key_for(private_key_file: str, local_tmp: str) -> str:
    """Path of the public half of a user's private key, for EC2 Instance Connect to push.

    ``<private_key_file>.pub`` when it exists (as ``ssh-keygen`` writes it); otherwise the public
    key is derived from an unencrypted private key and written to the run's private directory.
    An encrypted key without a ``.pub`` file cannot be read here (ssh asks for the passphrase,
    we cannot), so the error asks for the ``.pub`` file.
    """
    companion = private_key_file + ".pub"
    if os.path.exists(companion):
        with open(companion, encoding="utf-8", errors="replace") as handle:
            _check_public_key(handle.read(), companion)
        return companion
    _require_cryptography()
    try:
        with open(private_key_file, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise KeyMaterialError(f"cannot read private key file {private_key_file}: {error.strerror}") from None
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)  # type: ignore[assignment]
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise KeyMaterialError(
            f"cannot derive the public key from {private_key_file} ({error}); if the key is "
            f"encrypted, put its public half next to it as {companion}"
        ) from None
    if not isinstance(key, (ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey)):
        raise KeyMaterialError(
            f"{private_key_file}: EC2 Instance Connect accepts only ed25519 and RSA keys; "
            "use one of those, or set eic_push: false"
        )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    directory = private_dir(local_tmp)
    digest = hashlib.sha256(os.path.abspath(private_key_file).encode()).hexdigest()[:16]
    name = f"user-{digest}.pub"
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        _publish(directory, name, public + b" " + KEY_COMMENT.encode() + b"\n")
    return path


def helper_stderr_path(local_tmp: str, instance_id: str, os_user: str | None, port: object) -> str:
    """The path, in the run's private directory, where the helpers for one SSH destination append
    their stderr (``2>>``, ssh_args.py rule 6).

    One file per destination (instance, OS user, port: what ControlPath tells masters apart), not
    per ssh run: a ControlPersist master's helper lives on after the ssh run that started it, and
    when its tunnel fails during a later task, its last words must still be where that task's
    ssh failure is diagnosed. Readers take what was appended during their own run (offsets).
    """
    destination = f"{instance_id}\0{os_user or ''}\0{port or ''}"
    digest = hashlib.sha256(destination.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return os.path.join(private_dir(local_tmp), f"helper-{digest}.stderr")


HELPER_STDERR_READ_LIMIT = 64 * 1024
"""Bytes of helper output read per ssh run at most (the newest): ``--debug`` output can be long."""


def stderr_size(path: str | None) -> int:
    """Current size of a helper stderr file (0 when there is none yet)."""
    if not path:
        return 0
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def read_stderr_since(path: str | None, offset: int) -> str:
    """What was appended to ``path`` after ``offset`` (at most the newest
    :data:`HELPER_STDERR_READ_LIMIT` bytes); "" when nothing was, or there is no file."""
    if not path:
        return ""
    try:
        with open(path, "rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            if end < offset:  # replaced meanwhile: everything in it is new
                offset = 0
            handle.seek(max(offset, end - HELPER_STDERR_READ_LIMIT))
            data = handle.read()
    except FileNotFoundError:
        return ""
    return data.decode("utf-8", errors="replace")


def known_hosts_path(configured: str) -> str:
    """The dedicated known_hosts file: ``~`` expanded, its directory created (0700) if missing.

    Unlike the key pair it outlives the run: it holds the pinned host keys (accept-new, then
    checked), keyed by instance id through ``HostKeyAlias``.
    """
    path = os.path.abspath(os.path.expanduser(configured))
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
    return path
