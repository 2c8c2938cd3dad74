"""Python client of the control API, for tests, benchmarks and the ``ctl`` CLI (stdlib only)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlencode


class ControlApiError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"sandbox control API {status}: {message}")
        self.status = status


class SandboxClient:
    """``SandboxClient.from_state(".sandbox")`` or ``SandboxClient(url, ca_bundle)``."""

    def __init__(self, endpoint: str, ca_bundle: str | Path, timeout: float = 60.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cafile=str(ca_bundle))

    @classmethod
    def from_state(cls, state_dir: str | Path) -> SandboxClient:
        info = json.loads((Path(state_dir) / "sandbox.json").read_text())
        return cls(info["endpoint"], info["ca_bundle"])

    def request(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        url = f"{self.endpoint}/_sandbox/{path.lstrip('/')}"
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        req = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - https only
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl) as resp:  # noqa: S310
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", exc.reason)
            except ValueError:
                message = exc.reason
            raise ControlApiError(exc.code, str(message)) from exc

    # --- conveniences --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.request("GET", "status"))

    def instances(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self.request("GET", "instances"))

    def launch(self, **spec: Any) -> list[dict[str, Any]]:
        """Launch instances now, e.g. ``launch(platform="ubuntu", has_eic=False)``."""
        return cast(list[dict[str, Any]], self.request("POST", "instances", {"specs": [spec]}))

    def stop(self, instance_id: str) -> None:
        self.request("POST", f"instances/{instance_id}/stop", {})

    def start(self, instance_id: str) -> None:
        self.request("POST", f"instances/{instance_id}/start", {})

    def terminate(self, instance_id: str) -> None:
        self.request("POST", f"instances/{instance_id}/terminate", {})

    def set_ping_status(self, instance_id: str, status: str) -> None:
        self.request("POST", f"instances/{instance_id}/ping", {"status": status})

    def eic_keys(self, instance_id: str, user: str) -> list[str]:
        return cast(
            list[str], self.request("GET", f"instances/{instance_id}/keys", query={"user": user})["keys"]
        )

    def calls(self, **filters: str | None) -> dict[str, Any]:
        """Counters; e.g. ``calls(action="StartSession", target="i-...")["total"]``."""
        return cast(dict[str, Any], self.request("GET", "calls", query=filters))

    def count(self, action: str, target: str | None = None, outcome: str | None = None) -> int:
        return int(self.calls(action=action, target=target, outcome=outcome)["total"])

    def reset_calls(self) -> None:
        self.request("POST", "calls/reset", {})

    def faults(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.request("GET", "faults"))

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        """e.g. ``set_faults(throttling={"enabled": False})`` or ``set_faults(dataplane={...})``."""
        return cast(dict[str, Any], self.request("POST", "faults", changes))

    def set_policy(self, principal: str, *documents: dict[str, Any]) -> None:
        self.request("PUT", f"iam/{quote(principal, safe='')}", list(documents))

    def clear_policy(self, principal: str | None = None) -> None:
        if principal is None:
            self.request("DELETE", "iam")
        else:
            self.request("DELETE", f"iam/{quote(principal, safe='')}")

    def add_principal(self, user: str) -> dict[str, str]:
        """Create IAM user ``user`` with an access key: ``{access_key_id, secret_access_key, arn}``."""
        return cast(dict[str, str], self.request("POST", "principals", {"user": user}))

    def sessions(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.request("GET", "sessions"))
