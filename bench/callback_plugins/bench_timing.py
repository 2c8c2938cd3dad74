# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible callback for the benchmarks: when each task started and each result arrived.

Why a callback: the wall time of ``ansible-playbook`` includes its own start-up, inventory
parsing and play set-up (1-2 s), the same for every connection. Timestamps taken inside the
run let the harness time exactly the tasks. It writes one JSON file (``BENCH_TIMING_FILE``)
when the playbook ends: events with ``time.time()`` stamps (the harness uses the same clock)
and the per-host recap. Enabled only by the harness (``ANSIBLE_CALLBACKS_ENABLED``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ansible.plugins.callback import CallbackBase  # type: ignore[import-untyped]


class CallbackModule(CallbackBase):  # type: ignore[misc]  # ansible-core ships no type hints
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._events: list[dict[str, Any]] = []

    def _event(self, kind: str, **fields: Any) -> None:
        self._events.append({"event": kind, "t": time.time(), **fields})

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        self._event("task_start", task=task.get_name(), action=task.action)

    def _result(self, kind: str, result: Any, **fields: Any) -> None:
        self._event(kind, host=result._host.get_name(), task=result._task.get_name(), **fields)

    def v2_runner_on_ok(self, result: Any) -> None:
        self._result("ok", result)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._result("failed", result, msg=str(result._result.get("msg", ""))[:1000])

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._result("unreachable", result, msg=str(result._result.get("msg", ""))[:1000])

    def v2_playbook_on_stats(self, stats: Any) -> None:
        recap = {host: stats.summarize(host) for host in sorted(stats.processed)}
        self._event("stats")
        path = os.environ.get("BENCH_TIMING_FILE")
        if path:
            with open(path, "w", encoding="utf-8") as handle:
                json.dump({"events": self._events, "recap": recap}, handle)
