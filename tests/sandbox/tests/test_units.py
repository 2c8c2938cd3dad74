"""Pure pieces of the sandbox, without a running sandbox: IAM evaluation, key checks,
validation wording, documents, tokens, token buckets."""

from __future__ import annotations

import pytest

from ansible_collections.trek10.ec2ssm.tests.sandbox.iam import AuthzRequest, PolicyStore, evaluate
from ansible_collections.trek10.ec2ssm.tests.sandbox.services import pagination, validation
from ansible_collections.trek10.ec2ssm.tests.sandbox.services.core import (
    AccessDenied,
    Caller,
    ValidationException,
)
from ansible_collections.trek10.ec2ssm.tests.sandbox.services.ec2instanceconnect.exceptions import (
    InvalidArgsException,
)
from ansible_collections.trek10.ec2ssm.tests.sandbox.services.ec2instanceconnect.keys import check_public_key
from ansible_collections.trek10.ec2ssm.tests.sandbox.services.ssm import documents
from ansible_collections.trek10.ec2ssm.tests.sandbox.services.ssm.exceptions import InvalidDocument
from ansible_collections.trek10.ec2ssm.tests.sandbox.tests.helpers import make_key
from ansible_collections.trek10.ec2ssm.tests.sandbox.throttling import Throttler

pytestmark = []  # no sandbox needed

ALICE = Caller("AKIAALICE", "123456789012", "arn:aws:iam::123456789012:user/alice", "AIDAALICE")
INSTANCE = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    """Override: these tests need no root."""


def test_iam_allow_deny_and_implicit() -> None:
    allow = {
        "Statement": [{"Effect": "Allow", "Action": "ssm:Start*", "Resource": "arn:aws:ec2:*:*:instance/*"}]
    }
    deny = {"Statement": [{"Effect": "Deny", "Action": "ssm:StartSession", "Resource": INSTANCE}]}
    assert evaluate([allow], AuthzRequest(ALICE, "ssm:StartSession", INSTANCE)) == "allow"
    assert evaluate([allow], AuthzRequest(ALICE, "SSM:startsession", INSTANCE)) == "allow"
    assert evaluate([allow, deny], AuthzRequest(ALICE, "ssm:StartSession", INSTANCE)) == "deny"
    assert evaluate([allow], AuthzRequest(ALICE, "ssm:TerminateSession", INSTANCE)) == "implicit"


