#!/usr/bin/env bash
# Run ansible-test (sanity or units) for one core line, the way ansible-test needs it:
# in a *copied* tree <tmp>/ansible_collections/trek10/ec2ssm (a symlinked checkout fails:
# ansible-test resolves the physical path), with amazon.aws copied next to it. The copy lives
# outside this git work tree (inside it, ansible-test would list files with git, and .gitignore
# hides the copy), in a fresh temporary directory per run so concurrent runs cannot collide.
#
#   tools/ansible-test.sh VENV_NAME PYTHON_MINOR sanity|units [extra ansible-test args...]
#
# What is copied: what a commit would contain, minus the development-only trees that are not
# part of the collection (galaxy.yml build_ignore): the local AWS sandbox (tests/sandbox), the
# end-to-end and packaging tests that drive it (tests/e2e, tests/packaging) and the benchmarks
# (bench). They never ship, never run on a managed node or inside Ansible, and are checked by
# `make lint` (ruff) and by running them; ansible-test's pylint profile is for collection content.
# Everything that ships (plugins/, meta/, docs/, examples/, ...) and tests/unit is checked.
#
# Concurrent runs: the copy is private to the run and removed when it ends (normally, on error,
# or on SIGINT/SIGTERM/SIGHUP, which are passed on to ansible-test first). What ansible-test
# itself shares per user is not: its sanity virtual environments (~/.ansible/test/venv, which a
# second run deletes and rebuilds while the first is still creating them) and our get-pip
# stand-in in ~/.ansible/test/cache. Runs of this script therefore take turns on a lock there.
set -euo pipefail
venv_name="$1" minor="$2" command="$3"; shift 3
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv/$venv_name"
tree=$(mktemp -d "${TMPDIR:-/tmp}/trek10.ec2ssm-ansible-test.XXXXXX")
child=""
# shellcheck disable=SC2317  # invoked by the traps below
cleanup() {
  if [ -n "$child" ]; then  # stopped by a signal: stop ansible-test and everything it started
    kill -TERM -- "-$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  rm -rf "$tree"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
dest="$tree/ansible_collections/trek10/ec2ssm"

state="$HOME/.ansible/test"
mkdir -p "$state/cache"
exec 9>>"$state/trek10.ec2ssm.lock"
if ! flock -n 9; then
  echo ">>> waiting for another ansible-test run of this collection (shared $state)"
  flock 9
fi

# ansible-test --venv fetches a get-pip script from a host we cannot reach; give it our stand-in.
pip_version=$("$venv/bin/python" - <<'PY'
import re, pathlib, ansible_test
source = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
print(re.search(r"pip='([0-9.]+)'", source.read_text()).group(1))
PY
)
cp "$root/tools/get_pip_offline.py" "$state/cache/get_pip_${pip_version//./_}.py"

mkdir -p "$dest" "$tree/ansible_collections/amazon"
cd "$root"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' path; do
  case "$path" in
    tests/sandbox/*|tests/e2e/*|tests/packaging/*|bench/*) continue ;;
  esac
  [ -e "$path" ] && printf '%s\0' "$path"
done | xargs -0 cp --parents -t "$dest"
cp -a "$venv/collections/ansible_collections/amazon/aws" "$tree/ansible_collections/amazon/aws"

cd "$dest"
echo ">>> ansible-test $command on $("$venv/bin/python" -c 'import ansible.release as r; print("ansible-core", r.__version__)') / Python $minor"
# In its own process group, in the background and waited for: a signal to this script runs the
# traps above at once (not after ansible-test ends), and they stop the whole group (a background
# job ignores SIGINT, so it is passed on as SIGTERM).
setsid env -u PYTHONPATH "$venv/bin/ansible-test" "$command" --venv --python "$minor" --color no "$@" <&0 &
child=$!
rc=0
wait "$child" || rc=$?
child=""
exit "$rc"
