# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One module per scenario; each has ``Params`` (with ``full()``/``smoke()``) and ``run()``.

``run(params, work)`` starts what it needs (its own sandbox, so call counters and throttling
buckets start fresh), measures the product and its baseline alternately, and returns a
JSON-serialisable dict; it raises on any failure, so a broken scenario never passes silently.
"""
