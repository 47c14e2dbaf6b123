#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: teardown_plan
short_description: Say what a teardown of this collection's bring-up removes, in which order, and which nodes reboot
version_added: 0.1.0
author:
  - confidential.gpu team (@confidential-gpu)
description:
  - Reads what this collection made (objects labelled C(app.kubernetes.io/managed-by=confidential.gpu), the CSVs
    its Subscriptions installed, the operands in the namespaces it created, its C(confidential.gpu/) node labels
    and annotations) and returns the teardown as ordered stages, the reverse of the bring-up. Operators, namespaces
    and objects it did not make are left alone.
  - Says which nodes reboot and how often (OSC's uninstall moves the nodes of C(kata-oc) back to C(worker); host
    MachineConfigs of a pool that stays reboot its nodes once more).
  - Refuses, in RV(refusal), while pods still run in a kata runtime class, unless O(delete_workloads).
  - Never changes anything.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - confidential.gpu._attributes
  - confidential.gpu._attributes.INFO_MODULE
  - confidential.gpu._attributes.ACTIONGROUP_CGPU
options:
  delete_workloads:
    description: Plan to delete the pods that run in a kata runtime class instead of refusing.
    type: bool
    default: false
requirements:
  - python >= 3.9
  - kubernetes >= 24.2.0
seealso:
  - module: confidential.gpu.k8s_delete
"""

EXAMPLES = r"""
- name: What would a teardown remove?
  confidential.gpu.teardown_plan:
  register: plan

- name: Show it
  ansible.builtin.debug:
    var: plan.lines
"""

RETURN = r"""
stages:
  description: The stages in order; delete everything of a stage, wait until it is gone, then wait for its pools.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: What the stage removes, for example C(sandboxed_containers operands).
      type: str
      returned: always
    delete:
      description: The objects, each with C(api_version), C(kind), C(name) and, when namespaced, C(namespace).
      type: list
      elements: dict
      returned: always
    pools:
      description: MachineConfigPools that roll out once the stage's objects are gone.
      type: list
      elements: str
      returned: always
    absent_machine_configs:
      description: MachineConfigs the pools' targets must no longer include.
      type: list
      elements: str
      returned: always
node_patches:
  description: Merge patch per node name that removes this collection's labels and annotations.
  returned: always
  type: dict
reboots:
  description: How many times each node reboots for the teardown.
  returned: always
  type: dict
  sample: {worker-0: 1}
refusal:
  description: Why the teardown must not run (confidential pods still run), or null.
  returned: always
  type: str
objects:
  description: Every object the stages delete, in order, as C(Kind namespace/name).
  returned: always
  type: list
  elements: str
lines:
  description: The plan in words, one line per stage, then the node changes and the reboots.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.confidential.gpu.plugins.module_utils import teardown
from ansible_collections.confidential.gpu.plugins.module_utils._k8s import CgpuModule

SELECTOR = "{0}={1}".format(teardown.MANAGED_BY, teardown.MANAGER)


class TeardownPlan(CgpuModule):
    def execute_module(self):
        # One list per kind. A namespaced kind is listed whole, since an operator's own operands in a namespace we
        # made are ours without our label; plan() keeps only what is ours.
        found = {(api_version, kind): self.list(api_version, kind,
                                                label_selector=None if namespaced else SELECTOR)[0]
                 for api_version, kind, namespaced in teardown.KINDS}
        csvs = []
        for namespace in sorted({s["metadata"]["namespace"]
                                 for s in found[("operators.coreos.com/v1alpha1", "Subscription")]
                                 if teardown.owned(s)}):
            csvs += self.list("operators.coreos.com/v1alpha1", "ClusterServiceVersion", namespace=namespace)[0]
        pods = self.list("v1", "Pod")[0]
        pools = self.list("machineconfiguration.openshift.io/v1", "MachineConfigPool")[0]
        nodes = self.list("v1", "Node")[0]
        result = teardown.plan(found, pods, pools, nodes, delete_workloads=self.params["delete_workloads"], csvs=csvs)
        self.exit_json(changed=False, lines=teardown.summary(result, self.check_mode), **result)


def main():
    TeardownPlan(argument_spec={"delete_workloads": {"type": "bool", "default": False}},
                 supports_check_mode=True).run()


if __name__ == "__main__":
    main()
