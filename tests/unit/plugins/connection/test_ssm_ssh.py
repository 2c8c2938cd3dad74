# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""trek10.ec2ssm.ssm_ssh as Ansible loads it: real plugin loader, real option resolution, real
ssh command lines (read back with ``ssh -G``), real ssh running the real tunnel helper.

No AWS is involved: where the helper runs, it fails before any request (no credentials), which is
exactly the failure path under test.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from ansible import constants as C
from ansible.errors import AnsibleAuthenticationFailure, AnsibleConnectionFailure
from ansible.playbook.play_context import PlayContext
from ansible.plugins.loader import connection_loader

from ansible_collections.trek10.ec2ssm.plugins.connection import ssm_ssh
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils import keys, ssh_args

NAME = "trek10.ec2ssm.ssm_ssh"
IID = "i-0123456789abcdef0"
needs_ssh = pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLETOKENvalue0123456789"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ambient AWS and Ansible settings of the machine must not leak into option resolution."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "ANSIBLE_SSH", "ANSIBLE_EC2SSM", "ANSIBLE_HOST_KEY", "ANSIBLE_REMOTE")):
            monkeypatch.delenv(name)
    for name in ("ANSIBLE_TIMEOUT", "ANSIBLE_PIPELINING", "JOB_ID", "ANSIBLE_PRIVATE_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def base_vars(tmp_path: Path) -> dict[str, Any]:
    return {
        "inventory_hostname": "web1",
        "ansible_host": IID,
        "ansible_user": "ec2-user",
        "ansible_ec2ssm_known_hosts_file": str(tmp_path / "known_hosts"),
        "ansible_control_path_dir": str(tmp_path / "cp"),
    }


def load(variables: dict[str, Any]) -> ssm_ssh.Connection:
    conn = connection_loader.get(NAME, PlayContext())
    assert isinstance(conn, ssm_ssh.Connection)
    conn.set_options(var_options=variables)
    conn.host = conn.get_option("host")
    return conn


def command(variables: dict[str, Any], binary: str = "ssh", *other: str) -> list[str]:
    conn = load(variables)
    subsystem = binary
    args = other or ((conn.host, "true") if binary == "ssh" else (f"[{conn.host}]",))
    return [arg.decode() for arg in conn._build_command(binary, subsystem, *args)]


def options(argv: list[str]) -> list[str]:
    """The ``-o`` values of a command line, in order."""
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == "-o"]


def option(argv: list[str], name: str) -> list[str]:
    return [value.split("=", 1)[1] for value in options(argv) if value.split("=", 1)[0] == name]


def ssh_g(argv: list[str]) -> dict[str, str]:
    """Parse a built ssh command with ``ssh -G`` (no user config), keys lower-cased."""
    position = argv.index("ssh")
    tail = argv[position + 1 :]
    # drop the destination and remote command: ssh -G wants one destination
    flags = tail[: tail.index(IID)]
    out = subprocess.run(
        ["ssh", "-F", "/dev/null", "-G", *flags, IID], check=True, capture_output=True, text=True
    ).stdout
    parsed: dict[str, str] = {}
    for line in out.splitlines():
        key, _sep, value = line.partition(" ")
        parsed.setdefault(key, value)
    return parsed


# -- the command line -----------------------------------------------------------------------------


def test_transport_is_the_fqcn(base_vars: dict[str, Any]) -> None:
    assert load(base_vars).transport == NAME


@pytest.mark.parametrize("binary", ["ssh", "sftp", "scp"])
def test_our_options_come_right_after_the_binary(base_vars: dict[str, Any], binary: str) -> None:
    argv = command(base_vars, binary)
    assert argv[0] == binary
    assert argv[1] == "-o"
    assert argv[2].startswith("ProxyCommand=")
    names = [value.split("=", 1)[0] for value in options(argv)]
    assert names[:6] == [
        "ProxyCommand",
        "HostKeyAlias",
        "UserKnownHostsFile",
        "StrictHostKeyChecking",
        "IdentitiesOnly",
        "IdentityFile",
    ]
    # everything the base class adds comes after ours
    assert argv.index("-C") > argv.index(argv[2])


