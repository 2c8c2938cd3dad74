# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The helper's pure parts: command line, documents and parameters, exit codes, redaction."""

from __future__ import annotations

import pytest

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils import ssm_proxy
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils._ssm_proxy_cli import (
    EXIT_BY_KIND,
    PREFIX,
    ExitCode,
    HelperOptions,
    Redactor,
    UsageError,
    debug_from_env,
    failure_line,
    parse_args,
)

IID = "i-0123456789abcdef0"


def test_proxycommand_arguments() -> None:
    options = parse_args(
        [
            "--target",
            IID,
            "--port",
            "22",
            "--os-user",
            "ec2-user",
            "--public-key-file",
            "/k.pub",
            "--region",
            "eu-west-1",
        ]
    )
    assert options == HelperOptions(
        target=IID, port=22, os_user="ec2-user", public_key_file="/k.pub", region="eu-west-1"
    )
    assert options.document == "AWS-StartSSHSession"
    assert options.session_parameters == {"portNumber": ["22"]}
    assert not options.port_forward


def test_all_options() -> None:
    options = parse_args(
        [
            "--target", "mi-0123456789abcdef0", "--port", "2222", "--profile", "ops", "--assume-role-arn",
            "arn:aws:iam::210987654321:role/ops", "--role-session-name", "web1",
            "--document-name", "Custom-SSH", "--reason", "deploy 42", "--host-label", "web1", "--debug",
        ]
    )  # fmt: skip
    assert options == HelperOptions(
        target="mi-0123456789abcdef0",
        port=2222,
        profile="ops",
        assume_role_arn="arn:aws:iam::210987654321:role/ops",
        role_session_name="web1",
        document_name="Custom-SSH",
        reason="deploy 42",
        host_label="web1",
        debug=True,
    )
    assert options.document == "Custom-SSH"


def test_port_forward_documents_and_parameters() -> None:
    local = parse_args(["--target", IID, "--port", "5432", "--local-port", "0"])
    assert local.port_forward
    assert local.document == "AWS-StartPortForwardingSession"
    assert local.session_parameters == {"portNumber": ["5432"], "localPortNumber": ["0"]}
    remote = parse_args(
        ["--target", IID, "--port", "5432", "--local-port", "15432", "--remote-host", "db.internal"]
    )
    assert remote.document == "AWS-StartPortForwardingSessionToRemoteHost"
    assert remote.session_parameters == {
        "portNumber": ["5432"],
        "localPortNumber": ["15432"],
        "host": ["db.internal"],
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "invalid arguments: the following arguments are required: --target, --port (see --help)"),
        (["--target", IID, "--port", "0"],
         "invalid arguments: argument --port: port out of range: 0 (see --help)"),
        (["--target", IID, "--port", "ssh"],
         "invalid arguments: argument --port: not a port number: 'ssh' (see --help)"),
        (["--target", IID, "--port", "22", "--os-user", "ec2-user"],
         "invalid arguments: --os-user and --public-key-file go together (the key is pushed for that user)"),
        (["--target", IID, "--port", "22", "--remote-host", "db"],
         "invalid arguments: --remote-host needs --local-port (it is a port-forward option)"),
        (["--target", "i-1 i-2", "--port", "22"],
         "invalid arguments: --target must be one word (got 'i-1 i-2')"),
        (["--target", IID, "--port", "22", "--role-session-name", "x"],
         "invalid arguments: --role-session-name needs --assume-role-arn"),
        (["--target", IID, "--port", "22", "--reason", "x" * 257],
         "invalid arguments: --reason must be 1 to 256 characters"),
        (["--target", IID, "--port", "22", "--secret-key", "abc"],
         "invalid arguments: unrecognized arguments: --secret-key abc (see --help)"),
        (["--target", IID, "--por", "22"],
         "invalid arguments: the following arguments are required: --port (see --help)"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_sentence(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_args(argv)
    assert str(caught.value) == message
    assert caught.value.exit_code == ExitCode.USAGE


def test_main_prints_one_prefixed_line_for_usage_errors(capfd: pytest.CaptureFixture[str]) -> None:
    assert ssm_proxy.main(["--port", "22"], environ={}) == 2
    out, err = capfd.readouterr()
    assert out == ""
    assert err == (
        "trek10.ec2ssm: invalid arguments: the following arguments are required: --target (see --help)\n"
    )


def test_debug_from_env() -> None:
    assert debug_from_env({"TREK10_EC2SSM_DEBUG": "1"})
    assert debug_from_env({"TREK10_EC2SSM_DEBUG": "True"})
    assert not debug_from_env({"TREK10_EC2SSM_DEBUG": "0"})
    assert not debug_from_env({})
    assert parse_args(["--target", IID, "--port", "22"], {"TREK10_EC2SSM_DEBUG": "yes"}).debug


def test_exit_codes_are_distinct_per_kind() -> None:
    codes = list(EXIT_BY_KIND.values())
    assert len(set(codes)) == len(codes)
    assert ExitCode.OK not in codes
    assert all(0 < code < 128 for code in codes)
    # every AwsCallError.kind has a code
    kinds = ("access-denied", "throttled", "credentials", "not-connected", "not-found", "config", "transport")
    for kind in (*kinds, "aws-error"):
        assert kind in EXIT_BY_KIND


def test_failure_line_is_a_single_prefixed_line() -> None:
    assert failure_line("a\nb  c") == f"{PREFIX}a b c\n"


def test_redactor_removes_known_secrets_and_secret_fields() -> None:
    redact = Redactor.from_environ(
        {
            "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "AWS_SECURITY_TOKEN": "FQoGZXIvYXdzEXAMPLE",
        }
    )
    redact.add("SECRET-TOKEN-0123456789")
    redact.add("short")  # too short to redact safely: ignored
    text = (
        "key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY token FQoGZXIvYXdzEXAMPLE "
        '{"TokenValue": "SECRET-TOKEN-0123456789", "TokenValue":"another-unknown-token"} '
        "X-Amz-Security-Token: abcdefghijkl short"
    )
    assert redact(text) == (
        "key <redacted> token <redacted> "
        '{"TokenValue": "<redacted>", "TokenValue":"<redacted>"} '
        "X-Amz-Security-Token: <redacted> short"
    )
    assert failure_line("uses SECRET-TOKEN-0123456789", redact) == f"{PREFIX}uses <redacted>\n"


def test_chunk_size_from_the_command_line_or_the_environment() -> None:
    base = ["--target", IID, "--port", "22"]
    assert parse_args(base).chunk_size is None  # the data channel's default (1024)
    assert parse_args([*base, "--chunk-size", "16384"]).chunk_size == 16384
    assert parse_args(base, {"TREK10_EC2SSM_CHUNK_SIZE": "4096"}).chunk_size == 4096
    assert parse_args(base, {"TREK10_EC2SSM_CHUNK_SIZE": " "}).chunk_size is None
    both = parse_args([*base, "--chunk-size", "2048"], {"TREK10_EC2SSM_CHUNK_SIZE": "4096"})
    assert both.chunk_size == 2048


@pytest.mark.parametrize("value", ["0", "65537", "1k", "-5"])
def test_chunk_size_out_of_range_is_a_usage_error(value: str) -> None:
    with pytest.raises(UsageError, match="chunk"):
        parse_args(["--target", IID, "--port", "22", "--chunk-size", value])
    with pytest.raises(UsageError, match="TREK10_EC2SSM_CHUNK_SIZE"):
        parse_args(["--target", IID, "--port", "22"], {"TREK10_EC2SSM_CHUNK_SIZE": value})
