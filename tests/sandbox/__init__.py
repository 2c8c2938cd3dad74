"""The local AWS sandbox of trek10.ec2ssm (issue #4).

A faithful local stand-in for the AWS services our plugins use, so the demo, the tests and the
benchmarks run without an AWS account, and so unmodified AWS clients (botocore, the AWS CLI,
session-manager-plugin) can be pointed at it through the standard ``AWS_ENDPOINT_URL_*`` and
``AWS_CA_BUNDLE`` variables:

- EC2 and STS: moto in server mode, in process (``services/ec2.py`` adapts it);
- SSM (JSON 1.1): our own moto-style service (``services/ssm/``);
- EC2 Instance Connect (JSON 1.1): our own service (``services/ec2instanceconnect/``);
- the ssmmessages data channel: ``dataplane/`` (built separately, assembled by ``server.py``);
- instances: a real OpenSSH ``sshd`` per instance in its own network namespace (``hosts/``).

Nothing under ``plugins/`` imports this package. Importing it is cheap; moto is imported only
when a sandbox is built. See README.md for what is faithful and what is not.
"""

from __future__ import annotations
