#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: kata_config_wait
short_description: Wait for a KataConfig to install kata on its nodes and create its runtime classes, printing progress
version_added: 0.1.0
author:
  - confidential.gpu team (@confidential-gpu)
description:
  - Watches the KataConfig, its MachineConfigPool (C(kata-oc), or C(master) on compact and single-node clusters),
    the nodes and the runtime classes until the KataConfig's C(InProgress) condition is C(False) with no reason,
    every selected node is ready, and the runtime classes in O(runtime_classes) exist.
  - "Prints a line whenever the installation moves, and returns every line in RV(progress). A line reads like
    V(KataConfig example: Installing, 1/3 nodes ready; kata-oc: 1/3 nodes updated, worker-1 rebooting)."
  - Fails at once on C(UnsupportedOCPVersion) or a node that failed to install (the MCO degraded it), and when
    another failure OSC reports (such as its TEE label count) lasts longer than O(failure_grace).
  - Once installed, checks that C(kata-cc) and C(kata-cc-nvidia-gpu) have the handler, scheduling and overhead OSC
    gives them for the TEE of the nodes (RV(problems)), and says when C(kata-cc-nvidia-gpu) is missing although
    selected nodes have GPUs (RV(gpu_class_missing)) - what happens when the GPUs appeared after the KataConfig
    was reconciled.
  - Never changes anything.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - confidential.gpu._attributes
  - confidential.gpu._attributes.INFO_MODULE
  - confidential.gpu._attributes.ACTIONGROUP_CGPU
options:
  name:
    description: Name of the KataConfig.
    type: str
    required: true
  runtime_classes:
    description: Runtime classes that must exist (and be listed in the KataConfig's status) before it counts as done.
    type: list
    elements: str
    default: [kata, kata-cc]
  confidential:
    description: Whether the C(confidential) feature gate is on (then C(kata-cc) is checked against the nodes' TEE).
    type: bool
    default: true
  timeout:
    description: Seconds to wait in all. Each node drains and reboots, one at a time; OSC says 10 to 60 minutes.
    type: int
    default: 7200
  failure_grace:
    description: Seconds a failure reported in the C(InProgress) condition may last before the module gives up.
    type: int
    default: 120
  since:
    description: Internal, used by the action plugin to print progress; return as soon as the line differs from this one.
    type: str
  return_on_change:
    description: Internal, see O(since).
    type: bool
    default: false
requirements:
  - python >= 3.9
  - kubernetes >= 24.2.0
"""

EXAMPLES = r"""
- name: Wait for kata, kata-cc and the GPU class
  confidential.gpu.kata_config_wait:
    name: example-kataconfig
    runtime_classes: [kata, kata-cc, kata-cc-nvidia-gpu]
"""

RETURN = r"""
done:
  description: Whether the KataConfig is installed with every runtime class asked for.
  returned: always
  type: bool
line:
  description: The last progress line.
  returned: always
  type: str
progress:
  description: Every progress line printed, with the seconds since the start.
  returned: always
  type: list
  elements: str
problems:
  description: Runtime classes that are missing or differ from what OSC must create for the nodes' TEE.
  returned: always
  type: list
  elements: str
gpu_class_missing:
  description: True when C(kata-cc-nvidia-gpu) does not exist although selected nodes have GPUs.
  returned: always
  type: bool
tee:
  description: The TEE of the selected nodes (C(tdx), C(snp)), or null.
  returned: always
  type: str
pool:
  description: The MachineConfigPool OSC installs kata through.
  returned: always
  type: str
kata_nodes:
  description: C(status.kataNodes) of the KataConfig.
  returned: always
  type: dict
runtime_classes:
  description: Names of the runtime classes that exist.
  returned: always
  type: list
  elements: str
"""

import queue
import threading
import time

from ansible_collections.confidential.gpu.plugins.module_utils import kata_config as kc_utils
from ansible_collections.confidential.gpu.plugins.module_utils import machine_config as mcfg
from ansible_collections.confidential.gpu.plugins.module_utils._k8s import CgpuModule, CoreException

WATCHED = (("v1", "Node"), (mcfg.API_VERSION, "MachineConfigPool"), (kc_utils.API_VERSION, "KataConfig"),
           ("node.k8s.io/v1", "RuntimeClass"))


class KataConfigWait(CgpuModule):
    def state(self):
        p = self.params
        kc = self.get(kc_utils.API_VERSION, "KataConfig", p["name"])
        if kc is None:
            raise CoreException("KataConfig {0} does not exist".format(p["name"]))
        nodes = self.list("v1", "Node")[0]
        pools = self.list(mcfg.API_VERSION, "MachineConfigPool")[0]
        classes = self.list("node.k8s.io/v1", "RuntimeClass")[0]
        pool_name = kc_utils.pool_name(nodes)
        pool = next((x for x in pools if x["metadata"]["name"] == pool_name), None)
        rollout = None
        if pool is not None:
            members = mcfg.members(pools, nodes).get(pool_name, [])
            by_node = {n["metadata"]["name"]: n for n in nodes}
            rollout = mcfg.rollout(pool, [by_node[m] for m in members if m in by_node])
        result = kc_utils.assess(kc, nodes, rollout, classes, p["runtime_classes"], confidential=p["confidential"])
        result["pool"] = pool_name
        result["kata_nodes"] = (kc.get("status") or {}).get("kataNodes") or {}
        result["runtime_classes"] = sorted(rc["metadata"]["name"] for rc in classes)
        return result

    def execute_module(self):
        p = self.params
        deadline = time.monotonic() + p["timeout"]
        failing_since = None
        events = queue.Queue()
        stop = threading.Event()
        started = False
        try:
            while True:
                state = self.state()
                if state["fatal"]:
                    raise CoreException("{0}. Last seen: {1}".format(state["fatal"], state["line"]))
                if state["done"]:
                    return self.finish(state)
                now = time.monotonic()
                if state["failure"]:
                    failing_since = failing_since or now
                    if now - failing_since >= p["failure_grace"]:
                        raise CoreException("{0} (for {1}s). Last seen: {2}".format(
                            state["failure"], int(now - failing_since), state["line"]))
                else:
                    failing_since = None
                if p["return_on_change"] and state["line"] != (p["since"] or ""):
                    return self.finish(state)
                if now >= deadline:
                    raise CoreException("Timed out after {0}s waiting for KataConfig {1}; last seen: {2}".format(
                        p["timeout"], p["name"], state["line"]))
                if not started:
                    for api_version, kind in WATCHED:
                        threading.Thread(target=self.watch_into, args=(api_version, kind, events, stop, deadline),
                                         daemon=True).start()
                    started = True
                wake = deadline - now
                if failing_since is not None:
                    wake = min(wake, p["failure_grace"] - (now - failing_since))
                self.next_burst(events, wake)  # a burst of events: judge once, on the latest state
        finally:
            stop.set()

    def finish(self, state):
        self.exit_json(changed=False, **{k: state[k] for k in (
            "done", "line", "problems", "gpu_class_missing", "tee", "pool", "kata_nodes", "runtime_classes")})


def main():
    KataConfigWait(argument_spec={
        "name": {"type": "str", "required": True},
        "runtime_classes": {"type": "list", "elements": "str", "default": ["kata", "kata-cc"]},
        "confidential": {"type": "bool", "default": True},
        "timeout": {"type": "int", "default": 7200},
        "failure_grace": {"type": "int", "default": 120},
        "since": {"type": "str"},
        "return_on_change": {"type": "bool", "default": False},
    }, supports_check_mode=True).run()


if __name__ == "__main__":
    main()