def test_control_master_and_path_stay_with_the_base_class(base_vars: dict[str, Any], tmp_path: Path) -> None:
    argv = command(base_vars)
    assert option(argv, "ControlMaster") == ["auto"]
    assert option(argv, "ControlPersist") == ["10m"]
    (control_path,) = option(argv, "ControlPath")
    assert control_path.strip('"').startswith(str(tmp_path / "cp") + "/")


def test_the_helper_gets_instance_user_port_key_and_settings(base_vars: dict[str, Any]) -> None:
    argv = command({**base_vars, "ansible_aws_ssm_region": "eu-west-1", "ansible_ec2ssm_profile": "prod"})
    (proxy,) = option(argv, "ProxyCommand")
    words = shlex.split(proxy.replace("%%", "%"))
    redirect = words.pop()
    assert redirect.startswith(f"2>>{C.DEFAULT_LOCAL_TMP}/{keys.RUN_SUBDIR}/helper-")
    assert words[:2] == ["env", f"PYTHONPATH={ssm_ssh._collections_root()}"]
    assert words[2:5] == [sys.executable, "-m", ssh_args.HELPER_MODULE]
    flags = dict(word.split("=", 1) for word in words[5:])
    assert flags["--target"] == IID
    assert flags["--port"] == "%p"
    assert flags["--os-user"] == "%r"
    assert flags["--region"] == "eu-west-1"
    assert flags["--profile"] == "prod"
    assert flags["--document-name"] == "AWS-StartSSHSession"
    pair = keys.run_key_pair(C.DEFAULT_LOCAL_TMP)
    assert flags["--public-key-file"] == pair.public_key_file
    assert option(argv, "IdentityFile") == [f'"{pair.private_key_file}"']
    assert option(argv, "HostKeyAlias") == [IID]


def test_the_collections_root_holds_this_collection() -> None:
    root = Path(ssm_ssh._collections_root())
    assert (
        root / "ansible_collections" / "trek10" / "ec2ssm" / "plugins" / "connection" / "ssm_ssh.py"
    ).exists()


@needs_ssh
def test_ours_win_over_the_users_ssh_settings(base_vars: dict[str, Any]) -> None:
    argv = command(
        {
            **base_vars,
            "ansible_ssh_common_args": "-o ProxyCommand='nc bastion 22' -o StrictHostKeyChecking=no",
            "ansible_ssh_extra_args": "-o HostKeyAlias=other -o UserKnownHostsFile=/dev/null",
        }
    )
    parsed = ssh_g(argv)
    assert parsed["hostkeyalias"] == IID
    assert parsed["stricthostkeychecking"] == "accept-new"
    assert parsed["userknownhostsfile"] == base_vars["ansible_ec2ssm_known_hosts_file"]
    assert ssh_args.HELPER_MODULE in parsed["proxycommand"]


@needs_ssh
def test_host_key_checking_false_is_the_base_classes_no(base_vars: dict[str, Any]) -> None:
    argv = command({**base_vars, "ansible_host_key_checking": False})
    assert option(argv, "StrictHostKeyChecking") == ["no"]
    assert ssh_g(argv)["stricthostkeychecking"] == "false"


def test_host_key_policy_yes(base_vars: dict[str, Any]) -> None:
    argv = command({**base_vars, "ansible_ec2ssm_host_key_policy": "yes"})
    assert option(argv, "StrictHostKeyChecking") == ["yes"]


