# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inserted ssh options, checked by the programs that read them: OpenSSH and /bin/sh.

``ssh -G`` shows how OpenSSH parsed each option; a real ssh running our ProxyCommand (with a
recording program in place of Python) shows what the shell finally executes, byte for byte.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils import ssh_args
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.ssh_args import TunnelSettings

IID = "i-0123456789abcdef0"
AWKWARD = 'd i\'r "q" 50%x $HOME `id` #c \\b é\\'
"""Space, both quotes, a percent, shell expansions, a comment sign, backslashes, non-ASCII."""

needs_ssh = pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")


def settings(**overrides: object) -> TunnelSettings:
    values: dict[str, object] = {
        "instance_id": IID,
        "python": "/usr/bin/python3",
        "collections_root": "/opt/collections",
        "known_hosts_file": "/home/u/.ansible/ec2ssm/known_hosts",
        "public_key_file": "/tmp/run/id_ed25519.pub",
        "identity_file": "/tmp/run/id_ed25519",
    }
    values.update(overrides)
    return TunnelSettings(**values)  # type: ignore[arg-type]


def ssh_config(options: list[str]) -> dict[str, str]:
    """``ssh -G`` output (lower-cased keys) for our options, with no user or system config."""
    out = subprocess.run(
        ["ssh", "-F", "/dev/null", "-G", *options, IID],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "SHELL": "/bin/sh"},
    ).stdout
    config: dict[str, str] = {}
    for line in out.splitlines():
        key, _sep, value = line.partition(" ")
        config.setdefault(key, value)
    return config


# -- pure rules --------------------------------------------------------------------------------


def test_options_come_in_a_fixed_order_with_proxycommand_first() -> None:
    flat = [arg for _why, args in ssh_args.inserted_options(settings()) for arg in args]
    names = [arg.split("=", 1)[0] for arg in flat[1::2]]
    assert flat[0::2] == ["-o"] * len(names)
    assert names == [
        "ProxyCommand",
        "HostKeyAlias",
        "UserKnownHostsFile",
        "StrictHostKeyChecking",
        "IdentitiesOnly",
        "IdentityFile",
    ]


def test_no_strict_host_key_checking_or_identity_when_not_asked() -> None:
    flat = [
        arg
        for _why, args in ssh_args.inserted_options(
            settings(strict_host_key_checking=None, identity_file=None, public_key_file=None)
        )
        for arg in args
    ]
    assert not [arg for arg in flat if arg.startswith(("StrictHostKeyChecking", "Identit"))]
    assert "--os-user" not in ssh_args.proxy_command(settings(public_key_file=None))


def test_proxy_argv_names_the_helper_and_leaves_port_and_user_to_ssh() -> None:
    argv = ssh_args.proxy_argv(
        settings(region="eu-west-1", profile="prod", document_name="Doc", reason="r", assume_role_arn="arn:x")
    )
    assert argv[:5] == [
        "env",
        "PYTHONPATH=/opt/collections",
        "/usr/bin/python3",
        "-m",
        ssh_args.HELPER_MODULE,
    ]
    assert argv[5:] == [
        f"--target={IID}", "--port=%p", "--os-user=%r", "--public-key-file=/tmp/run/id_ed25519.pub",
        "--region=eu-west-1", "--profile=prod", "--document-name=Doc", "--assume-role-arn=arn:x",
        "--reason=r",
    ]  # fmt: skip


def test_a_reason_that_looks_like_an_option_stays_a_value() -> None:
    # e.g. the program name "-c" of python -c: "--reason -c" would make -c an option
    assert ssh_args.proxy_argv(settings(reason="-c site.yml"))[-1] == "--reason=-c site.yml"


def test_literal_percent_signs_are_escaped_but_tokens_are_not() -> None:
    command = ssh_args.proxy_command(settings(reason="100% sure", collections_root="/c/50%"))
    assert "'PYTHONPATH=/c/50%%'" not in command  # safe word: not quoted at all
    assert "PYTHONPATH=/c/50%%" in command
    assert "'--reason=100%% sure'" in command
    assert " --port=%p " in command
    assert " --os-user='%r' " in command


@pytest.mark.parametrize("value", ["a\nb", "nul\x00"])
def test_line_breaks_and_nul_are_refused(value: str) -> None:
    with pytest.raises(ssh_args.SshArgumentError):
        ssh_args.proxy_command(settings(reason=value))


@pytest.mark.parametrize("path", ["/home/${USER}/kh", "/tmp/a\tb", "/tmp/new\nline"])
def test_paths_ssh_would_rewrite_are_refused(path: str) -> None:
    with pytest.raises(ssh_args.SshArgumentError, match="known_hosts_file"):
        ssh_args.inserted_options(settings(known_hosts_file=path))


@given(st.text(alphabet=st.characters(blacklist_characters="\n\x00", blacklist_categories=("Cs",))))
def test_shell_word_is_one_posix_word_with_the_same_value(value: str) -> None:
    assert shlex.split(ssh_args.shell_word(value)) == [value]


def test_shell_word_never_puts_a_backslash_inside_single_quotes() -> None:
    # argv_split (OpenSSH) would read \' inside single quotes as an escaped quote.
    word = ssh_args.shell_word("a\\'b\\")
    single = double = False
    for char in word:
        if char == "'" and not double:
            single = not single
        elif char == '"' and not single:
            double = not double
        assert not (single and char == "\\"), word
    assert (single, double) == (False, False)


