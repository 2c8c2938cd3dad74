# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark harness (``make bench``): each scenario against its baseline, in the same run.

``run.py`` orchestrates, ``scenarios/`` measure, ``report.py`` and ``plots.py`` turn the raw JSON
in ``bench/results/`` into ``docs/performance.md``. Imported through the collection namespace
(``ansible_collections.trek10.ec2ssm.bench``), like the sandbox it drives.
"""
