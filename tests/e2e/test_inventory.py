# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""trek10.ec2ssm.ssm_instances end to end: the real ``ansible-inventory`` CLI against the sandbox.

Real botocore over HTTPS to the local AWS sandbox (SSM DescribeInstanceInformation with AWS's
pagination and filter rules, EC2 from moto), configured only through the standard AWS variables
of the sandbox's ``env.sh``. What each test expects is computed from the sandbox's own record of
its instances (the control API), never from the plugin's code; API calls are read from the
sandbox's counters.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.trek10.ec2ssm.tests.sandbox.control.client import SandboxClient

pytestmark = pytest.mark.sandbox

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STATIC = Path(__file__).parent / "inventory"
SANDBOX = "ansible_collections.trek10.ec2ssm.tests.sandbox"
PLUGIN = "trek10.ec2ssm.ssm_instances"
EAST, WEST = "us-east-1", "us-west-2"


@dataclass
class Sandbox:
    state: Path
    env: dict[str, str]
    client: SandboxClient
    marker: Path
    """A file a templated tag value would create if the plugin ever let AWS data be templated."""

    def instances(self) -> list[dict[str, Any]]:
        return self.client.instances()

    def find(self, **wanted: Any) -> list[dict[str, Any]]:
        """Instances whose record fields (``tags`` compared key by key) match ``wanted``."""
        out = []
        for record in self.instances():
            tags = wanted.get("tags", {})
            if all(record.get(k) == v for k, v in wanted.items() if k != "tags") and all(
                record["tags"].get(k) in (v if isinstance(v, list) else [v]) for k, v in tags.items()
            ):
                out.append(record)
        return out

    def calls(self, **filters: str) -> int:
        return int(self.client.calls(**filters)["total"])


def read_env_sh(path: Path) -> tuple[dict[str, str], list[str]]:
    """The exports and unsets of the sandbox's env.sh (plain ``export K=V`` / ``unset A B``)."""
    exports: dict[str, str] = {}
    unsets: list[str] = []
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "export":
            for word in words[1:]:
                key, _sep, value = word.partition("=")
                exports[key] = value
        elif words[0] == "unset":
            unsets.extend(words[1:])
    return exports, unsets


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    root = tmp_path_factory.mktemp("inventory-sandbox")
    marker = root / "templated-a-tag-value"
    evil = "{{ lookup('pipe', 'touch " + str(marker) + "') }}"
    blue = {"sshd": False, "region": EAST}
    config = {
        "regions": [EAST, WEST],
        "instances": 0,
        "api_only": 110,  # 55 per region: more than one DescribeInstanceInformation page in each
        "hybrid": 2,
        "specs": [
            {**blue, "tags": {"Team": "blue", "Name": "twin", "Tier": "front"}, "count": 2},
            {**blue, "platform": "ubuntu", "tags": {"Team": "blue", "Name": "blue-ubuntu", "Tier": "back"}},
            {**blue, "ping_status": "ConnectionLost", "tags": {"Team": "blue", "Name": "blue-lost"}},
            {**blue, "kind": "hybrid", "platform": "ubuntu", "tags": {"Team": "blue", "Name": "blue-hybrid"}},
            {
                "sshd": False,
                "region": WEST,
                "instance_type": "t3.large",
                "tags": {"Team": "blue", "Name": "blue-west", "Tier": "front"},
            },
            {**blue, "tags": {"Team": "red", "Name": evil}},
        ],
    }
    config_file = root / "sandbox.yml"
    config_file.write_text(yaml.safe_dump(config))
    state = root / "state"
    command = [sys.executable, "-m", SANDBOX, "up", "--config", str(config_file), "--state-dir", str(state)]
    command += ["--owner-pid", str(os.getpid())]  # a killed test run takes its sandbox with it
    up = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert up.returncode == 0, up.stderr + up.stdout
    try:
        exports, unsets = read_env_sh(state / "env.sh")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k not in unsets}
        env.update(exports)
        yield Sandbox(state, env, SandboxClient.from_state(state), marker)
    finally:
        subprocess.run(
            [sys.executable, "-m", SANDBOX, "down", "--state-dir", str(state)], timeout=300, check=False
        )


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str

    @property
    def data(self) -> dict[str, Any]:
        """The --list JSON, with untrusted strings (``{"__ansible_unsafe": s}``) read as ``s``."""
        return json.loads(self.stdout, object_hook=_plain)

    @property
    def raw(self) -> dict[str, Any]:
        """The --list JSON as printed, untrusted-string markers included."""
        return json.loads(self.stdout)

    @property
    def hostvars(self) -> dict[str, dict[str, Any]]:
        return self.data["_meta"]["hostvars"]

    def group(self, name: str) -> list[str]:
        return sorted(self.data.get(name, {}).get("hosts", []))