def test_sshpass_prefix_is_skipped(base_vars: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Cores before 2.21 put ``sshpass -d<fd>`` in front of the binary in _build_command."""
    monkeypatch.setattr(ssm_ssh.SshConnection, "_sshpass_available", staticmethod(lambda: True))
    argv = command({**base_vars, "ansible_password": "pw", "ansible_ssh_password_mechanism": "sshpass"})
    position = argv.index("ssh")
    assert argv[position + 2].startswith("ProxyCommand=")


# -- options: defaults, precedence, the full ssh option set -------------------------------------------


def test_defaults_fit_ssm(base_vars: dict[str, Any]) -> None:
    conn = load(base_vars)
    assert conn.get_option("timeout") == ssm_ssh.DEFAULT_TIMEOUT == 60
    assert conn.get_option("ssh_args") == "-C -o ControlMaster=auto -o ControlPersist=10m"
    assert conn.get_option("ssm_document") == "AWS-StartSSHSession"
    assert conn.get_option("eic_push") is True
    assert option(command(base_vars), "ConnectTimeout") == ["60"]


def play_timeout_keys() -> dict[str, Any]:
    """What ansible-core's task executor passes: the play's connection timeout as a keyword."""
    return {"timeout": PlayContext().timeout}


def test_the_play_timeout_applies_only_when_the_user_set_it(
    base_vars: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ansible-core hands every connection ``timeout=10`` (its built-in default) as a task keyword."""
    assert play_timeout_keys() == {"timeout": 10}
    conn = connection_loader.get(NAME, PlayContext())
    conn.set_options(task_keys=play_timeout_keys(), var_options=base_vars)
    assert conn.get_option("timeout") == 60  # not the built-in 10

    conn.set_options(task_keys={"timeout": 25}, var_options={**base_vars, "ansible_ssh_timeout": 45})
    assert conn.get_option("timeout") == 45  # a host variable wins, as with the builtin plugin

    monkeypatch.setattr(ssm_ssh.context, "CLIARGS", ssm_ssh.context.CLIARGS.__class__({"timeout": 25}))
    conn.set_options(task_keys={"timeout": 25}, var_options=base_vars)
    assert conn.get_option("timeout") == 25  # -T 25


def test_a_configured_play_timeout_is_kept(base_vars: dict[str, Any], tmp_path: Path) -> None:
    """``[defaults] timeout`` in ansible.cfg is the user's choice: checked in a fresh ansible."""
    (tmp_path / "ansible.cfg").write_text("[defaults]\ntimeout = 17\n", encoding="utf-8")
    code = (
        "from ansible.playbook.play_context import PlayContext\n"
        "from ansible.plugins.loader import connection_loader, init_plugin_loader\n"
        "init_plugin_loader()\n"
        f"c = connection_loader.get({NAME!r}, PlayContext())\n"
        "c.set_options(task_keys={'timeout': PlayContext().timeout}, "
        "var_options={'ansible_host': 'i-0123456789abcdef0', 'ansible_user': 'ec2-user'})\n"
        "print(c.get_option('timeout'))\n"
    )
    root = ssm_ssh._collections_root()
    env = {**os.environ, "PYTHONPATH": with_root(root), "ANSIBLE_COLLECTIONS_PATH": root}
    env["ANSIBLE_CONFIG"] = str(tmp_path / "ansible.cfg")
    env.pop("ANSIBLE_TIMEOUT", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "17"


def test_users_ssh_settings_still_apply(base_vars: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    argv = command({**base_vars, "ansible_ssh_timeout": 45, "ansible_ssh_args": "-o ControlPersist=2m"})
    assert option(argv, "ConnectTimeout") == ["45"]
    assert option(argv, "ControlPersist") == ["2m"]
    monkeypatch.setenv("ANSIBLE_SSH_ARGS", "-o ControlMaster=no")
    assert "ControlPersist=10m" not in options(command(base_vars))


def sources(spec: dict[str, Any], source: str) -> list[object]:
    """Names (or ini section/key pairs) an option is read from, in order."""
    return [entry.get("name") or (entry.get("section"), entry.get("key")) for entry in spec.get(source) or []]


def test_every_builtin_ssh_option_is_defined_the_same_way(base_vars: dict[str, Any]) -> None:
    """The computed fragment follows the installed core: no KeyError in base-class code paths."""
    ours = load(base_vars).option_definitions
    builtin = connection_loader.get("ssh", PlayContext()).option_definitions
    assert set(builtin) <= set(ours)
    for name, spec in builtin.items():
        for source in ("vars", "env", "ini", "keyword", "cli"):
            assert sources(ours[name], source) == sources(spec, source), (name, source)
        if name not in ("timeout", "ssh_args"):
            assert ours[name].get("default") == spec.get("default"), name


def test_instance_id_from_a_variable_when_ansible_host_is_a_name(base_vars: dict[str, Any]) -> None:
    argv = command({**base_vars, "ansible_host": "db1.internal", "ansible_aws_ssm_instance_id": IID})
    assert option(argv, "HostKeyAlias") == [IID]
    assert argv[-2:] == ["db1.internal", "true"]


def test_ec2ssm_variables_win_over_aws_ssm_ones(base_vars: dict[str, Any]) -> None:
    conn = load({**base_vars, "ansible_aws_ssm_region": "us-east-1", "ansible_ec2ssm_region": "eu-west-1"})
    assert conn.get_option("region") == "eu-west-1"


def test_session_reason_defaults_to_program_playbook_and_awx_job(
    base_vars: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["/usr/bin/ansible-playbook", "-i", "inv", "site.yml"])
    monkeypatch.setattr(ssm_ssh, "_invocation", lambda: ("ansible-playbook", ["site.yml"]))
    assert load({**base_vars, "awx_job_id": 42})._reason() == "ansible-playbook site.yml (AWX job 42)"
    monkeypatch.setenv("JOB_ID", "7")
    assert load(base_vars)._reason() == "ansible-playbook site.yml (AWX job 7)"
    assert (
        load({**base_vars, "ansible_ec2ssm_session_reason": "change 123\nnow"})._reason() == "change 123 now"
    )


# -- credentials: environment only ----------------------------------------------------------------------


def helper_environment(conn: ssm_ssh.Connection) -> dict[str, str]:
    conn._build_command("ssh", "ssh", conn.host, "true")
    env = conn._init_shm()["env"]
    assert isinstance(env, dict)
    return env


def test_credentials_go_to_the_environment_never_to_argv(base_vars: dict[str, Any]) -> None:
    variables = {
        **base_vars,
        "ansible_ec2ssm_access_key": "AKIAEXAMPLEKEY123456",
        "ansible_ec2ssm_secret_key": SECRET_KEY,
        "ansible_ec2ssm_session_token": SESSION_TOKEN,
        "ansible_ec2ssm_profile": "ignored-when-keys-are-set",
    }
    conn = load(variables)
    argv = b" ".join(conn._build_command("ssh", "ssh", conn.host, "true"))
    for secret in (b"AKIAEXAMPLEKEY123456", SECRET_KEY.encode(), SESSION_TOKEN.encode()):
        assert secret not in argv
    assert b"--profile" not in argv
    env = helper_environment(conn)
    assert env["AWS_ACCESS_KEY_ID"] == "AKIAEXAMPLEKEY123456"
    assert env["AWS_SECRET_ACCESS_KEY"] == SECRET_KEY
    assert env["AWS_SESSION_TOKEN"] == env["AWS_SECURITY_TOKEN"] == SESSION_TOKEN
    assert env["SHELL"] == "/bin/sh"


def test_an_awx_style_security_token_reaches_the_helper_as_session_token(
    base_vars: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEY123456")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SECURITY_TOKEN", SESSION_TOKEN)
    env = helper_environment(load(base_vars))
    assert env["AWS_SESSION_TOKEN"] == SESSION_TOKEN


def test_explicit_keys_without_token_withhold_the_ambient_token(
    base_vars: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    conn = load(
        {
            **base_vars,
            "ansible_ec2ssm_access_key": "AKIAEXAMPLEKEY123456",
            "ansible_ec2ssm_secret_key": SECRET_KEY,
            "ansible_ec2ssm_session_token": "",
        }
    )
    env = helper_environment(conn)
    assert "AWS_SESSION_TOKEN" not in env
    assert "AWS_SECURITY_TOKEN" not in env


def test_half_a_key_pair_is_an_error(base_vars: dict[str, Any]) -> None:
    with pytest.raises(ssm_ssh.Ec2SsmConnectionError, match="secret_key is not set"):
        command({**base_vars, "ansible_ec2ssm_access_key": "AKIAEXAMPLEKEY123456"})


# -- checks before connecting ------------------------------------------------------------------------


def test_missing_remote_user_fails_before_connecting(base_vars: dict[str, Any]) -> None:
    variables = {k: v for k, v in base_vars.items() if k != "ansible_user"}
    with pytest.raises(ssm_ssh.Ec2SsmConnectionError) as caught:
        command(variables)
    assert "remote_user is not set" in str(caught.value.message)
    assert isinstance(caught.value, AnsibleAuthenticationFailure)  # not retried by the ssh plugin


def test_a_user_name_eic_refuses_fails_before_connecting(base_vars: dict[str, Any]) -> None:
    with pytest.raises(ssm_ssh.Ec2SsmConnectionError, match="not a user name EC2 Instance Connect accepts"):
        command({**base_vars, "ansible_user": "root;id"})


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"ansible_host": "10.0.0.5"}, "cannot tell which instance to connect to"),
        ({"ansible_ec2ssm_instance_id": "web1"}, "is neither an EC2 instance id"),
        ({"ansible_host": "mi-0123456789abcdef0"}, "not supported yet"),
    ],
)
def test_targets_we_cannot_reach_are_named(
    base_vars: dict[str, Any], variables: dict[str, str], message: str
) -> None:
    with pytest.raises(ssm_ssh.Ec2SsmConnectionError, match=message):
        command({**base_vars, **variables})


