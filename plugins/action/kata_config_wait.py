# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# A module cannot print while it runs, and a KataConfig rollout reboots every node: this action runs the
# module once per change of the installation's state and prints each new line as it comes.
from __future__ import annotations

import time

from ansible.utils.display import Display
from ansible_collections.kubernetes.core.plugins.action.k8s_info import ActionModule as K8sActionModule

display = Display()


class ActionModule(K8sActionModule):
    def _execute_module(self, module_name=None, module_args=None, task_vars=None, **kwargs):
        args = dict(module_args if module_args is not None else self._task.args)
        timeout = int(args.get("timeout") or 7200)
        started = time.monotonic()
        line = None
        progress = []
        host = (task_vars or {}).get("inventory_hostname", "")
        while True:
            remaining = max(1, int(timeout - (time.monotonic() - started)))
            call = dict(args, timeout=remaining, return_on_change=True, since=line)
            result = super()._execute_module(module_name=module_name, module_args=call, task_vars=task_vars, **kwargs)
            new = result.get("line")
            if new is not None and new != line:
                stamp = "{0:>5}s".format(int(time.monotonic() - started))
                progress.append("{0} {1}".format(stamp, new))
                display.display("  [{0}] {1} {2}".format(host, stamp, new))
                line = new
            if result.get("failed") or result.get("done") or new is None:
                result["progress"] = progress
                return result
