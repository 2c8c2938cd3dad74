"""OS users the simulated AMIs have, and the sudo rules they come with.

- ``ec2-user`` (Amazon Linux) and ``ubuntu`` (Ubuntu): passwordless sudo, as on the AMIs;
- ``ec2ssm-pw``: sudo *with* a password (``SUDO_PASSWORD``), for "become with a sudo password".

Users live in the machine's ``/etc/passwd`` (a mount namespace cannot give a process its own user
database without replacing /etc/passwd, which would also change uids for the controller side), so
they are created once per machine, with the comment ``ec2ssm sandbox``, and left in place by
``down``: other sandboxes may be using them. Their password field is ``*`` (no password login,
but not "locked", which sshd without PAM would refuse), except ``ec2ssm-pw``'s. Which users may log
in to which instance is decided per instance by sshd's ``AllowUsers`` (an Ubuntu instance has no
``ec2-user``, as on AWS). The sudo rules are *not* written to the machine's /etc/sudoers.d: each
sshd connection sees the sandbox's own sudoers.d directory bind-mounted over it.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PASSWORDLESS_USERS = ("ec2-user", "ubuntu")
PASSWORD_USER = "ec2ssm-pw"
SUDO_PASSWORD = "ec2ssm-sandbox-sudo"
MARKER = "ec2ssm sandbox"
LOCK = Path("/run/ec2ssm-sandbox/users.lock")


class UserSetupError(RuntimeError):
    pass


@contextmanager
def _machine_lock() -> Iterator[None]:
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def ensure_users() -> None:
    """Create the sandbox's OS users if missing (idempotent, safe against parallel sandboxes)."""
    if os.geteuid() != 0:
        raise UserSetupError("creating OS users needs root")
    with _machine_lock():
        for name in (*PASSWORDLESS_USERS, PASSWORD_USER):
            if _exists(name):
                continue
            result = subprocess.run(
                ["useradd", "--no-create-home", "--home-dir", f"/home/{name}", "--shell", "/bin/bash",
                 "--user-group", "--comment", MARKER, name],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if result.returncode != 0 and not _exists(name):
                raise UserSetupError(f"useradd {name}: {result.stderr.strip()}")
            if name == PASSWORD_USER:
                subprocess.run(["chpasswd"], input=f"{name}:{SUDO_PASSWORD}\n", text=True, check=True)
            else:
                subprocess.run(["usermod", "--password", "*", name], check=True)


def sudoers_text() -> str:
    lines = [f"{user} ALL=(ALL) NOPASSWD:ALL" for user in PASSWORDLESS_USERS]
    lines.append(f"{PASSWORD_USER} ALL=(ALL) ALL")
    lines.append(f"Defaults:{PASSWORD_USER} !lecture")
    return "# ec2ssm sandbox: the sudo rules of the simulated AMIs\n" + "\n".join(lines) + "\n"


def write_sudoers_dir(directory: Path) -> None:
    """The sudoers.d every instance sees: root-owned 0750 directory, 0440 file (sudo checks both)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o750)  # noqa: S103 - the mode sshd/sudo/the AMI use
    target = directory / "ec2ssm-sandbox"
    tmp = directory / ".ec2ssm-sandbox.tmp"
    tmp.write_text(sudoers_text())
    os.chmod(tmp, 0o440)
    os.replace(tmp, target)


def allowed_users(os_user: str) -> list[str]:
    """Who may log in to an instance whose AMI user is ``os_user``."""
    return [os_user, PASSWORD_USER]


def make_home(home_root: Path, name: str) -> None:
    """Create ``home_root/<name>`` owned by the user, 0700 (as useradd does on the AMIs)."""
    entry = pwd.getpwnam(name)
    home = home_root / name
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    os.chmod(home, 0o700)
