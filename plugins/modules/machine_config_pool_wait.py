#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: machine_config_pool_wait
short_description: Wait for MachineConfigPools to finish rolling out, printing progress as nodes reboot
version_added: 0.1.0
author:
  - confidential.gpu team (@confidential-gpu)
description:
  - Watches the pools and their nodes until every node runs the pool's target rendered config, is Ready, and the
    pool reports C(Updated); fails at once when a pool turns C(Degraded), with each node's reason, or when a pool
    that has nodes to update is paused.
  - "Prints a line whenever the rollout moves, for example C(worker: 2/3 nodes updated, worker-1 rebooting), while
    the task runs, and returns every line in RV(progress)."
  - A drain that does not progress is explained by the PodDisruptionBudgets that allow no eviction of the node's pods.
  - Never changes anything.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - confidential.gpu._attributes
  - confidential.gpu._attributes.INFO_MODULE
  - confidential.gpu._attributes.ACTIONGROUP_CGPU
options:
  names:
    description: The MachineConfigPools to wait for.
    type: list
    elements: str
    required: true
  timeout:
    description: Seconds to wait in all. A real node takes 5 to 20 minutes to drain and reboot, one node at a time.
    type: int
    default: 7200
  machine_configs:
    description: MachineConfigs every pool's target must include before the rollout counts as done.
    type: list
    elements: str
    default: []
  absent_machine_configs:
    description: MachineConfigs no pool's target may include any more (waiting for a removal to roll out).
    type: list
    elements: str
    default: []
  since:
    description:
      - Internal, used by the action plugin to print progress; return as soon as the progress line differs from this one.
    type: str
  return_on_change:
    description: Internal, see O(since).
    type: bool
    default: false
  timeout_total:
    description: Internal, the O(timeout) the action plugin started with, for messages.
    type: int
  progress_file:
    description: Internal, a pipe the action plugin reads progress lines from while the module runs.
    type: str
requirements:
  - python >= 3.9
  - kubernetes >= 24.2.0
"""

EXAMPLES = r"""
- name: Wait for the workers to reboot into their new config (up to 2 hours)
  confidential.gpu.machine_config_pool_wait:
    names: [worker]
    timeout: 7200
"""

RETURN = r"""
done:
  description: Whether every pool finished.
  returned: always
  type: bool
line:
  description: The last progress line.
  returned: always
  type: str
  sample: "worker: 3/3 nodes updated"
progress:
  description: Every progress line printed, with the seconds since the start.
  returned: always
  type: list
  elements: str
pools:
  description: Per pool, C(line), C(nodes) (phase per node), C(target), C(updated), C(count), C(degraded), C(message).
  returned: always
  type: dict
