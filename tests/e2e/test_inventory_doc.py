# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``ansible-doc -t inventory trek10.ec2ssm.ssm_instances`` on both supported cores.

Each core line has its own virtualenv and its own amazon.aws (10.x with ansible-core 2.19, 11.x with
2.21); the plugin's documentation extends amazon.aws doc fragments, so both must resolve.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN = "trek10.ec2ssm.ssm_instances"
OWN_OPTIONS = {
    "plugin",
    "regions",
    "tags",
    "filters",
    "include_filters",
    "exclude_filters",
    "include_offline",
    "include_hybrid",
    "hostnames",
    "hostvars_prefix",
    "hostvars_suffix",
    "strict_permissions",
    "set_connection_vars",
    "os_user_map",
}
# from the fragments: constructed, inventory_cache and amazon.aws's
FRAGMENT_OPTIONS = {
    "keyed_groups",
    "compose",
    "groups",
    "strict",
    "cache",
    "cache_plugin",
    "access_key",
    "profile",
    "region",
    "assume_role_arn",
    "endpoint_url",
}


@pytest.mark.parametrize("venv", ["core219", "core221"])
def test_ansible_doc(venv: str, tmp_path: Path):
    root = REPO / ".venv" / venv
    assert (root / "bin" / "ansible-doc").exists(), f"{root} is missing: run 'make venvs'"
    collections = str(root / "collections")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "PYTHON"))}
    env.update(
        ANSIBLE_COLLECTIONS_PATH=collections,
        PYTHONPATH=collections,
        ANSIBLE_HOME=str(tmp_path),
        ANSIBLE_NOCOLOR="1",
    )

    text = subprocess.run(
        [str(root / "bin" / "ansible-doc"), "-t", "inventory", PLUGIN],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert text.returncode == 0, text.stderr
    assert "[WARNING]" not in text.stderr, text.stderr
    assert "DEPRECATION" not in text.stderr, text.stderr
    assert PLUGIN in text.stdout
    assert "ssm:DescribeInstanceInformation" in text.stdout

    raw = subprocess.run(
        [str(root / "bin" / "ansible-doc"), "-t", "inventory", "--json", PLUGIN],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert raw.returncode == 0, raw.stderr
    doc = json.loads(raw.stdout)[PLUGIN]["doc"]
    options = set(doc["options"])
    assert options >= OWN_OPTIONS
    assert options >= FRAGMENT_OPTIONS
    assert doc["options"]["plugin"]["choices"] == [PLUGIN]
    assert doc["options"]["plugin"]["required"] is True
    assert doc["options"]["regions"]["default"] == []
    assert doc["options"]["hostnames"]["default"] == ["instance-id"]
