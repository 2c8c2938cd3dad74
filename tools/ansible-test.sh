#!/usr/bin/env bash
# Run ansible-test (sanity or units) for one core line, the way ansible-test needs it:
# in a *copied* tree <tmp>/trek10.ec2ssm-ansible-test/<venv>/ansible_collections/trek10/ec2ssm (a
# symlinked checkout fails: ansible-test resolves the physical path), with amazon.aws copied next
# to it. The copy lives outside this git work tree: inside it, ansible-test would list files with
# git, and .gitignore hides the copy from git.
#
#   tools/ansible-test.sh VENV_NAME PYTHON_MINOR sanity|units [extra ansible-test args...]
set -euo pipefail
venv_name="$1" minor="$2" command="$3"; shift 3
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv/$venv_name"
tree="${TMPDIR:-/tmp}/trek10.ec2ssm-ansible-test/$venv_name"
dest="$tree/ansible_collections/trek10/ec2ssm"

# ansible-test --venv fetches a get-pip script from a host we cannot reach; give it our stand-in.
pip_version=$("$venv/bin/python" - <<'PY'
import re, pathlib, ansible_test
source = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
print(re.search(r"pip='([0-9.]+)'", source.read_text()).group(1))
PY
)
cache="$HOME/.ansible/test/cache"
mkdir -p "$cache"
cp "$root/tools/get_pip_offline.py" "$cache/get_pip_${pip_version//./_}.py"

rm -rf "$tree"
mkdir -p "$dest" "$tree/ansible_collections/amazon"
cd "$root"
# Tracked files plus new files not ignored by .gitignore (what a commit would contain).
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' path; do
  [ -e "$path" ] && printf '%s\0' "$path"
done | xargs -0 cp --parents -t "$dest"
cp -a "$venv/collections/ansible_collections/amazon/aws" "$tree/ansible_collections/amazon/aws"

cd "$dest"
echo ">>> ansible-test $command on $("$venv/bin/python" -c 'import ansible.release as r; print("ansible-core", r.__version__)') / Python $minor"
exec env -u PYTHONPATH "$venv/bin/ansible-test" "$command" --venv --python "$minor" --color no "$@"