"""

import queue
import threading
import time

from ansible_collections.confidential.gpu.plugins.module_utils import machine_config as mcfg
from ansible_collections.confidential.gpu.plugins.module_utils._k8s import CgpuModule, CoreException


class PoolWait(CgpuModule):
    def execute_module(self):
        p = self.params
        self._started = time.monotonic()
        self._progress = []
        self._line = ""
        self._stream = None
        try:
            if p["progress_file"]:
                # The action plugin reads this pipe and prints each line while the module runs.
                self._stream = open(p["progress_file"], "w", buffering=1)  # pylint: disable=consider-using-with
            self._wait(p)
        except CoreException as exc:
            self.fail_json(msg=str(exc), progress=self._progress, line=self._line)
        finally:
            if self._stream is not None:
                self._stream.close()

    def _note(self, state):
        line = state["line"]
        if line == self._line:
            return
        self._line = line
        entry = "{0:>5}s {1}".format(int(time.monotonic() - self._started), line)
        self._progress.append(entry)
        if self._stream is not None:
            self._stream.write(entry + "\n")

    def _wait(self, p):
        deadline = time.monotonic() + p["timeout"]
        names = p["names"]
        state = self._state(names, p["machine_configs"], p["absent_machine_configs"])
        self._note(state)
        if self._settled(state, p):
            self._finish(state)
        events = queue.Queue()
        stop = threading.Event()
        # Nodes tell the phase of each node, pools tell when the MCO counts the rollout done: watch both.
        for api_version, kind in (("v1", "Node"), (mcfg.API_VERSION, "MachineConfigPool")):
            thread = threading.Thread(target=self.watch_into, args=(api_version, kind, events, stop, deadline), daemon=True)
            thread.start()
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CoreException("Timed out after {0}s waiting for the rollout of {1}; last seen: {2}".format(
                        p["timeout_total"] or p["timeout"], ", ".join(names), state["line"]))
                try:
                    item = events.get(timeout=remaining)
                except queue.Empty:
                    continue
                if isinstance(item, Exception):
                    raise item
                while not events.empty():  # a burst of events: judge once, on the latest state
                    item = events.get_nowait()
                    if isinstance(item, Exception):
                        raise item
                state = self._state(names, p["machine_configs"], p["absent_machine_configs"])
                self._note(state)
                if self._settled(state, p):
                    self._finish(state)
        finally:
            stop.set()

    def _state(self, names, machine_configs, absent=()):
        pools = self.list(mcfg.API_VERSION, "MachineConfigPool")[0]
        nodes = self.list("v1", "Node")[0]
        by_pool = {x["metadata"]["name"]: x for x in pools}
        by_node = {n["metadata"]["name"]: n for n in nodes}
        membership = mcfg.members(pools, nodes)
        out = {}
        for name in names:
            pool = by_pool.get(name)
            if pool is None:
                out[name] = {"done": False, "degraded": False, "line": "{0}: no such pool".format(name), "nodes": {},
                             "message": "", "missing": True}
                continue
            member_nodes = [by_node[m] for m in membership.get(name, [])]
            rollout = mcfg.rollout(pool, member_nodes)
            if "draining" in rollout["nodes"].values():
                rollout = mcfg.rollout(pool, member_nodes, self._blockers(rollout))
            sources = {s.get("name") for s in ((pool["spec"].get("configuration") or {}).get("source") or [])}
            wanted = [m for m in machine_configs if m not in sources]
            if wanted and rollout["done"]:
                rollout["done"] = False
                rollout["line"] += " (not rendered yet: {0})".format(", ".join(wanted))
            lingering = [m for m in absent if m in sources]
            if lingering and rollout["done"]:
                rollout["done"] = False
                rollout["line"] += " (still rendered: {0})".format(", ".join(lingering))
            out[name] = rollout
        return {"pools": out, "line": "; ".join(out[n]["line"] for n in names),
                "done": all(r["done"] for r in out.values())}

    def _blockers(self, rollout):
        """Per draining node, the PodDisruptionBudgets that forbid evicting its pods now."""
        pdbs = self.list("policy/v1", "PodDisruptionBudget")[0]
        if not pdbs:
            return {}
        out = {}
        for node, phase in rollout["nodes"].items():
            if phase != "draining":
                continue
            pods = self.list("v1", "Pod")[0]
            on_node = [pod for pod in pods if (pod.get("spec") or {}).get("nodeName") == node]
            blocked = mcfg.drain_blockers(on_node, pdbs)
            if blocked:
                out[node] = "blocked by PodDisruptionBudget " + ", ".join(
                    "{0} (pod {1})".format(pdb, pod) for pod, pdb in sorted(blocked.items()))
        return out

    def _settled(self, state, p):
        degraded = {n: r for n, r in state["pools"].items() if r.get("degraded")}
        if degraded:
            raise CoreException("MachineConfigPool {0} is degraded: {1}. The rollout stopped at: {2}".format(
                ", ".join(sorted(degraded)), "; ".join(r["message"] for r in degraded.values()), state["line"]))
        if state["done"]:
            return True
        paused = sorted(n for n, r in state["pools"].items() if r.get("paused") and not r.get("done"))
        if paused:
            raise CoreException("MachineConfigPool {0} is paused, so its nodes will not update until it is unpaused "
                                "(oc patch mcp {1} --type merge -p '{{\"spec\":{{\"paused\":false}}}}'): {2}".format(
                                    ", ".join(paused), paused[0], state["line"]))
        return p["return_on_change"] and state["line"] != (p["since"] or "")

    def _finish(self, state):
        self.exit_json(changed=False, done=state["done"], line=state["line"], progress=self._progress,
                       pools=state["pools"])


def main():
    PoolWait(argument_spec={
        "names": {"type": "list", "elements": "str", "required": True},
        "timeout": {"type": "int", "default": 7200},
        "machine_configs": {"type": "list", "elements": "str", "default": []},
        "absent_machine_configs": {"type": "list", "elements": "str", "default": []},
        "since": {"type": "str"},
        "return_on_change": {"type": "bool", "default": False},
        "timeout_total": {"type": "int"},
        "progress_file": {"type": "str"},
    }, supports_check_mode=True).run()


if __name__ == "__main__":
    main()
