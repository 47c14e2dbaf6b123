#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_info
short_description: Describe an OpenShift cluster as confidential GPU workloads see it
version_added: 0.1.0
author:
  - confidential.gpu team (@confidential-gpu)
description:
  - Reads the OpenShift version (C(ClusterVersion)), the platform (C(Infrastructure)), every node with its roles,
    CPU TEE labels, GPU labels and C(nvidia.com/pgpu) allocatable, the installed operators (ClusterServiceVersions),
    and the runtime classes.
  - Returns a short verdict listing what the cluster still needs for confidential GPU pods.
  - Never changes anything on the cluster.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - confidential.gpu._attributes
  - confidential.gpu._attributes.INFO_MODULE
  - confidential.gpu._attributes.ACTIONGROUP_CGPU
options: {}
requirements:
  - python >= 3.9
  - kubernetes >= 24.2.0
  - PyYAML >= 3.11
notes:
  - The connection options are kubernetes.core's; set them once for C(group/confidential.gpu.cgpu) in C(module_defaults).
  - Kinds the cluster does not serve (no OLM on a plain Kubernetes cluster, for instance) are reported as empty,
    and the verdict says what is missing.
seealso:
  - module: kubernetes.core.k8s_cluster_info
"""

EXAMPLES = r"""
- name: Describe the cluster
  confidential.gpu.cluster_info:
  register: cluster

- name: Stop early when the cluster cannot run confidential GPUs
  ansible.builtin.assert:
    that: cluster.openshift_version is version('4.21.9', '>=')
    fail_msg: "OpenShift {{ cluster.openshift_version }} is too old"

- name: Use an explicit kubeconfig and context
  confidential.gpu.cluster_info:
    kubeconfig: ~/.kube/lab.yaml
    context: lab-admin
"""

RETURN = r"""
openshift_version:
  description: The OpenShift version the cluster runs (last completed update), or null on plain Kubernetes.
  returned: always
  type: str
  sample: 4.21.9
platform:
  description: Infrastructure platform type.
  returned: always
  type: str
  sample: BareMetal
control_plane_topology:
  description: C(HighlyAvailable), C(SingleReplica) or C(External).
  returned: always
  type: str
  sample: HighlyAvailable
nodes:
  description: Every node with what matters for confidential GPUs.
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
    ready:
      description: Whether the Ready condition is True.
      type: bool
      returned: always
    schedulable:
      description: False when the node is cordoned.
      type: bool
      returned: always
    tee:
      description: Enabled CPU TEE types from NFD labels, V(tdx) or V(snp).
      type: list
      elements: str
      returned: always
    tee_labels:
      description: The CPU-security and OSC TEE labels as found.
      type: dict
      returned: always
    gpu_present:
      description: Whether an NVIDIA GPU label is present.
      type: bool
      returned: always
    gpu_labels:
      description: Every C(nvidia.com/*) and NVIDIA PCI label.
      type: dict
      returned: always
    cc_mode_state:
      description: Value of C(nvidia.com/cc.mode.state).
      type: str
      returned: always
    cc_ready_state:
      description: Value of C(nvidia.com/cc.ready.state).
      type: str
      returned: always
    pgpu_allocatable:
      description: Allocatable C(nvidia.com/pgpu).
      type: int
      returned: always
operators:
  description: Installed operators (ClusterServiceVersions, OLM copies left out).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: CSV name.
      type: str
      returned: always
    namespace:
      description: Namespace of the CSV.
      type: str
      returned: always
    package:
      description: OLM package when it is one this collection manages, otherwise null.
      type: str
      returned: always
    version:
      description: CSV version.
      type: str
      returned: always
    phase:
      description: CSV phase, for example V(Succeeded).
      type: str
      returned: always
runtime_classes:
  description: Runtime classes with handler, scheduling node selector and overhead.
  returned: always
  type: list
  elements: dict
missing:
  description: What confidential GPU pods still need on this cluster, one sentence each; empty when ready.
  returned: always
  type: list
  elements: str
  sample: ["operator NVIDIA GPU Operator (gpu-operator-certified) is not installed"]
ready_for_confidential_gpus:
  description: True when nothing is missing.
  returned: always
  type: bool
"""

from ansible_collections.confidential.gpu.plugins.module_utils._k8s import CgpuModule
from ansible_collections.confidential.gpu.plugins.module_utils.cluster_facts import summarize


class ClusterInfo(CgpuModule):
    def execute_module(self):
        cluster_version = self.get("config.openshift.io/v1", "ClusterVersion", "version")
        infrastructure = self.get("config.openshift.io/v1", "Infrastructure", "cluster")
        nodes = self.list("v1", "Node")[0]
        csvs = self.list("operators.coreos.com/v1alpha1", "ClusterServiceVersion")[0]
        runtime_classes = self.list("node.k8s.io/v1", "RuntimeClass")[0]
        self.exit_json(changed=False, **summarize(cluster_version, infrastructure, nodes, csvs, runtime_classes))


def main():
    ClusterInfo(argument_spec={}, supports_check_mode=True).run()


if __name__ == "__main__":
    main()
