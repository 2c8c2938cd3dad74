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
written as JSON (which is YAML too) instead of going through PyYAML's pure-Python dumper.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
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


class ModuleDocFragment:
    """``DOCUMENTATION`` is set per instance, computed from the running core (see module doc)."""

    def __init__(self) -> None:
        self.DOCUMENTATION = json.dumps({"options": ssh_options()}, default=str)
