#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_operator_wait
short_description: Wait for the NVIDIA GPU operator's ClusterPolicy to be ready and every GPU to be advertised
version_added: 0.1.0
author:
  - confidential.gpu team (@confidential-gpu)
description:
  - Watches the ClusterPolicy until its C(status.state) is C(ready); at the deadline fails with the state, the
    operator's own message and the operand pods that are not ready (with their last error).
  - With O(expected_gpus), then watches the nodes until each one advertises exactly that many O(resource) as
    allocatable, and fails naming every node where the count differs from the GPUs found on the host.
  - Lists the ClusterPolicy (and the nodes) once, then follows one watch of each; prints a line whenever the state
    moves and at least every 30 seconds while it does not, and waits for an API server that stops answering for a
    while until the deadline.
  - Never changes anything.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - confidential.gpu._attributes
  - confidential.gpu._attributes.INFO_MODULE
  - confidential.gpu._attributes.ACTIONGROUP_CGPU
options:
  name:
    description: Name of the ClusterPolicy.
    type: str
    default: gpu-cluster-policy
  namespace:
    description: Namespace of the operator and its operand pods, used to explain a ClusterPolicy that is not ready.
    type: str
    default: nvidia-gpu-operator
  expected_gpus:
    description:
      - Devices expected per node (node name to count) - one per IOMMU group, as the sandbox device plugin
        advertises them, not one per GPU; for example the P(confidential.gpu.probe_gpu_counts#filter) of
        M(confidential.gpu.node_probe)'s result.
    type: dict
    default: {}
  resource:
    description: The extended resource the GPUs are advertised as (the ClusterPolicy's C(P_GPU_ALIAS)).
    type: str
    default: nvidia.com/pgpu
  timeout:
    description: Seconds to wait in all.
    type: int
    default: 900
  progress_file:
    description: Internal, a pipe the action plugin reads progress lines from while the module runs.
    type: str
requirements:
  - python >= 3.9
  - kubernetes >= 24.2.0
"""

EXAMPLES = r"""
- name: Wait for the GPU operator, and for each node to advertise the GPUs the probe found
  confidential.gpu.gpu_operator_wait:
    expected_gpus: {worker-0: 1, worker-1: 1}
"""

RETURN = r"""
state:
  description: C(status.state) of the ClusterPolicy.
  returned: always
  type: str
  sample: ready
line:
  description: One line on the ClusterPolicy.
  returned: always
  type: str
pgpu:
  description: Per node in O(expected_gpus), C(name), C(expected), C(allocatable) and C(ok).
  returned: always
  type: list
  elements: dict
progress:
  description: The lines said while waiting (each new state, heartbeats), with the seconds since the wait began.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.confidential.gpu.plugins.module_utils import gpu_operator as gpuop
from ansible_collections.confidential.gpu.plugins.module_utils._k8s import CgpuModule, CoreException

CP_API = "nvidia.com/v1"


class GpuOperatorWait(CgpuModule):
    def pods(self):
        return self.list("v1", "Pod", namespace=self.params["namespace"])[0]

    def execute_module(self):
        p = self.params
        if self.resource(CP_API, "ClusterPolicy") is None:
            self.fail_json(msg="the cluster does not serve ClusterPolicy (nvidia.com/v1): is the GPU operator installed?")
        policies = self.informer(CP_API, "ClusterPolicy", field_selector="metadata.name={0}".format(p["name"]))
        informers = [policies]
        expected = {k: int(v) for k, v in p["expected_gpus"].items()}
        if expected:
            nodes = self.informer("v1", "Node")
            informers.append(nodes)
        seen = {"policy": None, "ready": False, "report": [], "bad": []}

        def judge():
            policy = seen["policy"] = next(iter(policies.values()), None)
            seen["ready"], line = gpuop.policy_summary(policy)
            if not seen["ready"] or not expected:
                return seen["ready"], line
            mine = [o for o in nodes.values() if o["metadata"]["name"] in expected]
            seen["report"], seen["bad"] = gpuop.pgpu_report(mine, expected, p["resource"])
            return not seen["bad"], "{0}; {1}: {2}".format(line, p["resource"], "; ".join(seen["bad"]) or "all advertised")

        what = "ClusterPolicy {0} to be ready".format(p["name"])
        if expected:
            what += " and {0} on every GPU node".format(p["resource"])
        try:
            self.follow(informers, judge, p["timeout"], what)
        except CoreException as exc:
            if not str(exc).startswith("Timed out"):
                raise
            outage = str(exc).partition("; the API server")[2]
            outage = "; the API server" + outage if outage else ""
            if not seen["ready"]:
                line = gpuop.policy_summary(seen["policy"], self.pods())[1]
                self.fail_json(msg="Timed out after {0}s waiting for the GPU operator: {1}{2}".format(
                    p["timeout"], line, outage), progress=self.progress_lines)
            policy = seen["policy"] or {}
            self.fail_json(msg="{0} allocatable does not match the GPUs found: {1}{2}".format(
                p["resource"], "; ".join(seen["bad"]), outage), pgpu=seen["report"],
                state=(policy.get("status") or {}).get("state"), line=gpuop.policy_summary(policy)[1],
                progress=self.progress_lines)
        policy = seen["policy"] or {}
        self.exit_json(changed=False, state=(policy.get("status") or {}).get("state"),
                       line=gpuop.policy_summary(policy)[1], pgpu=seen["report"], progress=self.progress_lines)


def main():
    GpuOperatorWait(argument_spec={
        "name": {"type": "str", "default": "gpu-cluster-policy"},
        "namespace": {"type": "str", "default": "nvidia-gpu-operator"},
        "expected_gpus": {"type": "dict", "default": {}},
        "resource": {"type": "str", "default": "nvidia.com/pgpu"},
        "timeout": {"type": "int", "default": 900},
        "progress_file": {"type": "str"},
    }, supports_check_mode=True).run()


if __name__ == "__main__":
    main()
