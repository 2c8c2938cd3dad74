#!/usr/bin/env bash
# `make demo`: the main job on the embedded default. Starts the local AWS sandbox with 3 private
# instances (each a real sshd in its own network namespace, reachable only through SSM), lists
# them with the inventory plugin, runs a small playbook over trek10.ec2ssm.ssm_ssh, prints the
# PLAY RECAP and stops the sandbox again.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py=${PY:-python3}
bin=$(dirname "$py")

missing=()
[ -f tests/sandbox/__main__.py ] || missing+=("the local AWS sandbox (issue #4, tests/sandbox/)")
[ -f plugins/plugin_utils/ssm_proxy.py ] || missing+=("the tunnel helper (issue #3, plugins/plugin_utils/ssm_proxy.py)")
[ -f plugins/connection/ssm_ssh.py ] || missing+=("the connection plugin trek10.ec2ssm.ssm_ssh (issue #5)")
[ -f plugins/inventory/ssm_instances.py ] || missing+=("the inventory plugin trek10.ec2ssm.ssm_instances (issue #6)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "make demo: not built yet. Missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi

state="$root/.sandbox-demo"
sandbox() { "$py" -m ansible_collections.trek10.ec2ssm.tests.sandbox "$@"; }
cleanup() { sandbox down --state-dir "$state" >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo ">>> starting the local AWS sandbox with 3 private instances"
sandbox up --instances 3 --state-dir "$state"
# Only standard AWS settings select the sandbox: endpoint URLs, CA bundle, region, credentials.
# shellcheck disable=SC1091
source "$state/env.sh"

cd examples/demo
echo ">>> inventory (trek10.ec2ssm.ssm_instances)"
"$bin/ansible-inventory" -i demo.ssm_instances.yml --graph
echo ">>> playbook over trek10.ec2ssm.ssm_ssh"
ANSIBLE_FORCE_COLOR=0 "$bin/ansible-playbook" -i demo.ssm_instances.yml playbook.yml