def test_iam_messages_have_aws_shape() -> None:
    store = PolicyStore({"alice": {"Statement": [{"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}]}})
    with pytest.raises(AccessDenied) as err:
        store.authorize(AuthzRequest(ALICE, "ssm:StartSession", INSTANCE))
    assert err.value.message == (
        "User: arn:aws:iam::123456789012:user/alice is not authorized to perform: ssm:StartSession "
        f"on resource: {INSTANCE} because no identity-based policy allows the ssm:StartSession action"
    )
    store.set("alice", [{"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}])
    with pytest.raises(AccessDenied) as err:
        store.authorize(AuthzRequest(ALICE, "ssm:StartSession", INSTANCE))
    assert err.value.message.endswith("with an explicit deny in an identity-based policy")
    bob = Caller("AKIABOB", "123456789012", "arn:aws:iam::123456789012:user/bob", "AIDABOB")
    store.authorize(AuthzRequest(bob, "ssm:StartSession", INSTANCE))  # no policy: allowed


def test_iam_osuser_condition_and_variables() -> None:
    doc = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "ec2-instance-connect:SendSSHPublicKey",
                "Resource": "arn:aws:ec2:*:*:instance/*",
                "Condition": {"StringEquals": {"ec2:osuser": "ec2-user"}},
            },
            {
                "Effect": "Allow",
                "Action": "ssm:TerminateSession",
                "Resource": "arn:aws:ssm:*:*:session/${aws:username}-*",
            },
        ]
    }
    send = "ec2-instance-connect:SendSSHPublicKey"
    assert evaluate([doc], AuthzRequest(ALICE, send, INSTANCE, {"ec2:osuser": "ec2-user"})) == "allow"
    assert evaluate([doc], AuthzRequest(ALICE, send, INSTANCE, {"EC2:OsUser": "ec2-user"})) == "allow"
    assert evaluate([doc], AuthzRequest(ALICE, send, INSTANCE, {"ec2:osuser": "root"})) == "implicit"
    assert evaluate([doc], AuthzRequest(ALICE, send, INSTANCE)) == "implicit"
    own = "arn:aws:ssm:us-east-1:123456789012:session/alice-0123456789abcdef0"
    other = "arn:aws:ssm:us-east-1:123456789012:session/bob-0123456789abcdef0"
    assert evaluate([doc], AuthzRequest(ALICE, "ssm:TerminateSession", own)) == "allow"
    assert evaluate([doc], AuthzRequest(ALICE, "ssm:TerminateSession", other)) == "implicit"


def test_iam_string_like_not_like_and_unknown_operator() -> None:
    like = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "*",
                "Resource": "*",
                "Condition": {"StringLike": {"ec2:ResourceTag/Env": ["dev*", "test"]}},
            }
        ]
    }
    assert evaluate([like], AuthzRequest(ALICE, "x:Y", "r", {"ec2:ResourceTag/Env": "dev-1"})) == "allow"
    assert evaluate([like], AuthzRequest(ALICE, "x:Y", "r", {"ec2:ResourceTag/Env": "prod"})) == "implicit"
    numeric = {
        "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"NumericLessThan": {"k": "1"}}}
        ]
    }
    assert evaluate([numeric], AuthzRequest(ALICE, "x:Y", "r", {"k": "0"})) == "implicit"


def test_eic_key_checks(tmp_path) -> None:
    assert check_public_key(make_key(tmp_path, "ed25519").public) == "ssh-ed25519"
    assert check_public_key(make_key(tmp_path, "rsa", 2048).public) == "ssh-rsa"
    with pytest.raises(InvalidArgsException, match="Unsupported RSA key length 1024"):
        check_public_key(make_key(tmp_path, "rsa", 1024).public)
    with pytest.raises(InvalidArgsException, match="Unsupported SSH public key type ecdsa-sha2-nistp256"):
        check_public_key(make_key(tmp_path, "ecdsa").public)
    good = make_key(tmp_path, "ed25519").public.split()
    with pytest.raises(InvalidArgsException, match="cannot be parsed"):
        check_public_key(f"ssh-ed25519 {good[1][:-8]}")
    with pytest.raises(InvalidArgsException, match="cannot be parsed"):
        check_public_key(f"ssh-rsa {good[1]}")  # blob says ed25519


def test_validation_wording_matches_aws() -> None:
    with pytest.raises(ValidationException) as err:
        validation.validate("ssm", "DescribeInstanceInformation", {"MaxResults": 51})
    assert err.value.message == (
        "1 validation error detected: Value '51' at 'maxResults' failed to satisfy constraint: "
        "Member must have value less than or equal to 50"
    )
    with pytest.raises(ValidationException) as err:
        validation.validate("ssm", "StartSession", {})
    assert "Value null at 'target' failed to satisfy constraint: Member must not be null" in err.value.message


def test_documents_defaults_and_errors() -> None:
    ssh = documents.resolve("AWS-StartSSHSession", "us-east-1")
    assert ssh.properties(None) == {"portNumber": "22"}
    pf = documents.resolve("arn:aws:ssm:us-east-1::document/AWS-StartPortForwardingSession", "us-east-1")
    assert pf.properties({"portNumber": ["8080"]}) == {
        "type": "LocalPortForwarding",
        "portNumber": "8080",
        "localPortNumber": "0",
    }
    remote = documents.resolve("AWS-StartPortForwardingSessionToRemoteHost", "us-east-1")
    with pytest.raises(ValidationException, match="host is required"):
        remote.properties({"portNumber": ["5432"]})
    with pytest.raises(ValidationException, match="does not match"):
        ssh.properties({"portNumber": ["70000"]})
    with pytest.raises(ValidationException, match="not defined"):
        ssh.properties({"bogus": ["1"]})
    with pytest.raises(InvalidDocument):
        documents.resolve("AWS-NoSuchDocument", "us-east-1")


def test_next_tokens_are_bound_to_their_request() -> None:
    token = pagination.encode(10, "abc")
    assert pagination.decode(token, "abc") == 10
    assert pagination.decode(token, "other") is None
    assert pagination.decode("garbage", "abc") is None


def test_token_bucket() -> None:
    now = [0.0]
    bucket = Throttler({"ssm:StartSession": {"rate": 1, "burst": 2}}, clock=lambda: now[0])
    assert [bucket.allow("a", "r", "ssm:StartSession") for _ in range(3)] == [True, True, False]
    now[0] = 1.0
    assert bucket.allow("a", "r", "ssm:StartSession")
    assert bucket.allow("a", "other-region", "ssm:StartSession")
    bucket.configure(enabled=False)
    assert all(bucket.allow("a", "r", "ssm:StartSession") for _ in range(10))
