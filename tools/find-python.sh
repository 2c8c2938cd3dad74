#!/usr/bin/env bash
# Print the path of a CPython interpreter of the given minor version (e.g. 3.12), preferring a
# real binary over a pyenv shim (a shim refuses versions that are not "selected").
set -euo pipefail
want="$1"
if command -v pyenv >/dev/null 2>&1; then
  for candidate in "$(pyenv root)"/versions/"$want".*/bin/python"$want"; do
    if [ -x "$candidate" ]; then echo "$candidate"; exit 0; fi
  done
fi
for candidate in "/usr/bin/python$want" "/usr/local/bin/python$want"; do
  if [ -x "$candidate" ]; then echo "$candidate"; exit 0; fi
done
if candidate=$(command -v "python$want") && "$candidate" -c 'import sys' >/dev/null 2>&1; then
  echo "$candidate"; exit 0
fi
echo "error: no Python $want found (install it, e.g. 'pyenv install $want')" >&2
exit 1
