# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# A module cannot print while it runs. When it runs on this machine (the usual local connection),
# it writes each progress line into a pipe this action reads and prints at once; elsewhere the
# module is run once per change of the rollout. A rollout of an hour is not an hour of silence.
from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time

from ansible.utils.display import Display
from ansible_collections.kubernetes.core.plugins.action.k8s_info import ActionModule as K8sActionModule

display = Display()


class ActionModule(K8sActionModule):
    def _execute_module(self, module_name=None, module_args=None, task_vars=None, **kwargs):
        args = dict(module_args if module_args is not None else self._task.args)
        host = (task_vars or {}).get("inventory_hostname", "")

        def run(call):
            return super(ActionModule, self)._execute_module(module_name=module_name, module_args=call,
                                                             task_vars=task_vars, **kwargs)

        if self._connection.transport == "local" and hasattr(os, "mkfifo"):
            return self._streamed(args, host, run)
        return self._per_change(args, host, run)

    def _streamed(self, args, host, run):
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
                # The module ended before it opened the pipe (it failed early): open it to end the reader.
                try:
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:
                    pass
            reader.join(10)
            shutil.rmtree(folder, ignore_errors=True)

    def _per_change(self, args, host, run):
        timeout = int(args.get("timeout") or 7200)
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
