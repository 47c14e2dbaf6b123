# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A bench's callback: one JSON line per task (action, name, start and end in epoch seconds).

Tasks run one after the other on one host, so a task's window in time is where its API requests
fall in the twin's audit log (tests/bench/waits.py). The file is CGPU_TASK_WINDOWS.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: task_windows
type: aggregate
short_description: Write each task's action and start and end times as JSON lines (benchmarks only)
description:
  - Writes one JSON line per finished task to the file named by the environment variable C(CGPU_TASK_WINDOWS).
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_windows"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._path = os.environ.get("CGPU_TASK_WINDOWS")
        self._open = {}

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._open[task._uuid] = (task.action, task.get_name(), time.time())

    def _end(self, result, status):
        started = self._open.pop(result._task._uuid, None)
        if started is None or not self._path:
            return
        action, name, start = started
        with open(self._path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"action": action, "name": name, "start": start, "end": time.time(),
                                     "status": status}) + "\n")

    def v2_runner_on_ok(self, result):
        self._end(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._end(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._end(result, "skipped")
