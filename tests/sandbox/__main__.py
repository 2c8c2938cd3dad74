"""Command line: ``python -m ansible_collections.trek10.ec2ssm.tests.sandbox <command>``.

Commands::

    up      [--state-dir .sandbox] [--instances N] [--api-only N] [--hybrid N]
            [--regions us-east-1,us-west-2] [--config FILE] [--eic-key-ttl S]
            [--no-throttling] [--netns auto|on|off] [--timeout S] [--owner-pid PID]
    down    [--state-dir .sandbox]
    status  [--state-dir .sandbox]
    ctl     [--state-dir .sandbox] instances | calls [--action A --target T ...] | reset-calls
            | stop ID | start ID | terminate ID | ping ID STATUS | launch JSON
            | faults [JSON] | iam [PRINCIPAL FILE|-] | iam-clear [PRINCIPAL] | principal USER
            | sessions | raw METHOD PATH [JSON]
    serve   --state-dir DIR --config FILE [--owner-pid PID]     (what ``up`` runs in the background)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .config import SandboxConfig


def _config_from_args(args: argparse.Namespace) -> SandboxConfig:
    config = SandboxConfig.load(Path(args.config)) if args.config else SandboxConfig()
    if args.instances is not None:
        config.instances = args.instances
    if args.api_only is not None:
        config.api_only = args.api_only
    if args.hybrid is not None:
        config.hybrid = args.hybrid
    if args.regions:
        config.regions = [r.strip() for r in args.regions.split(",") if r.strip()]
    if args.eic_key_ttl is not None:
        config.eic_key_ttl = args.eic_key_ttl
    if args.no_throttling:
        config.throttling = {**config.throttling, "enabled": False}
    if args.netns:
        config.netns = args.netns
    config.__post_init__()
    return config


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _cmd_up(args: argparse.Namespace) -> int:
    from .lifecycle import UpError, up

    try:
        info = up(
            _config_from_args(args), Path(args.state_dir), timeout=args.timeout, owner_pid=args.owner_pid
        )
    except UpError as exc:
        print(f"sandbox up failed: {exc}", file=sys.stderr)
        return 1
    state = Path(info["state_dir"])
    verb = "already running" if info.get("already_running") else "ready"
    print(f"sandbox {info['prefix']} {verb}: {info['endpoint']}")
    print(f"  source {state / 'env.sh'}")
    print(f"  instances: {state / 'instances.json'}   logs: {state / 'logs'}")
    if info.get("isolation_note"):
        print(f"  WARNING: {info['isolation_note']}", file=sys.stderr)
    if info.get("dataplane_note"):
        print(f"  WARNING: {info['dataplane_note']}", file=sys.stderr)
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    from .lifecycle import down

    was = down(Path(args.state_dir))
    print("sandbox stopped" if was else "no sandbox was running (cleaned up anyway)")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from .control.client import ControlApiError, SandboxClient
    from .state import StateDir, pid_alive

    info = StateDir(Path(args.state_dir).resolve()).read_info()
    if info is None:
        print("no sandbox in this state directory")
        return 3
    alive = pid_alive(int(info.get("pid", 0)))
    if info.get("status") != "ready" or not alive:
        _print({"status": info.get("status") if alive else "not running", "prefix": info.get("prefix")})
        return 3
    try:
        _print(SandboxClient(info["endpoint"], info["ca_bundle"]).status())
    except (ControlApiError, OSError) as exc:
        print(f"sandbox process {info['pid']} does not answer: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_ctl(args: argparse.Namespace) -> int:
    from .control.client import ControlApiError, SandboxClient

    client = SandboxClient.from_state(Path(args.state_dir).resolve())
    words: list[str] = args.words
    if not words:
        print(__doc__, file=sys.stderr)
        return 2
    verb, rest = words[0], words[1:]
    try:
        result = _ctl(client, verb, rest)
    except ControlApiError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except (IndexError, ValueError) as exc:
        print(f"ctl {verb}: {exc}", file=sys.stderr)
        return 2
    if result is not None:
        _print(result)
    return 0


def _ctl(client: Any, verb: str, rest: list[str]) -> Any:
    if verb == "instances":
        return client.instances()
    if verb == "calls":
        filters = dict(zip(rest[0::2], rest[1::2], strict=False))
        return client.calls(**{k.lstrip("-"): v for k, v in filters.items()})
    if verb == "reset-calls":
        client.reset_calls()
        return {"ok": True}
    if verb in ("stop", "start", "terminate"):
        getattr(client, verb)(rest[0])
        return {"ok": True, verb: rest[0]}
    if verb == "ping":
        client.set_ping_status(rest[0], rest[1])
        return {"ok": True}
    if verb == "launch":
        return client.request("POST", "instances", {"specs": _json_list(rest[0])})
    if verb == "faults":
        return client.set_faults(**json.loads(rest[0])) if rest else client.faults()
    if verb == "iam":
        if not rest:
            return client.request("GET", "iam")
        source = sys.stdin.read() if rest[1] == "-" else Path(rest[1]).read_text()
        client.request("PUT", f"iam/{rest[0]}", json.loads(source))
        return {"ok": True}
    if verb == "iam-clear":
        client.clear_policy(rest[0] if rest else None)
        return {"ok": True}
    if verb == "principal":
        return client.add_principal(rest[0])
    if verb == "sessions":
        return client.sessions()
    if verb == "raw":
        return client.request(rest[0].upper(), rest[1], json.loads(rest[2]) if len(rest) > 2 else None)
    raise ValueError(f"unknown ctl command {verb}")


def _json_list(text: str) -> list[Any]:
    value = json.loads(text)
    return value if isinstance(value, list) else [value]


def _cmd_serve(args: argparse.Namespace) -> int:
    from .lifecycle import serve

    return serve(
        Path(args.state_dir).resolve(),
        SandboxConfig.load(Path(args.config)),
        owner_pid=args.owner_pid,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ansible_collections.trek10.ec2ssm.tests.sandbox")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start the sandbox in the background (idempotent)")
    p_up.add_argument("--state-dir", default=".sandbox")
    p_up.add_argument("--instances", type=int)
    p_up.add_argument("--api-only", type=int)
    p_up.add_argument("--hybrid", type=int)
    p_up.add_argument("--regions")
    p_up.add_argument("--config")
    p_up.add_argument("--eic-key-ttl", type=float)
    p_up.add_argument("--no-throttling", action="store_true")
    p_up.add_argument("--netns", choices=("auto", "on", "off"))
    p_up.add_argument("--timeout", type=float, default=180.0)
    p_up.add_argument(
        "--owner-pid", type=int, help="stop and clean up by itself once this process has ended (tests)"
    )
    p_up.set_defaults(func=_cmd_up)
    p_down = sub.add_parser("down", help="stop it and remove namespaces, routes, mounts (idempotent)")
    p_down.add_argument("--state-dir", default=".sandbox")
    p_down.set_defaults(func=_cmd_down)
    p_status = sub.add_parser("status", help="is it running, and what does it have")
    p_status.add_argument("--state-dir", default=".sandbox")
    p_status.set_defaults(func=_cmd_status)
    p_ctl = sub.add_parser("ctl", help="control API (see the module docstring)")
    p_ctl.add_argument("--state-dir", default=".sandbox")
    p_ctl.add_argument("words", nargs=argparse.REMAINDER)
    p_ctl.set_defaults(func=_cmd_ctl)
    p_serve = sub.add_parser("serve", help="run in the foreground (used by up)")
    p_serve.add_argument("--state-dir", required=True)
    p_serve.add_argument("--config", required=True)
    p_serve.add_argument("--owner-pid", type=int)
    p_serve.set_defaults(func=_cmd_serve)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
