# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small statistics: median and spread of repetitions, alternation order, per-round ratios.

Why so little: with a handful of repetitions on a shared machine, the median and the min-max
range say more honestly what happened than a mean with a standard deviation would.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def summary(values: Sequence[float]) -> dict[str, Any]:
    """``{"median", "min", "max", "n", "samples"}`` of ``values`` (which must not be empty)."""
    if not values:
        raise ValueError("no samples to summarise")
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "samples": list(values),
    }


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Ratio per round: both values of a round were measured back to back, so load from
    elsewhere on the machine hits both alike and the spread of these ratios shows the noise."""
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


def rotated(names: Sequence[str], round_no: int) -> list[str]:
    """The order in which to measure ``names`` in round ``round_no``: alternating who goes first,
    so neither the product nor its baseline always runs right after the other (cache, load)."""
    shift = round_no % len(names)
    return [*names[shift:], *names[:shift]]
