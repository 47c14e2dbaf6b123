#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: k8s_object
short_description: One Kubernetes object present, patched or absent, written only when it would change
version_added: 0.2.0
author:
  - confidential.gpu team (@confidential-gpu)
description:
  - Creates, patches (or applies) or deletes one object with kubernetes.core's own client and service, as
    M(kubernetes.core.k8s) does, but reads it first and sends nothing when the object already holds what
    O(definition) says.
  - M(kubernetes.core.k8s) sends the patch of an unchanged object and judges C(changed) from the answer, so a
    re-run that changes nothing still writes one request per object; this module is what the roles of this
    collection use for the objects they keep, so a re-run with nothing to do writes nothing.
  - Held means what a merge patch would leave alone - every key of O(definition) has the same value (a null one
    is absent) and every list is the same item by item; with O(apply=true) the C(last-applied-configuration)
    annotation must be the one this definition writes too, since that is how apply removes fields.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - kubernetes.core.k8s_wait_options
  - confidential.gpu._attributes
  - confidential.gpu._attributes.ACTIONGROUP_CGPU
attributes:
  check_mode:
    support: full
    details:
      - A change is sent as a server-side dry run (C(dryRun=All)), as M(kubernetes.core.k8s) does; an unchanged
        object is only read.
  diff_mode:
    support: full
  idempotent:
    support: full
options:
  definition:
    description:
      - The object, or the part of it to patch. C(apiVersion), C(kind), C(metadata.name) and
        C(metadata.namespace) default to O(api_version), O(kind), O(name) and O(namespace).
    type: dict
    default: {}
  api_version:
    description: The API version of the object, for example C(v1) or C(nfd.openshift.io/v1).
    type: str
    default: v1
  kind:
    description: The kind, for example C(ConfigMap). Required unless O(definition) has C(kind).
    type: str
  name:
    description:
      - The name. Required unless O(definition) has C(metadata.name) or C(metadata.generateName) (an object named by
        the server is always created).
    type: str
  namespace:
    description: The namespace, for a namespaced kind.
    type: str
  state:
    description:
      - V(present) creates the object or patches it to hold O(definition); V(patched) only patches one that
        exists (a warning when it does not); V(absent) deletes it (nothing when it is not there).
    type: str
    choices: [present, patched, absent]
    default: present
  apply:
    description:
      - Write as C(kubectl apply) does (client-side apply with the C(last-applied-configuration) annotation), so
        fields removed from O(definition) are removed from the object. Never for a Secret - the annotation
        would hold a second copy of its values.
    type: bool
    default: false
  merge_type:
    description: The patch types to try in turn, as M(kubernetes.core.k8s) does when O(apply=false).
    type: list
    elements: str
    choices: [json, merge, strategic-merge]
requirements:
  - python >= 3.9
  - kubernetes >= 24.2.0
notes:
  - A strategic merge can leave a list unchanged that the item-by-item comparison judges changed (a list merged
    by key, given in another order); then the patch is sent and changes nothing - the reverse never happens.
  - With O(wait=true) the module always goes through M(kubernetes.core.k8s)'s path, which waits after its write.
seealso:
  - module: kubernetes.core.k8s
"""

EXAMPLES = r"""
- name: The NodeFeatureRule for TDX hosts (a re-run writes nothing)
  confidential.gpu.k8s_object:
    apply: true
    definition: "{{ lookup('ansible.builtin.file', 'tdx-rule.yml') | from_yaml }}"

- name: One key of a ConfigMap the operator owns
  confidential.gpu.k8s_object:
    state: patched
    kind: ConfigMap
    namespace: trustee-operator-system
    name: trusteeconfig-attestation-policy-cpu
    definition:
      data:
        default_cpu.rego: "{{ policy_text }}"

- name: A secret kept from earlier runs (never printed)
  confidential.gpu.k8s_object:
    definition:
      kind: Secret
      metadata:
        name: kbs-tls-secret
        namespace: trustee-operator-system
      data: "{{ tls_data }}"
  no_log: true
"""

RETURN = r"""
changed:
  description: Whether the object was (or, in check mode, would be) written.
  returned: always
  type: bool
method:
  description:
    - What was done - C(unchanged) (the object held the definition, nothing sent), or kubernetes.core's
      C(create), C(update), C(apply) or C(delete).
  returned: always
  type: str
  sample: unchanged
result:
  description: The object as the API server returned it (after the write, or as read when unchanged).
  returned: always
  type: dict
diff:
  description: Before and after, in diff mode, when the object changed.
  returned: when changed and in diff mode
  type: dict
"""

from ansible_collections.confidential.gpu.plugins.module_utils._k8s import WAIT_ARG_SPEC, CgpuModule

ARGUMENT_SPEC = dict(
    WAIT_ARG_SPEC,
    definition=dict(type="dict", default={}),
    api_version=dict(type="str", default="v1"),
    kind=dict(type="str"),
    name=dict(type="str"),
    namespace=dict(type="str"),
    state=dict(type="str", choices=["present", "patched", "absent"], default="present"),
    apply=dict(type="bool", default=False),
    merge_type=dict(type="list", elements="str", choices=["json", "merge", "strategic-merge"]),
)


def full_definition(params):
    """The task's definition with apiVersion, kind, name and namespace filled in from its other options."""
    definition = dict(params["definition"] or {})
    definition.setdefault("apiVersion", params["api_version"])
    if params["kind"]:
        definition.setdefault("kind", params["kind"])
    metadata = dict(definition.get("metadata") or {})
    for key in ("name", "namespace"):
        if params[key]:
            metadata.setdefault(key, params[key])
    definition["metadata"] = metadata
    named = metadata.get("name") or metadata.get("generateName")
    missing = [what for what, there in (("kind", definition.get("kind")), ("name", named)) if not there]
    return definition, missing


class K8sObject(CgpuModule):
    def execute_module(self):
        definition, missing = full_definition(self.params)
        if missing:
            self.fail_json(msg="k8s_object needs {0}: give it as an option or in definition".format(
                " and ".join(missing)))
        self.exit_json(**self.ensure(definition, state=self.params["state"], apply=self.params["apply"]))


def main():
    K8sObject(argument_spec=ARGUMENT_SPEC, supports_check_mode=True).run()


if __name__ == "__main__":
    main()
