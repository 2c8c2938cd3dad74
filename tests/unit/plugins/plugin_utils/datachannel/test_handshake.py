"""Handshake processing and the §5.1 mode/version decisions."""

from __future__ import annotations

import json

import pytest

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.events import SessionMode
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.handshake import (
    ENCRYPTION_NOT_SUPPORTED,
    compare_versions,
    completed_event,
    process_request,
    select_mode,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.datachannel.payloads import (
    HandshakeComplete,
    HandshakeRequest,
)


def _request(actions: list[dict], agent_version: str = "3.3.987.0") -> HandshakeRequest:
    payload = {"AgentVersion": agent_version, "RequestedClientActions": actions}
    return HandshakeRequest.from_json(json.dumps(payload).encode())


def _session_type(properties: dict, session_type: str = "Port") -> dict:
    return {
        "ActionType": "SessionType",
        "ActionParameters": {"SessionType": session_type, "Properties": properties},
    }


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("3.3.987.0", "3.0.196.0", 1),
        ("3.0.196.0", "3.0.196.0", 0),
        ("3.0.196.0", "3.0.197.0", -1),
        ("3.0.1000.0", "3.0.196.0", 1),  # numeric, not lexical
        ("3.3.987", "3.0.196.0", None),  # G12: different component counts are not comparable
        ("3.x.1.0", "3.0.196.0", None),
        ("", "3.0.196.0", None),
        ("3.+1.0.0", "3.0.196.0", None),
    ],
)
def test_compare_versions(left: str, right: str, expected: int | None) -> None:
    assert compare_versions(left, right) == expected


@pytest.mark.parametrize(
    ("properties", "agent", "mode"),
    [
        ({"portNumber": "22"}, "3.3.987.0", SessionMode.STDIO),
        ({"portNumber": "80", "type": "LocalPortForwarding"}, "3.3.987.0", SessionMode.MUX),
        ({"portNumber": "80", "type": "LocalPortForwarding"}, "3.0.196.1", SessionMode.MUX),
        ({"portNumber": "80", "type": "LocalPortForwarding"}, "3.0.196.0", SessionMode.BASIC),
        ({"portNumber": "80", "type": "LocalPortForwarding"}, "3.3.987", SessionMode.BASIC),
        ({"portNumber": "80", "type": "Other"}, "3.3.987.0", SessionMode.STDIO),
    ],
)
def test_select_mode(properties: dict, agent: str, mode: SessionMode) -> None:
    assert select_mode(properties, agent) is mode


def test_port_session_success() -> None:
    outcome = process_request(_request([_session_type({"portNumber": "22"})]), "1.2.650.0")
    assert outcome.failure is None
    assert outcome.properties == {"portNumber": "22"}
    assert json.loads(outcome.response.to_json()) == {
        "ClientVersion": "1.2.650.0",
        "ProcessedClientActions": [
            {"ActionType": "SessionType", "ActionStatus": 1, "ActionResult": None, "Error": ""}
        ],
        "Errors": None,
    }


def test_kms_is_refused_clearly_and_other_actions_still_processed() -> None:
    request = _request(
        [
            {
                "ActionType": "KMSEncryption",
                "ActionParameters": {"KMSKeyId": "arn:aws:kms:k", "Challenge": "x"},
            },
            _session_type({"portNumber": "22"}),
        ]
    )
    outcome = process_request(request, "1.2.650.0")
    assert outcome.failure == ENCRYPTION_NOT_SUPPORTED
    assert outcome.encryption_requested
    response = json.loads(outcome.response.to_json())
    kms, session = response["ProcessedClientActions"]
    assert kms["ActionType"] == "KMSEncryption"
    assert kms["ActionStatus"] == 2
    assert ENCRYPTION_NOT_SUPPORTED in kms["Error"]
    assert session["ActionStatus"] == 1
    assert response["Errors"] == [kms["Error"]]


def test_unknown_action_gets_status_3() -> None:
    outcome = process_request(_request([_session_type({}), {"ActionType": "Teleport"}]), "1.2.650.0")
    response = json.loads(outcome.response.to_json())
    assert response["ProcessedClientActions"][1] == {
        "ActionType": "Teleport",
        "ActionStatus": 3,
        "ActionResult": None,
        "Error": "Unsupported action Teleport",
    }
    assert outcome.failure is not None


def test_non_port_session_type_fails() -> None:
    outcome = process_request(_request([_session_type({}, "Standard_Stream")]), "1.2.650.0")
    response = json.loads(outcome.response.to_json())
    assert response["ProcessedClientActions"][0]["ActionStatus"] == 2
    assert "Standard_Stream" in outcome.failure


def test_non_string_properties_are_kept_as_text_with_a_warning() -> None:
    outcome = process_request(
        _request([_session_type({"portNumber": 22, "type": "LocalPortForwarding"})]), "v"
    )
    assert outcome.properties == {"portNumber": "22", "type": "LocalPortForwarding"}
    assert outcome.warnings


@pytest.mark.parametrize(
    ("agent", "keepalive", "terminate_flag"),
    [
        ("3.3.987.0", False, True),
        ("3.1.1511.0", True, True),
        ("3.0.196.0", True, True),
        ("2.3.722.0", True, False),
        ("3.3.987", True, False),  # G12: a 3-part version disables the flag path, keeps keepalive on
    ],
)
def test_completed_event_flags(agent: str, keepalive: bool, terminate_flag: bool) -> None:
    request = _request([_session_type({"portNumber": "80", "type": "LocalPortForwarding"})], agent)
    outcome = process_request(request, "1.2.650.0")
    event = completed_event(request, outcome, HandshakeComplete(5, ""), "1.2.650.0")
    assert event.smux_keepalive is keepalive
    assert event.terminate_flag_supported is terminate_flag
    assert event.agent_version == agent
