# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""botocore sessions and clients for one target, built only from standard AWS configuration.

PRIVATE to this collection. Everything a user already configured for the AWS CLI applies here
because botocore does it: profiles, SSO, ``credential_process``, environment credentials
(``AWS_SESSION_TOKEN`` *or* ``AWS_SECURITY_TOKEN``, which older AWX sets alone), instance roles,
``AWS_ENDPOINT_URL_<SERVICE>``, ``AWS_CA_BUNDLE``, ``HTTPS_PROXY``, ``AWS_RETRY_MODE`` and
``AWS_MAX_ATTEMPTS``. Nothing here takes a secret as an argument, and there is no test switch: the
sandbox is selected by those same environment variables.

Why botocore and not boto3: the tunnel helper runs once per new SSH connection, and boto3 only adds
import time and memory on top of botocore for the three calls we make.

Every call goes through :meth:`AwsAccess.call`, the single place where botocore exceptions become
:class:`.errors.AwsCallError`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws.errors import (
    from_client_error,
    from_transport_error,
)

try:
    import botocore.session
    from botocore.config import Config
    from botocore.credentials import DeferredRefreshableCredentials
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError as _error:  # pragma: no cover - exercised by the import sanity test
    BOTOCORE_IMPORT_ERROR: ImportError | None = _error
else:
    BOTOCORE_IMPORT_ERROR = None

#: Retry budget when neither ``AWS_MAX_ATTEMPTS`` nor the profile's ``max_attempts`` is set.
#: botocore's standard mode sleeps ``random() * 2**n`` (full jitter) between attempts, so 5 attempts
#: wait at most 1+2+4+8 = 15 s (7.5 s on average): long enough to ride out a burst of StartSession
#: throttling from many forks, short enough to fit inside ssh's ConnectTimeout (60 s by default in
#: our plugin).
DEFAULT_MAX_ATTEMPTS = 5
#: botocore's own default is 60 s for both; a ProxyCommand that hangs that long outlives ssh.
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 30.0
USER_AGENT_EXTRA = "trek10.ec2ssm"
#: ``RoleSessionName`` for ``assume_role_arn``; shows up in CloudTrail and in SSM session ids.
DEFAULT_ROLE_SESSION_NAME = "trek10-ec2ssm"


class MissingDependencyError(RuntimeError):
    """botocore is not importable in this Python."""


def require_botocore() -> None:
    """Raise :class:`MissingDependencyError` with an actionable message if botocore is missing."""
    if BOTOCORE_IMPORT_ERROR is not None:
        raise MissingDependencyError(
            f"botocore is required by trek10.ec2ssm but cannot be imported ({BOTOCORE_IMPORT_ERROR}); "
            "install the collection's requirements.txt (pip install boto3 botocore) into this Python"
        )


@dataclass(frozen=True)
class AwsSettings:
    """Non-secret choices for one target. ``None`` means "whatever the standard AWS config says"."""

    region: str | None = None
    profile: str | None = None
    assume_role_arn: str | None = None
    """Assume this role (with the profile/env credentials) for every call: multi-account inventories."""
    role_session_name: str = DEFAULT_ROLE_SESSION_NAME
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT


