# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""trek10.ec2ssm.ssm_instances through Ansible's real inventory machinery.

The plugin is loaded by Ansible's plugin loader and parses a real inventory file into a real
InventoryData; its AWS clients are real botocore clients whose HTTP layer is a
``botocore.stub.Stubber``: requests are validated against the service models and must match the
expected parameters exactly, and an unexpected call fails the test.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleError, AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader
from botocore.session import get_session
from botocore.stub import Stubber

NAME = "trek10.ec2ssm.ssm_instances"
LAUNCHED = datetime(2026, 11, 1, 8, 30, tzinfo=UTC)


def ssm_node(n: int, **overrides: Any) -> dict[str, Any]:
    node = {
        "InstanceId": f"i-{n:017x}",
        "PingStatus": "Online",
        "LastPingDateTime": datetime(2026, 11, 24, 10, 0, tzinfo=UTC),
        "AgentVersion": "3.3.1142.0",
        "PlatformType": "Linux",
        "PlatformName": "Amazon Linux",
        "PlatformVersion": "2023",
        "ResourceType": "EC2Instance",
        "IPAddress": f"10.0.{n // 250}.{n % 250 + 1}",
        "ComputerName": f"ip-10-0-{n // 250}-{n % 250 + 1}.ec2.internal",
    }
    node.update(overrides)
    return node


def ec2_instance(n: int, tags: dict[str, str] | None = None, **overrides: Any) -> dict[str, Any]:
    instance = {
        "InstanceId": f"i-{n:017x}",
        "InstanceType": "t3.micro",
        "LaunchTime": LAUNCHED,
        "Placement": {"AvailabilityZone": "us-east-1a"},
        "PrivateIpAddress": f"10.0.{n // 250}.{n % 250 + 1}",
        "State": {"Code": 16, "Name": "running"},
        "Tags": [{"Key": k, "Value": v} for k, v in (tags or {"Name": f"web-{n}"}).items()],
    }
    instance.update(overrides)
    return instance


class Aws:
    """Real botocore clients per (service, region), each behind a Stubber."""

    def __init__(self) -> None:
        self.session = get_session()
        self.clients: dict[tuple[str, str], Any] = {}
        self.stubbers: dict[tuple[str, str], Stubber] = {}

    def stub(self, service: str, region: str = "us-east-1") -> Stubber:
        key = (service, region)
        if key not in self.stubbers:
            client = self.session.create_client(
                service, region_name=region, aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret"
            )
            self.clients[key] = client
            self.stubbers[key] = Stubber(client)
            self.stubbers[key].activate()
        return self.stubbers[key]

    def client(self, service: str, region: str | None = None, **_kwargs: Any) -> Any:
        self.stub(service, region or "us-east-1")
        return self.clients[(service, region or "us-east-1")]

    def ssm_pages(
        self, pages: list[list[dict[str, Any]]], filters: list[dict[str, Any]], region: str = "us-east-1"
    ) -> None:
        for n, page in enumerate(pages):
            expected: dict[str, Any] = {"MaxResults": 50}
            if filters:
                expected["Filters"] = filters
            if n:
                expected["NextToken"] = f"token-{n}"
            response: dict[str, Any] = {"InstanceInformationList": page}
            if n + 1 < len(pages):
                response["NextToken"] = f"token-{n + 1}"
            self.stub("ssm", region).add_response("describe_instance_information", response, expected)

    def ec2_batch(
        self,
        ids: list[str],
        instances: list[dict[str, Any]],
        extra_filters: list[dict[str, Any]] | None = None,
        region: str = "us-east-1",
    ) -> None:
        self.stub("ec2", region).add_response(
            "describe_instances",
            {"Reservations": [{"ReservationId": "r-1", "OwnerId": "123456789012", "Instances": instances}]},
            {"Filters": [{"Name": "instance-id", "Values": ids}, *(extra_filters or [])], "MaxResults": 1000},
        )

    def assert_done(self) -> None:
        for stubber in self.stubbers.values():
            stubber.assert_no_pending_responses()


