#!/usr/bin/env bash
# Install the system packages the sandbox, the tests and the demo need, when missing:
#   openssh-server  real sshd per simulated instance     openssh-client  ssh/scp/sftp (Ansible's transport)
#   iproute2        ip netns for private instances        sudo            become on the instances
#   util-linux      unshare (own mount/UTS namespace)      procps          ps/pkill for process hygiene checks
#   the shellcheck package, so ansible-test sanity checks our shell scripts instead of skipping them
set -euo pipefail
need=()
command -v /usr/sbin/sshd >/dev/null 2>&1 || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 && command -v sftp >/dev/null 2>&1 || need+=(openssh-client)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v sudo >/dev/null 2>&1 || need+=(sudo)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v ps >/dev/null 2>&1 || need+=(procps)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "error: missing system packages: ${need[*]} -- run as root or install them: apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo ">>> apt-get install -y ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
  apt-get update >/dev/null
  apt-get install -y --no-install-recommends "${need[@]}"
}
