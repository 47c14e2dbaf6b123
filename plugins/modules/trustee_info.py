#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: trustee_info
short_description: Read (and optionally wait for) Trustee's state as the cluster shows it
version_added: 0.1.0
author:
  - confidential.gpu team (@confidential-gpu)
description:
  - Reads the TrusteeConfig, its KbsConfig, the KBS Deployment C(trustee-deployment), the Service C(kbs-service)
    and the Route that exposes the KBS, and the KBS configuration (C(<name>-kbs-config)).
  - With O(wait), waits by watching (no polling) until everything named in O(wait_for) is ready, or fails at the
    deadline with what it saw last.
  - Reports the egress Trustee needs from its configuration (NVIDIA NRAS, Intel PCS, AMD KDS).
  - Never changes anything.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - confidential.gpu._attributes
  - confidential.gpu._attributes.INFO_MODULE
  - confidential.gpu._attributes.ACTIONGROUP_CGPU
options:
  name:
    description: Name of the TrusteeConfig.
    type: str
    default: trustee-config
  namespace:
    description: Namespace of Trustee.
    type: str
    default: trustee-operator-system
  route:
    description: Name of the Route that exposes the KBS; its host becomes RV(kbs_url).
    type: str
    default: kbs
  wait:
    description: Wait until every part in O(wait_for) is ready.
    type: bool
    default: false
  wait_for:
    description:
      - V(route) the Route is admitted; V(generated) the operator generated its ConfigMaps and the KbsConfig, an
        operator of 1.2 or later has migrated each ConfigMap a 1.1 operator left (the
        C(kbs.confidentialcontainers.org/migrated-from-v1.1.0) annotation; after an upgrade it replaces them), and its
        copies of the TLS secrets (C(<name>-https-*), C(<name>-attestation-*)) hold the current key and certificate;
        V(ready) the TrusteeConfig is ready and the KBS Deployment rolled out and Available, with operator 1.2 onto
        the current version of every ConfigMap it mounts (its C(configmap-versions) pod annotation).
      - The operator makes its copies of the TLS secrets once and keeps them; after a certificate change they only
        follow when deleted (the trustee role does that), so V(generated) waits for the operator to make them again.
    type: list
    elements: str
    choices: [route, generated, ready]
    default: [route, generated, ready]
  timeout:
    description: Seconds to wait for all parts together.
    type: int
    default: 600
requirements:
  - python >= 3.9
  - kubernetes >= 24.2.0
notes:
  - The connection options are kubernetes.core's; set them once for C(group/confidential.gpu.cgpu) in C(module_defaults).
seealso:
  - module: confidential.gpu.kbs_probe
"""

EXAMPLES = r"""
- name: Wait for Trustee and read where the KBS answers
  confidential.gpu.trustee_info:
    wait: true
  register: trustee

- name: Tell the user what Trustee must reach
  ansible.builtin.debug:
    msg: "{{ trustee.egress | map(attribute='url') | list }}"
"""

RETURN = r"""
ready:
  description: True when the TrusteeConfig is ready, the KBS rolled out and the route is admitted.
  returned: always
  type: bool
