#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: node_probe
short_description: Read the TEE, IOMMU and GPU facts of OpenShift nodes from a short-lived pod on each
version_added: 0.1.0
author:
  - confidential.gpu team (@confidential-gpu)
description:
  - Starts one privileged pod per node, bound to the node by name, with the host's C(/) mounted read-only at
    C(/host). The pod runs the collection's C(host_facts) code, the same code that reads a RHEL host over SSH,
    and prints the facts as one JSON line; the module reads the pod logs, deletes the pods and returns the
    facts per node.
  - The code travels to the pod in a ConfigMap, so any image with C(python3) works; nothing is installed on the host.
  - Reads the kernel log from C(/dev/kmsg) for the firmware markers (TDX module initialised, SEV-SNP RMP table,
    IOMMU), the loaded kernel modules, and the files named in O(files).
  - Never changes a node. It creates, and deletes again, the pods and the ConfigMap, and the namespace if it is
    missing; it runs in check mode too, as gathering facts does.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - confidential.gpu._attributes
  - confidential.gpu._attributes.INFO_MODULE
  - confidential.gpu._attributes.ACTIONGROUP_CGPU
options:
  nodes:
    description:
      - Names of the nodes to probe. When empty, every node matching O(node_selector).
    type: list
    elements: str
    default: []
  node_selector:
    description:
      - Label selector of the nodes to probe when O(nodes) is empty.
    type: str
    default: node-role.kubernetes.io/worker
  namespace:
    description:
      - Namespace of the probe pods. Created when missing, labelled for privileged pods (Pod Security) and with an
        empty project node selector, so that OpenShift's default node selector does not keep pods off any node.
    type: str
    default: confidential-gpu-probe
  image:
    description:
      - Image with C(python3) (3.6 or later) that runs the probe. Only the standard library is used.
    type: str
    default: registry.access.redhat.com/ubi9/python-312:latest
  files:
    description:
      - Absolute paths on the host whose content is returned in the C(files) of RV(nodes) (up to 16 KiB each).
    type: list
    elements: str
    default: []
  timeout:
    description:
      - Seconds to wait for all probe pods to finish.
    type: int
    default: 300
requirements:
  - python >= 3.9
  - kubernetes >= 24.2.0
notes:
  - The user needs to create privileged pods (cluster-admin does). A node that is down keeps its pod Pending
    and the module fails at O(timeout), naming the node.
seealso:
  - module: confidential.gpu.machine_config_pool_info
"""

EXAMPLES = r"""
- name: Probe every worker
  confidential.gpu.node_probe:
  register: probe

- name: Show what each worker says about TDX
  ansible.builtin.debug:
    msg: "{{ item.key }}: TDX enabled {{ item.value.tee.enabled }}"
  loop: "{{ probe.nodes | dict2items }}"

- name: Probe two nodes and read a file MachineConfigs write
  confidential.gpu.node_probe:
    nodes: [worker-0, worker-1]
    files: [/etc/modules-load.d/vsock.conf]
    image: registry.example.com/mirror/ubi9/python-312:latest
"""

RETURN = r"""
nodes:
  description:
    - Facts per node name, as C(host_facts) reports them (C(cpu), C(kernel), C(tee), C(iommu), C(gpus), C(dmi),
      C(dmesg), C(verdicts), C(ready)), plus C(modules) (loaded kernel modules) and C(files) (path to content or null).
  returned: always
  type: dict
  sample: {"worker-0": {"tee": {"type": "tdx", "enabled": true}, "iommu": {"enabled": true, "groups": 2}, "ready": true}}
failed_nodes:
  description: Nodes whose probe pod failed or printed no result, with what was seen.
  returned: always
  type: dict
  sample: {"worker-2": "pod Failed: no probe result in the log (empty)"}
image:
  description: The image the probe pods ran.
  returned: always
  type: str
