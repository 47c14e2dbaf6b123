#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: preflight_facts
short_description: Read-only checks of whether an OpenShift cluster can run confidential GPUs, each a verdict with its fix
version_added: 0.1.0
author:
  - confidential.gpu team (@confidential-gpu)
description:
  - Reads the cluster (ClusterVersion, Infrastructure, nodes, NFD's NodeFeature objects, catalog sources, package
    manifests, OperatorGroups, PodDisruptionBudgets) and returns one verdict per check - C(pass), C(warn) or
    C(fail) - with a one-line summary, details and the fix.
  - Checks - OpenShift 4.21.9 or later; bare metal; one TEE type among the target nodes (and no TEE label a CPU
    vendor cannot have); GPUs CC-capable and tested (H100, RTX PRO 6000 Blackwell) or only listed upstream (warn);
    at least one target node with TEE and GPU; host firmware, from host facts when given (O(host_facts)); drain
    capacity (SNO, a single worker, PodDisruptionBudgets that would block drains); foreign OperatorGroups in the
    operators' namespaces; catalog sources ready and serving the packages; the egress Trustee needs (NRAS, Intel
    PCS, AMD KDS), as declared in O(egress).
  - Hardware facts come from Node Feature Discovery (labels, and NodeFeature objects for the GPU models). Before NFD
    has labelled the nodes those checks are C(warn), saying so, with the fix of running the C(confidential.gpu.nfd)
    role. A TEE that the CPU has but the kernel has not enabled yet (TDX before C(kvm_intel.tdx=1)) is a C(warn)
    too, as the API cannot tell it from a missing one.
  - Never changes anything (only GET, LIST and discovery requests).
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - confidential.gpu._attributes
  - confidential.gpu._attributes.INFO_MODULE
  - confidential.gpu._attributes.ACTIONGROUP_CGPU