@pytest.mark.parametrize(
    ("program", "playbooks", "job", "expected"),
    [
        ("ansible-playbook", ["site.yml"], None, "ansible-playbook site.yml"),
        ("ansible-playbook", ["a.yml", "b.yml"], "42", "ansible-playbook a.yml b.yml (AWX job 42)"),
        ("ansible", ["web"], None, "ansible web"),
        ("", [], None, "ansible"),
    ],
)
def test_default_session_reason(program: str, playbooks: list[str], job: str | None, expected: str) -> None:
    assert ssh_args.default_session_reason(program, playbooks, job) == expected


def test_session_reason_is_one_line_of_at_most_256_characters() -> None:
    reason = ssh_args.clean_reason("first\nsecond\tthird " + "x" * 400)
    assert reason.startswith("first second third x")
    assert len(reason) == ssh_args.REASON_MAX_LENGTH
    assert "\n" not in reason


@pytest.mark.parametrize(
    ("value", "instance", "managed"),
    [
        ("i-0123456789abcdef0", True, False),
        ("i-01234567", True, False),
        ("mi-0123456789abcdef0", False, True),
        ("i-0123456789ABCDEF0", False, False),
        ("web1", False, False),
        ("10.0.0.5", False, False),
        ("i-0123456789abcdef0.example.com", False, False),
    ],
)
def test_instance_id_patterns(value: str, instance: bool, managed: bool) -> None:
    assert bool(ssh_args.EC2_INSTANCE_ID.match(value)) is instance
    assert bool(ssh_args.MANAGED_NODE_ID.match(value)) is managed


@pytest.mark.parametrize(
    ("user", "ok"),
    [("ec2-user", True), ("ubuntu", True), ("svc.deploy@corp", True), ("machine$", True),
     ("", False), ("root;id", False), ("a b", False), ("x" * 33, False), ("'q'", False)],
)  # fmt: skip
def test_eic_os_user_pattern(user: str, ok: bool) -> None:
    assert bool(ssh_args.EIC_OS_USER.match(user)) is ok


# -- what OpenSSH makes of it ---------------------------------------------------------------------


@needs_ssh
def test_ssh_parses_every_option_as_we_meant(tmp_path: Path) -> None:
    awkward = tmp_path / AWKWARD
    chosen = settings(
        known_hosts_file=str(awkward / "known_hosts"),
        identity_file=str(awkward / "id_ed25519"),
        public_key_file=str(awkward / "id_ed25519.pub"),
        reason=AWKWARD,
    )
    flat = [arg for _why, args in ssh_args.inserted_options(chosen) for arg in args]
    # A later value for the same single-valued options must not win over ours.
    config = ssh_config([*flat, "-o", "StrictHostKeyChecking=no", "-o", "ProxyJump=bastion"])
    assert config["hostkeyalias"] == IID
    assert config["userknownhostsfile"] == str(awkward / "known_hosts")
    assert config["stricthostkeychecking"] == "accept-new"
    assert config["identitiesonly"] == "yes"
    # IdentityFile is shown before ssh's own %-expansion, hence the escaped percent.
    assert config["identityfile"] == ssh_args.escape_percent(str(awkward / "id_ed25519"))
    assert config["proxycommand"] == ssh_args.proxy_command(chosen)
    assert "proxyjump" not in config


RECORDER = """#!{python}
import json, os, sys
with open(os.environ["RECORD_TO"], "w", encoding="utf-8") as out:
    json.dump({{"argv": sys.argv[1:], "pythonpath": os.environ.get("PYTHONPATH")}}, out)
sys.stderr.write("trek10.ec2ssm: recorded\\n")
sys.exit(1)
"""


@needs_ssh
@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash"])
def test_the_shell_runs_exactly_the_helper_command_line(tmp_path: Path, shell: str) -> None:
    if not os.path.exists(shell):
        pytest.skip(f"{shell} not installed")
    awkward = tmp_path / AWKWARD
    awkward.mkdir()
    recorder = awkward / "python"
    recorder.write_text(RECORDER.format(python=sys.executable), encoding="utf-8")
    recorder.chmod(recorder.stat().st_mode | stat.S_IXUSR)
    record = tmp_path / "record.json"
    chosen = settings(
        python=str(recorder),
        collections_root=str(awkward),
        public_key_file=str(awkward / "key.pub"),
        known_hosts_file=str(tmp_path / "known_hosts"),
        identity_file=None,
        region="eu-west-1",
        reason=AWKWARD,
        stderr_file=str(awkward / "helper.stderr"),
    )
    flat = [arg for _why, args in ssh_args.inserted_options(chosen) for arg in args]
    result = subprocess.run(
        ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", *flat,
         "-o", "User=ec2-user", "-o", "Port=2222", IID, "true"],
        capture_output=True,
        text=True,
        env={**os.environ, "SHELL": shell, "RECORD_TO": str(record)},
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 255, result.stderr
    seen = json.loads(record.read_text(encoding="utf-8"))
    assert seen["pythonpath"] == str(awkward)
    assert seen["argv"] == [
        "-m", ssh_args.HELPER_MODULE, f"--target={IID}", "--port=2222", "--os-user=ec2-user",
        f"--public-key-file={awkward / 'key.pub'}", "--region=eu-west-1", f"--reason={AWKWARD}",
    ]  # fmt: skip
    assert (awkward / "helper.stderr").read_text(encoding="utf-8") == "trek10.ec2ssm: recorded\n"
