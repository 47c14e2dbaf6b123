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
  - Lists the KataConfig, nodes, pools and runtime classes once, then follows one watch of each (however long the
    rollout takes, the requests grow with the changes only); says what it waits for at least every 30 seconds; an API
    server that stops answering for a while is waited for until the deadline.
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

import time

from ansible_collections.confidential.gpu.plugins.module_utils import kata_config as kc_utils
from ansible_collections.confidential.gpu.plugins.module_utils import machine_config as mcfg
from ansible_collections.confidential.gpu.plugins.module_utils._k8s import CgpuModule, CoreException


class KataConfigWait(CgpuModule):
    def state(self, kc, nodes, pools, classes):
        """Where the installation stands, from the objects the watches keep (machine_config and kata_config decide)."""
        p = self.params
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
        kcs = self.informer(kc_utils.API_VERSION, "KataConfig", field_selector="metadata.name={0}".format(p["name"]))
        nodes = self.informer("v1", "Node")
        pools = self.informer(mcfg.API_VERSION, "MachineConfigPool")
        classes = self.informer("node.k8s.io/v1", "RuntimeClass")
        seen = {"failing_since": None, "state": None}

        def judge():
            kc = next(iter(kcs.objects.values()), None)
            if kc is None:
                raise CoreException("KataConfig {0} does not exist".format(p["name"]))
            state = seen["state"] = self.state(kc, nodes.values(), pools.values(), classes.values())
            if state["fatal"]:
                raise CoreException("{0}. Last seen: {1}".format(state["fatal"], state["line"]))
            if state["done"]:
                return True, state["line"]
            now = time.monotonic()
            if state["failure"]:
                seen["failing_since"] = seen["failing_since"] or now
                if now - seen["failing_since"] >= p["failure_grace"]:
                    raise CoreException("{0} (for {1}s). Last seen: {2}".format(
                        state["failure"], int(now - seen["failing_since"]), state["line"]))
            else:
                seen["failing_since"] = None
            return p["return_on_change"] and state["line"] != (p["since"] or ""), state["line"]

        def grace_left():
            if seen["failing_since"] is None:
                return None
            return p["failure_grace"] - (time.monotonic() - seen["failing_since"])

        try:
            self.follow([kcs, nodes, pools, classes], judge, p["timeout_total"] or p["timeout"],
                        "KataConfig {0}".format(p["name"]), deadline=time.monotonic() + p["timeout"],
                        recheck=grace_left)
        except CoreException as exc:
            self.fail_json(msg=str(exc), progress=self.progress_lines, line=(seen["state"] or {}).get("line", ""))
        self.finish(seen["state"])

    def finish(self, state):
        self.exit_json(changed=False, progress=self.progress_lines, **{k: state[k] for k in (
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
        "timeout_total": {"type": "int"},
        "progress_file": {"type": "str"},
    }, supports_check_mode=True).run()


if __name__ == "__main__":
    main()