"""

import uuid

from ansible_collections.confidential.gpu.plugins.module_utils import gpu_facts, host_facts, node_probe
from ansible_collections.confidential.gpu.plugins.module_utils._k8s import (
    CgpuModule,
    CoreException,
    api_error_message,
)

try:
    from kubernetes.dynamic.exceptions import DynamicApiError
except ImportError:  # reported by CgpuModule
    DynamicApiError = Exception

NAMESPACE_LABELS = {
    "pod-security.kubernetes.io/enforce": "privileged",
    "pod-security.kubernetes.io/audit": "privileged",
    "pod-security.kubernetes.io/warn": "privileged",
    "security.openshift.io/scc.podSecurityLabelSync": "false",
}


def _source(module):
    loader = getattr(module, "__loader__", None)
    text = loader.get_source(module.__name__) if loader is not None and hasattr(loader, "get_source") else None
    if text is None:
        with open(module.__file__, encoding="utf-8") as handle:
            text = handle.read()
    return text


class NodeProbe(CgpuModule):
    def execute_module(self):
        p = self.params
        namespace = p["namespace"]
        nodes = self._nodes()
        if not nodes:
            self.exit_json(changed=False, nodes={}, failed_nodes={}, image=p["image"])
        dyn = self.client.client  # the dynamic client itself: probe pods are real in check mode too
        self._namespace(dyn, namespace)
        sources = {"node_probe": _source(node_probe), "host_facts": _source(host_facts), "gpu_facts": _source(gpu_facts)}
        cm = node_probe.configmap(namespace, sources)
        cms = self.resource("v1", "ConfigMap", fail=True)
        pods = self.resource("v1", "Pod", fail=True)
        run_id = uuid.uuid4().hex[:12]
        names = {node: node_probe.pod_name(node) for node in nodes}
        try:
            self._create(dyn, cms, cm, namespace)
            for node in nodes:
                self._delete(dyn, pods, names[node], namespace, wait=True)
                self._create(dyn, pods, node_probe.pod(node, namespace, p["image"], cm["metadata"]["name"], run_id,
                                                       p["files"], deadline=p["timeout"]), namespace)

            def finished(objects):
                phases = {o["spec"].get("nodeName"): (o.get("status") or {}).get("phase", "Pending")
                          for o in objects.values()}
                done = all(phases.get(n) in ("Succeeded", "Failed") for n in nodes)
                return done, ", ".join("{0} {1}".format(n, phases.get(n, "absent")) for n in nodes)

            found = self.watch_until("v1", "Pod", finished, p["timeout"], "the probe pods to finish",
                                     namespace=namespace, label_selector="{0}={1}".format(node_probe.RUN_LABEL, run_id))
            by_node = {o["spec"].get("nodeName"): o for o in found.values()}
            facts, failed = {}, {}
            for node in nodes:
                phase = (by_node[node].get("status") or {}).get("phase")
                try:
                    log = pods.log.get(name=names[node], namespace=namespace, container="probe",
                                       serialize=False).data.decode("utf-8", "replace")
                except DynamicApiError as exc:
                    failed[node] = "pod {0}: its log could not be read: {1}".format(phase, api_error_message(exc))
                    continue
                try:
                    result = node_probe.parse_log(log)
                except ValueError as exc:
                    failed[node] = "pod {0}: {1}".format(phase, exc)
                    continue
                if "error" in result and len(result) == 1:
                    failed[node] = "probe failed: " + result["error"]
                    continue
                facts[node] = result
        finally:
            for node in nodes:
                self._delete(dyn, pods, names[node], namespace)
            self._delete(dyn, cms, cm["metadata"]["name"], namespace)
        if failed:
            self.fail_json(msg="The probe failed on {0}: {1}".format(
                ", ".join(sorted(failed)), "; ".join("{0}: {1}".format(k, v) for k, v in sorted(failed.items()))),
                nodes=facts, failed_nodes=failed, image=p["image"])
        self.exit_json(changed=False, nodes=facts, failed_nodes={}, image=p["image"])

    def _nodes(self):
        if self.params["nodes"]:
            missing = [n for n in self.params["nodes"] if self.get("v1", "Node", n) is None]
            if missing:
                raise CoreException("No such node: {0}".format(", ".join(missing)))
            return list(self.params["nodes"])
        items = self.list("v1", "Node", label_selector=self.params["node_selector"])[0]
        return sorted(i["metadata"]["name"] for i in items)

    def _namespace(self, dyn, namespace):
        resource = self.resource("v1", "Namespace", fail=True)
        if self.get("v1", "Namespace", namespace) is not None:
            return
        self._create(dyn, resource, {"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": namespace, "labels": dict(NAMESPACE_LABELS, **{"app.kubernetes.io/managed-by": "confidential.gpu"}),
            "annotations": {"openshift.io/node-selector": ""}}}, None)

    def _create(self, dyn, resource, body, namespace):
        try:
            dyn.create(resource, body=body, namespace=namespace)
        except DynamicApiError as exc:
            if getattr(exc, "status", None) != 409:
                raise CoreException("Failed to create {0} {1}: {2}".format(
                    body["kind"], body["metadata"]["name"], api_error_message(exc)))

    def _delete(self, dyn, resource, name, namespace, wait=False):
        try:
            dyn.delete(resource, name=name, namespace=namespace, body={"gracePeriodSeconds": 0,
                                                                       "propagationPolicy": "Background"})
        except DynamicApiError as exc:
            if getattr(exc, "status", None) == 404:
                return
            raise CoreException("Failed to delete {0}: {1}".format(name, api_error_message(exc)))
        if wait:
            self.watch_until("v1", resource.kind, lambda found: (not found, "{0} still there".format(name)), 60,
                             "{0} to be deleted".format(name), namespace=namespace,
                             field_selector="metadata.name={0}".format(name))


def main():
    NodeProbe(
        argument_spec={
            "nodes": {"type": "list", "elements": "str", "default": []},
            "node_selector": {"type": "str", "default": "node-role.kubernetes.io/worker"},
            "namespace": {"type": "str", "default": "confidential-gpu-probe"},
            "image": {"type": "str", "default": "registry.access.redhat.com/ubi9/python-312:latest"},
            "files": {"type": "list", "elements": "str", "default": []},
            "timeout": {"type": "int", "default": 300},
        },
        supports_check_mode=True,
    ).run()


if __name__ == "__main__":
    main()
