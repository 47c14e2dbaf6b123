#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_cc_mode
short_description: Switch NVIDIA GPUs on OpenShift nodes into (or out of) confidential-computing mode and wait for it
version_added: 0.1.0
author:
  - confidential.gpu team (@confidential-gpu)
description:
  - Sets the node label C(nvidia.com/cc.mode) that the NVIDIA GPU operator's cc-manager watches, on every target
    node, then waits by watching the nodes until cc-manager reports the mode in C(nvidia.com/cc.mode.state) on each
    of them.
  - When cc-manager reports C(failed), or the deadline passes, the module fails with the node, the state it saw and
    the status of that node's cc-manager pod (phase, readiness, restarts, last exit and its message).
  - A GPU that cannot take the mode makes cc-manager exit before it writes any state, and crash-loop. The module
    watches the cc-manager pods too and fails as soon as the one on a target node restarts with an error and is not
    back up, instead of waiting for a state that never comes.
  - cc-manager resets the GPUs without draining anything. Before changing a node the module lists the pods that
    hold an C(nvidia.com/pgpu) there and refuses, naming them.
  - Refuses C(devtools) unless O(allow_devtools=true), because that mode leaves the GPUs' debug interfaces open and
    GPU attestation does not match measurements taken in it.
  - Only nodes where the GPU operator runs cc-manager (label C(nvidia.com/gpu.deploy.cc-manager=true)) can be
    targets; any other target is refused up front, since nothing would ever act on its label.
  - In check mode nothing is written; RV(changed_nodes) says which nodes would switch.
  - Waiting lists the nodes and the cc-manager pods once, then follows one watch of each; it says what it waits for
    at least every 30 seconds, and waits for an API server that stops answering for a while until the deadline.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - confidential.gpu._attributes
  - confidential.gpu._attributes.ACTIONGROUP_CGPU
options:
  mode:
    description:
      - The CC mode the GPUs of every target node must end in.
      - One of V(on), V(off), V(ppcie) or V(devtools).
      - V(on) for single-GPU confidential passthrough (H100, H200, RTX PRO 6000 Blackwell), V(ppcie) for Hopper
        multi-GPU passthrough with NVSwitches (every GPU and switch of the node must support it), V(off) to turn
        confidential computing off, V(devtools) for GPU development only.
      - YAML reads an unquoted C(on) and C(off) as booleans; they are taken as V(on) and V(off).
    type: raw
    required: true
  nodes:
    description:
      - Names of the target nodes. When left out, every node matching O(node_selector).
    type: list
    elements: str
  node_selector:
    description:
      - Label selector for the target nodes when O(nodes) is not given.
    type: str
    default: nvidia.com/gpu.present=true
  allow_devtools:
    description:
      - Allow O(mode=devtools).
    type: bool
    default: false
  wait:
    description:
      - Wait until C(nvidia.com/cc.mode.state) equals O(mode) on every target node.
      - With V(false) the module only sets the labels (and still refuses on pods holding a GPU).
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait in total. A GPU reset takes a few minutes on real hardware.
    type: int
    default: 900
  progress_file:
    description: Internal, a pipe the action plugin reads progress lines from while the module runs.
    type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - The diff shows the C(nvidia.com/cc.mode) label of each node that changes.
  idempotent:
    support: full
requirements:
  - python >= 3.9
  - kubernetes >= 24.2.0
notes:
  - The GPU operator's ClusterPolicy sets the default mode for nodes without the label
    (C(spec.ccManager.defaultMode)); this module sets the label, which takes precedence.
  - A node already in the mode with the label set is left alone, so re-running changes nothing.
  - A node whose cc-manager already reported C(failed) for this very mode is reported at once, without waiting,
    because cc-manager acts again only when the label changes.
seealso:
  - module: confidential.gpu.cluster_info
"""

EXAMPLES = r"""
- name: Turn CC mode on for every GPU node and wait
  confidential.gpu.gpu_cc_mode:
    mode: "on"

- name: What would switch? (nothing is written)
  confidential.gpu.gpu_cc_mode:
    mode: "on"
  check_mode: true
  register: plan

- name: Hopper HGX nodes use protected PCIe for multi-GPU pods
  confidential.gpu.gpu_cc_mode:
    mode: ppcie
    nodes: [hgx-0, hgx-1]
    timeout: 1800

