#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: wait_for_nodes
short_description: Wait by watching until nodes carry the labels NFD should give them, and check the TEE labels make sense
version_added: 0.1.0
author:
  - confidential.gpu team (@confidential-gpu)
description:
  - Watches the nodes (one list, then the API's watch; no polling) until every node that O(label_selector) selects
    carries O(labels), and at least O(min_nodes) are selected.
  - With O(require_tee), each selected node must also carry the TEE labels its CPU vendor can have (NFD's
    C(cpu-security.tdx.enabled) and OSC's C(intel.feature.node.kubernetes.io/tdx) on Intel, the SEV-SNP pair on AMD).
  - With O(check_tee) (the default) it fails as soon as the selected nodes show two TEE types (OpenShift sandboxed
    containers supports one per cluster) or any node carries a TEE label its CPU vendor cannot have (typically a
    NodeFeatureRule without a vendor guard, or one whose misspelled matcher NFD ignored so that it matches every node).
  - Never changes anything.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - confidential.gpu._attributes
  - confidential.gpu._attributes.INFO_MODULE
  - confidential.gpu._attributes.ACTIONGROUP_CGPU
options:
  label_selector:
    description: Equality-based label selector of the nodes to wait for (C(key=value), C(key!=value), C(key), C(!key)).
    type: str
    default: node-role.kubernetes.io/worker
  labels:
    description:
      - Labels every selected node must carry. A null or empty value means any value.
    type: dict
    default: {}
  min_nodes:
    description: Fewest nodes the selector must select.
    type: int
    default: 1
  require_tee:
    description: Every selected node must also carry the TEE labels of its CPU vendor.
    type: bool
    default: false
  check_tee:
    description: Fail on two TEE types among the selected nodes, or a TEE label on a node whose vendor cannot have it.
    type: bool
    default: true
  timeout:
    description: Seconds to wait.
    type: int
    default: 300
  progress_file:
    description: Internal, a pipe the action plugin reads progress lines from while the module runs.
    type: str
requirements:
  - python >= 3.9
  - kubernetes >= 24.2.0
notes:
  - The connection options are kubernetes.core's; set them once for C(group/confidential.gpu.cgpu) in C(module_defaults).
  - Lists the nodes once, then follows the watch; prints a line whenever the labels move and at least every 30 seconds
    while they do not, and waits for an API server that stops answering for a while until the deadline.
seealso:
  - module: kubernetes.core.k8s_info
"""

EXAMPLES = r"""
- name: Wait until NFD has labelled the workers with their CPU vendor
  confidential.gpu.wait_for_nodes:
    labels:
      feature.node.kubernetes.io/cpu-model.vendor_id:

- name: Wait for TDX on the GPU workers after the host reboot
  confidential.gpu.wait_for_nodes:
    label_selector: feature.node.kubernetes.io/pci-10de.present=true
    require_tee: true
    timeout: 3600
  register: tee_nodes
"""

RETURN = r"""
nodes:
  description: The selected nodes as NFD labelled them.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Node name.
      type: str
      returned: always
    roles:
      description: Roles from C(node-role.kubernetes.io/*) labels.
      type: list
      elements: str
      returned: always
    vendor:
      description: NFD's CPU vendor (C(Intel), C(AMD)) or null before NFD ran.
      type: str
      returned: always
    tee:
      description: TEE types the labels claim (C(tdx), C(snp), C(se)).
      type: list
      elements: str
      returned: always
    tee_labels:
      description: The TEE labels found.
      type: dict
      returned: always
    gpu:
      description: Whether an NVIDIA GPU label is true, C(feature.node.kubernetes.io/pci-10de.present),
        C(pci-0302_10de.present) or C(pci-0300_10de.present), as the GPU operator takes them.
      type: bool
      returned: always
    hypervisor:
      description: Whether NFD saw a hypervisor (the node is a VM).
      type: bool
      returned: always
    kata:
      description: Whether C(feature.node.kubernetes.io/runtime.kata) is true.
      type: bool
      returned: always
    tee_resources:
      description: TEE extended resources in the node's capacity.
      type: dict
      returned: always
progress:
  description: The lines said while waiting (each new state, heartbeats), with the seconds since the wait began.
  returned: always
  type: list
  elements: str
tee_types:
  description: TEE types among the selected nodes.
  returned: always
  type: list
  elements: str
  sample: [tdx]
cpu_vendors:
  description: CPU vendors among the selected nodes.
  returned: always
  type: list
  elements: str
  sample: [Intel]
"""

from ansible_collections.confidential.gpu.plugins.module_utils._k8s import CgpuModule, CoreException
from ansible_collections.confidential.gpu.plugins.module_utils import nfd_labels

ARGUMENT_SPEC = {
    "label_selector": {"type": "str", "default": "node-role.kubernetes.io/worker"},
    "labels": {"type": "dict", "default": {}},
    "min_nodes": {"type": "int", "default": 1},
    "require_tee": {"type": "bool", "default": False},
    "check_tee": {"type": "bool", "default": True},
    "timeout": {"type": "int", "default": 300},
    "progress_file": {"type": "str"},
}


class WaitForNodes(CgpuModule):
    def execute_module(self):
        p = self.params
        terms = nfd_labels.parse_selector(p["label_selector"])
        wanted = {k: (None if v in (None, "") else str(v)) for k, v in p["labels"].items()}
        found = {}

        def condition(objects):
            everyone = [nfd_labels.node_view(n) for n in objects.values()]
            targets = sorted((v for v in everyone if nfd_labels.selected(v["labels"], terms)), key=lambda v: v["name"])
            found["targets"] = targets
            found["problems"] = nfd_labels.problems(targets, everyone) if p["check_tee"] else []
            if found["problems"]:
                return True, "; ".join(found["problems"])
            seen = nfd_labels.describe(targets, wanted, p["require_tee"])
            if len(targets) < p["min_nodes"]:
                return False, "{0} of at least {1} nodes selected by {2!r}: {3}".format(
                    len(targets), p["min_nodes"], p["label_selector"], seen)
            done = all(not nfd_labels.missing(v, wanted, p["require_tee"]) for v in targets)
            return done, seen

        try:
            # All nodes, not only the selected ones: a contradiction on any node is worth failing for.
            self.watch_until("v1", "Node", condition, p["timeout"],
                             "nodes selected by {0!r} to carry the expected labels".format(p["label_selector"]))
        except CoreException as exc:
            self.fail_json(msg=str(exc), progress=self.progress_lines, **self.facts(found.get("targets", [])))
        if found["problems"]:
            self.fail_json(msg="NFD's labels contradict what the cluster can run: " + "; ".join(found["problems"]),
                           progress=self.progress_lines, **self.facts(found["targets"]))
        self.exit_json(changed=False, progress=self.progress_lines, **self.facts(found["targets"]))

    @staticmethod
    def facts(targets):
        keys = ("name", "roles", "vendor", "tee", "tee_labels", "gpu", "hypervisor", "kata", "tee_resources")
        return {
            "nodes": [{k: v[k] for k in keys} for v in targets],
            "tee_types": nfd_labels.tee_types(targets),
            "cpu_vendors": sorted({v["vendor"] for v in targets if v["vendor"]}),
        }


def main():
    WaitForNodes(argument_spec=ARGUMENT_SPEC, supports_check_mode=True).run()


if __name__ == "__main__":
    main()