kbs_url:
  description: C(https://<route host>) once the route is admitted, else null.
  returned: always
  type: str
  sample: https://kbs-trustee-operator-system.apps.cluster.example.com
route:
  description: C(name), C(host), C(admitted), C(termination), C(message).
  returned: always
  type: dict
trusteeconfig:
  description: C(exists), C(ready), C(profile_type), C(message).
  returned: always
  type: dict
deployment:
  description: C(ready) (rolled out and Available) and C(message).
  returned: always
  type: dict
service:
  description: C(exists), C(type).
  returned: always
  type: dict
kbsconfig:
  description: C(exists), C(ready), C(secret_resources).
  returned: always
  type: dict
kbs_config:
  description: What the KBS configuration says (C(https), C(tls_profile), C(token_signer), C(nvidia_verifier), ...).
  returned: always
  type: dict
egress:
  description: Endpoints Trustee must reach, each with C(service), C(url) and C(why).
  returned: always
  type: list
  elements: dict
"""

import time

from ansible_collections.confidential.gpu.plugins.module_utils._k8s import CgpuModule, CoreException
from ansible_collections.confidential.gpu.plugins.module_utils.olm_state import operator_label
from ansible_collections.confidential.gpu.plugins.module_utils.trustee import (
    DEPLOYMENT,
    SERVICE,
    SPLIT_SECRETS,
    VERSIONED_CONFIGMAP_FIELDS,
    TrusteeConfigError,
    configmap_versions_state,
    deployment_state,
    migrates,
    migration_state,
    operator_version,
    route_state,
    summary,
    trusteeconfig_state,
)

API = "confidentialcontainers.org/v1alpha1"


def _admitted(route):
    admitted, _host, _termination, message = route_state(route)
    return admitted, message


class TrusteeInfo(CgpuModule):
    def _one(self, objects):
        return next(iter(objects.values()), None)

    def _wait(self, api_version, kind, name, test, deadline, what):
        remaining = max(1, int(deadline - time.monotonic()))

        def condition(objects):
            return test(objects.get((self.params["namespace"], name)))

        objects = self.watch_until(api_version, kind, condition, remaining, what, namespace=self.params["namespace"],
                                   field_selector="metadata.name={0}".format(name))
        return objects.get((self.params["namespace"], name))

    def execute_module(self):
        p = self.params
        ns, name = p["namespace"], p["name"]
        if p["wait"]:
            deadline = time.monotonic() + p["timeout"]
            if "route" in p["wait_for"]:
                self._wait("route.openshift.io/v1", "Route", p["route"],
                           _admitted, deadline, "route {0}/{1} admitted".format(ns, p["route"]))
            if "generated" in p["wait_for"] or "ready" in p["wait_for"]:
                if self.resource(API, "KbsConfig") is None:
                    raise CoreException("the cluster does not serve KbsConfig: is the Trustee operator installed?")
                kbsconfig = self._wait(API, "KbsConfig", "{0}-kbs-config".format(name),
                                       lambda k: (k is not None, "KbsConfig generated" if k else "KbsConfig not generated yet"),
                                       deadline, "the operator to generate {0}-kbs-config".format(name))
                self._wait_migrated(kbsconfig, deadline)
                self._wait_split_secrets(deadline)
            if "ready" in p["wait_for"]:
                self._wait("apps/v1", "Deployment", DEPLOYMENT, self._rolled_out_on_current_config, deadline,
                           "the KBS deployment {0}/{1} to roll out".format(ns, DEPLOYMENT))
                self._wait(API, "TrusteeConfig", name, trusteeconfig_state, deadline,
                           "TrusteeConfig {0}/{1} ready".format(ns, name))
        self.exit_json(changed=False, **self.report())

    def _rolled_out_on_current_config(self, deployment):
        """Rolled out and Available, and (operator 1.2) onto the ConfigMap versions there are now.

        The ConfigMaps are read again on every Deployment event: the operator may itself have updated one
        (it merges TLS settings into kbs-config.toml), and its next rollout is what ends the wait.
        """
        ready, message = deployment_state(deployment)
        if not ready:
            return ready, message
        ns = self.params["namespace"]
        kbs = self.get(API, "KbsConfig", "{0}-kbs-config".format(self.params["name"]), ns) or {}
        spec = kbs.get("spec") or {}
        names = [spec.get(field) for field in VERSIONED_CONFIGMAP_FIELDS if spec.get(field)]
        configmaps = {name: self.get("v1", "ConfigMap", name, ns) for name in names}
        current, why = configmap_versions_state(deployment, spec, configmaps)
        return (True, message) if current else (False, why)

    def _wait_migrated(self, kbsconfig, deadline):
        """Wait until an operator of 1.2 or later has migrated the ConfigMaps a 1.1 operator left (after an upgrade)."""
        ns = self.params["namespace"]
        # Only Trustee's own CSVs (OLM's operator label), not the copies every global operator leaves in the namespace.
        csvs = self.list("operators.coreos.com/v1alpha1", "ClusterServiceVersion", namespace=ns,
                         label_selector=operator_label("trustee-operator", ns))[0]
        version = operator_version(csvs)
        if not migrates(version):
            return
        spec = (kbsconfig or {}).get("spec") or {}

        def migrated(objects):
            return migration_state(version, spec, {name: cm for (_ns, name), cm in objects.items()})

        self.watch_until("v1", "ConfigMap", migrated, max(1, int(deadline - time.monotonic())),
                         "operator {0} to migrate the ConfigMaps of a 1.1 operator".format(version), namespace=ns)

    def _wait_split_secrets(self, deadline):
        """Wait until the operator's copies of the TLS secrets hold the current key and certificate.

        The operator creates them once and keeps them (openshift/trustee-operator trusteeconfig_controller.go
        createOrUpdateHttpsKeySecret etc.), so after a change this waits for it to make the ones the role deleted.
        A KBS started before that would serve the previous certificate.
        """
        ns, name = self.params["namespace"], self.params["name"]
        spec = (self.get(API, "TrusteeConfig", name, ns) or {}).get("spec") or {}
        pairs = []
        for field, copy, copy_key, source_key in SPLIT_SECRETS:
            source = (spec.get(field) or {}).get("tlsSecretName")
            if source:
                pairs.append((source, source_key, copy.format(name), copy_key))
        if not pairs:
            return

        def copied(objects):
            for source, source_key, copy, copy_key in pairs:
                src = ((objects.get((ns, source)) or {}).get("data") or {}).get(source_key)
                dst = ((objects.get((ns, copy)) or {}).get("data") or {}).get(copy_key)
                if src is None:
                    return False, "secret {0} does not exist or has no {1}".format(source, source_key)
                if dst is None:
                    return False, "the operator has not made secret {0} yet".format(copy)
                if src != dst:
                    return False, ("secret {0} still holds an earlier {1} of {2}: the operator keeps its copies, "
                                   "delete {0} to have it made again".format(copy, source_key, source))
            return True, "the KBS secrets hold the current keys and certificates"

        self.watch_until("v1", "Secret", copied, max(1, int(deadline - time.monotonic())),
                         "the operator to copy the TLS secrets for the KBS", namespace=ns)

    def report(self):
        p = self.params
        ns, name = p["namespace"], p["name"]
        tc = self.get(API, "TrusteeConfig", name, ns)
        kbs = self.get(API, "KbsConfig", "{0}-kbs-config".format(name), ns)
        dep = self.get("apps/v1", "Deployment", DEPLOYMENT, ns)
        svc = self.get("v1", "Service", SERVICE, ns)
        route = self.get("route.openshift.io/v1", "Route", p["route"], ns)
        cm = self.get("v1", "ConfigMap", "{0}-kbs-config".format(name), ns)
        admitted, host, termination, route_message = route_state(route)
        tc_ready, tc_message = trusteeconfig_state(tc)
        dep_ready, dep_message = deployment_state(dep)
        text = ((cm or {}).get("data") or {}).get("kbs-config.toml")
        try:
            config = summary(text) if text else {"parsed": False, "egress": []}
        except TrusteeConfigError as exc:
            config = {"parsed": False, "error": str(exc), "egress": []}
        return {
            "ready": bool(tc_ready and dep_ready and admitted and svc),
            "kbs_url": "https://{0}".format(host) if admitted and host else None,
            "route": {"name": p["route"], "host": host, "admitted": admitted, "termination": termination,
                      "message": route_message},
            "trusteeconfig": {"exists": tc is not None, "ready": tc_ready, "message": tc_message,
                              "profile_type": ((tc or {}).get("spec") or {}).get("profileType")},
            "kbsconfig": {"exists": kbs is not None, "ready": bool(((kbs or {}).get("status") or {}).get("isReady")),
                          "secret_resources": ((kbs or {}).get("spec") or {}).get("kbsSecretResources") or []},
            "deployment": {"ready": dep_ready, "message": dep_message},
            "service": {"exists": svc is not None, "type": ((svc or {}).get("spec") or {}).get("type")},
            "kbs_config": {k: v for k, v in config.items() if k != "egress"},
            "egress": config.get("egress", []),
        }


def main():
    TrusteeInfo(argument_spec=dict(
        name=dict(type="str", default="trustee-config"),
        namespace=dict(type="str", default="trustee-operator-system"),
        route=dict(type="str", default="kbs"),
        wait=dict(type="bool", default=False),
        wait_for=dict(type="list", elements="str", choices=["route", "generated", "ready"],
                      default=["route", "generated", "ready"]),
        timeout=dict(type="int", default=600),
    ), supports_check_mode=True).run()


if __name__ == "__main__":
    main()
