#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: access_review
short_description: Check the connection and that the user may write what a run will write, before it writes
version_added: 0.1.0
author:
  - confidential.gpu team (@confidential-gpu)
description:
  - Checks that the kubeconfig kubernetes.core would load exists (the message names the path and where it came
    from), that the API server answers, and asks it one C(SelfSubjectAccessReview) per verb, resource and
    namespace in O(reviews) - the question C(kubectl auth can-i) asks.
  - Fails, naming every permission the user lacks (verb, resource and namespace), when any review is denied;
    nothing is changed on the cluster either way.
  - The roles of this collection declare what they write (their C(tasks/validate.yml) sets C(<role>_writes));
    C(confidential.gpu.site) reviews all of them before its first write.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - confidential.gpu._attributes
  - confidential.gpu._attributes.INFO_MODULE
  - confidential.gpu._attributes.ACTIONGROUP_CGPU
options:
  reviews:
    description:
      - What to review. Each entry is either C(resource) (plural, for example C(machineconfigs)), C(group) (the API
        group, empty for the core group), C(verbs) and C(namespace) (empty or absent for cluster-wide), or
        C(module) (one of this collection's modules that write - C(olm_operator), C(node_probe),
        C(machine_configs), C(gpu_cc_mode), C(initdata), C(reference_values), C(trustee_kbs_config)) and
        C(namespace), which stands for what that module writes there.
      - Repeated questions are asked once.
    type: list
    elements: dict
    required: true
requirements:
  - python >= 3.9
  - kubernetes >= 24.2.0
notes:
  - Each review is a C(create) request on C(selfsubjectaccessreviews.authorization.k8s.io), which the API server
    answers without storing anything; an audit log lists them as creates. In check mode the module asks the same
    questions (the answers change nothing) and the requests carry C(dryRun=All).
  - A review says what RBAC (and any authorization webhook) allows now; admission (quotas, policies, Security
    Context Constraints) can still refuse a request later.
seealso:
  - module: kubernetes.core.k8s_info
  - name: SelfSubjectAccessReview
    description: The Kubernetes API the module asks.
    link: https://kubernetes.io/docs/reference/access-authn-authz/authorization/#checking-api-access
"""

EXAMPLES = r"""
- name: May this user install an operator and write MachineConfigs?
  confidential.gpu.access_review:
    reviews:
      - module: olm_operator
        namespace: openshift-nfd
      - resource: machineconfigs
        group: machineconfiguration.openshift.io
        verbs: [create, patch]

- name: Review what every role of the bring-up writes (site.yml does this before its first write)
  confidential.gpu.access_review:
    reviews: "{{ [nfd_writes, tee_hosts_writes] | flatten }}"
  register: access
"""

RETURN = r"""
allowed:
  description: The reviews the API server allowed.
  returned: always
  type: list
  elements: dict
  contains:
    verb:
      description: The verb, for example C(create).
      type: str
      returned: always
    group:
      description: The API group, empty for the core group.
      type: str
      returned: always
    resource:
      description: The resource, plural.
      type: str
      returned: always
    namespace:
      description: The namespace, or null for cluster-wide.
      type: str
      returned: always
  sample: [{verb: create, group: operators.coreos.com, resource: subscriptions, namespace: openshift-nfd}]
denied:
  description: The reviews the API server denied, each with the API server's C(reason) (often empty for RBAC).
  returned: always
  type: list
  elements: dict
  sample: [{verb: create, group: "", resource: namespaces, namespace: null, reason: ""}]
requests:
  description: How many review requests were sent (one per entry of O(reviews) after repeats are dropped).
  returned: always
  type: int
  sample: 42
"""

import os

from ansible_collections.confidential.gpu.plugins.module_utils import access_review
from ansible_collections.confidential.gpu.plugins.module_utils._k8s import CgpuModule, CoreException

ARGUMENT_SPEC = {
    "reviews": {"type": "list", "elements": "dict", "required": True},
}


class AccessReview(CgpuModule):
    def execute_module(self):
        try:
            reviews = access_review.expand(self.params["reviews"])
        except ValueError as exc:
            self.fail_json(msg=str(exc))
        # kubernetes.core loads no kubeconfig when the host and its credentials are options.
        if not self.params.get("host"):
            problem = access_review.kubeconfig_problem(self.params.get("kubeconfig"), os.environ)
            if problem:
                self.fail_json(msg=problem, allowed=[], denied=[], requests=0)
        statuses = []
        for review in reviews:
            statuses.append(self._ask(review, first=not statuses))
        allowed, denied = access_review.decide(reviews, statuses)
        result = dict(changed=False, allowed=allowed, denied=denied, requests=len(reviews))
        if denied:
            self.fail_json(msg=access_review.refusal_message(denied, len(reviews)), **result)
        self.exit_json(**result)

    def _ask(self, review, first):
        try:
            answer = self.create(access_review.review_body(review))
        except CoreException:
            raise
        except Exception as exc:  # pylint: disable=broad-except
            # The first request is where an unreachable server or a bad certificate shows; say which server.
            if first:
                raise CoreException("The API server does not answer ({0}): {1}. Nothing was changed.".format(
                    self._server(), exc))
            raise CoreException("Reviewing {0} failed: {1}".format(access_review.describe(review), exc))
        return (answer or {}).get("status") or {}

    def _server(self):
        host = self.params.get("host") or os.environ.get("K8S_AUTH_HOST")
        if host:
            return "host " + host
        kubeconfig = self.params.get("kubeconfig") or os.environ.get("K8S_AUTH_KUBECONFIG")
        return "the server of kubeconfig {0}".format(kubeconfig) if isinstance(kubeconfig, str) else "the configured server"


def main():
    AccessReview(argument_spec=ARGUMENT_SPEC, supports_check_mode=True).run()


if __name__ == "__main__":
    main()
