# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: ssm_ssh
short_description: Ansible's own SSH, tunnelled through AWS Systems Manager with one-time EC2 Instance Connect keys
version_added: 0.1.0
author: Trek10 (@trek10inc)
description:
  - Runs Ansible's builtin C(ssh) connection (ControlPersist, pipelining, become, sftp/scp) against
    private EC2 instances that have no inbound port open. Every option of the builtin C(ssh) plugin
    works here too, with the same variables, environment variables and C(ansible.cfg) settings.
  - OpenSSH reaches the instance through a ProxyCommand, the collection's tunnel helper, which
    pushes a one-time public key with C(ec2-instance-connect:SendSSHPublicKey) and opens an SSM
    Session Manager session (C(ssm:StartSession), document C(AWS-StartSSHSession)) to the
    instance's sshd. It speaks the Session Manager data channel itself, so the AWS CLI and
    C(session-manager-plugin) are not needed.
  - The helper runs only when ssh opens a new connection, that is once per ControlPersist master
    (and again after a C(reset_connection) meta task or when the master expires). Tasks that reuse the
    master make no AWS call at all.
  - One ed25519 key pair is generated per playbook run in the run's private temporary directory
    and deleted when the run ends. EC2 Instance Connect accepts a pushed key for 60 seconds.
  - Host keys are checked by default. They are pinned per instance id (C(HostKeyAlias)) in a
    dedicated known_hosts file, the first key seen is accepted (C(accept-new)), and a changed key
    fails with an explanation and the command to clear the entry.
requirements:
  - The OpenSSH client (C(ssh), and C(sftp) or C(scp) for file transfers) on the controller.
  - The Python packages C(boto3), C(botocore) and C(websockets) for the controller's Python, used
    only by the tunnel helper.
  - On the instance, the SSM Agent registered with Systems Manager, and for O(eic_push=true) the
    EC2 Instance Connect package (preinstalled on Amazon Linux 2023 and Ubuntu AMIs).
  - IAM permissions for the caller C(ec2-instance-connect:SendSSHPublicKey) on the instance and
    C(ssm:StartSession) on the instance and the document.
extends_documentation_fragment:
  - trek10.ec2ssm._ssh_options
  - trek10.ec2ssm._aws_connection
