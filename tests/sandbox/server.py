"""``Sandbox``: assembles the control plane, the data plane and the instances; ``start``/``stop``.

Like moto's ``ThreadedMotoServer`` it serves from a thread, on port 0 by default, and
``host_and_port()`` says where. One ``Sandbox`` per process: moto keeps its state in module
globals, which is also why the pytest fixture and ``up`` run it in a separate process (``serve``).

Start order: state directory, TLS, private range (an ``unreachable`` route) and namespaces
support, moto, services, HTTPS server, data plane, default principal, instances; then
``env.sh``, ``instances.json`` and ``sandbox.json`` (the "ready" record ``up`` waits for). Every
resource on the machine that outlives a crash (namespaces, the route, ``/run/ec2ssm-sandbox/<prefix>``)
is named in ``sandbox.json`` *before* it is made, so ``down`` can clean up after a crash too.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import shutil
import socket
import threading
from pathlib import Path
from typing import Any

from .accounting import CallLog
from .ca import ensure_tls
from .config import SandboxConfig
from .fleet import Fleet
from .hosts import netns
from .hosts.eic import EicKeyStore
from .hosts.manager import HostManager
from .iam import PolicyStore
from .services.ec2 import ACCOUNT_ID, Ec2Adapter, moto_app
from .services.ec2instanceconnect.models import Ec2InstanceConnectBackend
from .services.ec2instanceconnect.responses import eic_service
from .services.gate import Gate
from .services.ssm.models import SsmBackend, SsmBackends
from .services.ssm.nodes import NodeRegistry
from .services.ssm.responses import ssm_service
from .services.ssm.sessions import SessionStore
from .state import StateDir
from .throttling import Throttler

log = logging.getLogger("ec2ssm.sandbox")

RUN_ROOT = Path("/run/ec2ssm-sandbox")
DEFAULT_USER = "ec2ssm-sandbox"


class SandboxError(RuntimeError):
    pass


class Sandbox:
    def __init__(self, config: SandboxConfig, state_dir: Path | str, prefix: str | None = None) -> None:
        self.config = config
        self.state = StateDir(Path(state_dir))
        self.prefix = prefix or f"ec2ssm-{secrets.token_hex(3)}"
        self.calls = CallLog()
        self.policies = PolicyStore(config.iam.get("policies") or {})
        self.throttler = Throttler(
            config.throttling.get("rules") or {}, enabled=bool(config.throttling.get("enabled", True))
        )
        self.gate = Gate(self.policies, self.throttler)
        self.nodes = NodeRegistry()
        self.sessions = SessionStore()
        self.isolated = False
        self.isolation_note = ""
        self.dataplane: Any = None
        self.dataplane_note = ""
        self.hosts: HostManager | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._plan: netns.AddressPlan | None = None
        self._run_dir: Path | None = None
        self._credentials: tuple[str, str] = ("", "")
        self._dataplane_faults: dict[str, Any] = dict(config.dataplane)

    # --- start / stop --------------------------------------------------------------------------

    def start(self) -> None:
        self.state.prepare()
        tls = ensure_tls(self.state.tls_dir)
        self.tls = tls
        self._decide_isolation()
        self._record("starting")
        if self.isolated:
            self._plan = netns.AddressPlan.claim(
                int.from_bytes(bytes.fromhex(self.prefix.split("-")[-1]), "big")
            )
        else:
            self._plan = netns.AddressPlan("10.64.0.0/16")
        self._record("starting")
        subnets = [str(s) for s in self._plan.subnets(4)]
        self.ec2 = Ec2Adapter(str(self._plan.network), subnets[:2])
        self.eic_keys = EicKeyStore(self.state.eic_dir, ttl=self.config.eic_key_ttl)
        self._start_hosts()
        self.fleet = Fleet(
            regions=self.config.regions,
            ec2=self.ec2,
            nodes=self.nodes,
            hosts=self.hosts,
            hybrid_subnet=subnets[2],
            end_sessions=lambda region, instance_id, output: self.ssm[region].end_sessions_for_target(
                instance_id, output
            ),
        )
        if self.hosts is not None:
            self.hosts.peer_lookup = self.fleet.peer
        self.ssm = SsmBackends(self._ssm_backend)
        self.eic = Ec2InstanceConnectBackend(self.ec2, self.nodes, self.eic_keys, self.gate)
        from .routing import SandboxApp

        self.app = SandboxApp(self, [ssm_service(self.ssm), eic_service(self.eic)], moto_app())
        self._serve_http(tls.server_context())
        self._start_dataplane(tls.server_context())
        self._credentials = self.ec2.ensure_principal(DEFAULT_USER)
        self.fleet.launch(self.config.launch_plan())
        self.write_instances_file()
        self.state.write_env(self.environment())
        self._record("ready")
        log.info("sandbox %s ready at %s (%d instances)", self.prefix, self.endpoint, len(list(self.nodes)))

    def _decide_isolation(self) -> None:
        if self.config.netns == "off":
            self.isolation_note = "network namespaces switched off (netns: off): instances are loopback ports"
            return
        ok, why = netns.available()
        if ok:
            self.isolated = True
            return
        if self.config.netns == "on":
            raise SandboxError(f"network namespaces unavailable: {why}")
        self.isolation_note = (
            f"NO NETWORK NAMESPACES ({why}): instances are sshd on 127.0.0.1 ports, reachable directly, "
            "sharing this machine's /home and /tmp; tests that need isolation will fail"
        )
        log.warning("%s", self.isolation_note)

    def _start_hosts(self) -> None:
        wants_sshd = any(spec.sshd for spec in self.config.launch_plan())
        if not Path("/usr/sbin/sshd").exists():
            if wants_sshd:
                raise SandboxError(
                    "/usr/sbin/sshd not found: install openssh-server (make setup does) "
                    "or start with --instances 0 and API-only instances"
                )
            return
        self._run_dir = RUN_ROOT / self.prefix if os.geteuid() == 0 else self.state.root / "run"
        self._record("starting")
        self.hosts = HostManager(
            state_dir=self.state.root,
            run_dir=self._run_dir,
            prefix=self.prefix,
            isolated=self.isolated,
            eic_root=self.state.eic_dir,
            log=logging.getLogger("ec2ssm.sandbox.hosts"),
        )
        self.hosts.start()

    def _ssm_backend(self, region: str) -> SsmBackend:
        return SsmBackend(
            region=region,
            account_id=ACCOUNT_ID,
            nodes=self.nodes,
            sessions=self.sessions,
            ec2=self.ec2,
            gate=self.gate,
            broker=lambda: self.dataplane,
        )

    def _serve_http(self, ctx: Any) -> None:
        from werkzeug.serving import WSGIRequestHandler, make_server

        class QuietHandler(WSGIRequestHandler):
            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                logging.getLogger("ec2ssm.sandbox.http").debug("%s %s %s", self.command, self.path, code)

        self._server = make_server(
            self.config.listen_host,
            self.config.port,
            self.app,
            threaded=True,
            ssl_context=ctx,
            request_handler=QuietHandler,
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="sandbox-https", daemon=True)
        self._thread.start()

    def _start_dataplane(self, ctx: Any) -> None:
        try:
            from .dataplane import DataPlane
        except ImportError as exc:
            self.dataplane_note = f"data plane not importable ({exc}): StartSession is unavailable"
            log.warning("%s", self.dataplane_note)
            return
        self.dataplane = DataPlane(
            ssl_context=ctx,
            host=self.config.listen_host,
            port=self.config.dataplane_port,
            dial=self._dial,
            log=logging.getLogger("ec2ssm.sandbox.dataplane"),
        )
        self.dataplane.start()
        if self._dataplane_faults:
            self.dataplane.set_faults(**self._dataplane_faults)

    def _dial(self, instance_id: str, host: str, port: int) -> socket.socket:
        if self.hosts is None:
            raise ConnectionRefusedError(f"{instance_id}: the sandbox runs no sshd hosts")
        return self.hosts.dial(instance_id, host, port)

    def stop(self) -> None:
        """Stop everything this sandbox started and remove what it made on the machine."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self.dataplane is not None:
            try:
                self.dataplane.stop()
            except Exception:
                log.exception("data plane stop failed")
        if self.hosts is not None:
            self.hosts.shutdown()
        cleanup_machine(
            self.prefix, str(self._plan.network) if self._plan and self.isolated else None, self._run_dir
        )
        self._record("stopped")

    # --- facts ------------------------------------------------------------------------------------

    def host_and_port(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def endpoint(self) -> str:
        host, port = self.host_and_port()
        return f"https://{host}:{port}"

    def caller_identity(self, access_key_id: str, region: str) -> tuple[str, str, str]:
        from moto.sts.models import sts_backends

        user_id, arn, account = sts_backends[ACCOUNT_ID]["global"].get_caller_identity(access_key_id, region)
        return str(user_id), str(arn), str(account)

    def session_token_of(self, access_key_id: str) -> str | None:
        """The session token that must accompany ``access_key_id`` (assumed roles), else None."""
        from moto.sts.models import sts_backends

        role = sts_backends[ACCOUNT_ID]["global"].get_assumed_role_from_access_key(access_key_id)
        return str(role.session_token) if role is not None else None

    def environment(self) -> dict[str, str]:
        """The standard AWS variables that select this sandbox (what env.sh exports)."""
        endpoint = self.endpoint
        region = self.config.regions[0]
        return {
            "AWS_ENDPOINT_URL_SSM": endpoint,
            "AWS_ENDPOINT_URL_EC2": endpoint,
            "AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT": endpoint,
            "AWS_ENDPOINT_URL_STS": endpoint,
            "AWS_CA_BUNDLE": str(self.tls.ca_cert),
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_ACCESS_KEY_ID": self._credentials[0],
            "AWS_SECRET_ACCESS_KEY": self._credentials[1],
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def status(self) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        for node in self.nodes:
            key = "hybrid" if node.is_hybrid else ("sshd" if node.sshd else "api_only")
            kinds[key] = kinds.get(key, 0) + 1
        return {
            "prefix": self.prefix,
            "endpoint": self.endpoint,
            "dataplane": self.dataplane.base_url if self.dataplane else None,
            "dataplane_note": self.dataplane_note,
            "isolated": self.isolated,
            "isolation_note": self.isolation_note,
            "regions": self.config.regions,
            "address_range": str(self._plan.network) if self._plan else None,
            "instances": kinds,
            "active_connections": self.hosts.listener.active_connections() if self.hosts else 0,
            "fingerprint": self.config.fingerprint(),
            "pid": os.getpid(),
        }

    def faults(self) -> dict[str, Any]:
        dataplane = (
            dataclasses.asdict(self.dataplane.faults) if self.dataplane else dict(self._dataplane_faults)
        )
        return {
            "throttling": self.throttler.snapshot(),
            "eic_key_ttl": self.eic_keys.ttl,
            "dataplane": dataplane,
        }

    def set_faults(self, changes: dict[str, Any]) -> dict[str, Any]:
        unknown = set(changes) - {"throttling", "eic_key_ttl", "dataplane"}
        if unknown:
            raise ValueError(f"unknown fault groups: {', '.join(sorted(unknown))}")
        if "throttling" in changes:
            spec = changes["throttling"] or {}
            self.throttler.configure(spec.get("enabled"), spec.get("rules"))
        if "eic_key_ttl" in changes:
            ttl = float(changes["eic_key_ttl"])
            if ttl <= 0:
                raise ValueError("eic_key_ttl must be positive")
            self.eic_keys.ttl = ttl
        if "dataplane" in changes:
            if self.dataplane is None:
                raise ValueError("no data plane in this sandbox")
            self.dataplane.set_faults(**changes["dataplane"])
        return self.faults()

    def add_principal(self, user: str) -> dict[str, str]:
        key_id, secret = self.ec2.ensure_principal(user)
        _, arn, _ = self.caller_identity(key_id, self.config.regions[0])
        return {"user": user, "access_key_id": key_id, "secret_access_key": secret, "arn": arn}

    def launch(self, specs: list[Any]) -> list[dict[str, Any]]:
        launched = {n.instance_id for n in self.fleet.launch(specs)}
        self.write_instances_file()
        return [r for r in self.fleet.describe() if r["instance_id"] in launched]

    def sessions_report(self) -> dict[str, Any]:
        records = []
        for record in self.sessions.all():
            item = record.describe()
            if self.dataplane is not None and record.end_date is None:
                item["DataPlaneState"] = self.dataplane.session_state(record.session_id)
            records.append(item)
        return {"sessions": records, "dataplane": self.dataplane.stats() if self.dataplane else {}}

    def write_instances_file(self) -> None:
        self.state.write_json(self.state.instances_file, self.fleet.describe())

    def _record(self, status: str) -> None:
        info: dict[str, Any] = {
            "status": status,
            "pid": os.getpid(),
            "prefix": self.prefix,
            "state_dir": str(self.state.root),
            "isolated": self.isolated,
            "address_range": str(self._plan.network) if self._plan and self.isolated else None,
            "run_dir": str(self._run_dir) if self._run_dir else None,
            "fingerprint": self.config.fingerprint(),
            "ca_bundle": str(self.state.tls_dir / "ca.pem"),
        }
        if self._server is not None:
            info["endpoint"] = self.endpoint
        if self.dataplane is not None:
            info["dataplane"] = self.dataplane.base_url
        if status == "ready":
            info["env"] = self.environment()
            info["isolation_note"] = self.isolation_note
            info["dataplane_note"] = self.dataplane_note
        self.state.write_json(self.state.info_file, info)


def cleanup_machine(prefix: str, address_range: str | None, run_dir: Path | None) -> None:
    """Remove what a sandbox made outside its state directory. Idempotent, crash-safe.

    Kills the processes left in its namespaces, deletes the namespaces (names start with
    ``<prefix>-``, unique per sandbox), removes its ``unreachable`` route and its /run directory.
    Touches nothing of another sandbox.
    """
    netns.delete(netns.list_names(prefix + "-"))
    if address_range:
        netns.AddressPlan(address_range).release()
    if run_dir is not None and run_dir.is_dir() and prefix in run_dir.name:
        shutil.rmtree(run_dir, ignore_errors=True)
