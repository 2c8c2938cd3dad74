"""The sandbox's own tests share one sandbox: two regions, sshd hosts, API-only and hybrid nodes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ansible_collections.trek10.ec2ssm.tests.sandbox.config import SandboxConfig
from ansible_collections.trek10.ec2ssm.tests.sandbox.fixtures import (  # noqa: F401 - fixtures
    sandbox,
    sandbox_factory,
)
from ansible_collections.trek10.ec2ssm.tests.sandbox.tests.helpers import KeyPair, make_key

REGIONS = ["us-east-1", "us-west-2"]
HOSTS = 4
API_ONLY = 23
HYBRID = 2


@pytest.fixture(scope="session")
def sandbox_config() -> SandboxConfig:
    return SandboxConfig(regions=REGIONS, instances=HOSTS, api_only=API_ONLY, hybrid=HYBRID)


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the sandbox needs root (network namespaces, sshd, OS users)")


@pytest.fixture
def keypair(tmp_path: Path) -> KeyPair:
    return make_key(tmp_path)