- name: Turn it off on one node
  confidential.gpu.gpu_cc_mode:
    mode: "off"
    nodes: [worker-2]
"""

RETURN = r"""
changed_nodes:
  description: Nodes whose C(nvidia.com/cc.mode) label was (in check mode, would be) changed.
  returned: always
  type: list
  elements: str
  sample: [worker-0, worker-2]
nodes:
  description: Every target node as the module left it.
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: Node name., type: str, returned: always}
    mode_label: {description: "The C(nvidia.com/cc.mode) label now (in check mode, the one before).", type: str, returned: always}
    state: {description: C(nvidia.com/cc.mode.state) as cc-manager reports it., type: str, returned: always}
    ready_state: {description: C(nvidia.com/cc.ready.state) as cc-manager reports it., type: str, returned: always}
    changed: {description: Whether the label of this node was (or would be) changed., type: bool, returned: always}
msg:
  description: One line saying what was done.
  returned: always
  type: str
progress:
  description: The lines said while waiting (each new state, heartbeats), with the seconds since the wait began.
  returned: when the module waited
  type: list
  elements: str
  sample: "CC mode 'on' reached on worker-0, worker-1, worker-2 (label changed on worker-0)"
"""

from ansible_collections.confidential.gpu.plugins.module_utils.teardown import LABELS_SET
from ansible_collections.confidential.gpu.plugins.module_utils import gpu_cc
from ansible_collections.confidential.gpu.plugins.module_utils._k8s import CgpuModule, CoreException


class GpuCcMode(CgpuModule):
    def targets(self):
        names = self.params["nodes"]
        if names:
            found, missing = [], []
            for name in names:
                node = self.get("v1", "Node", name)
                (found if node else missing).append(node or name)
            if missing:
                self.fail_json(msg="nodes not found: {0}".format(", ".join(missing)))
            return found
        selector = self.params["node_selector"]
        found = self.list("v1", "Node", label_selector=selector)[0]
        if not found:
            self.fail_json(msg="no node matches {0!r}: is the GPU operator's ClusterPolicy applied, and NFD "
                               "labelling the GPU nodes?".format(selector))
        return found

    def _pods(self, node):
        return self.list("v1", "Pod", field_selector="spec.nodeName={0}".format(node))[0]

    def cc_manager_pods(self, names, pods=None):
        """{node: its cc-manager pod or None} for ``names``, from ``pods`` (a watch's) or one list."""
        if pods is None:
            pods = self.list("v1", "Pod", label_selector=gpu_cc.CC_MANAGER_POD_SELECTOR)[0]
        by_node = {}
        for pod in pods:
            node = (pod.get("spec") or {}).get("nodeName")
            if node in names:
                by_node[node] = pod
        return {name: by_node.get(name) for name in names}

    def execute_module(self):
        mode = gpu_cc.normalize_mode(self.params["mode"])
        problem = gpu_cc.check_mode_request(mode, self.params["allow_devtools"])
        if problem:
            self.fail_json(msg=problem)
        entries, errors = gpu_cc.plan(self.targets(), mode)
        if errors:
            self.fail_json(msg="; ".join(errors), nodes=[self._public(e) for e in entries])
        names = [e["name"] for e in entries]

        settled_failures = {e["name"]: e["state"] for e in entries
                            if not e["change_label"] and e["state"] == gpu_cc.FAILED}
        if settled_failures:
            self.fail_json(msg=gpu_cc.failure_message(mode, settled_failures, self.cc_manager_pods(list(settled_failures)))
                           + ". cc-manager acts again only when the label changes: fix the cause, then set another mode "
                             "and back", nodes=[self._public(e) for e in entries])

        switching = [e["name"] for e in entries if e["switch"]]
        blocking = {name: gpu_cc.pods_using_pgpu(self._pods(name), name) for name in switching}
        refusal = gpu_cc.blocking_pods_message(blocking)
        if refusal:
            self.fail_json(msg=refusal, blocking_pods=blocking, nodes=[self._public(e) for e in entries])

        changed_nodes = [e["name"] for e in entries if e["change_label"]]
        baseline = {}
        if self.params["wait"] and not self.check_mode:
            baseline = {node: gpu_cc.restart_baseline(pod) for node, pod in self.cc_manager_pods(names).items()}
        diffs = []
        for entry in entries:
            entry["changed"] = entry["change_label"]
            if entry["change_label"]:
                # the annotation tells a teardown that this label is ours to remove
                self.ensure({"apiVersion": "v1", "kind": "Node",
                             "metadata": {"name": entry["name"], "labels": {gpu_cc.CC_MODE_LABEL: mode},
                                          "annotations": {LABELS_SET: gpu_cc.CC_MODE_LABEL}}})
                diffs.append({"before": {"node": entry["name"], gpu_cc.CC_MODE_LABEL: entry["mode_label"]},
                              "after": {"node": entry["name"], gpu_cc.CC_MODE_LABEL: mode}})
        result = {"changed": bool(changed_nodes), "changed_nodes": changed_nodes}
        if self._diff and diffs:
            result["diff"] = {"before": [d["before"] for d in diffs], "after": [d["after"] for d in diffs]}

        if self.check_mode or not self.params["wait"]:
            result["nodes"] = [self._public(e) for e in entries]
            verb = "would switch" if self.check_mode else "switching"
            result["msg"] = "{0} to CC mode {1!r}: {2}".format(verb, mode, ", ".join(switching)) if switching \
                else "CC mode {0!r} already in effect on {1}".format(mode, ", ".join(names))
            self.exit_json(**result)

        final = self.wait_for(mode, names, baseline)
        by_name = {(n.get("metadata") or {}).get("name"): n for n in final.values()}
        nodes = []
        for entry in entries:
            view = gpu_cc.node_cc(by_name.get(entry["name"], {}))
            view["name"] = entry["name"]
            view["changed"] = entry["changed"]
            nodes.append(self._public(view))
        result["nodes"] = nodes
        result["progress"] = self.progress_lines
        result["msg"] = "CC mode {0!r} reached on {1}{2}".format(
            mode, ", ".join(names), " (label changed on {0})".format(", ".join(changed_nodes)) if changed_nodes else "")
        self.exit_json(**result)

    @staticmethod
    def _public(entry):
        return {k: entry.get(k) for k in ("name", "mode_label", "state", "ready_state", "changed")}

    def wait_for(self, mode, names, baseline):
        """Watch nodes and cc-manager pods until every target reports ``mode``; fail at ``failed``, a crash loop or the deadline."""
        timeout = self.params["timeout"]
        nodes = self.informer("v1", "Node")
        pods = self.informer("v1", "Pod", label_selector=gpu_cc.CC_MANAGER_POD_SELECTOR)
        seen = {}

        def judge():
            done, failed, seen["line"] = gpu_cc.progress(nodes.values(), names, mode)
            if done:
                return True, seen["line"]
            by_node = self.cc_manager_pods(names, pods.values())
            if failed:
                raise CoreException(gpu_cc.failure_message(mode, failed, by_node))
            crashing = [n for n in names if gpu_cc.crash_loop(by_node.get(n), baseline.get(n))]
            if crashing:  # cc-manager acts on a label change only: nothing will come (k8s-cc-manager, see gpu_cc)
                raise CoreException(gpu_cc.crash_message(mode, crashing, by_node))
            return False, seen["line"]

        try:
            self.follow([nodes, pods], judge, timeout, "CC mode {0!r} on {1}".format(mode, ", ".join(names)))
        except CoreException as exc:
            if not str(exc).startswith("Timed out"):
                raise
            outage = str(exc).partition("; the API server")[2]
            self.fail_json(msg=gpu_cc.failure_message(mode, {}, self.cc_manager_pods(names, pods.values()),
                                                      seen=seen.get("line"), timeout=timeout)
                           + ("; the API server" + outage if outage else ""), progress=self.progress_lines)
        return {(None, (n.get("metadata") or {}).get("name")): n for n in nodes.values()}


def main():
    GpuCcMode(argument_spec={
        "mode": {"type": "raw", "required": True},
        "nodes": {"type": "list", "elements": "str"},
        "node_selector": {"type": "str", "default": gpu_cc.DEFAULT_NODE_SELECTOR},
        "allow_devtools": {"type": "bool", "default": False},
        "wait": {"type": "bool", "default": True},
        "timeout": {"type": "int", "default": 900},
        "progress_file": {"type": "str"},
    }, supports_check_mode=True).run()


if __name__ == "__main__":
    main()