def _plain(obj: dict[str, Any]) -> Any:
    return obj["__ansible_unsafe"] if list(obj) == ["__ansible_unsafe"] else obj


def ansible_inventory(
    sandbox: Sandbox,
    path: Path,
    *args: str,
    env: dict[str, str] | None = None,
) -> Run:
    run_env = {
        **sandbox.env,
        "ANSIBLE_HOME": str(path.parent / "ansible-home"),
        "ANSIBLE_NOCOLOR": "1",
        # a source that fails to parse must fail the command, not yield an empty inventory
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
        **(env or {}),
    }
    proc = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", str(path), *(args or ("--list",))],
        capture_output=True,
        text=True,
        env=run_env,
        timeout=300,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def inventory(sandbox: Sandbox, tmp_path: Path):
    """Write an inventory file with ``options``, reset the call counters, run ansible-inventory."""

    def run(
        options: dict[str, Any], *args: str, env: dict[str, str] | None = None, check: bool = True
    ) -> Run:
        path = tmp_path / "test.ssm_instances.yml"
        path.write_text(yaml.safe_dump({"plugin": PLUGIN, **options}))
        sandbox.client.reset_calls()
        result = ansible_inventory(sandbox, path, *args, env=env)
        if check:
            assert result.rc == 0, result.stderr
        return result

    return run


def names(records: list[dict[str, Any]]) -> list[str]:
    return sorted(r["instance_id"] for r in records)


def online_ec2(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["kind"] == "ec2" and r["ping_status"] == "Online"]


# ---------------------------------------------------------------------------- tag filters


@pytest.mark.e2e_smoke
def test_single_tag(sandbox: Sandbox, inventory):
    run = inventory({"regions": [EAST], "tags": {"Team": "blue"}})
    expected = online_ec2(sandbox.find(region=EAST, tags={"Team": "blue"}))
    assert len(expected) == 3  # the twins and blue-ubuntu; not blue-lost (offline) nor blue-hybrid
    assert sorted(run.hostvars) == names(expected)
    assert "WARNING" not in run.stderr, run.stderr
    for record in expected:
        host = run.hostvars[record["instance_id"]]
        assert host["ansible_connection"] == "trek10.ec2ssm.ssm_ssh"
        assert host["ansible_host"] == record["instance_id"]
        assert host["ansible_ec2ssm_region"] == EAST
        assert host["ansible_user"] == record["os_user"]
        assert host["ec2_tags"] == record["tags"]
        assert host["platform_name"] == record["platform_name"]
        assert host["availability_zone"] == record["availability_zone"]
        assert host["instance_type"] == record["instance_type"]
        assert host["private_ip_address"] == record["private_address"]
        assert host["ping_status"] == "Online"


def test_multiple_tags_and_value_lists(sandbox: Sandbox, inventory):
    run = inventory({"regions": [EAST, WEST], "tags": {"Team": "blue", "Tier": ["front", "back"]}})
    expected = online_ec2(sandbox.find(tags={"Team": "blue", "Tier": ["front", "back"]}))
    assert len(expected) == 4  # twins, blue-ubuntu, blue-west
    assert sorted(run.hostvars) == names(expected)


def test_tags_are_anded(sandbox: Sandbox, inventory):
    run = inventory({"regions": [EAST, WEST], "tags": {"Team": "blue", "Tier": "back"}})
    assert [h["ec2_tags"]["Name"] for h in run.hostvars.values()] == ["blue-ubuntu"]


# ---------------------------------------------------------------------------- pagination, regions


