#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: trustee_kbs_config
short_description: Set the NVIDIA verifier in the KBS configuration the Trustee operator generated
version_added: 0.1.0
author:
  - confidential.gpu team (@confidential-gpu)
description:
  - Edits C(kbs-config.toml) in the ConfigMap C(<trusteeconfig>-kbs-config) in place. Only the
    C([attestation_service.verifier_config.nvidia_verifier]) table is rewritten; every other line stays as the
    operator or its users left it (the operator keeps manual edits of this ConfigMap).
  - V(remote) sends GPU evidence to NVIDIA's NRAS (claims the default GPU policy can affirm; needs egress to
    NRAS). V(local) verifies on the KBS (Hopper only; the default GPU policy cannot affirm its claims).
  - Returns the egress the resulting configuration needs.
  - The KBS reads its configuration when it starts; restart the KBS deployment after a change.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - confidential.gpu._attributes
  - confidential.gpu._attributes.ACTIONGROUP_CGPU
options:
  trusteeconfig:
    description: Name of the TrusteeConfig whose generated ConfigMap is edited.
    type: str
    default: trustee-config
  namespace:
    description: Namespace of Trustee.
    type: str
    default: trustee-operator-system
  nvidia_verifier:
    description: How GPU evidence is verified.
    type: str
    choices: [remote, local]
    default: remote
  nras_url:
    description: NRAS endpoint for V(remote) (C(/gpu) is appended by Trustee).
    type: str
    default: https://nras.attestation.nvidia.com/v4/attest
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
requirements:
  - python >= 3.9
  - kubernetes >= 24.2.0
seealso:
  - module: confidential.gpu.trustee_info
"""

EXAMPLES = r"""
- name: Verify GPUs with NRAS
  confidential.gpu.trustee_kbs_config:
    nvidia_verifier: remote
  register: kbs_config
"""

RETURN = r"""
kbs_config:
  description: What the KBS configuration says after the change (see M(confidential.gpu.trustee_info)).
  returned: always
  type: dict
egress:
  description: Endpoints Trustee must reach, each with C(service), C(url) and C(why).
  returned: always
  type: list
  elements: dict
"""

from ansible_collections.confidential.gpu.plugins.module_utils._k8s import CgpuModule, CoreException
from ansible_collections.confidential.gpu.plugins.module_utils.trustee import (
    TrusteeConfigError,
    set_nvidia_verifier,
    summary,
)

KEY = "kbs-config.toml"


class TrusteeKbsConfig(CgpuModule):
    def execute_module(self):
        p = self.params
        name = "{0}-kbs-config".format(p["trusteeconfig"])
        cm = self.get("v1", "ConfigMap", name, p["namespace"])
        if cm is None or KEY not in (cm.get("data") or {}):
            raise CoreException("ConfigMap {0}/{1} with key {2} does not exist: has the operator reconciled "
                                "TrusteeConfig {3}?".format(p["namespace"], name, KEY, p["trusteeconfig"]))
        text = cm["data"][KEY]
        try:
            edited = set_nvidia_verifier(text, p["nvidia_verifier"], p["nras_url"])
            result = summary(edited)
        except TrusteeConfigError as exc:
            raise CoreException("{0}/{1}: {2}".format(p["namespace"], name, exc))
        outcome = {"changed": False}
        if edited != text:
            outcome = self.ensure({"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": name, "namespace": p["namespace"]},
                                   "data": dict(cm["data"], **{KEY: edited})})
        egress = result.pop("egress")
        extra = {"diff": outcome["diff"]} if self._diff and outcome.get("diff") else {}
        self.exit_json(changed=outcome.get("changed", False), kbs_config=result, egress=egress, **extra)


def main():
    TrusteeKbsConfig(argument_spec=dict(
        trusteeconfig=dict(type="str", default="trustee-config"),
        namespace=dict(type="str", default="trustee-operator-system"),
        nvidia_verifier=dict(type="str", choices=["remote", "local"], default="remote"),
        nras_url=dict(type="str", default="https://nras.attestation.nvidia.com/v4/attest"),
    ), supports_check_mode=True).run()


if __name__ == "__main__":
    main()
