"""SSM against the sandbox with real botocore and the pip AWS CLI: listing, pagination, filters,
errors, hybrid-node tags, the session calls, and selection by standard environment only."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from ansible_collections.trek10.ec2ssm.tests.sandbox.fixtures import SandboxHandle

pytestmark = pytest.mark.sandbox


def listable(handle: SandboxHandle, region: str) -> list[dict[str, Any]]:
    """What DescribeInstanceInformation should list in ``region``, in registration order."""
    return [r for r in handle.ctl.instances() if r["region"] == region and r["state"] == "running"]


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    return exc.value.response["Error"]["Code"], exc.value.response["Error"]["Message"]


def paginate(client: Any, **kwargs: Any) -> list[list[dict[str, Any]]]:
    pages = []
    token = None
    while True:
        page = client.describe_instance_information(**kwargs, **({"NextToken": token} if token else {}))
        pages.append(page["InstanceInformationList"])
        token = page.get("NextToken")
        if not token:
            return pages


def test_list_everything_in_pages_of_five(sandbox: SandboxHandle) -> None:
    ssm = sandbox.client("ssm")
    expected = [r["instance_id"] for r in listable(sandbox, "us-east-1")]
    pages = paginate(ssm, MaxResults=5)
    assert [len(p) for p in pages[:-1]] == [5] * (len(pages) - 1)
    assert 0 < len(pages[-1]) <= 5
    assert [i["InstanceId"] for p in pages for i in p] == expected


def test_default_page_is_ten(sandbox: SandboxHandle) -> None:
    page = sandbox.client("ssm").describe_instance_information()
    assert len(page["InstanceInformationList"]) == 10
    assert "NextToken" in page


def test_instance_information_fields(sandbox: SandboxHandle) -> None:
    record = sandbox.instance(region="us-east-1", sshd=True, platform="ubuntu")
    ssm = sandbox.client("ssm")
    (item,) = ssm.describe_instance_information(
        Filters=[{"Key": "InstanceIds", "Values": [record["instance_id"]]}]
    )["InstanceInformationList"]
    assert item["PingStatus"] == "Online"
    assert item["PlatformName"] == "Ubuntu"
    assert item["PlatformType"] == "Linux"
    assert item["ResourceType"] == "EC2Instance"
    assert item["IPAddress"] == record["private_address"]
    assert item["ComputerName"] == record["hostname"]
    assert len(item["AgentVersion"].split(".")) == 4


def test_max_results_out_of_range_is_refused_by_the_server(sandbox: SandboxHandle) -> None:
    raw = sandbox.client("ssm", parameter_validation=False)
    for value, bound in ((51, "less than or equal to 50"), (4, "greater than or equal to 5")):
        with pytest.raises(ClientError) as err:
            raw.describe_instance_information(MaxResults=value)
        assert error_of(err) == (
            "ValidationException",
            f"1 validation error detected: Value '{value}' at 'maxResults' failed to satisfy constraint: "
            f"Member must have value {bound}",
        )


def test_next_token_must_come_from_the_same_request(sandbox: SandboxHandle) -> None:
    ssm = sandbox.client("ssm")
    token = ssm.describe_instance_information(MaxResults=5)["NextToken"]
    with pytest.raises(ClientError) as err:
        ssm.describe_instance_information(MaxResults=6, NextToken=token)
    assert error_of(err)[0] == "InvalidNextToken"
    with pytest.raises(ClientError) as err:
        ssm.describe_instance_information(NextToken="not-a-token")
    assert error_of(err)[0] == "InvalidNextToken"


def test_tag_filters(sandbox: SandboxHandle) -> None:
    ssm = sandbox.client("ssm")
    nodes = listable(sandbox, "us-east-1")

    def ids(filters: list[dict[str, Any]]) -> list[str]:
        return [i["InstanceId"] for p in paginate(ssm, Filters=filters, MaxResults=50) for i in p]

    web = [r["instance_id"] for r in nodes if r["tags"].get("Role") == "web"]
    assert web
    assert ids([{"Key": "tag:Role", "Values": ["web"]}]) == web
    web_or_db = [r["instance_id"] for r in nodes if r["tags"].get("Role") in ("web", "db")]
    assert ids([{"Key": "tag:Role", "Values": ["web", "db"]}]) == web_or_db
    web_dev = [
        r["instance_id"]
        for r in nodes
        if r["tags"].get("Role") == "web" and r["tags"]["Environment"] == "dev"
    ]
    assert (
        ids([{"Key": "tag:Role", "Values": ["web"]}, {"Key": "tag:Environment", "Values": ["dev"]}])
        == web_dev
    )
    assert ids([{"Key": "tag-key", "Values": ["Role"]}]) == [r["instance_id"] for r in nodes]
    assert ids([{"Key": "tag:Role", "Values": ["nope"]}]) == []


def test_tag_filters_apply_after_paging_like_aws(sandbox: SandboxHandle) -> None:
    """AWS filters tags page by page: short or empty pages with a NextToken (aws-cli #2626)."""
    ssm = sandbox.client("ssm")
    nodes = listable(sandbox, "us-east-1")
    pages = paginate(ssm, Filters=[{"Key": "tag:Role", "Values": ["web"]}], MaxResults=5)
    assert len(pages) == math.ceil(len(nodes) / 5)
    assert any(len(p) < 5 for p in pages[:-1])
    expected = [r["instance_id"] for r in nodes if r["tags"].get("Role") == "web"]
    assert [i["InstanceId"] for p in pages for i in p] == expected


def test_attribute_filters(sandbox: SandboxHandle) -> None:
    ssm = sandbox.client("ssm")
    hybrids = [r["instance_id"] for r in listable(sandbox, "us-east-1") if r["kind"] == "hybrid"]
    assert hybrids
    found = ssm.describe_instance_information(
        Filters=[{"Key": "ResourceType", "Values": ["ManagedInstance"]}]
    )
    assert [i["InstanceId"] for i in found["InstanceInformationList"]] == hybrids
    assert all(i["InstanceId"].startswith("mi-") for i in found["InstanceInformationList"])
    legacy = ssm.describe_instance_information(
        InstanceInformationFilterList=[{"key": "ResourceType", "valueSet": ["ManagedInstance"]}]
    )
    assert [i["InstanceId"] for i in legacy["InstanceInformationList"]] == hybrids
    online = paginate(ssm, Filters=[{"Key": "PingStatus", "Values": ["Online"]}], MaxResults=50)
    assert sum(len(p) for p in online) == len(listable(sandbox, "us-east-1"))


@pytest.mark.parametrize(
    ("kwargs", "code", "message"),
    [
        (
            {
                "Filters": [
                    {"Key": "tag:Role", "Values": ["web"]},
                    {"Key": "PingStatus", "Values": ["Online"]},
                ]
            },
            "ValidationException",
            "Cannot mix tag or inventory filter with any other filter.",
        ),
        (
            {
                "Filters": [{"Key": "PingStatus", "Values": ["Online"]}],
                "InstanceInformationFilterList": [{"key": "PingStatus", "valueSet": ["Online"]}],
            },
            "ValidationException",
            None,
        ),
        ({"Filters": [{"Key": "Colour", "Values": ["red"]}]}, "InvalidFilterKey", None),
        (
            {"Filters": [{"Key": "PingStatus", "Values": ["Sleepy"]}]},
            "InvalidInstanceInformationFilterValue",
            None,
        ),
        (
            {"Filters": [{"Key": "InstanceIds", "Values": ["i-0123456789abcdef0"]}]},
            "InvalidInstanceId",
            "Instances [[i-0123456789abcdef0]] not in a valid state for account 123456789012",
        ),
    ],
)
def test_filter_errors(
    sandbox: SandboxHandle, kwargs: dict[str, Any], code: str, message: str | None
) -> None:
    with pytest.raises(ClientError) as err:
        sandbox.client("ssm").describe_instance_information(**kwargs)
    got_code, got_message = error_of(err)
    assert got_code == code
    if message is not None:
        assert got_message == message


def test_regions_are_separate(sandbox: SandboxHandle) -> None:
    east = {i["InstanceId"] for p in paginate(sandbox.client("ssm"), MaxResults=50) for i in p}
    west = {
        i["InstanceId"] for p in paginate(sandbox.client("ssm", region="us-west-2"), MaxResults=50) for i in p
    }
    assert west == {r["instance_id"] for r in listable(sandbox, "us-west-2")}
    assert east
    assert west
    assert not east & west


def test_hybrid_node_tags(sandbox: SandboxHandle) -> None:
    ssm = sandbox.client("ssm")
    node = sandbox.instance(region="us-east-1", kind="hybrid")["instance_id"]
    tags = ssm.list_tags_for_resource(ResourceType="ManagedInstance", ResourceId=node)["TagList"]
    assert {"Key": "Name", "Value": sandbox.instance(instance_id=node)["tags"]["Name"]} in tags
    ssm.add_tags_to_resource(
        ResourceType="ManagedInstance", ResourceId=node, Tags=[{"Key": "Owner", "Value": "qa"}]
    )
    found = ssm.describe_instance_information(Filters=[{"Key": "tag:Owner", "Values": ["qa"]}], MaxResults=50)
    assert [i["InstanceId"] for i in found["InstanceInformationList"]] == [node]
    ssm.remove_tags_from_resource(ResourceType="ManagedInstance", ResourceId=node, TagKeys=["Owner"])
    tags = ssm.list_tags_for_resource(ResourceType="ManagedInstance", ResourceId=node)["TagList"]
    assert "Owner" not in {t["Key"] for t in tags}
    ec2_instance = sandbox.instance(region="us-east-1", kind="ec2")["instance_id"]
    with pytest.raises(ClientError) as err:
        ssm.list_tags_for_resource(ResourceType="ManagedInstance", ResourceId=ec2_instance)
    assert error_of(err)[0] == "InvalidResourceId"


def test_session_calls(sandbox: SandboxHandle) -> None:
    ssm = sandbox.client("ssm")
    target = sandbox.instance(region="us-east-1", sshd=True)["instance_id"]
    started = ssm.start_session(
        Target=target, DocumentName="AWS-StartSSHSession", Parameters={"portNumber": ["22"]}, Reason="pytest"
    )
    session_id = started["SessionId"]
    assert session_id.startswith("ec2ssm-sandbox-")
    assert started["TokenValue"]
    dataplane = sandbox.ctl.status()["dataplane"]
    assert started["StreamUrl"].startswith(
        f"{dataplane}/v1/data-channel/{session_id}?role=publish_subscribe&cell-number="
    )
    active = ssm.describe_sessions(State="Active", Filters=[{"key": "SessionId", "value": session_id}])[
        "Sessions"
    ]
    assert [(s["Target"], s["DocumentName"], s["Reason"]) for s in active] == [
        (target, "AWS-StartSSHSession", "pytest")
    ]
    assert active[0]["Owner"] == "arn:aws:iam::123456789012:user/ec2ssm-sandbox"
    resumed = ssm.resume_session(SessionId=session_id)
    assert resumed["TokenValue"]
    assert resumed["TokenValue"] != started["TokenValue"]
    assert resumed["StreamUrl"] == started["StreamUrl"]
    assert ssm.terminate_session(SessionId=session_id)["SessionId"] == session_id
    history = ssm.describe_sessions(State="History", Filters=[{"key": "SessionId", "value": session_id}])[
        "Sessions"
    ]
    assert [s["Status"] for s in history] == ["Terminated"]
    assert "EndDate" in history[0]
    assert "TokenValue" not in ssm.resume_session(SessionId=session_id)
    assert (
        ssm.terminate_session(SessionId="nobody-0123456789abcdef0")["SessionId"] == "nobody-0123456789abcdef0"
    )
    with pytest.raises(ClientError) as err:
        ssm.resume_session(SessionId="nobody-0123456789abcdef0")
    assert error_of(err)[0] == "DoesNotExistException"


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"DocumentName": "AWS-NoSuchDocument"}, "InvalidDocument"),
        (
            {"DocumentName": "AWS-StartSSHSession", "Parameters": {"portNumber": ["99999"]}},
            "ValidationException",
        ),
        ({"DocumentName": "AWS-StartSSHSession", "Parameters": {"bogus": ["1"]}}, "ValidationException"),
        ({"DocumentName": "AWS-StartPortForwardingSessionToRemoteHost"}, "ValidationException"),
    ],
)
def test_start_session_document_errors(sandbox: SandboxHandle, kwargs: dict[str, Any], code: str) -> None:
    target = sandbox.instance(region="us-east-1", sshd=True)["instance_id"]
    with pytest.raises(ClientError) as err:
        sandbox.client("ssm").start_session(Target=target, **kwargs)
    assert error_of(err)[0] == code