def test_a_managed_node_without_key_push_uses_the_users_key(
    base_vars: dict[str, Any], tmp_path: Path
) -> None:
    key = tmp_path / "onprem"
    argv = command(
        {
            **base_vars,
            "ansible_host": "mi-0123456789abcdef0",
            "ansible_ec2ssm_eic_push": False,
            "ansible_ssh_private_key_file": str(key),
        }
    )
    (proxy,) = option(argv, "ProxyCommand")
    assert "--public-key-file" not in proxy
    assert "--os-user" not in proxy
    assert option(argv, "IdentityFile")[0] == f'"{key}"'
    assert option(argv, "HostKeyAlias") == ["mi-0123456789abcdef0"]


def test_no_push_and_no_key_leaves_identities_to_ssh(base_vars: dict[str, Any]) -> None:
    argv = command({**base_vars, "ansible_ec2ssm_eic_push": False})
    assert option(argv, "IdentitiesOnly") == []
    assert option(argv, "IdentityFile") == []


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
def test_a_users_key_is_offered_and_its_public_half_pushed(base_vars: dict[str, Any], tmp_path: Path) -> None:
    key = tmp_path / "mine"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    argv = command({**base_vars, "ansible_ssh_private_key_file": str(key)})
    (proxy,) = option(argv, "ProxyCommand")
    assert f"--public-key-file={key}.pub" in proxy
    assert option(argv, "IdentityFile")[0] == f'"{key}"'  # ours, first; the base class repeats it


