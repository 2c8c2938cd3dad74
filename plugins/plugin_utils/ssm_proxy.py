# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tunnel helper: an OpenSSH ProxyCommand (or local port forward) over SSM Session Manager.

Run it from an installed collection, with the collections root on ``PYTHONPATH``::

    python3 -m ansible_collections.trek10.ec2ssm.plugins.plugin_utils.ssm_proxy \\
        --target i-0123456789abcdef0 --port 22 [--os-user ec2-user --public-key-file ~/.ssh/id_ed25519.pub]

Per run it (1) pushes ``--public-key-file`` for ``--os-user`` with
``ec2-instance-connect:SendSSHPublicKey`` (valid 60 s), (2) calls ``ssm:StartSession`` (document
``AWS-StartSSHSession``, ``portNumber``), (3) speaks the SSM data channel natively over the
session's websocket (no AWS CLI, no session-manager-plugin) and bridges it to stdin/stdout, and
(4) calls ``ssm:TerminateSession`` when the stream ends (stdin EOF or the session closed) or on
SIGINT/SIGTERM/SIGHUP. Steps 1 and 2 run concurrently.

Options::

    --target ID             instance id (i-..., or mi-... without a key push); ssh's %h
    --port N                port on the instance (ssh's %p); with --remote-host, the remote port
    --os-user USER          OS user the key is pushed for (ssh's %r); needs --public-key-file
    --public-key-file PATH  OpenSSH public key to push with EC2 Instance Connect (i-* targets only)
    --region R              AWS region (default: AWS_REGION / AWS_DEFAULT_REGION / profile)
    --profile P             AWS config profile (default: AWS_PROFILE / the default chain)
    --assume-role-arn ARN   assume this role for every call (cross-account hosts)
    --role-session-name N   its RoleSessionName (default trek10-ec2ssm)
    --document-name D       SSM document (default AWS-StartSSHSession, or the port-forwarding ones)
    --reason TEXT           StartSession Reason, shown in the Session Manager history
    --local-port N          port-forward mode: listen on 127.0.0.1:N (0 = any free port) instead of
                            bridging stdin/stdout; prints "trek10.ec2ssm port-forward: listening on
                            127.0.0.1:N ..." on stderr; runs until SIGINT/SIGTERM/SIGHUP
    --remote-host HOST      port-forward mode: forward to HOST:--port through the instance
                            (document AWS-StartPortForwardingSessionToRemoteHost)
    --host-label NAME       name to show in messages (e.g. the inventory host name)
    --debug                 debug lines on stderr (or TREK10_EC2SSM_DEBUG=1), secrets redacted
    --chunk-size N          max payload bytes per data message we send, 1-65536 (or
                            TREK10_EC2SSM_CHUNK_SIZE=N; default 1024, what the official client
                            sends). Bigger chunks cost less CPU per byte and raise upload
                            throughput where the service accepts them, which is not established
                            for AWS (see datachannel/constants.py K_DEFAULT_CHUNK_SIZE); the
                            agent's chunks (downloads) are the agent's choice

Credentials come only from the standard AWS environment and config (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` with ``AWS_SESSION_TOKEN`` or ``AWS_SECURITY_TOKEN``, profiles, SSO,
``credential_process``, instance roles), never from the command line; endpoints, CA bundle, proxy
and retries likewise (``AWS_ENDPOINT_URL_SSM``, ``AWS_CA_BUNDLE``, ``HTTPS_PROXY``,
``AWS_RETRY_MODE``, ``AWS_MAX_ATTEMPTS``; default here: standard mode, 5 attempts, full jitter).

Output contract: stdout carries only tunnel bytes. Every failure is exactly one line on stderr that
starts with ``trek10.ec2ssm: `` and names the host, the AWS call as its IAM action and, for
AccessDenied, the denied action and resource. Debug lines start with ``trek10.ec2ssm debug: ``.
TokenValue and credentials are never printed.

Exit codes:

====  ==============  =====================================================================
code  kind            meaning
====  ==============  =====================================================================
0     ok              the stream ended: stdin EOF (ssh is done) or, in port-forward mode, the
                      session closed normally; TerminateSession called
2     usage           bad command line
3     config          local configuration: key file, mi-* with a key push, unknown profile,
                      no region, invalid parameter
4     credentials     no, expired or invalid AWS credentials (incl. an SSO login needed)
5     access-denied   an IAM action was denied (the line names action, principal, resource)
6     throttled       AWS still throttled after the retries
7     not-connected   TargetNotConnected (SSM agent offline, instance stopped), or EC2 Instance
                      Connect's "instance not running"
8     not-found       unknown instance, document or session
9     aws-error       any other AWS error
10    transport       an AWS API endpoint is unreachable (network, TLS, proxy, timeout)
11    tunnel          the data channel failed (websocket, handshake, resume, session closed by AWS),
                      or the instance side ended the stream while ssh was still using it
12    dependency      botocore or websockets is not installed in this Python
70    internal        a bug: an unexpected exception (one line, with its type)
128+N signal          stopped by signal N (129 SIGHUP, 130 SIGINT, 143 SIGTERM) after TerminateSession
====  ==============  =====================================================================

OpenSSH sends SIGHUP to its ProxyCommand when it exits, so after a normal ssh session the helper
usually ends with 129 (ssh ignores it); a signal is not a failure and prints nothing. If the event
loop ever fails to stop within about 21 s of a signal, a watchdog thread calls TerminateSession
itself and exits (``_ssm_proxy_runtime.SignalGuard``).

This module imports nothing from ansible; it imports botocore and websockets only when it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils._ssm_proxy_cli import (
    PORT_FORWARD_PREFIX,
    ExitCode,
    HelperFailure,
    HelperOptions,
    Redactor,
    exit_code_for,
    failure_line,
    parse_args,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils._ssm_proxy_runtime import (
    CLEANUP_TIMEOUT,
    CLOSE_TIMEOUT,
    DebugLog,
    Job,
    SignalGuard,
    debug_botocore,
    write_line,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws.errors import AwsCallError


class Helper:
    """One run of the helper: AWS calls, the tunnel, and the cleanup that must always happen."""

    def __init__(
        self,
        options: HelperOptions,
        *,
        environ: Mapping[str, str],
        redactor: Redactor,
        log: DebugLog,
        stdin_fd: int = 0,
        stdout_fd: int = 1,
        stderr_fd: int = 2,
    ) -> None:
        self.options = options
        self.environ = environ
        self.redactor = redactor
        self.log = log
        self.stdin_fd = stdin_fd
        self.stdout_fd = stdout_fd
        self.stderr_fd = stderr_fd
        self.aws: Any = None
        self.session: Any = None
        self.tunnel: Any = None
        self._start_job: Job[Any] | None = None
        self._signal: int | None = None
        self._work: asyncio.Task[None] | None = None
        self._resume_error: AwsCallError | None = None
        self.listener: Any = None

    @property
    def where(self) -> str:
        label, target = self.options.host_label, self.options.target
        region = self.aws.region if self.aws is not None else self.options.region
        inner = [p for p in ((target if label and label != target else None), region) if p]
        name = label or target
        return f"{name} ({', '.join(inner)})" if inner else name

    # -- top level ---------------------------------------------------------------------------

    async def run(self) -> int:
        guard = SignalGuard(
            asyncio.get_running_loop(), self._on_signal, self._emergency_stop, log=self.log
        ).install()
        try:
            return await self._run()
        finally:
            guard.finished()

    async def _run(self) -> int:
        failure: BaseException | None = None
        self._work = asyncio.ensure_future(self._run_work())
        try:
            await self._work
        except asyncio.CancelledError:
            if self._signal is None:
                raise
            self.log(f"stopping on signal {self._signal}")
        except BaseException as error:  # noqa: BLE001 - every failure becomes one line below
            failure = error
        cleanup_failure = await self._cleanup()
        if failure is None and cleanup_failure is not None and self._signal is None:
            failure = cleanup_failure
        if failure is not None:
            return self._report(failure)
        if self._signal is not None:
            return int(ExitCode.SIGNAL_BASE) + self._signal
        return int(ExitCode.OK)

    def _on_signal(self, signum: int) -> None:
        """In the event loop: stop the work; :meth:`_run` then cleans up (once)."""
        if self._signal is not None:
            return  # already stopping; let the cleanup finish
        self._signal = signum
        if self._work is not None and not self._work.done():
            self._work.cancel()

    def _emergency_stop(self) -> None:
        """In the watchdog thread, when the event loop did not stop in time: TerminateSession
        straight from this thread (botocore clients are thread-safe), bounded."""
        from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws import sessions

        session = self.session
        start = self._start_job
        if session is None and start is not None and start.finished and start.error is None:
            session = start.result
        if session is None or self.aws is None:
            return
        aws, session_id = self.aws, session.session_id
        worker = threading.Thread(
            target=lambda: sessions.terminate_session(aws, session_id),
            name="emergency-terminate",
            daemon=True,
        )
        worker.start()
        worker.join(CLEANUP_TIMEOUT)

    def _report(self, failure: BaseException) -> int:
        if isinstance(failure, AwsCallError):
            message, code = str(failure), exit_code_for(failure.kind)
        elif isinstance(failure, HelperFailure):
            message, code = str(failure), failure.exit_code
        else:
            message = (
                f"{self.where}: internal error in the tunnel helper: {type(failure).__name__}: {failure}"
            )
            code = ExitCode.INTERNAL
        write_line(self.stderr_fd, failure_line(message, self.redactor))
        return int(code)

    # -- the work ------------------------------------------------------------------------------

    async def _run_work(self) -> None:
        await self._open_session()
        await self._run_tunnel()

    async def _open_session(self) -> None:
        from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws import instance_connect, sessions

        opts = self.options
        public_key = None
        if opts.public_key_file:
            try:
                instance_connect.check_target(opts.target)
                public_key = instance_connect.read_public_key(opts.public_key_file)
            except instance_connect.InstanceConnectError as error:
                raise HelperFailure("config", f"{self.where}: {error}") from error
        self.aws = aws = self._make_aws()
        if opts.assume_role_arn:
            # sts:AssumeRole up front, so its failure is reported as such (not inside StartSession).
            self.log(f"> sts:AssumeRole {opts.assume_role_arn}")
            await Job("assume-role", lambda: aws.resolve_credentials("ssm", "StartSession")).wait()
        push: Job[None] | None = None
        if public_key is not None and opts.os_user:
            os_user = opts.os_user
            self.log(f"> ec2-instance-connect:SendSSHPublicKey {opts.target} user={os_user}")
            push = Job(
                "eic-push",
                lambda: instance_connect.push_public_key(
                    aws, instance_id=opts.target, os_user=os_user, public_key=public_key
                ),
            )
        self.log(f"> ssm:StartSession {opts.target} document={opts.document} {opts.session_parameters}")
        self._start_job = Job(
            "start-session",
            lambda: sessions.start_session(
                aws,
                target=opts.target,
                document_name=opts.document,
                parameters=opts.session_parameters,
                reason=opts.reason,
            ),
        )
        _preload_tunnel_modules()  # CPU work while AWS answers: shorter time to the first byte
        push_error: BaseException | None = None
        if push is not None:
            try:
                await push.wait()
                self.log("< key pushed (valid 60 s)")
            except BaseException as error:  # noqa: BLE001 - reported after StartSession settles
                push_error = error
        try:
            self.session = await self._start_job.wait()
        except BaseException:
            if push_error is not None:
                raise push_error from None
            raise
        self.redactor.add(self.session.token_value)
        self.log(f"< {self.session}")
        if push_error is not None:
            raise push_error

    def _make_aws(self) -> Any:
        from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws import clients

        opts = self.options
        try:
            clients.require_botocore()
        except clients.MissingDependencyError as error:
            raise HelperFailure("dependency", f"{self.where}: {error}") from error
        settings = clients.AwsSettings(
            region=opts.region,
            profile=opts.profile,
            assume_role_arn=opts.assume_role_arn,
            role_session_name=opts.role_session_name or clients.DEFAULT_ROLE_SESSION_NAME,
        )
        if self.log.enabled:
            debug_botocore(self.log)
        return clients.AwsAccess(settings, target=opts.target, label=opts.host_label)

    async def _resume(self) -> str | None:
        """The driver's resume callback: ssm:ResumeSession in a thread (ssm-data-channel.md §6.4)."""
        from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws import sessions

        self.log(f"> ssm:ResumeSession {self.session.session_id}")
        aws, session_id = self.aws, self.session.session_id
        try:
            token = await Job("resume-session", lambda: sessions.resume_session(aws, session_id)).wait()
        except AwsCallError as error:
            self._resume_error = error
            raise
        self._resume_error = None
        self.redactor.add(token)
        self.log("< resumed" if token else "< the session is gone (no token)")
        return token

    async def _run_tunnel(self) -> None:
        from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.tunnel.errors import (
            MissingDependency,
            TlsConfigError,
            TunnelError,
        )

        session = self.session
        try:
            from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.tunnel.tls import build_ssl_context
            from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.tunnel.websocket_driver import Tunnel

            # The websocket trusts exactly what botocore trusts (AWS_CA_BUNDLE / profile / default).
            ssl_context = (
                build_ssl_context(self.aws.verify_path()) if session.stream_url.startswith("wss:") else None
            )
            tuning: dict[str, Any] = {}
            if self.options.chunk_size is not None:
                tuning["chunk_size"] = self.options.chunk_size
            self.tunnel = Tunnel(
                stream_url=session.stream_url,
                token=session.token_value,
                session_id=session.session_id,
                target=self.options.target,
                resume=self._resume,
                ssl_context=ssl_context,
                log=self._driver_log(),
                **tuning,
            )
            info = await self.tunnel.connect()
            self.log(f"= data channel open: {info.mode.value} mode, agent {info.agent_version}")
            remote_first = False
            if self.options.port_forward:
                await self._port_forward()
            else:
                from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.tunnel.stdio_bridge import (
                    REMOTE_END,
                    bridge_stdio,
                )

                ended = await bridge_stdio(self.tunnel, stdin_fd=self.stdin_fd, stdout_fd=self.stdout_fd)
                self.log(f"= stream ended ({ended} side first) {self.tunnel.stats}")
                remote_first = ended == REMOTE_END
            if self.tunnel.closed_output:
                # channel_closed with an Output is AWS/the agent explaining an abnormal end (§6.5),
                # e.g. the idle timeout; an empty Output is a normal end.
                raise HelperFailure(
                    "tunnel",
                    f"{self.where}: AWS closed session {session.session_id}: {self.tunnel.closed_output}",
                )
            if remote_first:
                # ssh closes its side first when it is done; the instance side ending first means
                # the SSH connection was cut under ssh (ssh itself only says "Shared connection
                # closed"), so say what we know and what usually causes it.
                raise HelperFailure(
                    "tunnel",
                    f"{self.where}: the instance side ended session {session.session_id} while ssh "
                    "was still using it: the instance may be stopping or rebooting, or its sshd or "
                    "SSM agent was restarted",
                )
        except MissingDependency as error:
            raise HelperFailure("dependency", f"{self.where}: {self._strip_target(error)}") from error
        except TlsConfigError as error:
            raise HelperFailure("config", f"{self.where}: {self._strip_target(error)}") from error
        except TunnelError as error:
            if self._resume_error is not None:
                raise self._resume_error from error
            raise HelperFailure("tunnel", f"{self.where}: {self._strip_target(error)}") from error

    def _driver_log(self) -> Callable[[str], None] | None:
        """The drivers' log: everything with --debug; in port-forward mode (a long-running,
        user-facing process) their "!" lines (e.g. "Connection to destination port failed") too."""
        if self.log.enabled:
            return self.log
        if not self.options.port_forward:
            return None

        def problems(message: str) -> None:
            if message.startswith("!"):
                write_line(self.stderr_fd, PORT_FORWARD_PREFIX + self.redactor(message[1:].strip()) + "\n")

        return problems

    def _strip_target(self, error: BaseException) -> str:
        """The driver's messages start with "<target>: "; ours start with :attr:`where` instead."""
        text = str(error)
        lead = f"{self.options.target}: "
        return text[len(lead) :] if text.startswith(lead) else text

    async def _port_forward(self) -> None:
        from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.tunnel import port_forward

        opts = self.options
        try:
            self.listener = await port_forward.serve(
                self.tunnel,
                host="127.0.0.1",
                port=opts.local_port or 0,
                log=self._driver_log(),
            )
        except OSError as error:
            raise HelperFailure(
                "config",
                f"{self.where}: cannot listen on 127.0.0.1:{opts.local_port}: {error.strerror or error}",
            ) from error
        remote = f"{opts.remote_host or opts.target}:{opts.port}"
        where = f"127.0.0.1:{self.listener.port}"
        write_line(
            self.stderr_fd, f"{PORT_FORWARD_PREFIX}listening on {where} -> {remote} ({self.session})\n"
        )
        await self.listener.wait_closed()

    # -- cleanup ---------------------------------------------------------------------------------

    async def _cleanup(self) -> BaseException | None:
        """Close the data channel and call TerminateSession; never raises. Returns a failure of
        TerminateSession itself (reported only if nothing failed before)."""
        from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws import sessions

        if self.listener is not None:
            await _quietly(self.log, "closing the listener", self.listener.aclose())
        if self.tunnel is not None:
            if self.options.port_forward:
                # Port-forward modes end with the TerminateSession flag, like the Go client (§5.6).
                await _quietly(self.log, "sending the TerminateSession flag", self.tunnel.terminate())
            await _quietly(self.log, "closing the data channel", self.tunnel.aclose())
        start = self._start_job
        in_flight = self.session is None and start is not None and not start.finished
        # A signal arrived during StartSession: learn the session id, to terminate it.
        if in_flight and start is not None and await start.settle(CLEANUP_TIMEOUT) and start.error is None:
            self.session = start.result
        if self.session is None:
            return None
        aws, session_id = self.aws, self.session.session_id
        self.log(f"> ssm:TerminateSession {session_id}")
        job = Job("terminate-session", lambda: sessions.terminate_session(aws, session_id))
        if not await job.settle(CLEANUP_TIMEOUT):
            return HelperFailure(
                "transport", f"{self.where}: ssm:TerminateSession for {session_id} did not answer in time"
            )
        if job.error is not None:
            return job.error
        self.log("< terminated")
        return None


def _preload_tunnel_modules() -> None:
    with contextlib.suppress(ImportError):  # reported properly when the tunnel is built
        from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.tunnel import (  # noqa: F401
            stdio_bridge,
            tls,
            websocket_driver,
        )


async def _quietly(log: DebugLog, what: str, step: Awaitable[Any]) -> None:
    """Best-effort cleanup step, bounded by CLOSE_TIMEOUT; failures only reach the debug log."""
    try:
        await asyncio.wait_for(step, CLOSE_TIMEOUT)
    except BaseException as error:  # noqa: BLE001 - cleanup goes on; TerminateSession comes last
        log(f"! {what}: {type(error).__name__}: {error}")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the helper; returns the exit code (see the module docstring)."""
    env = os.environ if environ is None else environ
    redactor = Redactor.from_environ(env)
    try:
        options = parse_args(sys.argv[1:] if argv is None else argv, env)
    except HelperFailure as error:
        write_line(2, failure_line(str(error), redactor))
        return int(error.exit_code)
    log = DebugLog(options.debug, redactor)
    helper = Helper(options, environ=env, redactor=redactor, log=log)
    try:
        return asyncio.run(helper.run())
    except KeyboardInterrupt:  # a SIGINT before the loop installed its handler
        return int(ExitCode.SIGNAL_BASE) + int(signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
