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
  - Lists the pools, nodes and PodDisruptionBudgets once, then follows one watch of each, so the requests grow with
    the changes, not with the time; the pods of a draining node are listed by C(spec.nodeName), once per drain and
    PodDisruptionBudget change. Says what it waits for at least every 30 seconds; an API server that stops
    answering for a while is waited for until the deadline.
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

import time

from ansible_collections.confidential.gpu.plugins.module_utils import machine_config as mcfg
from ansible_collections.confidential.gpu.plugins.module_utils._k8s import CgpuModule, CoreException


class PoolWait(CgpuModule):
    def execute_module(self):
        p = self.params
        names = p["names"]
        pools = self.informer(mcfg.API_VERSION, "MachineConfigPool")
        nodes = self.informer("v1", "Node")
        pdbs = self.informer("policy/v1", "PodDisruptionBudget")
        self._drain_pods = {}
        seen = {"state": {"line": "", "pools": {}, "done": False}}

        def judge():
            state = seen["state"] = self._state(pools.values(), nodes.values(), pdbs.values(), names,
                                                p["machine_configs"], p["absent_machine_configs"])
            return self._settled(state, p), state["line"]

        try:
            self.follow([pools, nodes, pdbs], judge, p["timeout_total"] or p["timeout"],
                        "the rollout of {0}".format(", ".join(names)), deadline=time.monotonic() + p["timeout"])
        except CoreException as exc:
            self.fail_json(msg=str(exc), progress=self.progress_lines, line=seen["state"]["line"])
        state = seen["state"]
        self.exit_json(changed=False, done=state["done"], line=state["line"], progress=self.progress_lines,
                       pools=state["pools"])

    def _state(self, pools, nodes, pdbs, names, machine_configs, absent=()):
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
            member_nodes = [by_node[m] for m in membership.get(name, []) if m in by_node]
            rollout = mcfg.rollout(pool, member_nodes)
            if "draining" in rollout["nodes"].values():
                rollout = mcfg.rollout(pool, member_nodes, self._blockers(rollout, pdbs))
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

    def _blockers(self, rollout, pdbs):
        """Per draining node, the PodDisruptionBudgets that forbid evicting its pods now.

        The pods are those of that node only (``spec.nodeName``), listed once per drain of the node and
        again only when a PodDisruptionBudget changes (what it allows is in its status).
        """
        if not pdbs:
            return {}
        budgets = tuple(sorted((p["metadata"].get("uid"), p["metadata"].get("resourceVersion")) for p in pdbs))
        out = {}
        draining = {node for node, phase in rollout["nodes"].items() if phase == "draining"}
        for node in list(self._drain_pods):
            if node not in draining:
                del self._drain_pods[node]  # that drain is over: the next one lists again
        for node in sorted(draining):
            known = self._drain_pods.get(node)
            if known is None or known[0] != budgets:
                pods = self.list("v1", "Pod", field_selector="spec.nodeName={0}".format(node))[0]
                known = self._drain_pods[node] = (budgets, pods)
            blocked = mcfg.drain_blockers(known[1], pdbs)
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
