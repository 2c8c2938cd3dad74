# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``-o`` options ``trek10.ec2ssm.ssm_ssh`` puts in front of every ssh/scp/sftp command line.

PRIVATE to this collection. Pure: strings in, strings out; no Ansible, no I/O, stdlib only.

How OpenSSH reads what we build (OpenSSH 8.7+ ``readconf.c``; verified with ``ssh -G`` and a real
ProxyCommand in ``tests/unit/plugins/plugin_utils/test_ssh_args.py``):

1. **First value wins.** For single-valued options ssh keeps the first value it obtains, so our
   options go right after the binary, ahead of ``ssh_args``, ``ssh_common_args`` and
   ``~/.ssh/config`` (ansible.md §1.1). ``IdentityFile`` is the exception (it accumulates).
2. **Every ``-o`` value is tokenised with ``argv_split``**, even ``ProxyCommand`` whose value is
   then taken raw: quotes must balance under *its* rules, where a backslash escapes ``'``, ``"``
   and ``\\`` even inside single quotes. :func:`shell_word` never emits a backslash inside single
   quotes for that reason.
3. **Percent tokens** (``%h %p %r %%``) are expanded in ``ProxyCommand``, ``IdentityFile`` and
   ``UserKnownHostsFile``; every literal ``%`` we pass is written ``%%``. ``%p`` and ``%r`` are
   left for ssh on purpose: the tunnel must use the port and user ssh actually uses.
4. **``${NAME}``** is expanded from the environment in ``IdentityFile`` and
   ``UserKnownHostsFile`` with no escape, so such paths are refused.
5. **ProxyCommand runs as ``$SHELL -c "exec <command>"``.** The plugin sets ``SHELL=/bin/sh`` for
   ssh, so the POSIX quoting here is what the shell sees.
6. **With ControlPersist, ssh sends the ProxyCommand's stderr to /dev/null** (``sshconnect.c``,
   unless ssh itself runs with ``-v``), and with it the helper's one-line failure report. The
   command therefore appends its stderr to a file (``2>>FILE``) that the plugin reads when ssh
   fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HELPER_MODULE = "ansible_collections.trek10.ec2ssm.plugins.plugin_utils.ssm_proxy"
"""The tunnel helper, run as ``python -m`` with the collections root on ``PYTHONPATH``."""

EC2_INSTANCE_ID = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
"""EC2 instance ids: ``i-`` and 8 (older) or 17 hex digits."""
MANAGED_NODE_ID = re.compile(r"^mi-[0-9a-f]{17}$")
"""Hybrid (on-premises) managed node ids registered with SSM."""
EIC_OS_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9@._-]{0,30}[A-Za-z0-9$_-]?$")
"""``InstanceOSUser`` of ``ec2-instance-connect:SendSSHPublicKey`` (API reference, 1-32 chars)."""

REASON_MAX_LENGTH = 256
"""``ssm:StartSession`` ``Reason``: 1-256 characters, pattern ``^.{1,256}$`` (no line breaks)."""

_SAFE_WORD = re.compile(r"^[A-Za-z0-9@%+=:,./_-]+$")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


class SshArgumentError(ValueError):
    """A value cannot be passed to ssh safely (the message names the value and why)."""


def escape_percent(value: str) -> str:
    """Protect a literal value from ssh's ``%`` token expansion."""
    return value.replace("%", "%%")


def shell_word(value: str) -> str:
    """Quote ``value`` as one POSIX shell word that also survives OpenSSH's ``argv_split``.

    Like :func:`shlex.quote`, except that backslashes are written as ``"\\\\"`` outside the
    single quotes: inside single quotes a backslash is literal to the shell but an escape to
    ``argv_split`` (rule 2 of the module docstring), which would unbalance the quotes.
    """
    if "\n" in value or "\x00" in value:
        raise SshArgumentError(f"line breaks and NUL cannot be passed to ssh: {value!r}")
    if _SAFE_WORD.match(value):
        return value
    quoted = value.replace("'", "'\"'\"'").replace("\\", "'\"\\\\\"'")
    return f"'{quoted}'"


def config_path(path: str, what: str) -> str:
    """A file path as the double-quoted value of an ssh option (``IdentityFile="..."``)."""
    if _CONTROL_CHARACTERS.search(path):
        raise SshArgumentError(f"{what} {path!r} contains control characters")
    if "${" in path:
        raise SshArgumentError(
            f"{what} {path!r} contains '${{', which ssh expands from the environment with no way "
            "to escape it; use another path"
        )
    escaped = path.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escape_percent(escaped) + '"'


def clean_reason(text: str) -> str:
    """Make ``text`` a valid StartSession ``Reason``: one line, at most 256 characters."""
    one_line = " ".join(_CONTROL_CHARACTERS.sub(" ", text).split())
    return one_line[:REASON_MAX_LENGTH].rstrip()