options:
  instance_id:
    description:
      - The EC2 instance id (C(i-...)) or SSM managed node id (C(mi-...)) to reach.
      - When not set, the host (C(ansible_host), else the inventory name) is used if it is an
        instance id, as the C(trek10.ec2ssm.ssm_instances) inventory sets it. Set this when
        C(ansible_host) is something else, such as a DNS name.
      - Also used as C(HostKeyAlias), so host keys are pinned per instance.
    type: string
    vars:
      - name: ansible_aws_ssm_instance_id
      - name: ansible_ec2ssm_instance_id
  ssm_document:
    description:
      - Session Manager document that connects the session to the instance's SSH port.
      - It must behave like C(AWS-StartSSHSession) (a port session taking C(portNumber)); a copy
        of it under your own name can add logging or restrict ports.
    type: string
    default: AWS-StartSSHSession
    env:
      - name: ANSIBLE_EC2SSM_SSM_DOCUMENT
    ini:
      - section: ec2ssm_connection
        key: ssm_document
    vars:
      - name: ansible_ec2ssm_ssm_document
  eic_push:
    description:
      - Push the public key with EC2 Instance Connect before each new SSH connection.
      - With V(false) nothing is pushed; the key must already be authorized on the instance (bring
        it with O(private_key_file), C(ssh-agent) or your ssh configuration). This is how hybrid
        managed nodes (C(mi-...)) are reached, since EC2 Instance Connect cannot push keys to them.
    type: boolean
    default: true
    env:
      - name: ANSIBLE_EC2SSM_EIC_PUSH
    ini:
      - section: ec2ssm_connection
        key: eic_push
    vars:
      - name: ansible_ec2ssm_eic_push
  private_key_file:
    description:
      - Path to a private key to authenticate with, instead of the per-run key.
      - With O(eic_push=true) its public half is what gets pushed. It is read from
        C(<private_key_file>.pub), or derived from the private key when that file does not exist
        (an encrypted key needs the C(.pub) file). EC2 Instance Connect accepts ed25519 and RSA keys.
      - With O(eic_push=false) the key must already be authorized on the instance.
      - When O(private_key) is set (core 2.19+, through C(ssh-agent)), that key is used and pushed
        instead.
  remote_user:
    description:
      - The OS user to log in as. B(Required) with O(eic_push=true), because EC2 Instance Connect
        authorizes the pushed key for one named OS user (C(ec2-user) on Amazon Linux, C(ubuntu) on
        Ubuntu). The C(trek10.ec2ssm.ssm_instances) inventory sets it from the platform.
      - Without it ssh would fall back to the local user name, so the plugin fails before
        connecting instead.
  known_hosts_file:
    description:
      - The known_hosts file for instances reached through this plugin, with entries keyed by
        instance id. It persists between runs, so host keys stay pinned.
      - Clear a stale entry with C(ssh-keygen -R <instance-id> -f <this file>).
    type: path
    default: ~/.ansible/ec2ssm/known_hosts
    env:
      - name: ANSIBLE_EC2SSM_KNOWN_HOSTS_FILE
    ini:
      - section: ec2ssm_connection
        key: known_hosts_file
    vars:
      - name: ansible_ec2ssm_known_hosts_file
  host_key_policy:
    description:
      - What ssh does with an instance whose host key is not pinned yet, while O(host_key_checking)
        is enabled.
      - V(accept-new) pins the first key seen (trust on first use over the IAM-authenticated SSM
        tunnel) and rejects a different key later.
      - V(yes) accepts only keys already in O(known_hosts_file), for setups that distribute host
        keys ahead of time.
      - With O(host_key_checking=false) no key is checked, as with the builtin ssh plugin.
    type: string
    default: accept-new
    choices:
      - accept-new
      - "yes"
    env:
      - name: ANSIBLE_EC2SSM_HOST_KEY_POLICY
    ini:
      - section: ec2ssm_connection
        key: host_key_policy
    vars:
      - name: ansible_ec2ssm_host_key_policy
  session_reason:
    description:
      - The C(Reason) recorded with each Session Manager session (CloudTrail, the Session Manager
        console), at most 256 characters on one line.
      - Default names the program and playbook, and the job under AWX or Tower, for example
        C(ansible-playbook site.yml (AWX job 42)).
    type: string
    env:
      - name: ANSIBLE_EC2SSM_SESSION_REASON
    vars:
      - name: ansible_ec2ssm_session_reason
  job_id:
    description:
      - Job id named in the default O(session_reason). AWX and Tower set it; there is no need to
        set it by hand.
    type: string
    env:
      - name: JOB_ID
    vars:
      - name: tower_job_id
      - name: awx_job_id
  ssh_args:
    description:
      - Arguments to pass to all SSH CLI tools.
      - The default keeps ControlPersist masters for 10 minutes, under the Session Manager idle
        session timeout (20 minutes by default), so a pause between plays does not pay for a new
        session while idle masters do not hold sessions for long.
    default: -C -o ControlMaster=auto -o ControlPersist=10m
  timeout:
    description:
      - Seconds to wait for the SSH connection, which ssh gets as C(ConnectTimeout).
      - Through a ProxyCommand this also bounds the SSH banner, which arrives only once the tunnel
        helper has started, pushed the key and opened the SSM session (riding out API throttling
        when many hosts connect at once), hence the higher default than the builtin ssh plugin.
        The helper bounds each of those steps itself, so this is a backstop.
      - ansible-core hands every connection the play's connection timeout (C([defaults] timeout),
        C(ANSIBLE_TIMEOUT), C(-T); 10 seconds when none is set). This plugin uses that value only
        when one of those is actually set, and its own default otherwise.
    default: 60
notes:
  - ansible.cfg needs nothing, but C([ssh_connection]) settings and C(ansible_ssh_*) variables
    apply to this plugin as they do to the builtin ssh plugin. Our own settings live in
    C([ec2ssm_connection]).
  - The plugin puts its C(-o) options before everything else on the ssh command line, so they win
    over C(ssh_args), C(ssh_common_args) and C(~/.ssh/config) (OpenSSH keeps the first value).
    A C(ProxyJump) or C(ProxyCommand) of your own is therefore ignored.
  - AWS credentials reach the helper only through the environment of the ssh process, never on a
    command line, so they appear neither in C(ps) nor in C(-vvv) output.
  - ssh runs the ProxyCommand with C(SHELL=/bin/sh), whatever the user's login shell is.
  - ControlPersist masters are shared by later runs of the same OS user within their lifetime,
    like with the builtin ssh plugin; such a run reuses the open session without pushing a key or
    calling AWS. Use a C(reset_connection) meta task or a lower C(ControlPersist) where that matters.
  - C(ansible.posix.synchronize) does not know this connection type and cannot be used with it.
