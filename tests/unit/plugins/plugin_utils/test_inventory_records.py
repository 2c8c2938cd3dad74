# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory plugin's pure half: options → query plans, AWS records → hosts."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.inventory_records import (
    FilterSet,
    HostnameRule,
    OptionError,
    assign_hostnames,
    check_os_user_map,
    check_regions,
    chunks,
    connection_vars,
    default_os_user,
    filter_set,
    host_record,
    hostname_candidates,
    hostvars,
    parse_hostnames,
    query_plan,
)

# Realistic API payloads (shapes as botocore returns them).
WEB1_SSM = {
    "InstanceId": "i-0a1b2c3d4e5f60001",
    "PingStatus": "Online",
    "LastPingDateTime": datetime(2026, 11, 24, 10, 0, 5, tzinfo=UTC),
    "AgentVersion": "3.3.1142.0",
    "IsLatestVersion": False,
    "PlatformType": "Linux",
    "PlatformName": "Amazon Linux",
    "PlatformVersion": "2023",
    "ResourceType": "EC2Instance",
    "IPAddress": "10.0.1.17",
    "ComputerName": "ip-10-0-1-17.ec2.internal",
    "AssociationStatus": "Success",
}
WEB1_EC2 = {
    "InstanceId": "i-0a1b2c3d4e5f60001",
    "InstanceType": "t3.small",
    "LaunchTime": datetime(2026, 11, 1, 8, 30, tzinfo=UTC),
    "Placement": {"AvailabilityZone": "us-east-1b", "Tenancy": "default"},
    "PrivateIpAddress": "10.0.1.17",
    "PrivateDnsName": "ip-10-0-1-17.ec2.internal",
    "State": {"Code": 16, "Name": "running"},
    "ImageId": "ami-0123456789abcdef0",
    "Architecture": "x86_64",
    "VpcId": "vpc-0abc",
    "SubnetId": "subnet-0abc",
    "IamInstanceProfile": {"Arn": "arn:aws:iam::123456789012:instance-profile/web", "Id": "AIPAEXAMPLE"},
    "Tags": [{"Key": "Name", "Value": "web-1"}, {"Key": "Env", "Value": "prod"}],
}
HYBRID_SSM = {
    "InstanceId": "mi-0123456789abcdef0",
    "PingStatus": "ConnectionLost",
    "AgentVersion": "3.2.0.0",
    "PlatformType": "Linux",
    "PlatformName": "Ubuntu",
    "PlatformVersion": "22.04",
    "ResourceType": "ManagedInstance",
    "IamRole": "SSMServiceRole",
    "ActivationId": "act-1",
    "Name": "rack-3",
    "IPAddress": "192.168.7.9",
    "ComputerName": "rack-3",
}


def web1() -> dict:
    return host_record(WEB1_SSM, WEB1_EC2, "us-east-1")


# ---------------------------------------------------------------------------- host records


def test_host_record_joins_ssm_and_ec2():
    record = web1()
    assert {k: v for k, v in record.items() if k != "_ssm"} == {
        "instance_id": "i-0a1b2c3d4e5f60001",
        "region": "us-east-1",
        "availability_zone": "us-east-1b",
        "resource_type": "EC2Instance",
        "eic_capable": True,
        "ping_status": "Online",
        "last_ping_time": "2026-11-24T10:00:05+00:00",
        "agent_version": "3.3.1142.0",
        "platform_name": "Amazon Linux",
        "platform_type": "Linux",
        "platform_version": "2023",
        "computer_name": "ip-10-0-1-17.ec2.internal",
        "private_ip_address": "10.0.1.17",
        "private_dns_name": "ip-10-0-1-17.ec2.internal",
        "instance_type": "t3.small",
        "instance_state": "running",
        "launch_time": "2026-11-01T08:30:00+00:00",
        "image_id": "ami-0123456789abcdef0",
        "architecture": "x86_64",
        "vpc_id": "vpc-0abc",
        "subnet_id": "subnet-0abc",
        "iam_instance_profile": {
            "arn": "arn:aws:iam::123456789012:instance-profile/web",
            "id": "AIPAEXAMPLE",
        },
        "iam_role": None,
        "ec2_tags": {"Name": "web-1", "Env": "prod"},
    }


def test_host_record_is_json_serialisable_for_the_cache():
    record = web1()
    assert json.loads(json.dumps(record)) == record


