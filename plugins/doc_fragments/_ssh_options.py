# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every option of the *installed* ansible-core's ``ssh`` connection plugin, as a doc fragment.

PRIVATE to this collection (the leading underscore says so): only
``trek10.ec2ssm.ssm_ssh`` extends it.

Why computed: our connection plugin subclasses core's ``ssh`` plugin, whose methods call
``get_option(name)`` for every ssh option. Option definitions are keyed by *our* plugin name, so an
option missing from our DOCUMENTATION is a ``KeyError`` at run time (ansible.md §1.3), and the ssh
option set changes between cores. Reading it from the running core keeps the two identical.

Why in ``__init__``: ansible-doc and the plugin loader read a fragment through
``getattr(instance, "DOCUMENTATION")``, so an instance attribute works; ansible-test's yamllint
checks only assignments in the *class body* and would choke on a computed one there (ansible.md
§1.4).

Why fast: ansible-core forks a worker per task, and a worker that loads the plugin builds this
fragment again. So the core's YAML is read with libyaml's loader when present, and the result is
written as JSON (which is YAML too) instead of going through PyYAML's pure-Python dumper. And the
result is cached for the rest of the run: the first worker writes it into the run's private
temporary directory (``C.DEFAULT_LOCAL_TMP``, created by ``ansible-playbook`` and removed when it
exits), every later worker reads it back. The cache therefore never outlives the ansible-core that
computed it; its name also carries the core's version and the size and mtime of the two core files
it is computed from, and it is published with an atomic rename, so concurrent workers read a whole
file or none. Any trouble with it falls back to computing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from typing import Any

import yaml
from ansible import constants as _C
from ansible import release as _release
from ansible.plugins.connection import ssh as _core_ssh
from ansible.plugins.doc_fragments import connection_pipelining as _core_pipelining

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Keys of an option (and of its vars/env/ini/keyword/cli entries) that describe *core's* release
# history. In a collection's docs they would be read as versions of this collection, which they
# are not (validate-modules rejects '2.7' as a collection version).
_FOREIGN_VERSION_KEYS = ("version_added", "version_added_collection")
_SOURCE_LISTS = ("vars", "env", "ini", "keyword", "cli")


def _strip_core_versions(spec: dict[str, Any]) -> None:
    for key in _FOREIGN_VERSION_KEYS:
        spec.pop(key, None)
    for source in _SOURCE_LISTS:
        for entry in spec.get(source) or ():
            if isinstance(entry, dict):
                for key in _FOREIGN_VERSION_KEYS:
                    entry.pop(key, None)


def ssh_options() -> dict[str, Any]:
    """The installed core's ssh options, with ``connection_pipelining`` merged in.

    Core's ssh DOCUMENTATION declares ``pipelining`` without a description and relies on
    ``extends_documentation_fragment: connection_pipelining`` for it; that fragment's spec is
    merged under the ssh entry (the ssh entry's keys win, as the loader would do).
    """
    options: dict[str, Any] = dict(yaml.load(_core_ssh.DOCUMENTATION, Loader=_Loader)["options"])  # noqa: S506 - a safe loader
    pipelining = yaml.load(_core_pipelining.ModuleDocFragment.DOCUMENTATION, Loader=_Loader)["options"]  # noqa: S506
    for name, spec in pipelining.items():
        options[name] = {**spec, **(options.get(name) or {})}
    for spec in options.values():
        _strip_core_versions(spec)
    return options


_CACHE_DIR = "trek10.ec2ssm"
"""Our 0700 directory inside the run's temporary directory (the one ``plugin_utils.keys`` uses)."""
_CACHE_FORMAT = 1
"""Bump when :func:`ssh_options` changes what it produces."""
_CACHE_PREFIX = '{"options":'


def _cache_path() -> str | None:
    """Where this run keeps the computed fragment; None outside an ansible run directory."""
    local_tmp = getattr(_C, "DEFAULT_LOCAL_TMP", None)
    if not isinstance(local_tmp, str) or not os.path.isdir(local_tmp):
        return None
    key: list[object] = [_CACHE_FORMAT, _release.__version__, sys.version]
    for source in (_core_ssh.__file__, _core_pipelining.__file__, __file__):
        stat = os.stat(source)
        key += [source, stat.st_size, stat.st_mtime_ns]
    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:20]
    return os.path.join(local_tmp, _CACHE_DIR, f"ssh-options-{digest}.json")


def _read_cached(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        return None
    return text if text.startswith(_CACHE_PREFIX) and text.endswith("}") else None


def _write_cached(path: str, text: str) -> None:
    """Publish atomically (temp file + rename); best effort."""
    directory = os.path.dirname(path)
    with contextlib.suppress(OSError):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".ssh-options.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(temporary, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def documentation() -> str:
    """The fragment's DOCUMENTATION: from this run's cache, else computed (and cached)."""
    try:
        path = _cache_path()
    except OSError:
        path = None
    if path is not None:
        cached = _read_cached(path)
        if cached is not None:
            return cached
    text = json.dumps({"options": ssh_options()}, default=str)
    if path is not None:
        _write_cached(path, text)
    return text


class ModuleDocFragment:
    """``DOCUMENTATION`` is set per instance, computed from the running core (see module doc)."""

    def __init__(self) -> None:
        self.DOCUMENTATION = documentation()