@pytest.mark.skipif(shutil.which("ssh-agent") is None, reason="needs ssh-agent")
def test_a_private_key_in_ssh_agent_is_pushed(
    base_vars: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """core's private_key option (key content, loaded into ssh-agent): its public half is pushed."""
    socket_path = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket_path)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        monkeypatch.setenv("ANSIBLE_SSH_AGENT", str(socket_path))
        key = tmp_path / "in-agent"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        argv = command({**base_vars, "ansible_ssh_private_key": key.read_text()})
    finally:
        agent.terminate()
        agent.wait(timeout=20)
    (proxy,) = option(argv, "ProxyCommand")
    (pushed,) = [w for w in shlex.split(proxy.replace("%%", "%")) if w.startswith("--public-key-file=")]
    public = Path(pushed.split("=", 1)[1])
    assert public.read_text().split()[:2] == (tmp_path / "in-agent.pub").read_text().split()[:2]
    # the base class offers it (IdentitiesOnly + the .pub); we add no IdentityFile of our own
    assert option(argv, "IdentityFile") == [f'"{public}"']


# -- failures reported in the task result -------------------------------------------------------------


@needs_ssh
def test_a_helper_failure_becomes_the_task_message(
    base_vars: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real ssh runs the real helper, which finds no AWS credentials and says so in one line.

    With the default ControlPersist, ssh sends the ProxyCommand's stderr to /dev/null; the line
    still arrives, through the helper's stderr file.
    """
    pytest.importorskip("botocore")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    conn = load({**base_vars, "ansible_ec2ssm_region": "eu-west-1"})
    assert "ControlPersist" in conn.get_option("ssh_args")
    with pytest.raises(AnsibleConnectionFailure) as caught:
        conn.exec_command("true")
    message = str(caught.value.message)
    assert message.startswith(f"trek10.ec2ssm: {IID} (eu-west-1): ")
    assert "NoCredentialsError" in message
    assert "Failed to connect to the host via ssh" not in message
    assert isinstance(caught.value, ssm_ssh.Ec2SsmConnectionError)  # permanent: not retried
    # The destination's helper output stays in one file (a master's helper may still write to it
    # later); each ssh run reads only what was appended during that run.
    stderr_file = Path(str(conn._ec2ssm_stderr_file))
    assert stderr_file.parent == Path(C.DEFAULT_LOCAL_TMP, keys.RUN_SUBDIR)
    assert stderr_file.read_text().count("NoCredentialsError") == 1
    with pytest.raises(AnsibleConnectionFailure) as again:
        conn.exec_command("true")
    assert str(again.value.message) == message
    assert stderr_file.read_text().count("NoCredentialsError") == 2


# -- the per-task path stays light --------------------------------------------------------------------------


def with_root(root: str) -> str:
    """PYTHONPATH for a child Python: the collections root first, then what we were given (under
    ansible-test, that is where ansible itself comes from)."""
    return os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)


LOAD_AND_BUILD = """
import json, sys
from ansible.plugins.loader import init_plugin_loader, connection_loader
init_plugin_loader()
from ansible.playbook.play_context import PlayContext
conn = connection_loader.get("trek10.ec2ssm.ssm_ssh", PlayContext())
conn.set_options(var_options=json.loads(sys.argv[1]))
conn.host = conn.get_option("host")
conn._build_command("ssh", "ssh", conn.host, "true")
conn._init_shm()
sdk = ("boto3", "botocore", "websockets", "s3transfer")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in sdk)))
lazy = ("ssh_failures", "aws")  # only needed once a connection failed
utils = "ansible_collections.trek10.ec2ssm.plugins.plugin_utils."
loaded = [m[len(utils):] for m in sys.modules if m.startswith(utils)]
print(json.dumps(sorted(m for m in loaded if m.split(".")[0] in lazy)))
"""


def test_no_aws_sdk_is_imported_on_the_per_task_path(base_vars: dict[str, Any]) -> None:
    root = ssm_ssh._collections_root()
    env = {**os.environ, "PYTHONPATH": with_root(root), "ANSIBLE_COLLECTIONS_PATH": root}
    out = subprocess.run(
        [sys.executable, "-c", LOAD_AND_BUILD, json.dumps(base_vars)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    *_head, sdk_modules, failure_modules = out.stdout.strip().splitlines()
    assert json.loads(sdk_modules) == []
    assert json.loads(failure_modules) == []


def test_the_helper_prefix_is_the_helpers() -> None:
    from ansible_collections.trek10.ec2ssm.plugins.plugin_utils import _ssm_proxy_cli, ssh_failures

    assert ssm_ssh._HELPER_PREFIX == ssh_failures.HELPER_PREFIX == _ssm_proxy_cli.PREFIX


def test_ansible_doc_shows_every_option() -> None:
    root = ssm_ssh._collections_root()
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": root, "PYTHONPATH": with_root(root)}
    out = subprocess.run(
        [sys.executable, "-m", "ansible.cli.doc", "--json", "-t", "connection", NAME],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    doc = json.loads(out.stdout)[NAME]["doc"]
    builtin = set(connection_loader.get("ssh", PlayContext()).option_definitions)
    ours = {
        "instance_id", "region", "profile", "access_key", "secret_key", "session_token", "assume_role_arn",
        "ssm_document", "eic_push", "known_hosts_file", "host_key_policy", "session_reason", "job_id",
    }  # fmt: skip
    assert set(doc["options"]) == builtin | ours
    assert doc["options"]["timeout"]["default"] == ssm_ssh.DEFAULT_TIMEOUT
    assert "version_added" not in doc["options"]["host_key_checking"]