def test_hybrid_record_is_marked_and_uses_ssm_tags():
    record = host_record(HYBRID_SSM, None, "us-west-2", {"Env": "lab"})
    assert record["eic_capable"] is False
    assert record["resource_type"] == "ManagedInstance"
    assert record["ec2_tags"] == {"Env": "lab"}
    assert record["private_ip_address"] == "192.168.7.9"  # from SSM, as there is no EC2 record
    assert record["instance_type"] is None
    assert record["iam_role"] == "SSMServiceRole"


def test_ec2_instance_without_ec2_details_keeps_ssm_data():
    record = host_record(WEB1_SSM, None, "us-east-1")
    assert record["eic_capable"] is True
    assert record["ec2_tags"] == {}
    assert record["availability_zone"] is None
    assert record["platform_name"] == "Amazon Linux"


def test_hostvars_prefix_suffix_and_private_fields():
    out = hostvars(web1(), "aws_", "_x")
    assert "aws_instance_id_x" in out
    assert "aws_ec2_tags_x" in out
    assert not any(key.startswith(("_", "aws__")) for key in out)
    assert "tags" not in hostvars(web1())  # reserved name never used


# ---------------------------------------------------------------------------- filters


def test_no_tags_pushes_ssm_defaults_to_the_api():
    (entry,), excludes = query_plan(
        tags={},
        filters={},
        include_filters=[],
        exclude_filters=[],
        include_offline=False,
        include_hybrid=False,
    )
    assert excludes == []
    assert entry.ssm_request_filters() == [
        {"Key": "PingStatus", "Values": ["Online"]},
        {"Key": "ResourceType", "Values": ["EC2Instance"]},
    ]
    assert entry.matches_ssm(HYBRID_SSM)  # pushed, so nothing left to check locally


def test_tags_are_pushed_alone_and_the_rest_is_checked_locally():
    (entry,), _excludes = query_plan(
        tags={"Env": ["prod", "staging"], "Team": "a"},
        filters={},
        include_filters=[],
        exclude_filters=[],
        include_offline=False,
        include_hybrid=False,
    )
    assert entry.ssm_request_filters() == [
        {"Key": "tag:Env", "Values": ["prod", "staging"]},
        {"Key": "tag:Team", "Values": ["a"]},
    ]
    assert entry.matches_ssm(WEB1_SSM)
    assert not entry.matches_ssm(HYBRID_SSM)  # offline and hybrid
    assert not entry.matches_ssm({**WEB1_SSM, "PingStatus": "ConnectionLost"})


def test_include_offline_and_hybrid_drop_the_defaults():
    (entry,), _excludes = query_plan(
        tags={"Env": "lab"},
        filters={},
        include_filters=[],
        exclude_filters=[],
        include_offline=True,
        include_hybrid=True,
    )
    assert entry.ssm == ()
    assert entry.matches_ssm(HYBRID_SSM)


def test_an_explicit_ssm_filter_replaces_the_default():
    entry = filter_set("filters", {"ping-status": ["ConnectionLost"]}, defaults={"ping-status": "Online"})
    assert entry.ssm == (("PingStatus", ("ConnectionLost",)),)


def test_filter_families():
    entry = filter_set(
        "filters",
        {
            "tag:Env": "prod",
            "tag-key": ["Owner"],
            "platform-type": "Linux",
            "instance-type": ["t3.small", "t3.micro"],
        },
    )
    assert entry.tags == (("tag-key", ("Owner",)), ("tag:Env", ("prod",)))
    assert entry.ssm == (("PlatformTypes", ("Linux",)),)
    assert entry.ec2 == (("instance-type", ("t3.small", "t3.micro")),)
    assert entry.ec2_request_filters() == [{"Name": "instance-type", "Values": ["t3.small", "t3.micro"]}]
    assert entry.ec2_value_count() == 2


def test_tags_and_filters_on_the_same_key_are_anded():
    entry = filter_set("filters", {"tag:Env": ["prod", "dev"]}, tags={"Env": ["prod", "qa"]})
    assert entry.tags == (("tag:Env", ("prod",)),)
    with pytest.raises(OptionError, match=r"tags.*no value in common"):
        filter_set("filters", {"tag:Env": "dev"}, tags={"Env": "prod"})


def test_filters_and_include_filters_are_ored_and_tags_narrow_each():
    includes, _excludes = query_plan(
        tags={"Team": "a"},
        filters={"tag:Env": "prod"},
        include_filters=[{"tag:Env": "dev"}],
        exclude_filters=[],
        include_offline=True,
        include_hybrid=True,
    )
    assert [entry.tags for entry in includes] == [
        (("tag:Env", ("prod",)), ("tag:Team", ("a",))),
        (("tag:Env", ("dev",)), ("tag:Team", ("a",))),
    ]