ONLINE_EC2 = [{"Key": "PingStatus", "Values": ["Online"]}, {"Key": "ResourceType", "Values": ["EC2Instance"]}]


@pytest.fixture
def aws() -> Aws:
    return Aws()


@pytest.fixture
def run(tmp_path: Path, aws: Aws, monkeypatch: pytest.MonkeyPatch):
    """Parse an inventory file with the given options; returns the InventoryData."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(var, raising=False)

    def parse(
        options: dict[str, Any], *, cache: bool = True, filename: str = "test.ssm_instances.yml"
    ) -> InventoryData:
        path = tmp_path / filename
        path.write_text(yaml.safe_dump({"plugin": NAME, **options}))
        plugin = inventory_loader.get(NAME)
        assert plugin is not None
        plugin.client = aws.client
        assert plugin.verify_file(str(path))
        inventory = InventoryData()
        plugin.parse(inventory, DataLoader(), str(path), cache=cache)
        if getattr(plugin, "_cache", None) is not None and options.get("cache"):
            plugin.update_cache_if_changed()
        return inventory

    return parse


def hostvars(inventory: InventoryData, name: str) -> dict[str, Any]:
    return inventory.get_host(name).get_vars()


# ---------------------------------------------------------------------------- listing


def test_pagination_and_batched_ec2_join(aws: Aws, run):
    nodes = [ssm_node(n) for n in range(1, 251)]
    aws.ssm_pages([nodes[:50], nodes[50:100], nodes[100:150], nodes[150:200], nodes[200:]], ONLINE_EC2)
    ids = [node["InstanceId"] for node in nodes]
    aws.ec2_batch(ids[:200], [ec2_instance(n) for n in range(1, 201)])
    aws.ec2_batch(ids[200:], [ec2_instance(n) for n in range(201, 251)])

    inventory = run({"regions": ["us-east-1"]})

    aws.assert_done()
    assert sorted(inventory.hosts) == sorted(ids)
    first = hostvars(inventory, ids[0])
    assert first["ec2_tags"] == {"Name": "web-1"}
    assert first["instance_type"] == "t3.micro"
    assert first["launch_time"] == "2026-11-01T08:30:00+00:00"
    assert first["ansible_connection"] == "trek10.ec2ssm.ssm_ssh"
    assert first["ansible_host"] == ids[0]
    assert first["ansible_ec2ssm_region"] == "us-east-1"
    assert first["ansible_user"] == "ec2-user"


def test_tag_filters_go_to_ssm_and_status_is_checked_locally(aws: Aws, run):
    nodes = [
        ssm_node(1),
        ssm_node(2, PingStatus="ConnectionLost"),
        ssm_node(3, InstanceId="mi-0123456789abcdef0", ResourceType="ManagedInstance"),
        ssm_node(4, PlatformName="Ubuntu"),
    ]
    aws.ssm_pages(
        [nodes],
        [{"Key": "tag:Env", "Values": ["prod", "staging"]}, {"Key": "tag:Team", "Values": ["payments"]}],
    )
    aws.ec2_batch([nodes[0]["InstanceId"], nodes[3]["InstanceId"]], [ec2_instance(1), ec2_instance(4)])

    inventory = run({"regions": ["us-east-1"], "tags": {"Env": ["prod", "staging"], "Team": "payments"}})

    aws.assert_done()
    assert sorted(inventory.hosts) == [nodes[0]["InstanceId"], nodes[3]["InstanceId"]]
    assert hostvars(inventory, nodes[3]["InstanceId"])["ansible_user"] == "ubuntu"


def test_offline_and_hybrid_nodes_when_asked(aws: Aws, run):
    hybrid = ssm_node(
        3, InstanceId="mi-0123456789abcdef0", ResourceType="ManagedInstance", PlatformName="Ubuntu"
    )
    nodes = [ssm_node(1), ssm_node(2, PingStatus="ConnectionLost"), hybrid]
    aws.ssm_pages([nodes], [{"Key": "tag:Env", "Values": ["prod"]}])
    aws.ec2_batch([nodes[0]["InstanceId"], nodes[1]["InstanceId"]], [ec2_instance(1), ec2_instance(2)])
    aws.stub("ssm").add_response(
        "list_tags_for_resource",
        {"TagList": [{"Key": "Env", "Value": "prod"}, {"Key": "Name", "Value": "rack-3"}]},
        {"ResourceType": "ManagedInstance", "ResourceId": "mi-0123456789abcdef0"},
    )

    inventory = run(
        {
            "regions": ["us-east-1"],
            "tags": {"Env": "prod"},
            "include_offline": True,
            "include_hybrid": True,
            "hostnames": ["tag:Name"],
            "groups": {"hybrid": "not eic_capable", "offline": "ping_status != 'Online'"},
        }
    )

    aws.assert_done()
    assert sorted(inventory.hosts) == ["rack-3", "web-1", "web-2"]
    assert hostvars(inventory, "rack-3")["eic_capable"] is False
    assert hostvars(inventory, "rack-3")["ansible_host"] == "mi-0123456789abcdef0"
    assert [h.name for h in inventory.groups["hybrid"].get_hosts()] == ["rack-3"]
    assert [h.name for h in inventory.groups["offline"].get_hosts()] == ["web-2"]


def test_ec2_filters_are_evaluated_by_ec2(aws: Aws, run):
    nodes = [
        ssm_node(1),
        ssm_node(2),
        ssm_node(3, InstanceId="mi-0123456789abcdef0", ResourceType="ManagedInstance"),
    ]
    aws.ssm_pages([nodes], [{"Key": "PingStatus", "Values": ["Online"]}])
    aws.ec2_batch(
        [nodes[0]["InstanceId"], nodes[1]["InstanceId"]],
        [ec2_instance(2, InstanceType="t3.small")],
        extra_filters=[{"Name": "instance-type", "Values": ["t3.small"]}],
    )

    inventory = run(
        {"regions": ["us-east-1"], "filters": {"instance-type": "t3.small"}, "include_hybrid": True}
    )

    aws.assert_done()
    assert list(inventory.hosts) == [nodes[1]["InstanceId"]]  # the hybrid node cannot match an EC2 filter


def test_include_and_exclude_filters(aws: Aws, run):
    prod = [ssm_node(1), ssm_node(2)]
    dev = [ssm_node(3)]
    aws.ssm_pages([prod], [{"Key": "tag:Env", "Values": ["prod"]}])
    aws.ec2_batch(
        [n["InstanceId"] for n in prod],
        [ec2_instance(1, {"Env": "prod"}), ec2_instance(2, {"Env": "prod", "Maintenance": "true"})],
    )
    aws.ssm_pages([dev], [{"Key": "tag:Env", "Values": ["dev"]}])
    aws.ec2_batch([dev[0]["InstanceId"]], [ec2_instance(3, {"Env": "dev"})])

    inventory = run(
        {
            "regions": ["us-east-1"],
            "filters": {"tag:Env": "prod"},
            "include_filters": [{"tag:Env": "dev"}],
            "exclude_filters": [{"tag:Maintenance": "true"}],
        }
    )

    aws.assert_done()  # the exclude set was evaluated on fetched data: no extra call
    assert sorted(inventory.hosts) == [prod[0]["InstanceId"], dev[0]["InstanceId"]]


def test_two_regions(aws: Aws, run):
    east, west = ssm_node(1), ssm_node(2)
    aws.ssm_pages([[east]], ONLINE_EC2, region="us-east-1")
    aws.ec2_batch([east["InstanceId"]], [ec2_instance(1)], region="us-east-1")
    aws.ssm_pages([[west]], ONLINE_EC2, region="us-west-2")
    aws.ec2_batch(
        [west["InstanceId"]],
        [ec2_instance(2, Placement={"AvailabilityZone": "us-west-2c"})],
        region="us-west-2",
    )

    inventory = run(
        {"regions": ["us-east-1", "us-west-2"], "keyed_groups": [{"key": "region", "prefix": "region"}]}
    )

    aws.assert_done()
    assert hostvars(inventory, west["InstanceId"])["ansible_ec2ssm_region"] == "us-west-2"
    assert hostvars(inventory, west["InstanceId"])["availability_zone"] == "us-west-2c"
    assert [h.name for h in inventory.groups["region_us_west_2"].get_hosts()] == [west["InstanceId"]]
    assert [h.name for h in inventory.groups["region_us_east_1"].get_hosts()] == [east["InstanceId"]]


def test_default_region_is_the_configured_one(aws: Aws, run, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    node = ssm_node(1)
    aws.ssm_pages([[node]], ONLINE_EC2, region="eu-west-1")
    aws.ec2_batch([node["InstanceId"]], [ec2_instance(1)], region="eu-west-1")

    inventory = run({})

    aws.assert_done()
    assert hostvars(inventory, node["InstanceId"])["region"] == "eu-west-1"


def test_no_region_anywhere_names_the_option(run):
    with pytest.raises(AnsibleParserError, match="option 'regions': no region is configured"):
        run({})


# ---------------------------------------------------------------------------- names, groups, vars


def test_hostnames_keyed_groups_compose(aws: Aws, run):
    nodes = [ssm_node(1), ssm_node(2, PlatformName="Ubuntu", PlatformVersion="24.04")]
    aws.ssm_pages([nodes], [{"Key": "tag:Role", "Values": ["web"]}])
    aws.ec2_batch(
        [n["InstanceId"] for n in nodes],
        [ec2_instance(1, {"Role": "web", "Name": "alpha"}), ec2_instance(2, {"Role": "web"})],
    )

    inventory = run(
        {
            "regions": ["us-east-1"],
            "tags": {"Role": "web"},
            "hostnames": ["tag:Name", {"name": "private-ip", "prefix": "ip"}],
            "keyed_groups": [
                {"key": "ec2_tags", "prefix": "tag"},
                {"key": "platform_name", "prefix": "platform"},
            ],
            "compose": {"role_upper": "ec2_tags.Role | upper", "ansible_user": "'deploy'"},
            "os_user_map": {"ubuntu": "ubuntu-admin"},
        }
    )

    aws.assert_done()
    assert sorted(inventory.hosts) == ["alpha", "ip_10.0.0.3"]
    assert {h.name for h in inventory.groups["tag_Role_web"].get_hosts()} == {"alpha", "ip_10.0.0.3"}
    assert [h.name for h in inventory.groups["platform_Ubuntu"].get_hosts()] == ["ip_10.0.0.3"]
    assert [h.name for h in inventory.groups["platform_Amazon_Linux"].get_hosts()] == ["alpha"]
    assert hostvars(inventory, "alpha")["role_upper"] == "WEB"
    assert hostvars(inventory, "alpha")["ansible_user"] == "deploy"  # compose wins over the platform map


def test_shared_names_never_merge_hosts_and_warn_once(aws: Aws, run, capsys):
    nodes = [ssm_node(n) for n in (1, 2, 3)]
    aws.ssm_pages([nodes], ONLINE_EC2)
    aws.ec2_batch([n["InstanceId"] for n in nodes], [ec2_instance(n, {"Name": "web"}) for n in (1, 2, 3)])

    inventory = run({"regions": ["us-east-1"], "hostnames": ["tag:Name"]})

    assert sorted(inventory.hosts) == sorted(["web", nodes[1]["InstanceId"], nodes[2]["InstanceId"]])
    assert hostvars(inventory, "web")["instance_id"] == nodes[0]["InstanceId"]
    err = capsys.readouterr().err
    assert err.count("[WARNING]") == 1
    assert "2 host(s) got a name from 'hostnames' that another host already has" in err


def test_os_user_map_and_no_connection_vars(aws: Aws, run):
    node = ssm_node(1, PlatformName="Ubuntu")
    aws.ssm_pages([[node]], ONLINE_EC2)
    aws.ec2_batch([node["InstanceId"]], [ec2_instance(1)])
    inventory = run({"regions": ["us-east-1"], "os_user_map": {"Ubuntu": "deploy"}})
    assert hostvars(inventory, node["InstanceId"])["ansible_user"] == "deploy"

    aws.ssm_pages([[node]], ONLINE_EC2)
    aws.ec2_batch([node["InstanceId"]], [ec2_instance(1)])
    inventory = run({"regions": ["us-east-1"], "set_connection_vars": False, "hostvars_prefix": "aws_"})
    host_vars = hostvars(inventory, node["InstanceId"])
    assert not any(key.startswith("ansible_") for key in host_vars)
    assert host_vars["aws_platform_name"] == "Ubuntu"
    aws.assert_done()


def test_tag_values_are_never_templated(aws: Aws, run, tmp_path: Path):
    marker = tmp_path / "pwned"
    evil = "{{ lookup('pipe', 'touch " + str(marker) + "') }}"
    node = ssm_node(1)
    aws.ssm_pages([[node]], ONLINE_EC2)
    aws.ec2_batch([node["InstanceId"]], [ec2_instance(1, {"Name": evil})])

    inventory = run(
        {
            "regions": ["us-east-1"],
            "compose": {"copied_name": "ec2_tags.Name"},
            "keyed_groups": [{"key": "ec2_tags.Name", "prefix": "name"}],
        }
    )

    host_vars = hostvars(inventory, node["InstanceId"])
    assert host_vars["ec2_tags"]["Name"] == evil
    assert host_vars["copied_name"] == evil
    assert not marker.exists()


# ---------------------------------------------------------------------------- errors


def test_denied_listing_names_action_and_region(aws: Aws, run):
    aws.stub("ssm").add_client_error(
        "describe_instance_information",
        service_error_code="AccessDeniedException",
        service_message=(
            "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: "
            "ssm:DescribeInstanceInformation on resource: arn:aws:ssm:us-east-1:123456789012:*"
        ),
        http_status_code=400,
    )
    with pytest.raises(AnsibleError) as caught:
        run({"regions": ["us-east-1"]})
    message = str(caught.value)
    assert "ssm:DescribeInstanceInformation was denied" in message
    assert "(us-east-1)" in message


def test_denied_region_is_skipped_without_strict_permissions(aws: Aws, run, capsys):
    aws.stub("ssm", "us-east-1").add_client_error(
        "describe_instance_information", service_error_code="AccessDeniedException", service_message="denied"
    )
    node = ssm_node(2)
    aws.ssm_pages([[node]], ONLINE_EC2, region="us-west-2")
    aws.ec2_batch([node["InstanceId"]], [ec2_instance(2)], region="us-west-2")

    inventory = run({"regions": ["us-east-1", "us-west-2"], "strict_permissions": False})

    aws.assert_done()
    assert list(inventory.hosts) == [node["InstanceId"]]
    assert "ssm:DescribeInstanceInformation was denied" in capsys.readouterr().err


def test_denied_ec2_keeps_ssm_hosts_without_details(aws: Aws, run):
    node = ssm_node(1)
    aws.ssm_pages([[node]], ONLINE_EC2)
    aws.stub("ec2").add_client_error(
        "describe_instances",
        service_error_code="UnauthorizedOperation",
        service_message="You are not authorized",
    )
    inventory = run({"regions": ["us-east-1"], "strict_permissions": False})
    aws.assert_done()
    host_vars = hostvars(inventory, node["InstanceId"])
    assert host_vars["instance_type"] is None
    assert host_vars["ansible_host"] == node["InstanceId"]


def test_other_aws_errors_fail_even_without_strict_permissions(aws: Aws, run):
    aws.stub("ssm").add_client_error(
        "describe_instance_information", service_error_code="InvalidFilterKey", service_message="bad key"
    )
    with pytest.raises(AnsibleError, match=r"ssm:DescribeInstanceInformation failed \(InvalidFilterKey\)"):
        run({"regions": ["us-east-1"], "strict_permissions": False})


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"tags": {"Enabled": True}}, "option 'tags': filter 'tag:Enabled' has the YAML boolean True"),
        ({"regions": ["us-east1"]}, "option 'regions': 'us-east1' is not an AWS region"),
        ({"hostnames": ["dns-name"]}, "option 'hostnames[0]': unknown hostname source 'dns-name'"),
        ({"filters": {"PingStatus": "Online"}}, "did you mean 'ping-status'"),
        ({"os_user_map": {"Ubuntu": 1}}, "option 'os_user_map'"),
        ({"filters": {"instance-type": [f"t{n}" for n in range(200)]}}, "option 'filters'"),
    ],
)
def test_malformed_options_fail_before_any_call(run, options, fragment, aws: Aws):
    with pytest.raises(AnsibleParserError) as caught:
        run({"regions": ["us-east-1"], **options})
    assert fragment in str(caught.value)
    assert not aws.stubbers  # no client was even created


def test_templated_options(aws: Aws, run, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WANTED_ENV", "qa")
    node = ssm_node(1)
    aws.ssm_pages([[node]], [{"Key": "tag:Env", "Values": ["qa"]}])
    aws.ec2_batch([node["InstanceId"]], [ec2_instance(1)])
    run({"regions": ["us-east-1"], "tags": {"Env": "{{ lookup('env', 'WANTED_ENV') }}"}})
    aws.assert_done()


# ---------------------------------------------------------------------------- cache


def test_cache_hit_makes_no_calls_and_new_options_refetch(aws: Aws, run, tmp_path: Path):
    cache = {
        "cache": True,
        "cache_plugin": "ansible.builtin.jsonfile",
        "cache_connection": str(tmp_path / "cache"),
        "cache_timeout": 600,
    }
    node = ssm_node(1)
    aws.ssm_pages([[node]], ONLINE_EC2)
    aws.ec2_batch([node["InstanceId"]], [ec2_instance(1)])
    first = run({"regions": ["us-east-1"], **cache})
    aws.assert_done()

    # Nothing is stubbed now: any AWS call would fail the test.
    second = run({"regions": ["us-east-1"], "hostnames": ["tag:Name"], **cache})
    assert list(second.hosts) == ["web-1"]
    assert hostvars(second, "web-1")["launch_time"] == hostvars(first, node["InstanceId"])["launch_time"]

    # Different query options must not reuse the entry.
    aws.ssm_pages([[node]], [{"Key": "tag:Env", "Values": ["prod"]}])
    aws.ec2_batch([node["InstanceId"]], [ec2_instance(1)])
    run({"regions": ["us-east-1"], "tags": {"Env": "prod"}, **cache})
    aws.assert_done()

    # ...and the refreshed entry is then used.
    third = run({"regions": ["us-east-1"], "tags": {"Env": "prod"}, **cache})
    assert list(third.hosts) == [node["InstanceId"]]


def test_flush_cache_refetches(aws: Aws, run, tmp_path: Path):
    cache = {
        "cache": True,
        "cache_plugin": "ansible.builtin.jsonfile",
        "cache_connection": str(tmp_path / "c"),
    }
    node = ssm_node(1)
    for _attempt in range(2):
        aws.ssm_pages([[node]], ONLINE_EC2)
        aws.ec2_batch([node["InstanceId"]], [ec2_instance(1)])
    run({"regions": ["us-east-1"], **cache})
    run({"regions": ["us-east-1"], **cache}, cache=False)  # what --flush-cache passes
    aws.assert_done()


def test_verify_file_suffix():
    plugin = inventory_loader.get(NAME)
    assert not plugin.verify_file("/nonexistent/x.ssm_instances.yml")
    assert not plugin.verify_file(__file__)