def test_pagination_over_50_instances(sandbox: Sandbox, inventory):
    run = inventory({"regions": [EAST], "tags": {"Fleet": "scale"}})
    expected = online_ec2(sandbox.find(region=EAST, tags={"Fleet": "scale"}))
    assert len(expected) > 50
    assert sorted(run.hostvars) == names(expected)
    # AWS applies tag filters to each page of MaxResults nodes, so the listing pages over every
    # node of the region, 50 (the maximum) at a time; EC2 gets one batch of instance ids.
    nodes_in_region = [r for r in sandbox.instances() if r["region"] == EAST and r["state"] == "running"]
    ssm_calls = sandbox.calls(action="DescribeInstanceInformation", region=EAST)
    assert ssm_calls == math.ceil(len(nodes_in_region) / 50)
    assert sandbox.calls(action="DescribeInstances", region=EAST) == math.ceil(len(expected) / 200)
    assert sandbox.calls(region=WEST) == 0


def test_no_tags_sends_status_filters_to_aws(sandbox: Sandbox, inventory):
    run = inventory({"regions": [WEST]})
    expected = online_ec2(sandbox.find(region=WEST))
    assert sorted(run.hostvars) == names(expected)
    # PingStatus/ResourceType were filtered by AWS before paging: pages of 50 matching nodes
    assert sandbox.calls(action="DescribeInstanceInformation", region=WEST) == math.ceil(len(expected) / 50)


def test_two_regions(sandbox: Sandbox, inventory):
    run = inventory({"regions": [EAST, WEST], "tags": {"Team": "blue"}})
    (west,) = sandbox.find(region=WEST, tags={"Team": "blue"})
    host = run.hostvars[west["instance_id"]]
    assert host["region"] == WEST
    assert host["ansible_ec2ssm_region"] == WEST
    assert host["instance_type"] == "t3.large"
    assert {h["region"] for h in run.hostvars.values()} == {EAST, WEST}


def test_default_region_is_the_configured_one_only(sandbox: Sandbox, inventory):
    run = inventory({"tags": {"Team": "blue"}}, env={"AWS_REGION": WEST, "AWS_DEFAULT_REGION": WEST})
    assert [h["ec2_tags"]["Name"] for h in run.hostvars.values()] == ["blue-west"]
    assert sandbox.calls(region=EAST) == 0


# ---------------------------------------------------------------------------- offline, hybrid


def test_offline_and_hybrid_nodes(sandbox: Sandbox, inventory):
    run = inventory(
        {
            "regions": [EAST],
            "tags": {"Team": "blue"},
            "include_offline": True,
            "include_hybrid": True,
            "groups": {"hybrid": "not eic_capable", "offline": "ping_status != 'Online'"},
        }
    )
    (lost,) = sandbox.find(region=EAST, ping_status="ConnectionLost", tags={"Team": "blue"})
    (hybrid,) = sandbox.find(region=EAST, kind="hybrid", tags={"Team": "blue"})
    assert hybrid["instance_id"].startswith("mi-")
    assert sorted(run.hostvars) == names(sandbox.find(region=EAST, tags={"Team": "blue"}))
    assert run.group("offline") == [lost["instance_id"]]
    assert run.group("hybrid") == [hybrid["instance_id"]]
    node = run.hostvars[hybrid["instance_id"]]
    assert node["eic_capable"] is False
    assert node["resource_type"] == "ManagedInstance"
    assert node["ec2_tags"] == hybrid["tags"]  # from ssm:ListTagsForResource
    assert node["ansible_ec2ssm_eic_push"] is False
    assert node["ansible_user"] == "ubuntu"
    assert node["instance_type"] is None
    assert sandbox.calls(action="ListTagsForResource") == 1


def test_a_node_that_goes_offline_leaves_the_default_inventory(sandbox: Sandbox, inventory):
    twin = sandbox.find(region=EAST, tags={"Name": "twin"})[0]["instance_id"]
    sandbox.client.set_ping_status(twin, "ConnectionLost")
    try:
        run = inventory({"regions": [EAST], "tags": {"Team": "blue"}})
        assert twin not in run.hostvars
        run = inventory({"regions": [EAST], "tags": {"Team": "blue"}, "include_offline": True})
        assert run.hostvars[twin]["ping_status"] == "ConnectionLost"
    finally:
        sandbox.client.set_ping_status(twin, "Online")