def test_include_filters_alone_do_not_add_an_everything_set():
    includes, _excludes = query_plan(
        tags={},
        filters={},
        include_filters=[{"tag:Env": "dev"}],
        exclude_filters=[],
        include_offline=True,
        include_hybrid=True,
    )
    assert len(includes) == 1


def test_exclude_filters_match_locally():
    _includes, (entry,) = query_plan(
        tags={},
        filters={},
        include_filters=[],
        exclude_filters=[{"tag:Env": "prod", "platform-type": "Linux"}],
        include_offline=False,
        include_hybrid=False,
    )
    assert entry.matches_locally(web1())
    assert not entry.matches_locally({**web1(), "ec2_tags": {"Env": "dev"}})
    assert not entry.matches_locally({**web1(), "_ssm": {"PlatformType": "Windows"}})
    assert FilterSet(tags=(("tag-key", ("Owner", "Name")),)).matches_locally(web1())
    assert not FilterSet(tags=(("tag-key", ("Owner",)),)).matches_locally(web1())


@pytest.mark.parametrize(
    ("kwargs", "option", "fragment"),
    [
        ({"tags": ["Env"]}, "tags", "must be a dictionary"),
        ({"tags": {"Enabled": True}}, "tags", "YAML boolean"),
        ({"tags": {"Env": []}}, "tags", "empty list"),
        ({"tags": {"Env": None}}, "tags", "string or a list"),
        ({"tags": {"Env": [str(n) for n in range(101)]}}, "tags", "at most 100"),
        ({"filters": "tag:Env=prod"}, "filters", "must be a dictionary"),
        ({"filters": {"PingStatus": "Online"}}, "filters", "did you mean 'ping-status'"),
        ({"filters": {"tag:": "x"}}, "filters", "needs a tag key"),
        ({"include_filters": {"tag:Env": "x"}}, "include_filters", "must be a list"),
        ({"include_filters": [{"tag:Env": "x"}, "nope"]}, "include_filters[1]", "must be a dictionary"),
        ({"exclude_filters": [{}]}, "exclude_filters[0]", "exclude every host"),
    ],
)
def test_malformed_filter_options_name_the_option(kwargs, option, fragment):
    args = {
        "tags": {},
        "filters": {},
        "include_filters": [],
        "exclude_filters": [],
        "include_offline": False,
        "include_hybrid": False,
    }
    args.update(kwargs)
    with pytest.raises(OptionError) as caught:
        query_plan(**args)
    assert caught.value.option == option
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f"option '{option}': ")


def test_numbers_become_strings():
    assert filter_set("filters", {"tag:Build": 42}).tags == (("tag:Build", ("42",)),)


def test_regions():
    assert check_regions(None) == []
    assert check_regions(["us-east-1", "eu-west-2", "us-east-1"]) == ["us-east-1", "eu-west-2"]
    assert check_regions("us-gov-west-1") == ["us-gov-west-1"]
    with pytest.raises(OptionError, match="'us-east1' is not an AWS region"):
        check_regions(["us-east1"])


def test_chunks():
    assert list(chunks(["a", "b", "c"], 2)) == [["a", "b"], ["c"]]
    assert list(chunks([], 200)) == []
    assert list(chunks(["a"], 0)) == [["a"]]


# ---------------------------------------------------------------------------- hostnames


def test_default_hostname_is_the_instance_id():
    rules = parse_hostnames(None)
    assert rules == (HostnameRule("instance-id"),)
    assert hostname_candidates(web1(), rules) == ["i-0a1b2c3d4e5f60001"]


def test_hostname_precedence():
    rules = parse_hostnames(["tag:Owner", "tag:Name", "private-ip", "computer-name", "instance-id"])
    assert hostname_candidates(web1(), rules) == [
        "web-1",
        "10.0.1.17",
        "ip-10-0-1-17.ec2.internal",
        "i-0a1b2c3d4e5f60001",
    ]


def test_hostname_dict_with_source_prefix_and_literal_prefix():
    rules = parse_hostnames(
        [
            {"name": "tag:Name", "prefix": "tag:Env", "separator": "-"},
            {"name": "private-ip-address", "prefix": "aws"},
        ]
    )
    assert hostname_candidates(web1(), rules) == ["prod-web-1", "aws_10.0.1.17"]
    # a prefix source with no value skips the entry rather than dropping the prefix
    no_env = {**web1(), "ec2_tags": {"Name": "web-1"}}
    assert hostname_candidates(no_env, rules) == ["aws_10.0.1.17"]


