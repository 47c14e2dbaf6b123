#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: k8s_delete
short_description: Delete objects and watch until they are gone, finalizers and all
version_added: 0.1.0
author:
  - confidential.gpu team (@confidential-gpu)
description:
  - Deletes every object of O(objects) that exists (in the background, so owned objects go through the garbage
    collector) and then watches until none of them is left; an operator's finalizer (OSC's KataConfig uninstall,
    a namespace emptying) is waited for, not cut short.
  - Lists each kind once, then follows its watch; prints a line whenever the set of objects left changes and at least
    every 30 seconds while it does not, and waits for an API server that stops answering for a while until the deadline.
  - An object that is already gone counts as deleted; a kind the cluster no longer serves has nothing left of it.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - confidential.gpu._attributes
  - confidential.gpu._attributes.ACTIONGROUP_CGPU
attributes:
  check_mode:
    support: full
    details:
      - Reads which objects exist and reports them as what would be deleted; sends no delete.
  diff_mode:
    support: full
    details:
      - The objects that exist before, none after.
  idempotent:
    support: full
options:
  objects:
    description: The objects to delete.
    type: list
    elements: dict
    required: true
    suboptions:
      api_version:
        description: API group and version, for example C(v1) or C(kataconfiguration.openshift.io/v1).
        type: str
        required: true
      kind:
        description: Kind.
        type: str
        required: true
      name:
        description: Name.
        type: str
        required: true
      namespace:
        description: Namespace, for a namespaced kind.
        type: str
  wait:
    description: Watch until every object is gone.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for the objects to be gone.
    type: int
    default: 1800
  progress_file:
    description: Internal, a pipe the action plugin reads progress lines from while the module runs.
    type: str
requirements:
  - python >= 3.9
  - kubernetes >= 24.2.0
notes:
  - The connection options are kubernetes.core's; set them once for C(group/confidential.gpu.cgpu) in C(module_defaults).
seealso:
  - module: kubernetes.core.k8s
  - module: confidential.gpu.teardown_plan
"""

EXAMPLES = r"""
- name: Remove the KataConfig and wait for OSC's uninstall
  confidential.gpu.k8s_delete:
    objects:
      - {api_version: kataconfiguration.openshift.io/v1, kind: KataConfig, name: cluster-kataconfig}
    timeout: 3600
"""

RETURN = r"""
deleted:
  description: The objects that existed, as C(Kind namespace/name) (in check mode, those that would be deleted).
  returned: always
  type: list
  elements: str
  sample: [KataConfig cluster-kataconfig]
progress:
  description: The lines said while waiting, with the seconds since the wait began.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.confidential.gpu.plugins.module_utils._k8s import CgpuModule
from ansible_collections.confidential.gpu.plugins.module_utils.teardown import describe_ref


class K8sDelete(CgpuModule):
    def execute_module(self):
        objects = [dict((k, v) for k, v in o.items() if v is not None) for o in self.params["objects"]]
        present = []
        for item in objects:
            if self.resource(item["api_version"], item["kind"]) is None:
                continue
            if self.get(item["api_version"], item["kind"], item["name"], item.get("namespace")) is not None:
                present.append(item)
        names = [describe_ref(i) for i in present]
        diff = {"before": {"objects": names}, "after": {"objects": []}}
        if self.check_mode or not present:
            self.exit_json(changed=bool(present), deleted=names, progress=[], diff=diff)
        for item in present:
            self.delete(item["api_version"], item["kind"], item["name"], item.get("namespace"))
        if self.params["wait"]:
            self.wait_gone(present)
        self.exit_json(changed=True, deleted=names, progress=self.progress_lines, diff=diff)

    def wait_gone(self, items):
        kinds = {}
        for item in items:
            kinds.setdefault((item["api_version"], item["kind"]), []).append(item)
        informers = []
        for (api_version, kind), wanted in sorted(kinds.items()):
            spaces = {i.get("namespace") for i in wanted}
            one = len(wanted) == 1
            informers.append((self.informer(api_version, kind, namespace=spaces.pop() if len(spaces) == 1 else None,
                                            field_selector="metadata.name=" + wanted[0]["name"] if one else None),
                              wanted))

        def judge():
            left = []
            for informer, wanted in informers:
                for item in wanted:
                    obj = informer.objects.get((item.get("namespace"), item["name"]))
                    if obj is not None:
                        left.append((item, obj))
            if not left:
                return True, "all {0} gone".format(len(items))
            return False, "{0} of {1} left: {2}".format(len(left), len(items), "; ".join(
                _state(item, obj) for item, obj in left[:5]))

        self.follow([pair[0] for pair in informers], judge, self.params["timeout"],
                    "the deletion of " + ", ".join(describe_ref(i) for i in items[:5]))


def _state(item, obj):
    """One object on its way out: whether the API marked it, the finalizers it waits for, what blocks it."""
    meta = obj.get("metadata") or {}
    finalizers = meta.get("finalizers") or (obj.get("spec") or {}).get("finalizers") or []
    # a namespace says what it still holds (NamespaceContentRemaining...); OSC says which pods block it
    blocked = [c["message"] for c in (obj.get("status") or {}).get("conditions") or []
               if c.get("message") and (c.get("type", "").startswith("Namespace") and c.get("status") == "True"
                                        or c.get("reason", "").startswith("Blocked"))]
    text = describe_ref(item) + (" (deleting" if meta.get("deletionTimestamp") else " (not deleting yet")
    if finalizers:
        text += ", finalizers " + ", ".join(finalizers)
    if blocked:
        text += ", " + blocked[0]
    return text + ")"


def main():
    K8sDelete(argument_spec={
        "objects": {"type": "list", "elements": "dict", "required": True, "options": {
            "api_version": {"type": "str", "required": True},
            "kind": {"type": "str", "required": True},
            "name": {"type": "str", "required": True},
            "namespace": {"type": "str"},
        }},
        "wait": {"type": "bool", "default": True},
        "timeout": {"type": "int", "default": 1800},
        "progress_file": {"type": "str"},
    }, supports_check_mode=True).run()


if __name__ == "__main__":
    main()