def test_start_session_target_not_connected(sandbox: SandboxHandle) -> None:
    ssm = sandbox.client("ssm")
    west = sandbox.instance(region="us-west-2", sshd=True)["instance_id"]
    for target in ("i-0123456789abcdef0", west):  # unknown, and another region
        with pytest.raises(ClientError) as err:
            ssm.start_session(Target=target, DocumentName="AWS-StartSSHSession")
        assert error_of(err) == ("TargetNotConnected", f"{target} is not connected.")


def test_standard_environment_alone_selects_the_sandbox(
    sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in [k for k in list(__import__("os").environ) if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    for key, value in sandbox.aws_env.items():
        monkeypatch.setenv(key, value)
    session = boto3.session.Session()
    assert (
        session.client("sts").get_caller_identity()["Arn"] == "arn:aws:iam::123456789012:user/ec2ssm-sandbox"
    )
    assert session.client("ssm").describe_instance_information()["InstanceInformationList"]


def test_pip_aws_cli(sandbox: SandboxHandle) -> None:
    aws = str(Path(sys.executable).parent / "aws")
    env = sandbox.env()
    out = subprocess.run(
        [aws, "ssm", "describe-instance-information", "--output", "json"],
        capture_output=True, text=True, env=env, check=True, timeout=120,
    )  # fmt: skip
    listed = [i["InstanceId"] for i in json.loads(out.stdout)["InstanceInformationList"]]
    assert listed == [r["instance_id"] for r in listable(sandbox, "us-east-1")]
    out = subprocess.run(
        [aws, "ssm", "describe-instance-information", "--filters", "Key=tag:Role,Values=web",
         "--region", "us-west-2", "--output", "json"],
        capture_output=True, text=True, env=env, check=True, timeout=120,
    )  # fmt: skip
    listed = [i["InstanceId"] for i in json.loads(out.stdout)["InstanceInformationList"]]
    assert listed == [
        r["instance_id"] for r in listable(sandbox, "us-west-2") if r["tags"].get("Role") == "web"
    ]
    bad = subprocess.run(
        [aws, "ssm", "describe-instance-information", "--filters", "Key=Colour,Values=red"],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "InvalidFilterKey" in bad.stderr