@pytest.mark.parametrize(
    ("value", "option", "fragment"),
    [
        ("instance-id", "hostnames", "must be a list"),
        (["dns-name"], "hostnames[0]", "unknown hostname source 'dns-name'"),
        (["instance-id", 3], "hostnames[1]", "must be a string or a dictionary"),
        ([{"prefix": "x"}], "hostnames[0]", "needs a 'name'"),
        ([{"name": "tag:Name", "sep": "-"}], "hostnames[0]", "unknown key(s) sep"),
        ([{"name": "tag:"}], "hostnames[0]", "unknown hostname source"),
    ],
)
def test_malformed_hostnames_name_the_entry(value, option, fragment):
    with pytest.raises(OptionError) as caught:
        parse_hostnames(value)
    assert caught.value.option == option
    assert fragment in str(caught.value)


def test_assign_hostnames_never_merges_two_instances():
    twin = host_record(
        {**WEB1_SSM, "InstanceId": "i-0a1b2c3d4e5f60002"},
        {**WEB1_EC2, "PrivateIpAddress": "10.0.1.18"},
        "us-east-1",
    )
    nameless = host_record(
        {**WEB1_SSM, "InstanceId": "i-0000000000000000a"}, {**WEB1_EC2, "Tags": []}, "us-east-1"
    )
    naming = assign_hostnames([twin, web1(), nameless], parse_hostnames(["tag:Name", "private-ip"]))
    assert [name for name, _record in naming.hosts] == ["10.0.1.17", "web-1", "10.0.1.18"]
    # by instance id: ...000a takes 10.0.1.17 (WEB1's IP), web1 takes web-1, the twin falls back
    assert naming.collisions == [("web-1", "i-0a1b2c3d4e5f60002")]
    assert naming.unnamed == []


def test_assign_hostnames_falls_back_to_the_instance_id():
    nameless = host_record(WEB1_SSM, {**WEB1_EC2, "Tags": []}, "us-east-1")
    naming = assign_hostnames([nameless], parse_hostnames(["tag:Name"]))
    assert naming.hosts[0][0] == "i-0a1b2c3d4e5f60001"
    assert naming.unnamed == ["i-0a1b2c3d4e5f60001"]


# ---------------------------------------------------------------------------- users and connection


@pytest.mark.parametrize(
    ("platform", "user"),
    [
        ("Amazon Linux", "ec2-user"),
        ("Amazon Linux AMI", "ec2-user"),
        ("Ubuntu", "ubuntu"),
        ("Debian GNU/Linux", "admin"),
        ("Red Hat Enterprise Linux Server", "ec2-user"),
        ("Rocky Linux", "rocky"),
        ("Microsoft Windows Server 2022 Datacenter", None),
        (None, None),
    ],
)
def test_default_os_user(platform, user):
    assert default_os_user(platform) == user


def test_os_user_map_wins_and_matches_longest_prefix():
    user_map = check_os_user_map(
        {"Ubuntu": "deploy", "Amazon Linux": "", "Amazon Linux 2": "al2", "*": "ops"}
    )
    assert default_os_user("Ubuntu", user_map) == "deploy"
    assert default_os_user("Amazon Linux", user_map) is None  # '' = leave ansible_user unset
    assert default_os_user("amazon linux 2 (karoo)", user_map) == "al2"
    assert default_os_user("Plan 9", user_map) == "ops"


def test_os_user_map_errors():
    with pytest.raises(OptionError, match="os_user_map"):
        check_os_user_map(["ubuntu"])
    with pytest.raises(OptionError, match="must be a string"):
        check_os_user_map({"Ubuntu": 3})


def test_connection_vars():
    assert connection_vars(web1(), "ec2-user") == {
        "ansible_connection": "trek10.ec2ssm.ssm_ssh",
        "ansible_host": "i-0a1b2c3d4e5f60001",
        "ansible_ec2ssm_region": "us-east-1",
        "ansible_user": "ec2-user",
    }
    assert "ansible_user" not in connection_vars(web1(), None)
    hybrid = connection_vars(host_record(HYBRID_SSM, None, "us-west-2"), "ubuntu")
    assert hybrid["ansible_ec2ssm_eic_push"] is False
    assert hybrid["ansible_host"] == "mi-0123456789abcdef0"