seealso:
  - name: EC2 Instance Connect
    description: How EC2 Instance Connect pushes one-time keys.
    link: https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/connect-linux-inst-eic.html
  - name: Session Manager SSH connections
    description: AWS-StartSSHSession and the IAM permissions it needs.
    link: https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-getting-started-enable-ssh-connections.html
"""

EXAMPLES = r"""
# inventory.yml: hosts are instance ids, ansible_user is the OS user for EC2 Instance Connect.
all:
  vars:
    ansible_connection: trek10.ec2ssm.ssm_ssh
    ansible_ec2ssm_region: eu-west-1
  hosts:
    i-0123456789abcdef0:
      ansible_user: ec2-user
    web1:
      ansible_host: i-0fedcba9876543210
      ansible_user: ubuntu

# Another account, per group, and a named host whose ansible_host is not the instance id.
# group_vars/prod.yml
#   ansible_ec2ssm_assume_role_arn: arn:aws:iam::111122223333:role/ansible-ssm
# host_vars/db1.yml
#   ansible_host: db1.internal.example.com
#   ansible_ec2ssm_instance_id: i-0aaaabbbbccccdddd

# A hybrid managed node with a key that is already authorized on it.
#   ansible_host: mi-0123456789abcdef0
#   ansible_ec2ssm_eic_push: false
#   ansible_ssh_private_key_file: ~/.ssh/onprem_ed25519
"""

import os
import sys
import typing as t

from ansible import constants as C
from ansible import context
from ansible.errors import AnsibleAuthenticationFailure, AnsibleConnectionFailure, AnsibleError
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.connection.ssh import AnsibleControlPersistBrokenPipeError
from ansible.plugins.connection.ssh import Connection as SshConnection
from ansible.utils.display import Display

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils import keys, ssh_args

if t.TYPE_CHECKING:
    from ansible_collections.trek10.ec2ssm.plugins.plugin_utils import ssh_failures

display = Display()

_HELPER_PREFIX = "trek10.ec2ssm: "
"""``ssh_failures.HELPER_PREFIX`` (the helper's contract; a unit test keeps the two equal).

ansible-core forks a worker per task, and each worker imports this plugin from source (the
collection loader compiles it, ssh_failures and aws.errors every time): importing those two only
when a connection fails keeps about 5 ms off every warm task."""


def _failures() -> t.Any:
    """The ``ssh_failures`` module, imported on first use (see :data:`_HELPER_PREFIX`)."""
    from ansible_collections.trek10.ec2ssm.plugins.plugin_utils import ssh_failures as module

    return module


DEFAULT_TIMEOUT = 60
"""The ``timeout`` option's documented default (a unit test keeps the two equal)."""

_PLUGIN_DIR_DEPTH = 5
"""ssm_ssh.py is <root>/ansible_collections/trek10/ec2ssm/plugins/connection/ssm_ssh.py."""


class Ec2SsmConnectionError(AnsibleAuthenticationFailure):
    """A connection failure that retrying cannot fix (wrong settings, access denied, host key).

    It derives from AnsibleAuthenticationFailure only because that is the one failure the ssh
    plugin's ``reconnection_retries`` loop does not retry; the host is reported unreachable with
    our message either way, without the parent's "Failed to authenticate" lead-in.
    """

    _default_message = ""
    _include_cause_message = False


class Ec2SsmTransientFailure(AnsibleConnectionFailure):
    """A connection failure that may pass (throttling, an instance still registering with SSM)."""

    _include_cause_message = False


def _collections_root() -> str:
    """The directory holding ``ansible_collections/trek10/ec2ssm``: the helper's PYTHONPATH.

    ``abspath``, not ``realpath``: the path Python imported us from, which stays right when the
    collection directory is a symlink (as in development checkouts).
    """
    root = os.path.abspath(__file__)
    for _level in range(_PLUGIN_DIR_DEPTH + 1):
        root = os.path.dirname(root)
    if not os.path.isdir(os.path.join(root, "ansible_collections", "trek10", "ec2ssm")):
        raise AnsibleError(
            f"trek10.ec2ssm.ssm_ssh: cannot locate the collections root from {__file__}; the "
            "collection must be installed as ansible_collections/trek10/ec2ssm"
        )
    return root


def _invocation() -> tuple[str, list[str]]:
    """Program and playbook names of this run, for the default session reason."""
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if not program or program.startswith("-"):  # python -c, embedded interpreters
        program = "ansible"
    args = context.CLIARGS.get("args") if context.CLIARGS else None
    if isinstance(args, str):
        return program, [args]
    if isinstance(args, (list, tuple)):
        return program, [os.path.basename(str(arg)) for arg in args]
    return program, []


def _play_timeout_is_unset(origin: str) -> bool:
    """Whether the ``timeout`` option holds ansible-core's built-in 10 s rather than a user's value.

    The task executor passes the play's connection timeout to every connection as the ``timeout``
    keyword, which outranks any plugin default: without this check our default would never apply,
    and with 10 s many hosts connecting at once (each tunnel needs a Python start and two AWS calls
    before the SSH banner) time out. A host variable, ``ANSIBLE_TIMEOUT``, ``[defaults] timeout``
    or ``-T`` all make the value the user's.
    """
    if not origin.startswith("keyword"):
        return False  # from our own sources (vars, env, ini) or our default: already right
    if context.CLIARGS and context.CLIARGS.get("timeout"):
        return False
    return bool(C.config.get_config_value_and_origin("DEFAULT_TIMEOUT")[1] == "default")


class Connection(SshConnection):
    """ssh with a ProxyCommand into SSM and a one-time EC2 Instance Connect key (see DOCUMENTATION)."""

    transport = "trek10.ec2ssm.ssm_ssh"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._ec2ssm_environment: dict[str, str] = {}
        self._ec2ssm_withheld: tuple[str, ...] = ()
        self._ec2ssm_context: dict[str, t.Any] | None = None
        """Arguments of ``ssh_failures.Context`` for diagnosing a failure of this connection."""
        self._ec2ssm_stderr_file: str | None = None

    def set_options(
        self,
        task_keys: dict[str, t.Any] | None = None,
        var_options: dict[str, t.Any] | None = None,
        direct: dict[str, t.Any] | None = None,
    ) -> None:
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        if _play_timeout_is_unset(self.get_option_and_origin("timeout")[1]):
            self.set_option("timeout", DEFAULT_TIMEOUT)

    # -- settings -------------------------------------------------------------------------------

    def _instance_id(self) -> str:
        configured = self.get_option("instance_id")
        host = to_text(self.host) if self.host else ""
        if configured:
            if ssh_args.EC2_INSTANCE_ID.match(configured) or ssh_args.MANAGED_NODE_ID.match(configured):
                return str(configured)
            raise Ec2SsmConnectionError(
                f"{_HELPER_PREFIX}{host}: instance_id {configured!r} is neither an EC2 "
                "instance id (i-...) nor an SSM managed node id (mi-...)"
            )
        if ssh_args.EC2_INSTANCE_ID.match(host) or ssh_args.MANAGED_NODE_ID.match(host):
            return host
        raise Ec2SsmConnectionError(
            f"{_HELPER_PREFIX}{host}: cannot tell which instance to connect to: the host "
            f"{host!r} is not an instance id. Set ansible_host to the instance id (i-...), or set "
            "ansible_ec2ssm_instance_id (the instance_id option) for this host."
        )

    def _os_user(self, instance_id: str, eic_push: bool) -> str | None:
        user = self.get_option("remote_user")
        if not eic_push:
            return str(user) if user else None
        if not user:
            raise Ec2SsmConnectionError(
                f"{_HELPER_PREFIX}{instance_id}: remote_user is not set. EC2 Instance "
                "Connect pushes the key for one OS user, and ssh would otherwise use the local user "
                "name. Set ansible_user (or remote_user) to the instance's login user, e.g. "
                "ec2-user (Amazon Linux) or ubuntu (Ubuntu)."
            )
        if not ssh_args.EIC_OS_USER.match(user):
            raise Ec2SsmConnectionError(
                f"{_HELPER_PREFIX}{instance_id}: remote_user {user!r} is not a user name "
                "EC2 Instance Connect accepts (1-32 characters: letters, digits, '.', '_', '-', '@')"
            )
        return str(user)

    def _keys(self, eic_push: bool) -> tuple[str | None, str | None]:
        """(public key to push, private key to offer first) as the options ask."""
        try:
            if self.get_option("private_key"):
                # core 2.19+: the key is loaded into ssh-agent by the base class, which also
                # offers it (IdentitiesOnly + the .pub as IdentityFile); we only push it.
                if not eic_push:
                    return None, None
                try:
                    return str(self._populate_agent()), None
                except Exception as error:  # noqa: BLE001 - as the base class: ssh-agent can fail in many ways
                    raise Ec2SsmConnectionError(
                        f"{_HELPER_PREFIX}failed to add the configured private_key to ssh-agent: {error}"
                    ) from None
            user_key = self.get_option("private_key_file")
            if user_key:
                user_key = os.path.expanduser(user_key)
                public = keys.public_key_for(user_key, C.DEFAULT_LOCAL_TMP) if eic_push else None
                return public, user_key
            if not eic_push:
                return None, None
            pair = keys.run_key_pair(C.DEFAULT_LOCAL_TMP)
            return pair.public_key_file, pair.private_key_file
        except keys.KeyMaterialError as error:
            raise Ec2SsmConnectionError(f"{_HELPER_PREFIX}{error}") from None

    def _credentials(self) -> tuple[dict[str, str], tuple[str, ...]]:
        """Environment for the helper: (variables to set, variables to remove)."""
        access_key = self.get_option("access_key")
        secret_key = self.get_option("secret_key")
        token = self.get_option("session_token")
        if bool(access_key) != bool(secret_key):
            missing = "secret_key" if access_key else "access_key"
            raise Ec2SsmConnectionError(
                f"{_HELPER_PREFIX}access_key and secret_key go together; {missing} is not set"
            )
        if not access_key:
            return {}, ()
        environment = {"AWS_ACCESS_KEY_ID": str(access_key), "AWS_SECRET_ACCESS_KEY": str(secret_key)}
        if token:
            environment["AWS_SESSION_TOKEN"] = environment["AWS_SECURITY_TOKEN"] = str(token)
            return environment, ()
        return environment, ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")

    def _profile(self) -> str | None:
        profile = self.get_option("profile")
        if profile and self._ec2ssm_environment:
            display.vvv(
                f"trek10.ec2ssm: access keys are set, so profile {profile!r} is not used", host=self.host
            )
            return None
        return str(profile) if profile else None

    def _reason(self) -> str:
        configured = self.get_option("session_reason")
        if configured:
            return ssh_args.clean_reason(str(configured))
        program, playbooks = _invocation()
        job_id = self.get_option("job_id")
        return ssh_args.default_session_reason(program, playbooks, str(job_id) if job_id else None)

    def _tunnel_settings(self) -> ssh_args.TunnelSettings:
        """Resolve and check our options; raises before anything is started when they are wrong."""
        instance_id = self._instance_id()
        eic_push = bool(self.get_option("eic_push"))
        if eic_push and ssh_args.MANAGED_NODE_ID.match(instance_id):
            raise Ec2SsmConnectionError(
                f"{_HELPER_PREFIX}{instance_id}: pushing keys to hybrid managed nodes "
                "(mi-...) is not supported yet: EC2 Instance Connect only serves EC2 instances. Set "
                "ansible_ec2ssm_eic_push: false and use a key that is already authorized on the node "
                "(ansible_ssh_private_key_file)."
            )
        os_user = self._os_user(instance_id, eic_push)
        public_key, identity = self._keys(eic_push)
        self._ec2ssm_environment, self._ec2ssm_withheld = self._credentials()
        known_hosts = keys.known_hosts_path(self.get_option("known_hosts_file"))
        self._ec2ssm_stderr_file = keys.helper_stderr_path(
            C.DEFAULT_LOCAL_TMP, instance_id, os_user, self.get_option("port")
        )
        checking = self.get_option("host_key_checking")
        self._ec2ssm_context = {
            "instance_id": instance_id,
            "os_user": os_user,
            "known_hosts_file": known_hosts,
            "eic_push": eic_push,
            "timeout": self.get_option("timeout"),
        }
        return ssh_args.TunnelSettings(
            instance_id=instance_id,
            python=sys.executable or "python3",
            collections_root=_collections_root(),
            known_hosts_file=known_hosts,
            public_key_file=public_key,
            identity_file=identity,
            strict_host_key_checking=self.get_option("host_key_policy") if checking is not False else None,
            region=self.get_option("region"),
            profile=self._profile(),
            document_name=self.get_option("ssm_document"),
            reason=self._reason(),
            assume_role_arn=self.get_option("assume_role_arn"),
            stderr_file=self._ec2ssm_stderr_file,
        )

    # -- the ssh command line and its environment ------------------------------------------------

    def _build_command(self, binary: str, subsystem: str, *other_args: bytes | str) -> list[bytes]:
        try:
            settings = self._tunnel_settings()
            groups = ssh_args.inserted_options(settings)
        except ssh_args.SshArgumentError as error:
            raise Ec2SsmConnectionError(f"{_HELPER_PREFIX}{error}") from None
        b_command = super()._build_command(binary, subsystem, *other_args)
        inserted: list[bytes] = []
        for why, args in groups:
            self._add_args(inserted, [to_bytes(arg, errors="surrogate_or_strict") for arg in args], why)
        # Right after the binary (OpenSSH keeps the first value); index() skips a sshpass prefix.
        position = b_command.index(to_bytes(binary, errors="surrogate_or_strict")) + 1
        b_command[position:position] = inserted
        return b_command

    def _init_shm(self) -> dict[str, object]:
        """Popen arguments for ssh/scp/sftp: the helper's environment rides along here."""
        popen_kwargs = super()._init_shm()
        environment = dict(popen_kwargs.get("env") or os.environ)
        for name in self._ec2ssm_withheld:
            environment.pop(name, None)
        environment.update(self._ec2ssm_environment)
        environment["SHELL"] = "/bin/sh"  # ssh runs ProxyCommand with $SHELL -c (ssh_args.py rule 5)
        popen_kwargs["env"] = environment
        return popen_kwargs

    # -- failures ---------------------------------------------------------------------------------

    def _helper_output_since(self, offset: int) -> str:
        """What this destination's helpers wrote during one ssh run (ssh_args.py rule 6).

        That is the new helper's output when ssh started a master, or the output of the running
        master's helper when its tunnel failed during this run; nothing when all went well.
        """
        text = keys.read_stderr_since(self._ec2ssm_stderr_file, offset)
        if text:
            display.vvv(f"trek10.ec2ssm: tunnel helper output:\n{text.rstrip()}", host=self.host)
        return text

    def _raise_diagnosed(self, stderr: str, helper_output: str) -> None:
        if self._ec2ssm_context is None:
            return
        failures = _failures()
        context: ssh_failures.Context = failures.Context(**self._ec2ssm_context)
        diagnosis = failures.diagnose(stderr, context, helper_output)
        if diagnosis is None:
            return
        display.vvv(
            f"trek10.ec2ssm: {'permanent' if diagnosis.permanent else 'transient'} failure", host=self.host
        )
        if diagnosis.permanent:
            raise Ec2SsmConnectionError(diagnosis.message) from None
        raise Ec2SsmTransientFailure(diagnosis.message) from None

    def _bare_run(
        self, cmd: list[bytes], in_data: bytes | None, sudoable: bool = True, checkrc: bool = True
    ) -> tuple[int, bytes, bytes]:
        offset = keys.stderr_size(self._ec2ssm_stderr_file)
        try:
            result = super()._bare_run(cmd, in_data, sudoable=sudoable, checkrc=checkrc)
        except AnsibleControlPersistBrokenPipeError:
            self._helper_output_since(offset)
            raise  # the base class retries this one itself
        except AnsibleConnectionFailure as error:
            # "Data could not be sent to remote host ...: <stderr>" (pipelining, piped transfers)
            self._raise_diagnosed(to_text(error.message), self._helper_output_since(offset))
            raise
        helper = self._helper_output_since(offset)
        if result[0] == 255:
            self._raise_diagnosed(to_text(result[2], errors="surrogate_or_replace"), helper)
        return result

    # -- entry points that run ssh inside the base class's retry loop -------------------------------

    def put_file(self, in_path: str, out_path: str) -> tuple[int, bytes, bytes]:  # type: ignore[override]
        self.host = self.get_option("host") or self._play_context.remote_addr
        self._tunnel_settings()  # fail on bad settings before the retry loop, not inside it
        return super().put_file(in_path, out_path)

    def fetch_file(self, in_path: str, out_path: str) -> tuple[int, bytes, bytes]:  # type: ignore[override]
        self.host = self.get_option("host") or self._play_context.remote_addr
        self._tunnel_settings()
        return super().fetch_file(in_path, out_path)
