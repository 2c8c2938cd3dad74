# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``python rusage_exec.py OUT CMD...``: run CMD as a child; append its CPU time and peak RSS to OUT.

Used as the front of a ProxyCommand, between ssh and the tunnel helper: only a parent can read
a finished child's own resource usage (``wait4``), and ssh is no such reader. It forwards ssh's
SIGHUP/SIGINT/SIGTERM to the helper (so the helper ends exactly as without it), exits with its
status, and appends ``user_s sys_s maxrss_kib`` to OUT. Just before starting the child it writes
``bench: exec`` on stderr, which the harness timestamps as the helper's start.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def main(argv: list[str]) -> int:
    out, command = argv[0], argv[1:]
    os.write(2, b"bench: exec\n")
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(command[0], command)  # noqa: S606 - exec is this wrapper's job
        finally:
            os._exit(127)

    def forward(signum: int, _frame: FrameType | None) -> None:
        os.kill(pid, signum)

    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)
    while True:
        try:
            _pid, status, usage = os.wait4(pid, 0)
            break
        except InterruptedError:
            continue
    with open(out, "a", encoding="utf-8") as handle:
        handle.write(f"{usage.ru_utime} {usage.ru_stime} {usage.ru_maxrss}\n")
    return os.waitstatus_to_exitcode(status) & 0xFF


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
