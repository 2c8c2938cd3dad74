# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS identity and region options of the ``trek10.ec2ssm.ssm_ssh`` connection plugin.

PRIVATE to this collection. The names and environment variables mirror amazon.aws's
``common.plugins`` and ``region.plugins`` fragments, so they read the same to AWS users; unlike
those fragments these options also have ``vars:`` entries, which a connection plugin needs to take
per-host settings from the inventory (ansible.md §5.3). The ``ansible_aws_ssm_*`` variables are
the ones ``amazon.aws.aws_ssm`` reads, so inventories written for it work unchanged.

None of these values is ever put on a command line: the plugin hands credentials to the tunnel
helper through the environment of the ``ssh`` process only.
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  access_key:
    description:
      - AWS access key ID the tunnel helper uses for C(ec2-instance-connect:SendSSHPublicKey) and
        C(ssm:StartSession).
      - Set O(access_key) and O(secret_key) together. When both are set (from any source, the
        environment included) they win over O(profile), as in amazon.aws.
      - When neither is set, the helper uses botocore's default credential chain (environment,
        shared config and SSO, container and instance roles).
      - Passed to the helper in its environment, never on a command line.
    type: string
    env:
      - name: AWS_ACCESS_KEY
      - name: AWS_ACCESS_KEY_ID
    vars:
      - name: ansible_aws_ssm_access_key_id
      - name: ansible_ec2ssm_access_key
  secret_key:
    description:
      - AWS secret access key that goes with O(access_key).
      - Passed to the helper in its environment, never on a command line.
    type: string
    env:
      - name: AWS_SECRET_KEY
      - name: AWS_SECRET_ACCESS_KEY
    vars:
      - name: ansible_aws_ssm_secret_access_key
      - name: ansible_ec2ssm_secret_key
  session_token:
    description:
      - AWS STS session token for temporary credentials, used with O(access_key) and O(secret_key).
      - Both C(AWS_SESSION_TOKEN) and the older C(AWS_SECURITY_TOKEN) are read (AWX and Tower set
        the latter). The helper receives it as both.
      - When O(access_key) is set and this is not, any session token in the controller's
        environment is withheld from the helper, since it cannot belong to those keys.
    type: string
    env:
      - name: AWS_SECURITY_TOKEN
      - name: AWS_SESSION_TOKEN
    vars:
      - name: ansible_aws_ssm_session_token
      - name: ansible_ec2ssm_session_token
  profile:
    description:
      - Named profile from the shared AWS config files (C(~/.aws/config), C(~/.aws/credentials)),
        including SSO and C(credential_process) profiles.
      - Ignored when O(access_key) and O(secret_key) are set.
    type: string
    env:
      - name: AWS_DEFAULT_PROFILE
      - name: AWS_PROFILE
    vars:
      - name: ansible_aws_ssm_profile
      - name: ansible_ec2ssm_profile
  region:
    description:
      - AWS region of the instance.
      - When not set here, the helper uses botocore's region resolution (the profile's
        C(region)). The inventory plugin C(trek10.ec2ssm.ssm_instances) sets it per host.
    type: string
    env:
      - name: AWS_DEFAULT_REGION
      - name: AWS_REGION
    vars:
      - name: ansible_aws_ssm_region
      - name: ansible_ec2ssm_region
  assume_role_arn:
    description:
      - ARN of an IAM role the helper assumes (C(sts:AssumeRole)) before pushing the key and
        starting the session, with the credentials above as the source identity.
      - Set it per host or per group to reach instances in several accounts from one inventory.
    type: string
    vars:
      - name: ansible_ec2ssm_assume_role_arn
    env:
      - name: ANSIBLE_EC2SSM_ASSUME_ROLE_ARN
"""
