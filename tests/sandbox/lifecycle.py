"""``up`` / ``down`` / ``serve``: run a sandbox in the background, find it, stop it, clean up.

``up`` starts ``python -m ...sandbox serve`` as a detached process (its own session, output to
``<state>/logs/sandbox.log``) and returns when ``sandbox.json`` says ``ready``. Calling ``up``
again with the same configuration is a no-op; with another configuration it restarts the
sandbox. ``down`` stops the server (SIGTERM, which tears everything down in order) and then runs
the crash-safe cleanup for anything a killed server left behind. Both are idempotent.

With an *owner* (``owner_pid``; the pytest fixtures pass their own process) the sandbox also
stops and cleans up by itself (namespaces, route, /run directory, its sshd and everything else in
its namespaces) as soon as that process has ended, however it ended: SIGKILL, or a CI timeout that
never runs fixture teardown. ``make sandbox`` has no owner: it outlives its command.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .config import SandboxConfig
from .state import StateDir, pid_alive

PACKAGE = "ansible_collections.trek10.ec2ssm.tests.sandbox"


class UpError(RuntimeError):
    pass


@contextmanager
def state_lock(state: StateDir) -> Iterator[None]:
    state.root.mkdir(parents=True, exist_ok=True)
    with open(state.root / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def up(
    config: SandboxConfig, state_dir: Path, timeout: float = 180.0, owner_pid: int | None = None
) -> dict[str, Any]:
    """Start (or keep) a sandbox for ``config`` in ``state_dir``; return its ``sandbox.json``.

    ``owner_pid``: the new sandbox stops by itself once that process has ended (an already
    running sandbox is kept as it is).
    """
    state = StateDir(state_dir.resolve())
    with state_lock(state):
        info = state.read_info()
        if info and info.get("status") == "ready" and pid_alive(int(info.get("pid", 0))):
            if info.get("fingerprint") == config.fingerprint():
                info["already_running"] = True
                return info
            print(f"sandbox in {state.root} runs another configuration: restarting it", file=sys.stderr)
        _down_locked(state)
        state.prepare()
        config_file = state.root / "config.json"
        state.write_json(config_file, config.to_dict())
        log = open(state.log_file, "ab")  # noqa: SIM115 - handed to the child
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        argv = [
            sys.executable,
            "-m",
            PACKAGE,
            "serve",
            "--state-dir",
            str(state.root),
            "--config",
            str(config_file),
        ]
        if owner_pid is not None:
            argv += ["--owner-pid", str(owner_pid)]
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            close_fds=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            info = state.read_info()
            if info and info.get("pid") == child.pid and info.get("status") == "ready":
                return info
            if info and info.get("pid") == child.pid and info.get("status") == "failed":
                child.wait(timeout=60)
                raise UpError(f"sandbox failed to start: {info.get('error')}\n{_tail(state.log_file)}")
            if child.poll() is not None:
                raise UpError(
                    f"sandbox exited with {child.returncode} while starting\n{_tail(state.log_file)}"
                )
            if time.monotonic() > deadline:
                child.terminate()
                try:
                    child.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    child.kill()
                _down_locked(state)
                raise UpError(f"sandbox not ready after {timeout:.0f} s\n{_tail(state.log_file)}")
            time.sleep(0.1)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def down(state_dir: Path) -> bool:
    """Stop the sandbox of ``state_dir`` and clean up; True if something was running."""
    state = StateDir(state_dir.resolve())
    with state_lock(state):
        return _down_locked(state)


def _down_locked(state: StateDir) -> bool:
    from .server import cleanup_machine

    info = state.read_info()
    if info is None:
        return False
    was_running = False
    pid = int(info.get("pid", 0))
    if pid and pid != os.getpid() and pid_alive(pid) and info.get("status") in ("starting", "ready"):
        was_running = True
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            while pid_alive(pid):
                time.sleep(0.05)
    prefix = info.get("prefix")
    if prefix:
        run_dir = info.get("run_dir")
        cleanup_machine(prefix, info.get("address_range"), Path(run_dir) if run_dir else None)
    for name in ("env.sh", "instances.json", "config.json"):
        (state.root / name).unlink(missing_ok=True)
    for name in ("hosts", "eic", "etc"):
        shutil.rmtree(state.root / name, ignore_errors=True)
    info["status"] = "stopped"
    state.write_json(state.info_file, info)
    return was_running


def serve(state_dir: Path, config: SandboxConfig, owner_pid: int | None = None) -> int:
    """Run a sandbox in this process until SIGTERM/SIGINT (what ``up`` starts), or until process
    ``owner_pid`` has ended."""
    from .server import Sandbox

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if owner_pid is not None:
        threading.Thread(target=_stop_with_owner, args=(owner_pid, stop), name="owner", daemon=True).start()
    sandbox = Sandbox(config, state_dir)
    try:
        sandbox.start()
    except BaseException as exc:
        logging.getLogger("ec2ssm.sandbox").exception("start failed")
        try:
            sandbox.stop()
        except Exception:
            logging.getLogger("ec2ssm.sandbox").exception("cleanup after failed start")
        info = sandbox.state.read_info() or {}
        info.update({"status": "failed", "error": f"{type(exc).__name__}: {exc}", "pid": os.getpid()})
        sandbox.state.write_json(sandbox.state.info_file, info)
        return 1
    print(json.dumps({"ready": sandbox.endpoint, "prefix": sandbox.prefix}), flush=True)
    while not stop.wait(1.0):
        pass
    sandbox.stop()
    return 0


def _stop_with_owner(owner_pid: int, stop: threading.Event) -> None:
    """Wait until process ``owner_pid`` has ended, then ask for a stop (and so a full clean-up).

    A pidfd becomes readable when the process ends (zombies included) and, unlike polling the pid,
    cannot be fooled by the pid being reused once it is open.
    """
    try:
        pidfd = os.pidfd_open(owner_pid)
    except ProcessLookupError:
        pidfd = None  # already gone
    except OSError:  # no pidfd support: poll
        while pid_alive(owner_pid):
            time.sleep(1.0)
        pidfd = None
    if pidfd is not None:
        try:
            select.select([pidfd], [], [])
        finally:
            os.close(pidfd)
    logging.getLogger("ec2ssm.sandbox").info("owner process %d has ended: stopping", owner_pid)
    stop.set()