options:
  node_selector:
    description: Equality-based label selector of the target nodes, those meant for confidential GPU workloads.
    type: str
    default: node-role.kubernetes.io/worker
  egress:
    description:
      - What the cluster that runs Trustee can reach. C(reachable) - direct egress; C(offline) - a local replacement
        is configured (Trustee's local NVIDIA verifier, a PCCS, an offline VCEK cache); C(blocked) - neither.
        Undeclared services that Trustee needs are a C(warn).
    type: dict
    default: {}
    suboptions:
      nras:
        description: NVIDIA Remote Attestation Service (GPU evidence).
        type: str
        choices: [reachable, offline, blocked]
      intel_pcs:
        description: Intel Provisioning Certification Service (TDX collateral).
        type: str
        choices: [reachable, offline, blocked]
      amd_kds:
        description: AMD Key Distribution Service (SEV-SNP VCEK).
        type: str
        choices: [reachable, offline, blocked]
  operators:
    description:
      - Per OLM package, where the collection installs it (C(namespace), C(operator_group), C(source)), when not the
        defaults of M(confidential.gpu.olm_operator).
    type: dict
    default: {}
  host_facts:
    description:
      - Per node name, the host facts of M(confidential.gpu.node_probe) (its C(nodes) result) or of
        M(confidential.gpu.tee_host_facts) run on each host. With them the C(host_firmware) check judges BIOS and
        firmware problems (TEE disabled in the BIOS, TDX module, RMP table, VMs) as the C(confidential.gpu.tee_hosts)
        role does; without them it warns that firmware was not checked.
      - Gathering them is not part of this module, which only reads the cluster - the node probe starts short-lived
        pods.
    type: dict
    default: {}
  workloads:
    description:
      - Pods or pod templates (Deployments, Jobs...) meant to run on confidential GPUs. The C(workloads) check refuses
        any that asks for more than one C(nvidia.com/pgpu) (one confidential GPU per pod), asks for one without the
        C(kata-cc-nvidia-gpu) runtime class, or requests one without an equal limit.
    type: list
    elements: dict
    default: []
  min_version:
    description: The lowest OpenShift version that passes, X.Y or X.Y.Z (refused before anything is read otherwise).
    type: str
    default: 4.21.9
requirements:
  - python >= 3.9
  - kubernetes >= 24.2.0
notes:
  - The connection options are kubernetes.core's; set them once for C(group/confidential.gpu.cgpu) in C(module_defaults).
  - Role C(confidential.gpu.preflight) prints the verdicts and writes them to a JSON file.
seealso:
  - module: confidential.gpu.cluster_info
"""

EXAMPLES = r"""
- name: Check the cluster before installing anything
  confidential.gpu.preflight_facts:
    egress:
      nras: reachable
      intel_pcs: offline
  register: preflight

- name: Stop on a failed check
  ansible.builtin.assert:
    that: preflight.overall != 'fail'
    fail_msg: "{{ preflight.summary_lines | join('\n') }}"
"""

RETURN = r"""
overall:
  description: C(fail) when any check fails, else C(warn) when any warns, else C(pass).
  returned: always
  type: str
  sample: warn
verdicts:
  description: One entry per check, in a fixed order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Identifier of the check, for example C(tee_type).
      type: str
      returned: always
    title:
      description: Human title.
      type: str
      returned: always
    status:
      description: C(pass), C(warn) or C(fail).
      type: str
      returned: always
    summary:
      description: One line saying what was found.
      type: str
      returned: always
    details:
      description: Per node or per object findings.
      type: list
      elements: str
      returned: always
    fix:
      description: What to do; empty on C(pass).
      type: str
      returned: always
cluster:
  description: Version, platform, topology and cluster ID.
  returned: always
  type: dict
nodes:
  description: The target nodes as NFD labelled them (vendor, TEE, GPU and its PCI device ids, hypervisor).
  returned: always
  type: list
  elements: dict
summary_lines:
  description: The readable summary, one line per check and the fix under each that did not pass.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.confidential.gpu.plugins.module_utils._k8s import CgpuModule
from ansible_collections.confidential.gpu.plugins.module_utils import arguments, preflight
from ansible_collections.confidential.gpu.plugins.module_utils.olm_state import MARKETPLACE

EGRESS_CHOICES = {"type": "str", "choices": list(preflight.EGRESS_VALUES)}
ARGUMENT_SPEC = {
    "node_selector": {"type": "str", "default": "node-role.kubernetes.io/worker"},
    "egress": {"type": "dict", "default": {}, "options": {k: dict(EGRESS_CHOICES) for k in preflight.EGRESS}},
    "operators": {"type": "dict", "default": {}},
    "host_facts": {"type": "dict", "default": {}},
    "workloads": {"type": "list", "elements": "dict", "default": []},
    "min_version": {"type": "str", "default": preflight.MIN_VERSION},
}


class PreflightFacts(CgpuModule):
    def execute_module(self):
        p = self.params
        # A floor that is no version cannot be compared with the cluster's (it was a TypeError traceback).
        problem = arguments.problem("min_version", p["min_version"], "version")
        if problem:
            self.fail_json(msg=problem)
        operators = preflight.operators_for(p["operators"])
        namespaces = {o["namespace"] for o in operators}
        groups = [g for g in self.list("operators.coreos.com/v1", "OperatorGroup")[0]
                  if g["metadata"].get("namespace") in namespaces]
        manifests = [m for m in self.list("packages.operators.coreos.com/v1", "PackageManifest", namespace=MARKETPLACE)[0]
                     if m["metadata"]["name"] in {o["name"] for o in operators}]
        report = preflight.evaluate(
            cluster_version=self.get("config.openshift.io/v1", "ClusterVersion", "version"),
            infrastructure=self.get("config.openshift.io/v1", "Infrastructure", "cluster"),
            nodes=self.list("v1", "Node")[0],
            node_features=self.list("nfd.k8s-sigs.io/v1alpha1", "NodeFeature")[0],
            catalogs=self.list("operators.coreos.com/v1alpha1", "CatalogSource", namespace=MARKETPLACE)[0],
            manifests=manifests,
            operator_groups=groups,
            pdbs=self.list("policy/v1", "PodDisruptionBudget")[0],
            node_selector=p["node_selector"],
            egress={k: v for k, v in (p["egress"] or {}).items() if v},
            operators=operators,
            minimum=p["min_version"],
            host_facts=p["host_facts"],
            workloads=p["workloads"],
        )
        self.exit_json(changed=False, summary_lines=preflight.summary_lines(report), **report)


def main():
    PreflightFacts(argument_spec=ARGUMENT_SPEC, supports_check_mode=True).run()


if __name__ == "__main__":
    main()
