# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Process plumbing of the tunnel helper: stderr lines, botocore calls in threads, signals.

PRIVATE to this collection; used by ``ssm_proxy.py``. Stdlib only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils._ssm_proxy_cli import (
    DEBUG_PREFIX,
    ExitCode,
    Redactor,
)

T = TypeVar("T")

#: How long to wait, at the end, for TerminateSession (and for an in-flight StartSession whose
#: session must be terminated) before exiting anyway.
CLEANUP_TIMEOUT = 10.0
#: How long the data-channel close may take at the end.
CLOSE_TIMEOUT = 3.0
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class DebugLog:
    """``log(message)``: one redacted ``trek10.ec2ssm debug:`` line on stderr, only when enabled."""

    def __init__(self, enabled: bool, redactor: Redactor, fd: int = 2) -> None:
        self.enabled = enabled
        self._redactor = redactor
        self._fd = fd

    def __call__(self, message: str) -> None:
        if self.enabled:
            write_line(self._fd, DEBUG_PREFIX + self._redactor(" ".join(str(message).split())) + "\n")


def write_line(fd: int, text: str) -> None:
    data = text.encode("utf-8", errors="replace")
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        pass  # stderr gone (ssh exited): nothing left to tell


class Job(Generic[T]):
    """A blocking call (botocore) in a daemon thread, awaitable from the event loop.

    Unlike ``run_in_executor``, cancelling the awaiting task does not lose the result (the
    StartSession in flight when a signal arrives must still be terminated), and a call still
    running at exit never delays the exit (daemon thread).
    """

    def __init__(self, name: str, fn: Callable[[], T]) -> None:
        self._loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        self._fn = fn
        self.result: T | None = None
        self.error: BaseException | None = None
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def _run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as error:  # noqa: BLE001 - handed to the awaiting task
            self.error = error
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                self._loop.call_soon_threadsafe(self._done.set)

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    async def wait(self) -> T:
        await self._done.wait()
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]

    async def settle(self, timeout: float) -> bool:
        """Wait until finished (no raise); False if it is still running after ``timeout``."""
        try:
            await asyncio.wait_for(self._done.wait(), timeout)
        except TimeoutError:
            return False
        return True


class SignalGuard:
    """SIGINT/SIGTERM/SIGHUP handling that cannot be defeated by a stuck event loop.

    The handlers are plain ``signal.signal`` handlers: Python runs them in the main thread between
    bytecodes even while the event loop is busy, so they always run. Each one schedules
    ``on_signal(signum)`` on the loop (the normal, orderly stop) and, on the first signal, starts a
    watchdog thread. If the loop does not run ``on_signal`` within ``response_timeout``, or the
    helper has not :meth:`finished` within ``stop_timeout``, the watchdog calls ``emergency()``
    (TerminateSession from the thread) and ends the process with ``exit(128 + signum)``.

    ssh sends SIGHUP to its ProxyCommand when it exits, so this is what guarantees that the
    helper never outlives ssh for long, whatever state the tunnel is in.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_signal: Callable[[int], None],
        emergency: Callable[[], None],
        *,
        log: Callable[[str], None],
        response_timeout: float = 2.0,
        stop_timeout: float = CLEANUP_TIMEOUT + 3 * CLOSE_TIMEOUT + 2.0,
        exit_process: Callable[[int], Any] = os._exit,
    ) -> None:
        self._loop = loop
        self._on_signal = on_signal
        self._emergency = emergency
        self._log = log
        self._response_timeout = response_timeout
        self._stop_timeout = stop_timeout
        self._exit = exit_process
        self._responded = threading.Event()
        self._finished = threading.Event()
        self._signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> SignalGuard:
        for signum in _SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handler)
        return self

    def finished(self) -> None:
        """The helper is done (the watchdog stands down); restores the previous handlers."""
        self._finished.set()
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _handler(self, signum: int, frame: object) -> None:
        if self._signum is None:
            self._signum = signum
            threading.Thread(
                target=self._watchdog, args=(signum,), name="signal-watchdog", daemon=True
            ).start()
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self._loop.call_soon_threadsafe(self._responded_to, signum)

    def _responded_to(self, signum: int) -> None:
        self._responded.set()
        self._on_signal(signum)

    def _watchdog(self, signum: int) -> None:
        if self._responded.wait(self._response_timeout) and self._finished.wait(self._stop_timeout):
            return
        if self._finished.is_set():
            return
        self._log(
            f"! the helper did not stop within its time after signal {signum}; terminating the session now"
        )
        try:
            self._emergency()
        finally:
            self._exit(int(ExitCode.SIGNAL_BASE) + signum)


def debug_botocore(log: DebugLog) -> None:
    """Route botocore's credential and retry decisions (not its wire dumps) to the debug log."""
    import logging

    class _Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            log(f"botocore: {record.getMessage()}")

    handler = _Handler()
    for name in ("botocore.credentials", "botocore.retries", "botocore.retryhandler"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        logger.propagate = False
