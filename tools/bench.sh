#!/usr/bin/env bash
# `make bench`: benchmark harness (issue #7). Writes docs/performance.md and its plots.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ ! -f bench/run.py ]; then
  echo "make bench: not built yet (issue #7: bench/run.py)" >&2
  exit 1
fi
exec "${PY:-python3}" bench/run.py "$@"
