"""A minimal ``nc HOST PORT``: relay stdin/stdout to a TCP connection (no netcat on the machine).

Used as an ssh ProxyCommand that reaches an instance's sshd *without* SSM, for tests that prove
sshd and the AuthorizedKeysCommand on their own and for the "plain ssh" benchmark baseline::

    ssh -o ProxyCommand='ip netns exec <netns> python -m \
        ansible_collections.trek10.ec2ssm.tests.sandbox.hosts.netcat 127.0.0.1 22' ec2-user@i-...

Run under ``ip netns exec`` it connects from inside the instance's network namespace.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading


def relay(host: str, port: int) -> int:
    try:
        sock = socket.create_connection((host, port), timeout=10)
    except OSError as exc:
        print(f"netcat: {host}:{port}: {exc}", file=sys.stderr)
        return 1
    sock.settimeout(None)

    def upstream() -> None:
        try:
            while chunk := os.read(0, 65536):
                sock.sendall(chunk)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)

    threading.Thread(target=upstream, daemon=True).start()
    try:
        while chunk := sock.recv(65536):
            os.write(1, chunk)
    except OSError:
        return 1
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: netcat HOST PORT", file=sys.stderr)
        return 2
    return relay(argv[0], int(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