# ---------------------------------------------------------------------------- names, groups, vars


def test_hostname_precedence(sandbox: Sandbox, inventory):
    run = inventory(
        {
            "regions": [EAST, WEST],
            "tags": {"Team": "blue"},
            "hostnames": ["tag:Name", "private-ip", "instance-id"],
        }
    )
    first, second = sorted(sandbox.find(tags={"Name": "twin"}), key=lambda r: r["instance_id"])
    assert run.hostvars["twin"]["instance_id"] == first["instance_id"]
    # the second twin cannot be "twin" too: it gets the next source, with a warning
    assert run.hostvars[second["private_address"]]["instance_id"] == second["instance_id"]
    assert "that another host already has" in run.stderr
    assert {"blue-ubuntu", "blue-west"} <= set(run.hostvars)
    assert all(h["ansible_host"] == h["instance_id"] for h in run.hostvars.values())


def test_hostname_with_prefix(sandbox: Sandbox, inventory):
    run = inventory(
        {
            "regions": [EAST, WEST],
            "tags": {"Team": "blue", "Tier": ["front", "back"]},
            "hostnames": [{"name": "tag:Name", "prefix": "tag:Tier", "separator": "-"}, "instance-id"],
        }
    )
    assert {"front-twin", "back-blue-ubuntu", "front-blue-west"} <= set(run.hostvars)
    assert len(run.hostvars) == 4


def test_keyed_groups_compose_groups_and_graph(sandbox: Sandbox, tmp_path: Path):
    sandbox.client.reset_calls()
    listed = ansible_inventory(sandbox, STATIC / "groups.ssm_instances.yml", "--list")
    assert listed.rc == 0, listed.stderr
    graph = ansible_inventory(sandbox, STATIC / "groups.ssm_instances.yml", "--graph")
    assert graph.rc == 0, graph.stderr

    first_twin, second_twin = sorted(r["instance_id"] for r in sandbox.find(tags={"Name": "twin"}))
    # hostnames [tag:Name, instance-id]: the second twin cannot also be "twin"
    assert sorted(listed.hostvars) == sorted(["twin", second_twin, "blue-ubuntu", "blue-west"])
    assert listed.hostvars["twin"]["instance_id"] == first_twin
    assert listed.group("tag_Tier_front") == sorted(["blue-west", "twin", second_twin])
    assert listed.group("tag_Team_blue") == sorted(listed.hostvars)
    assert listed.group("platform_Ubuntu") == ["blue-ubuntu"]
    assert listed.group("region_us_west_2") == ["blue-west"]
    assert listed.group("large") == ["blue-west"]
    assert listed.hostvars["blue-ubuntu"]["team_upper"] == "BLUE"
    # --graph shows the same groups, as a tree
    assert "@region_us_west_2:\n  |  |--blue-west" in graph.stdout
    assert "@platform_Ubuntu:\n  |  |--blue-ubuntu" in graph.stdout
    assert "@large:\n  |  |--blue-west" in graph.stdout


def test_tag_values_are_never_templated(sandbox: Sandbox, inventory):
    run = inventory(
        {
            "regions": [EAST],
            "tags": {"Team": "red"},
            "hostnames": ["tag:Name"],
            "compose": {"copied": "ec2_tags.Name"},
            "keyed_groups": [{"key": "ec2_tags.Name", "prefix": "name"}],
        }
    )
    (record,) = sandbox.find(tags={"Team": "red"})
    evil = record["tags"]["Name"]
    assert "lookup('pipe'" in evil
    (host,) = run.hostvars.values()
    assert host["ec2_tags"]["Name"] == evil
    assert host["copied"] == evil
    assert not sandbox.marker.exists()
    # ansible-inventory marks it as data that must not be templated
    (raw,) = run.raw["_meta"]["hostvars"].values()
    assert raw["ec2_tags"]["Name"] == {"__ansible_unsafe": evil}


# ---------------------------------------------------------------------------- cache


