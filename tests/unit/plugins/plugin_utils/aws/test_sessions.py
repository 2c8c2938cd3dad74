# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""StartSession / ResumeSession / TerminateSession: what botocore sends, what we make of the answer."""

from __future__ import annotations

import pytest

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws.clients import AwsAccess, AwsSettings
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws.errors import AwsCallError
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws.sessions import (
    SessionInfo,
    resume_session,
    start_session,
    terminate_session,
)
from ansible_collections.trek10.ec2ssm.tests.unit.plugins.plugin_utils.aws.fake_aws import (
    START_SESSION_REPLY,
    FakeAws,
)

IID = "i-0123456789abcdef0"


def aws() -> AwsAccess:
    return AwsAccess(AwsSettings(), target=IID)


def test_start_session_request_and_answer(fake_aws: FakeAws) -> None:
    fake_aws.reply("StartSession", START_SESSION_REPLY)
    info = start_session(
        aws(),
        target=IID,
        document_name="AWS-StartSSHSession",
        parameters={"portNumber": [22]},
        reason="deploy",
    )
    (request,) = fake_aws.calls("StartSession")
    assert request.headers["x-amz-target"] == "AmazonSSM.StartSession"
    assert request.body == {
        "Target": IID,
        "DocumentName": "AWS-StartSSHSession",
        "Parameters": {"portNumber": ["22"]},  # lists of strings (ssm-data-channel.md §1.1)
        "Reason": "deploy",
    }
    assert info == SessionInfo(
        session_id=START_SESSION_REPLY["SessionId"],
        stream_url=START_SESSION_REPLY["StreamUrl"],  # verbatim, query included (G15)
        token_value=START_SESSION_REPLY["TokenValue"],
    )


def test_the_token_never_shows_in_repr_or_str(fake_aws: FakeAws) -> None:
    fake_aws.reply("StartSession", START_SESSION_REPLY)
    info = start_session(aws(), target=IID)
    token = START_SESSION_REPLY["TokenValue"]
    assert token not in repr(info)
    assert token not in str(info)
    assert str(info) == "session tester-0123456789abcdef0"


def test_a_start_answer_without_a_token_is_an_error(fake_aws: FakeAws) -> None:
    fake_aws.reply("StartSession", {**START_SESSION_REPLY, "TokenValue": ""})
    with pytest.raises(AwsCallError) as caught:
        start_session(aws(), target=IID)
    assert (
        str(caught.value)
        == "i-0123456789abcdef0 (eu-west-1): ssm:StartSession failed: the response has no TokenValue"
    )


def test_resume_returns_the_new_token(fake_aws: FakeAws) -> None:
    fake_aws.reply(
        "ResumeSession", {"SessionId": "s-1", "TokenValue": "NEW-TOKEN-abcdefgh", "StreamUrl": "wss://x"}
    )
    assert resume_session(aws(), "s-1") == "NEW-TOKEN-abcdefgh"
    assert fake_aws.calls("ResumeSession")[0].body == {"SessionId": "s-1"}


@pytest.mark.parametrize(
    "reply",
    [
        {"SessionId": "s-1", "TokenValue": ""},
        {"__type": "DoesNotExistException", "Message": "Session s-1 does not exist"},
    ],
)
def test_resume_of_a_gone_session_returns_none(fake_aws: FakeAws, reply: dict[str, str]) -> None:
    fake_aws.reply("ResumeSession", reply, status=400 if "__type" in reply else 200)
    assert resume_session(aws(), "s-1") is None


def test_resume_denied_raises(fake_aws: FakeAws) -> None:
    fake_aws.error("ResumeSession", "AccessDeniedException", "not allowed")
    with pytest.raises(AwsCallError) as caught:
        resume_session(aws(), "s-1")
    assert caught.value.iam_action == "ssm:ResumeSession"


def test_terminate(fake_aws: FakeAws) -> None:
    fake_aws.reply("TerminateSession", {"SessionId": "s-1"})
    terminate_session(aws(), "s-1")
    assert fake_aws.calls("TerminateSession")[0].body == {"SessionId": "s-1"}
