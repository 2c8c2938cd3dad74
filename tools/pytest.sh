#!/usr/bin/env bash
# pytest wrapper for make: PYTHON [pytest args...]. Exit code 5 (no tests collected) is a failure
# for us, not a pass; say so plainly instead of leaving a bare "Error 5".
set -uo pipefail
python="$1"; shift
"$python" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests from: $*" >&2
fi
exit "$rc"
