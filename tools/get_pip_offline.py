"""Offline stand-in for ansible-test's get-pip bootstrap script.

ansible-test --venv bootstraps pip in each new virtualenv by running
https://ci-files.testing.ansible.com/ansible-test/get-pip-<version>.py, a host this machine (and
CI) cannot reach. It first looks for a cached copy under ~/.ansible/test/cache/; tools/ansible-test.sh
puts this file there. It gets pip from the interpreter's own ensurepip, then installs the
requested pip version from the configured package index like the real script would.
"""

import subprocess
import sys

# ensurepip must run in a subprocess: in-process it sets PIP_CONFIG_FILE=/dev/null, which would
# hide the system pip configuration (index, certificates) from the install below.
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
arguments = [a for a in sys.argv[1:] if a not in ("install", "--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install", *arguments])
