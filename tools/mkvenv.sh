#!/usr/bin/env bash
# Create (or refresh) one development virtualenv for one ansible-core line.
#
#   tools/mkvenv.sh NAME PYTHON_MINOR CORE_SPEC ANSIBLE_PACKAGE_VERSION
#
# Result, under .venv/NAME:
#   bin/python ...                         the interpreter with runtime + test requirements and ansible-core
#   collections/ansible_collections/trek10/ec2ssm -> this checkout (symlink; fine for ansible itself,
#                                                    ansible-test gets a copied tree instead)
#   collections/ansible_collections/amazon/aws    copied out of the `ansible` community package wheel
#                                                 (Galaxy is not needed)
# A stamp file records the inputs, so re-running is cheap when nothing changed.
set -euo pipefail
name="$1" minor="$2" core_spec="$3" ansible_version="$4"
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv/$name"
stamp="$venv/.stamp"
inputs=$(cat "$root/requirements.txt" "$root/tests/requirements.txt" "$root/tools/mkvenv.sh"; echo "$minor $core_spec $ansible_version")
digest=$(printf '%s' "$inputs" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ] && [ -x "$venv/bin/python" ]; then
  exit 0
fi
python=$("$root/tools/find-python.sh" "$minor")
echo ">>> creating $venv with $python ($core_spec, amazon.aws from ansible==$ansible_version)"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
# The machine's pip.conf may name local indexes that do not exist; pip warns once per package.
pip_quiet() { "$venv/bin/python" -m pip "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2); }
pip_quiet install --quiet --disable-pip-version-check --upgrade pip
pip_quiet install --quiet --disable-pip-version-check \
  -r "$root/requirements.txt" -r "$root/tests/requirements.txt" "$core_spec"

# amazon.aws: take it from the `ansible` package wheel without installing the whole package.
wheels="$root/.cache/wheels"
mkdir -p "$wheels"
wheel=$(ls "$wheels"/ansible-"$ansible_version"-py3-none-any.whl 2>/dev/null || true)
if [ -z "$wheel" ]; then
  pip_quiet download --quiet --disable-pip-version-check --no-deps \
    --python-version "$minor" --only-binary=:all: -d "$wheels" "ansible==$ansible_version"
  wheel=$(ls "$wheels"/ansible-"$ansible_version"-py3-none-any.whl)
fi
collections="$venv/collections/ansible_collections"
rm -rf "$collections/amazon/aws"
mkdir -p "$collections/amazon" "$collections/trek10"
"$venv/bin/python" - "$wheel" "$collections/amazon/aws" <<'PY'
import pathlib, sys, zipfile
wheel, dest = sys.argv[1], pathlib.Path(sys.argv[2])
prefix = "ansible_collections/amazon/aws/"
with zipfile.ZipFile(wheel) as archive:
    for member in archive.namelist():
        if member.startswith(prefix) and not member.endswith("/"):
            target = dest / member[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(member))
PY
ln -sfn "$root" "$collections/trek10/ec2ssm"
echo "$digest" > "$stamp"
"$venv/bin/python" - "$collections/amazon/aws/MANIFEST.json" <<'PY'
import json, sys
import ansible.release
aws = json.load(open(sys.argv[1]))["collection_info"]["version"]
print(f">>> ready: ansible-core {ansible.release.__version__}, amazon.aws {aws}, Python {sys.version.split()[0]}")
PY
