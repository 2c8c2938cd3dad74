# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for tests that run real botocore against a scripted local endpoint."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ansible_collections.trek10.ec2ssm.tests.unit.plugins.plugin_utils.aws.fake_aws import FakeAws, serve


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Iterator[FakeAws]:
    yield from serve(monkeypatch, tmp_path)
