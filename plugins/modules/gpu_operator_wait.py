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
      - GPUs found per node (node name to count), for example from M(confidential.gpu.node_probe).
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
"""

import time

from ansible_collections.confidential.gpu.plugins.module_utils import gpu_operator as gpuop
from ansible_collections.confidential.gpu.plugins.module_utils._k8s import CgpuModule, CoreException

CP_API = "nvidia.com/v1"


class GpuOperatorWait(CgpuModule):
    def pods(self):
        return self.list("v1", "Pod", namespace=self.params["namespace"])[0]

    def execute_module(self):
        p = self.params
        deadline = time.monotonic() + p["timeout"]
        if self.resource(CP_API, "ClusterPolicy") is None:
            self.fail_json(msg="the cluster does not serve ClusterPolicy (nvidia.com/v1): is the GPU operator installed?")
        seen = {}

        def ready(objects):
            policy = next(iter(objects.values()), None)
            done, line = gpuop.policy_summary(policy)
            seen["policy"] = policy
            return done, line

        try:
            self.watch_until(CP_API, "ClusterPolicy", ready, p["timeout"], "ClusterPolicy {0} to be ready".format(p["name"]),
                             field_selector="metadata.name={0}".format(p["name"]))
        except CoreException as exc:
            if "Timed out" not in str(exc):
                raise
            line = gpuop.policy_summary(self.get(CP_API, "ClusterPolicy", p["name"]), self.pods())[1]
            self.fail_json(msg="Timed out after {0}s waiting for the GPU operator: {1}".format(p["timeout"], line))
        policy = seen.get("policy") or {}
        line = gpuop.policy_summary(policy)[1]
        report = []
        if p["expected_gpus"]:
            expected = {k: int(v) for k, v in p["expected_gpus"].items()}
            names = set(expected)

            def advertised(objects):
                nodes = [o for o in objects.values() if o["metadata"]["name"] in names]
                rep, bad = gpuop.pgpu_report(nodes, expected, p["resource"])
                seen["report"], seen["bad"] = rep, bad
                return not bad, "; ".join(bad) or "all advertised"

            remaining = max(1, int(deadline - time.monotonic()))
            try:
                self.watch_until("v1", "Node", advertised, remaining, "{0} on every GPU node".format(p["resource"]))
            except CoreException as exc:
                if "Timed out" not in str(exc):
                    raise
                self.fail_json(msg="{0} allocatable does not match the GPUs found: {1}".format(
                    p["resource"], "; ".join(seen.get("bad") or [])), pgpu=seen.get("report", []),
                    state=(policy.get("status") or {}).get("state"), line=line)
            report = seen["report"]
        self.exit_json(changed=False, state=(policy.get("status") or {}).get("state"), line=line, pgpu=report)


def main():
    GpuOperatorWait(argument_spec={
        "name": {"type": "str", "default": "gpu-cluster-policy"},
        "namespace": {"type": "str", "default": "nvidia-gpu-operator"},
        "expected_gpus": {"type": "dict", "default": {}},
        "resource": {"type": "str", "default": "nvidia.com/pgpu"},
        "timeout": {"type": "int", "default": 900},
    }, supports_check_mode=True).run()


if __name__ == "__main__":
    main()