def default_session_reason(program: str, playbooks: list[str], job_id: str | None) -> str:
    """The default StartSession ``Reason``: what runs, and under AWX/Tower which job.

    ``ansible-playbook site.yml (AWX job 42)``; CloudTrail and the Session Manager console show it
    next to the session, so an operator can tell which automation opened it.
    """
    words = [program or "ansible", *playbooks]
    reason = " ".join(words)
    if job_id:
        reason = f"{reason} (AWX job {job_id})"
    return clean_reason(reason)


@dataclass(frozen=True)
class TunnelSettings:
    """Everything the inserted options depend on, resolved from the plugin's options."""

    instance_id: str
    """Target of the session and the ``HostKeyAlias`` (known_hosts entries are per instance)."""
    python: str
    """Interpreter that runs the helper (the controller's ``sys.executable``)."""
    collections_root: str
    """Directory that contains ``ansible_collections/trek10/ec2ssm``; the helper's PYTHONPATH."""
    known_hosts_file: str
    public_key_file: str | None = None
    """Key pushed with EC2 Instance Connect for ssh's ``%r``; ``None`` means no push."""
    identity_file: str | None = None
    """Private key offered first, with ``IdentitiesOnly``; ``None`` leaves identities to ssh."""
    strict_host_key_checking: str | None = "accept-new"
    """``None`` adds nothing (``host_key_checking: false`` is the base class's ``no``)."""
    region: str | None = None
    profile: str | None = None
    document_name: str | None = None
    reason: str | None = None
    assume_role_arn: str | None = None
    stderr_file: str | None = None
    """Where the helper's stderr goes (rule 6); ``None`` leaves it to ssh."""


_SSH_TOKENS = {"%p": "%p", "%r": "'%r'"}
"""Left for ssh to expand. ``%r`` is quoted for the shell in case a user name has a ``$``."""


def proxy_options(settings: TunnelSettings) -> list[tuple[str, str]]:
    """The helper's options as ``(flag, value)``; ``%p``/``%r`` are ssh tokens."""
    options = [("--target", settings.instance_id), ("--port", "%p")]
    if settings.public_key_file:
        options += [("--os-user", "%r"), ("--public-key-file", settings.public_key_file)]
    for flag, value in (
        ("--region", settings.region),
        ("--profile", settings.profile),
        ("--document-name", settings.document_name),
        ("--assume-role-arn", settings.assume_role_arn),
        ("--reason", settings.reason),
    ):
        if value:
            options.append((flag, value))
    return options


def proxy_argv(settings: TunnelSettings) -> list[str]:
    """The helper's command line as the helper receives it, with ssh's tokens unexpanded.

    Options are written ``--flag=value``: a value that starts with ``-`` (a reason, a path)
    would otherwise be taken for an option by the helper's argument parser.
    """
    head = ["env", f"PYTHONPATH={settings.collections_root}", settings.python, "-m", HELPER_MODULE]
    return head + [f"{flag}={value}" for flag, value in proxy_options(settings)]


def proxy_command(settings: TunnelSettings) -> str:
    """The ``ProxyCommand`` value: the helper's argv quoted for sh, literal ``%`` escaped."""
    head = ["env", f"PYTHONPATH={settings.collections_root}", settings.python, "-m", HELPER_MODULE]
    words = [escape_percent(shell_word(word)) for word in head]
    for flag, value in proxy_options(settings):
        if value in _SSH_TOKENS:
            words.append(shell_word(flag + "=") + _SSH_TOKENS[value])
        else:
            words.append(escape_percent(shell_word(f"{flag}={value}")))
    command = " ".join(words)
    if settings.stderr_file:
        command += " 2>>" + escape_percent(shell_word(settings.stderr_file))
    return command


def inserted_options(settings: TunnelSettings) -> list[tuple[str, list[str]]]:
    """The options to insert right after the binary, as ``(why, args)`` groups in order."""
    groups: list[tuple[str, list[str]]] = [
        ("trek10.ec2ssm: tunnel through SSM", ["-o", "ProxyCommand=" + proxy_command(settings)]),
        (
            "trek10.ec2ssm: host keys pinned per instance id in a dedicated file",
            [
                "-o",
                "HostKeyAlias=" + settings.instance_id,
                "-o",
                "UserKnownHostsFile=" + config_path(settings.known_hosts_file, "known_hosts_file"),
            ],
        ),
    ]
    if settings.strict_host_key_checking:
        groups.append(
            (
                "trek10.ec2ssm: host_key_checking enabled",
                ["-o", "StrictHostKeyChecking=" + settings.strict_host_key_checking],
            )
        )
    if settings.identity_file:
        groups.append(
            (
                "trek10.ec2ssm: offer the pushed key",
                [
                    "-o",
                    "IdentitiesOnly=yes",
                    "-o",
                    "IdentityFile=" + config_path(settings.identity_file, "private key file"),
                ],
            )
        )
    return groups
