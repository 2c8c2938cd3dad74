"""The sandbox control API: plain JSON under ``/_sandbox/`` on the same HTTPS port.

AWS never serves these paths, so no AWS client can reach them by accident. Reference (every body
and answer is JSON; errors are ``{"error": "..."}`` with 400/404):

======  ====================================  ===============================================
GET     /_sandbox/health                      ``{"ok": true}``
GET     /_sandbox/status                      prefix, isolation, regions, endpoints, counts
GET     /_sandbox/instances                   every instance (the instances.json records)
POST    /_sandbox/instances                   launch: ``{"specs": [InstanceSpec, ...]}``
POST    /_sandbox/instances/<id>/stop         EC2 stop (sessions end, sshd goes away)
POST    /_sandbox/instances/<id>/start        EC2 start
POST    /_sandbox/instances/<id>/terminate    EC2 terminate / hybrid deregister
POST    /_sandbox/instances/<id>/ping         ``{"status": "ConnectionLost"|"Online"}``
GET     /_sandbox/instances/<id>/keys?user=u  EIC keys sshd would accept now
GET     /_sandbox/calls?action=&target=...    API call counters (filters: service, action,
                                              region, caller, target, outcome)
POST    /_sandbox/calls/reset                 zero the counters
GET     /_sandbox/faults                      current switches
POST    /_sandbox/faults                      merge: ``{"throttling": {"enabled": b, "rules":
                                              {...}}, "eic_key_ttl": s, "dataplane": {...}}``
GET     /_sandbox/iam                         policies per principal
PUT     /_sandbox/iam/<principal>             set policy document(s) ("*" = everyone else)
DELETE  /_sandbox/iam/<principal>             remove; DELETE /_sandbox/iam clears all
POST    /_sandbox/principals                  ``{"user": "alice"}`` → IAM user + access key
GET     /_sandbox/sessions                    session records and data-plane stats
======  ====================================  ===============================================
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from ..config import InstanceSpec

if TYPE_CHECKING:
    from ..server import Sandbox

PREFIX = "/_sandbox"


class ControlError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def handle(sandbox: Sandbox, method: str, path: str, query: str, body: bytes) -> tuple[int, Any]:
    """Dispatch one control request; returns (HTTP status, JSON-able answer)."""
    try:
        data = json.loads(body) if body.strip() else {}
    except ValueError:
        return 400, {"error": "body is not JSON"}
    parts = [p for p in path[len(PREFIX) :].split("/") if p]
    try:
        return 200, _route(sandbox, method, parts, parse_qs(query), data)
    except ControlError as exc:
        return exc.status, {"error": str(exc)}
    except (KeyError, ValueError, TypeError) as exc:
        return 400, {"error": f"{type(exc).__name__}: {exc}"}


def _route(sandbox: Sandbox, method: str, parts: list[str], query: dict[str, list[str]], data: Any) -> Any:
    head = parts[0] if parts else ""
    if head == "health" and method == "GET":
        return {"ok": True}
    if head == "status" and method == "GET":
        return sandbox.status()
    if head == "instances":
        return _instances(sandbox, method, parts[1:], query, data)
    if head == "calls":
        if method == "GET" and len(parts) == 1:
            return sandbox.calls.query({k: v[0] for k, v in query.items()})
        if method == "POST" and parts[1:] == ["reset"]:
            sandbox.calls.reset()
            return {"ok": True}
    if head == "faults":
        if method == "GET":
            return sandbox.faults()
        if method == "POST":
            return sandbox.set_faults(data)
    if head == "iam":
        return _iam(sandbox, method, parts[1:], data)
    if head == "principals" and method == "POST":
        return sandbox.add_principal(str(data["user"]))
    if head == "sessions" and method == "GET":
        return sandbox.sessions_report()
    raise ControlError(f"no such control endpoint: {method} {PREFIX}/{'/'.join(parts)}", 404)


def _instances(
    sandbox: Sandbox, method: str, parts: list[str], query: dict[str, list[str]], data: Any
) -> Any:
    if not parts:
        if method == "GET":
            return sandbox.fleet.describe()
        if method == "POST":
            raw = data.get("specs", [data]) if isinstance(data, dict) else data
            specs = [InstanceSpec.from_dict(s) for s in raw]
            launched = sandbox.launch(specs)
            return launched
        raise ControlError("GET or POST", 405)
    instance_id = parts[0]
    if sandbox.fleet.nodes.find(instance_id) is None:
        raise ControlError(f"unknown instance {instance_id}", 404)
    verb = parts[1] if len(parts) > 1 else ""
    if method == "POST" and verb in ("stop", "start", "terminate"):
        getattr(sandbox.fleet, verb)(instance_id)
        sandbox.write_instances_file()
        return {"ok": True, "instance_id": instance_id}
    if method == "POST" and verb == "ping":
        status = str(data.get("status", ""))
        if status not in ("Online", "ConnectionLost", "Inactive"):
            raise ControlError("status must be Online, ConnectionLost or Inactive")
        sandbox.fleet.set_ping_status(instance_id, status)
        return {"ok": True, "instance_id": instance_id, "status": status}
    if method == "GET" and verb == "keys":
        user = query.get("user", [""])[0]
        return {"keys": sandbox.eic_keys.active_keys(instance_id, user)}
    raise ControlError(f"unknown instance action {method} {verb}", 404)


def _iam(sandbox: Sandbox, method: str, parts: list[str], data: Any) -> Any:
    if method == "GET" and not parts:
        return sandbox.policies.snapshot()
    if method == "DELETE" and not parts:
        sandbox.policies.clear()
        return {"ok": True}
    if len(parts) == 1 and method == "PUT":
        sandbox.policies.set(parts[0], data)
        return {"ok": True}
    if len(parts) == 1 and method == "DELETE":
        sandbox.policies.clear(parts[0])
        return {"ok": True}
    raise ControlError("GET/DELETE /_sandbox/iam or PUT/DELETE /_sandbox/iam/<principal>", 405)
