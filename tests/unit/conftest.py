# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible's collection finder, installed before any unit test loads plugins by name.

Ansible's CLIs and ansible-test's pytest plugin install it at start-up; plain pytest (``make
unit``) does not, and ``connection_loader.get("trek10.ec2ssm.ssm_ssh")`` then finds nothing. It is
installed at import time because a collection package imported before the finder exists lacks the
finder's metadata. Idempotent: nothing happens when a finder is already there.
"""

from __future__ import annotations

from ansible.plugins.loader import init_plugin_loader
from ansible.utils.collection_loader import AnsibleCollectionConfig

if AnsibleCollectionConfig.collection_finder is None:
    init_plugin_loader()
