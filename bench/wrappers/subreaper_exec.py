# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``python subreaper_exec.py CMD...``: become a child subreaper, then exec CMD.

Why: an ssh ControlPersist master detaches from the worker that started it, and its tunnel
helper with it; normally both are re-parented to init and vanish from ansible-playbook's process
tree. With ansible-playbook a subreaper (Linux ``PR_SET_CHILD_SUBREAPER``, kept across exec),
they are re-parented to it instead, so one walk of its tree finds every controller process:
workers, ssh clients and masters, helpers.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import NoReturn

PR_SET_CHILD_SUBREAPER = 36


def main(argv: list[str]) -> NoReturn:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(errno)}")
    os.execvp(argv[0], argv)  # noqa: S606 - exec is this wrapper's job


if __name__ == "__main__":
    main(sys.argv[1:])
