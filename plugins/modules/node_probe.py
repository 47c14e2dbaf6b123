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
  - Never changes a host. It creates, and deletes again, the pods and the ConfigMap, and the namespace if it is
    missing.
  - Keeps each node's facts on the Node, in the annotation C(confidential.gpu/host-facts), with what they depend on
    - the node's boot ID (a new one at every boot), the C(nvidia.com/) resources the node advertises (the GPU
    operator binds GPUs to vfio-pci without a reboot, and its device plugin then advertises them) and the probe's
    code. A later run whose node shows the same reads the facts from there and starts no pod (RV(cached)); so a
    re-run on configured hosts writes nothing. O(cache=false) always probes.
  - In check mode it writes nothing - no pod, ConfigMap, namespace or annotation. Nodes with kept facts are
    answered from them; the others are listed in RV(would_probe) with no facts.
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
  cache:
    description:
      - Use the facts kept on a node when its boot ID, GPU resources and the probe's code are what they were when
        they were taken, and keep the facts of every node probed.
      - With V(false) every node is probed and nothing is kept.
    type: bool
    default: true
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

- name: Probe again even when the node has facts from this boot
  confidential.gpu.node_probe:
    nodes: [worker-0]
    cache: false

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
  description: The image the probe pods ran (or would run).
  returned: always
  type: str
cached:
  description: Nodes answered from the facts kept on them, without a pod.
  returned: always
  type: list
  elements: str
  sample: ["worker-0", "worker-1"]
probed:
  description: Nodes probed by a pod in this run.
  returned: always
  type: list
  elements: str
would_probe:
  description:
    - In check mode, the nodes a probe pod would start on (no facts kept for their current boot); they are not in
      RV(nodes).
  returned: always
  type: list
  elements: str
  sample: ["worker-2"]
"""

import uuid

from ansible_collections.confidential.gpu.plugins.module_utils import gpu_facts, host_facts, node_probe
from ansible_collections.confidential.gpu.plugins.module_utils._k8s import CgpuModule, CoreException

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
        nodes = self._nodes()
        sources = {"node_probe": _source(node_probe), "host_facts": _source(host_facts), "gpu_facts": _source(gpu_facts)}
        code = node_probe.code_digest(sources)
        keys = {name: node_probe.cache_key(obj, code) for name, obj in nodes.items()}
        facts = {}
        if p["cache"]:
            for name, obj in nodes.items():
                found = node_probe.cached_facts(obj, keys[name], p["files"])
                if found is not None:
                    facts[name] = found
        cached = sorted(facts)
        todo = [n for n in sorted(nodes) if n not in facts]
        result = {"changed": False, "image": p["image"], "cached": cached, "probed": [], "would_probe": []}
        if todo and self.check_mode:
            # A probe is pods and a ConfigMap (and maybe a namespace): writes, so check mode only says it would.
            result["would_probe"] = todo
            self.exit_json(nodes=facts, failed_nodes={}, **result)
        failed = {}
        if todo:
            # The facts kept on a node hold these files too: a new probe reads them again, so no reader loses them.
            files = sorted(set(p["files"]).union(*(node_probe.cached_files(nodes[n]) for n in todo)))
            probed, failed = self._probe(todo, files, sources)
            for name, found in probed.items():
                if p["cache"] and keys[name] is not None:
                    self._keep(name, keys[name], found)
                facts[name] = dict(found, files={path: (found.get("files") or {}).get(path) for path in p["files"]})
            result["probed"] = sorted(probed)
        if failed:
            self.fail_json(msg="The probe failed on {0}: {1}".format(
                ", ".join(sorted(failed)), "; ".join("{0}: {1}".format(k, v) for k, v in sorted(failed.items()))),
                nodes=facts, failed_nodes=failed, **result)
        self.exit_json(nodes=facts, failed_nodes={}, **result)

    def _nodes(self):
        """{name: Node} of the nodes to probe, from one list."""
        if self.params["nodes"]:
            items = self.list("v1", "Node")[0]
            by_name = {i["metadata"]["name"]: i for i in items}
            missing = [n for n in self.params["nodes"] if n not in by_name]
            if missing:
                raise CoreException("No such node: {0}".format(", ".join(missing)))
            return {n: by_name[n] for n in self.params["nodes"]}
        items = self.list("v1", "Node", label_selector=self.params["node_selector"])[0]
        return {i["metadata"]["name"]: i for i in items}

    def _keep(self, name, key, found):
        """Keep the facts on the Node for the next run; a refusal costs only the next probe, so it warns."""
        try:
            self.patch("v1", "Node", name, {"metadata": {"annotations": {
                node_probe.CACHE_ANNOTATION: node_probe.cache_annotation(key, found)}}})
        except CoreException as exc:
            self.warn("The facts of {0} could not be kept on the node (the next run probes it again): {1}".format(name, exc))

    def _probe(self, nodes, files, sources):
        """({node: facts}, {node: why it failed}) from one probe pod per node."""
        p = self.params
        namespace = p["namespace"]
        self._namespace(namespace)
        cm = node_probe.configmap(namespace, sources)
        run_id = uuid.uuid4().hex[:12]
        names = {node: node_probe.pod_name(node) for node in nodes}
        # Pods a stopped run left behind block the names: delete those that are there (one list, not a delete each).
        leftovers = {i["metadata"]["name"] for i in self.list(
            "v1", "Pod", namespace=namespace, label_selector="{0}={1}".format(node_probe.NAME_LABEL, node_probe.APP))[0]}
        created = []
        facts, failed = {}, {}
        try:
            self.create(cm, exist_ok=True)
            for node in nodes:
                if names[node] in leftovers:
                    self._delete_pod(names[node], namespace, wait=True)
                self.create(node_probe.pod(node, namespace, p["image"], cm["metadata"]["name"], run_id, files,
                                           deadline=p["timeout"]), exist_ok=True)
                created.append(node)

            def finished(objects):
                phases = {o["spec"].get("nodeName"): (o.get("status") or {}).get("phase", "Pending")
                          for o in objects.values()}
                done = all(phases.get(n) in ("Succeeded", "Failed") for n in nodes)
                return done, ", ".join("{0} {1}".format(n, phases.get(n, "absent")) for n in nodes)

            found = self.watch_until("v1", "Pod", finished, p["timeout"], "the probe pods to finish",
                                     namespace=namespace, label_selector="{0}={1}".format(node_probe.RUN_LABEL, run_id))
            by_node = {o["spec"].get("nodeName"): o for o in found.values()}
            for node in nodes:
                phase = (by_node[node].get("status") or {}).get("phase")
                try:
                    log = self.pod_log(names[node], namespace, container="probe")
                except CoreException as exc:
                    failed[node] = "pod {0}: its log could not be read: {1}".format(phase, exc)
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
            for node in created:
                self._delete_pod(names[node], namespace)
            self.delete("v1", "ConfigMap", cm["metadata"]["name"], namespace)
        return facts, failed

    def _namespace(self, namespace):
        if self.get("v1", "Namespace", namespace) is not None:
            return
        self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": namespace, "labels": dict(NAMESPACE_LABELS, **{"app.kubernetes.io/managed-by": "confidential.gpu"}),
            "annotations": {"openshift.io/node-selector": ""}}}, exist_ok=True)

    def _delete_pod(self, name, namespace, wait=False):
        if self.delete("v1", "Pod", name, namespace, grace_period_seconds=0) and wait:
            self.watch_until("v1", "Pod", lambda found: (not found, "{0} still there".format(name)), 60,
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
            "cache": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    ).run()


if __name__ == "__main__":
    main()