class AwsAccess:
    """One botocore session (optionally an assumed role) and its clients, for one target.

    ``target``/``label`` only name the host in error messages. Clients are created lazily, under a
    lock (botocore sessions are not thread-safe; clients are), and cached per service.
    """

    def __init__(
        self,
        settings: AwsSettings,
        *,
        target: str | None = None,
        label: str | None = None,
    ) -> None:
        require_botocore()
        self.settings = settings
        self.target = target
        self.label = label
        self._lock = threading.RLock()
        self._clients: dict[str, Any] = {}
        self._session: Any = None
        self._region: str | None = settings.region

    # -- configuration -------------------------------------------------------------------------

    def _new_session(self) -> Any:
        return botocore.session.Session(profile=self.settings.profile)

    @property
    def session(self) -> Any:
        """The botocore session (created on first use; raises botocore's ProfileNotFound etc.)."""
        with self._lock:
            if self._session is None:
                session = self._new_session()
                session.user_agent_extra = USER_AGENT_EXTRA
                if self.settings.assume_role_arn:
                    _use_assumed_role(
                        session,
                        self._source_session(),
                        self.settings,
                        self._client_config,
                        lambda: self.region,
                    )
                self._session = session
            return self._session

    def _source_session(self) -> Any:
        """The session whose credentials call sts:AssumeRole (same profile and config)."""
        return self._new_session()

    @property
    def region(self) -> str | None:
        """The explicit region, else ``AWS_REGION`` (which the AWS CLI v2 and the other SDKs read but
        botocore does not), else botocore's (``AWS_DEFAULT_REGION``, the profile's), else None."""
        with self._lock:
            if self._region is None:
                try:
                    self._region = (
                        os.environ.get("AWS_REGION") or self.session.get_config_variable("region") or None
                    )
                except BotoCoreError:
                    return None
            return self._region

    def _client_config(self, session: Any) -> Any:
        """Retries/timeouts: the user's AWS_RETRY_MODE/AWS_MAX_ATTEMPTS/profile win over our defaults."""
        scoped: Mapping[str, Any] = session.get_scoped_config()
        mode = os.environ.get("AWS_RETRY_MODE") or scoped.get("retry_mode") or "standard"
        attempts = session.get_config_variable("max_attempts") or DEFAULT_MAX_ATTEMPTS
        return Config(
            retries={"mode": mode, "total_max_attempts": int(attempts)},
            connect_timeout=self.settings.connect_timeout,
            read_timeout=self.settings.read_timeout,
        )

    def ca_bundle(self) -> str | None:
        """The configured CA bundle (``AWS_CA_BUNDLE`` or the profile's ``ca_bundle``), if any."""
        value = self.session.get_config_variable("ca_bundle")
        return str(value) if value else None

    def verify_path(self) -> str | None:
        """The CA bundle botocore verifies AWS endpoints with: the configured one, else botocore's
        default (certifi's). The data-channel websocket must trust exactly the same CAs."""
        configured = self.ca_bundle()
        if configured:
            return configured
        from botocore.httpsession import get_cert_path

        default = get_cert_path(True)
        return str(default) if isinstance(default, str) else None

    # -- the boundary --------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        """A cached botocore client for ``service`` in :attr:`region` (botocore exceptions escape)."""
        with self._lock:
            client = self._clients.get(service)
            if client is None:
                session = self.session
                client = session.create_client(
                    service, region_name=self.region, config=self._client_config(session)
                )
                self._clients[service] = client
            return client

    def call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        """Call ``operation`` (API name, e.g. ``StartSession``) and return the parsed response.

        Raises:
            AwsCallError: for every botocore failure, client creation and credential resolution
                included; ``str()`` of it is the one sentence to show.
        """
        try:
            try:
                client = self.client(service)
            except ValueError as error:  # a malformed setting, e.g. AWS_MAX_ATTEMPTS=many
                failure = from_transport_error(
                    error, service=service, operation=operation, target=self.target, label=self.label
                )
                failure.category = "config"
                failure.advice = "check the AWS_* environment variables and the profile's settings"
                raise failure from error
            method = getattr(client, botocore.xform_name(operation))
            response: dict[str, Any] = method(**params)
        except ClientError as error:
            raise from_client_error(
                error, service=service, target=self.target, region=self.region, label=self.label
            ) from error
        except BotoCoreError as error:
            raise from_transport_error(
                error,
                service=service,
                operation=operation,
                target=self.target,
                region=self.region,
                label=self.label,
            ) from error
        return response

    def resolve_credentials(self, service: str, operation: str) -> None:
        """Resolve credentials now (assume the role, read SSO/credential_process) so a failure is
        reported up front, attributed to ``operation`` (the call that would have needed them).

        A no-op cost-wise: botocore resolves them at the first call anyway.
        """
        try:
            with self._lock:
                credentials = self.session.get_credentials()
            if credentials is not None:
                credentials.get_frozen_credentials()
        except ClientError as error:
            raise from_client_error(
                error, service="sts", target=self.target, region=self.region, label=self.label
            ) from error
        except BotoCoreError as error:
            raise from_transport_error(
                error,
                service=service,
                operation=operation,
                target=self.target,
                region=self.region,
                label=self.label,
            ) from error


def _use_assumed_role(
    session: Any,
    source: Any,
    settings: AwsSettings,
    client_config: Callable[[Any], Any],
    region: Callable[[], str | None],
) -> None:
    """Make ``session`` use refreshable credentials for ``settings.assume_role_arn``.

    The source credentials come from ``source`` (same profile, env, SSO...). The assumed-role
    credentials refresh themselves before they expire, so a tunnel that lives for hours can still
    call ResumeSession/TerminateSession at its end.
    """

    def fetch() -> dict[str, Any]:
        sts = source.create_client("sts", region_name=region(), config=client_config(source))
        response = sts.assume_role(
            RoleArn=settings.assume_role_arn, RoleSessionName=settings.role_session_name
        )
        creds = response["Credentials"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    credentials = DeferredRefreshableCredentials(refresh_using=fetch, method="assume-role")
    resolver = session.get_component("credential_provider")
    resolver.providers.insert(0, _StaticProvider(credentials))


class _StaticProvider:
    """A credential provider that hands out one (refreshable) credentials object.

    botocore's resolver only calls ``load()`` and reads ``METHOD``/``CANONICAL_NAME``.
    """

    METHOD = "assume-role"
    CANONICAL_NAME = "trek10-ec2ssm-assume-role"

    def __init__(self, credentials: Any) -> None:
        self._credentials = credentials

    def load(self) -> Any:
        return self._credentials
