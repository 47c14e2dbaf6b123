#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: machine_config_pool_info
short_description: Describe a MachineConfigPool, the nodes in it and the MachineConfigs it selects
version_added: 0.1.0
author:
  - confidential.gpu team (@confidential-gpu)
description:
  - Reads one MachineConfigPool, every node and every MachineConfig, and says which nodes belong to the pool the
    way the Machine Config Operator decides it (a node matching master stays in master; a node matching one custom
    pool, such as OSC's C(kata-oc), leaves worker for it), which MachineConfigs the pool selects, and where its
    rollout stands, in one line.
  - For a pool that does not exist yet (C(kata-oc) before the KataConfig), reports the nodes matching
    O(node_selector) and the MachineConfigs a custom pool would select (its own role and C(worker)), so that
    configuration can be prepared before the pool is created.
  - Never changes anything.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - confidential.gpu._attributes
  - confidential.gpu._attributes.INFO_MODULE
  - confidential.gpu._attributes.ACTIONGROUP_CGPU
options:
  name:
    description: Name of the MachineConfigPool, for example C(worker) or C(kata-oc).
    type: str
    required: true
  node_selector:
    description:
      - Labels of the nodes that will join the pool, used only when the pool does not exist.
    type: dict
    default: {node-role.kubernetes.io/worker: ""}
requirements:
  - python >= 3.9
  - kubernetes >= 24.2.0
"""

EXAMPLES = r"""
- name: Which nodes does the worker pool hold, and is it settled?
  confidential.gpu.machine_config_pool_info:
    name: worker
  register: pool

- name: Prepare for kata-oc before OSC creates it
  confidential.gpu.machine_config_pool_info:
    name: kata-oc
    node_selector: {kata-cc: "true"}
  register: kata
"""

RETURN = r"""
exists:
  description: Whether the pool exists.
  returned: always
  type: bool
paused:
  description: Whether the pool is paused (C(spec.paused)).
  returned: always
  type: bool
paused_by_collection:
  description: True when this collection paused the pool and a run was interrupted before it unpaused it.
  returned: always
  type: bool
members:
  description: Names of the nodes in the pool (or that would join it), sorted.
  returned: always
  type: list
  elements: str
machine_configs:
  description: Names of the MachineConfigs the pool selects (or would select), sorted; rendered ones left out.
  returned: always
  type: list
  elements: str
target:
  description: The rendered config the pool targets (C(spec.configuration.name)); null when the pool is absent.
  returned: always
  type: str
rollout:
  description:
    - "C(done), C(degraded), C(paused), C(line) (for example V(worker: 2/3 nodes updated, worker-1 rebooting)),
      C(nodes) (phase per node), C(message) (why the pool is degraded)."
  returned: always
  type: dict
problems:
  description: Nodes the MCO will not manage (in two custom pools).
  returned: always
  type: list
  elements: str
"""

from ansible_collections.confidential.gpu.plugins.module_utils import machine_config as mcfg
from ansible_collections.confidential.gpu.plugins.module_utils._k8s import CgpuModule


class MachineConfigPoolInfo(CgpuModule):
    def execute_module(self):
        pools = self.list(mcfg.API_VERSION, "MachineConfigPool")[0]
        nodes = self.list("v1", "Node")[0]
        configs = self.list(mcfg.API_VERSION, "MachineConfig")[0]
        self.exit_json(changed=False, **mcfg.describe(self.params["name"], self.params["node_selector"],
                                                      pools, nodes, configs))


def main():
    MachineConfigPoolInfo(argument_spec={
        "name": {"type": "str", "required": True},
        "node_selector": {"type": "dict", "default": {"node-role.kubernetes.io/worker": ""}},
    }, supports_check_mode=True).run()


if __name__ == "__main__":
    main()
