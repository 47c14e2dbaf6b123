# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The action plugins of the waiting modules: print the module's progress lines while it runs.

A module cannot print while it runs. When it runs on this machine (the usual local connection), it
writes each progress line into a pipe (its option ``progress_file``) that the action reads and prints
at once: one module run per wait, however long the wait. Elsewhere the pipe cannot reach the
controller: a module that can return at the first change of its line (``return_on_change`` and
``since``) is run once per change, any other once, and its lines are printed when it ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time

from ansible.utils.display import Display
from ansible_collections.kubernetes.core.plugins.action.k8s_info import ActionModule as K8sActionModule

display = Display()


class ProgressActionModule(K8sActionModule):
    # Whether the module takes return_on_change/since (then it is run once per change where no pipe reaches it).
    PER_CHANGE = False
    DEFAULT_TIMEOUT = 7200

    def _execute_module(self, module_name=None, module_args=None, task_vars=None, **kwargs):
        args = dict(module_args if module_args is not None else self._task.args)
        host = (task_vars or {}).get("inventory_hostname", "")

        def run(call):
            return super(ProgressActionModule, self)._execute_module(module_name=module_name, module_args=call,
                                                                     task_vars=task_vars, **kwargs)

        if self._connection.transport == "local" and hasattr(os, "mkfifo"):
            return self._streamed(args, host, run)
        if self.PER_CHANGE:
            return self._per_change(args, host, run)
        result = run(args)
        for entry in result.get("progress") or []:
            display.display("  [{0}] {1}".format(host, entry))
        return result

    @staticmethod
    def _streamed(args, host, run):
        folder = tempfile.mkdtemp(prefix="cgpu-progress-")
        fifo = os.path.join(folder, "progress")
        os.mkfifo(fifo, 0o600)

        def show():
            with open(fifo, encoding="utf-8") as pipe:  # blocks until the module opens it for writing
                for line in pipe:
                    display.display("  [{0}] {1}".format(host, line.rstrip("\n")))

        reader = threading.Thread(target=show, daemon=True)
        reader.start()
        try:
            return run(dict(args, progress_file=fifo))
        finally:
            if reader.is_alive():
                # The module ended before it opened the pipe (it failed early, or said nothing): end the reader.
                try:
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:
                    pass
            reader.join(10)
            shutil.rmtree(folder, ignore_errors=True)

    def _per_change(self, args, host, run):
        timeout = int(args.get("timeout") or self.DEFAULT_TIMEOUT)
        started = time.monotonic()
        line = None
        progress = []
        while True:
            remaining = max(1, int(timeout - (time.monotonic() - started)))
            result = run(dict(args, timeout=remaining, timeout_total=timeout, return_on_change=True, since=line))
            new = result.get("line")
            if new is not None and new != line:
                entry = "{0:>5}s {1}".format(int(time.monotonic() - started), new)
                progress.append(entry)
                display.display("  [{0}] {1}".format(host, entry))
                line = new
            if result.get("failed") or result.get("done") or new is None:
                result["progress"] = progress
                return result