@pytest.mark.e2e_smoke
def test_cache_hit_makes_no_api_calls(sandbox: Sandbox, inventory, tmp_path: Path):
    options = {
        "regions": [EAST, WEST],
        "tags": {"Team": "blue"},
        "cache": True,
        "cache_plugin": "ansible.builtin.jsonfile",
        "cache_connection": str(tmp_path / "cache"),
        "cache_timeout": 600,
    }
    first = inventory(options)
    assert sandbox.calls() > 0
    second = inventory(options)
    assert sandbox.calls() == 0
    assert second.hostvars == first.hostvars
    # names and groups are applied to cached data: still no call
    renamed = inventory({**options, "hostnames": ["tag:Name", "instance-id"]})
    assert sandbox.calls() == 0
    assert "blue-west" in renamed.hostvars
    # a different query does not reuse the entry, and --flush-cache always asks AWS
    inventory({**options, "tags": {"Team": "blue", "Tier": "front"}})
    assert sandbox.calls(action="DescribeInstanceInformation") > 0
    inventory({**options, "tags": {"Team": "blue", "Tier": "front"}}, "--list", "--flush-cache")
    assert sandbox.calls(action="DescribeInstanceInformation") > 0


def test_assume_role_arn(sandbox: Sandbox, inventory):
    role = "arn:aws:iam::123456789012:role/inventory-reader"
    run = inventory({"regions": [WEST], "tags": {"Team": "blue"}, "assume_role_arn": role})
    assert [h["ec2_tags"]["Name"] for h in run.hostvars.values()] == ["blue-west"]
    callers = {row["action"]: row["caller"] for row in sandbox.client.calls()["rows"]}
    assert set(callers) == {"AssumeRole", "DescribeInstanceInformation", "DescribeInstances"}
    # the listing ran as the assumed role's session, not as the caller who assumed it
    assert callers["DescribeInstanceInformation"] == callers["DescribeInstances"] != callers["AssumeRole"]
    assert callers["DescribeInstances"].endswith("_dynamic_inventory")


# ---------------------------------------------------------------------------- errors


def principal_env(sandbox: Sandbox, user: str, policy: dict[str, Any]) -> dict[str, str]:
    keys = sandbox.client.add_principal(user)
    sandbox.client.set_policy(user, policy)
    return {"AWS_ACCESS_KEY_ID": keys["access_key_id"], "AWS_SECRET_ACCESS_KEY": keys["secret_access_key"]}


def test_denied_listing_names_the_action_and_region(sandbox: Sandbox, inventory):
    env = principal_env(
        sandbox,
        "inventory-no-ssm",
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"}],
        },
    )
    run = inventory({"regions": [WEST]}, env=env, check=False)
    assert run.rc != 0
    assert "ssm:DescribeInstanceInformation was denied" in run.stderr
    assert f"({WEST})" in run.stderr

    skipped = inventory({"regions": [WEST], "strict_permissions": False}, env=env)
    assert skipped.hostvars == {}
    assert "skipped: strict_permissions is false" in skipped.stderr


def test_denied_ec2_without_strict_permissions_keeps_ssm_hosts(sandbox: Sandbox, inventory):
    env = principal_env(
        sandbox,
        "inventory-no-ec2",
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "ssm:DescribeInstanceInformation", "Resource": "*"}],
        },
    )
    run = inventory({"regions": [WEST], "tags": {"Team": "blue"}, "strict_permissions": False}, env=env)
    (west,) = sandbox.find(region=WEST, tags={"Team": "blue"})
    host = run.hostvars[west["instance_id"]]
    assert host["instance_type"] is None
    assert host["ansible_host"] == west["instance_id"]
    assert "ec2:DescribeInstances was denied" in run.stderr

    strict = inventory({"regions": [WEST], "tags": {"Team": "blue"}}, env=env, check=False)
    assert strict.rc != 0
    assert "ec2:DescribeInstances was denied" in strict.stderr


def test_malformed_option_names_it_and_calls_nothing(sandbox: Sandbox, inventory):
    run = inventory({"regions": [EAST], "tags": {"Enabled": True}}, check=False)
    assert run.rc != 0
    assert "option 'tags': filter 'tag:Enabled' has the YAML boolean True" in run.stderr
    assert sandbox.calls() == 0
