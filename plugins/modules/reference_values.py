#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: reference_values
short_description: Put attestation reference values into Trustee's RVPS ConfigMap
version_added: 0.1.0
author:
  - confidential.gpu team (@confidential-gpu)
description:
  - Reads reference values from veritas output (its C(rvps-reference-values.yaml)) and from plain files, merges
    several OpenShift versions into one list per name, optionally adds an C(init_data) value that pins the pods'
    initdata, and writes the result to the C(<trusteeconfig>-rvps-reference-values) ConfigMap.
  - Writes the shape the installed Trustee reads, chosen from the key the ConfigMap already has
    (C(reference-values.json) list, or C(reference_value) base64 records) or from O(trustee_version).
  - Keeps entries it does not own (recorded in the annotation C(confidential.gpu/owned-reference-values)) unless
    O(keep_unowned=false).
  - With O(tee), checks the values against what Trustee's default CPU and GPU policies read and reports, per AR4SI
    group, which one will not affirm and why.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - confidential.gpu._attributes
  - confidential.gpu._attributes.ACTIONGROUP_CGPU
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - Shows the ConfigMap before and after.
  idempotent:
    support: full
options:
  trusteeconfig:
    description: Name of the TrusteeConfig whose RVPS ConfigMap receives the values.
    type: str
    default: trustee-config
  namespace:
    description: Namespace of Trustee.
    type: str
    default: trustee-operator-system
  configmap_name:
    description: ConfigMap name when it does not follow the TrusteeConfig naming (an older KbsConfig).
    type: str
  sources:
    description:
      - Files with reference values, read on the host that runs the module. Each may be a veritas ConfigMap (YAML),
        a C(reference-values.json) list, a C(reference_value) object, or a plain mapping of name to value(s).
      - Several veritas runs (one per OpenShift version) merge into one list per name.
    type: list
    elements: path
    default: []
  values:
    description: More reference values given inline, as a mapping of name to a value or a list of values.
    type: dict
    default: {}
  initdata:
    description:
      - Initdata documents (TOML text) whose TEE binding becomes the C(init_data) reference value, for a custom
        policy rule that pins which initdata pods may run. Needs O(tee).
    type: list
    elements: str
    default: []
  tee:
    description: The cluster's TEE; needed for O(initdata) and for the completeness check.
    type: str
    choices: [tdx, snp]
  gpu:
    description: Include the default GPU policy (C(gpu0)) in the completeness check.
    type: bool
    default: true
  expiration:
    description:
      - Expiration for every value written, C(%Y-%m-%dT%H:%M:%SZ). Without it, values keep the earliest
        expiration their sources gave, and new ones get C(2099-12-31T00:00:00Z).
    type: str
  format:
    description:
      - V(auto) keeps the ConfigMap's existing key, else follows O(trustee_version) (0.19.0 and later read
        C(reference_value)), else writes the C(reference-values.json) list.
      - V(list) writes the C(reference-values.json) list (Trustee operator 1.1 and veritas).
      - V(kv-base64) writes C(reference_value) as a JSON object of URL-safe base64 C({name, expiration, value})
        records, the only shape upstream's RVPS C(LocalJson) store reads under that key (the 1.2 operator creates it).
      - There is no plain-object format, since JSON objects under C(reference_value) make every attestation fail
        upstream. Plain objects found there (written by an earlier release) are read and rewritten as records.
    type: str
    choices: [auto, list, kv-base64]
    default: auto
  trustee_version:
    description: Upstream Trustee (operator) version, to choose the format and the TDX hardware names (0.17 and earlier also read C(mr_seam), C(tcb_svn)).
    type: str
  keep_unowned:
    description: Keep entries this module did not write. V(false) makes the ConfigMap hold exactly these values.
    type: bool
    default: true
  fail_on_incomplete:
    description: Fail when the completeness check says a group cannot affirm.
    type: bool
    default: false
requirements:
  - python >= 3.11
  - kubernetes >= 24.2.0
  - PyYAML
notes:
  - The KBS reads the values at start. Trustee operator 1.2 rolls its KBS pods when this ConfigMap changes
    (the C(kbs.confidentialcontainers.org/configmap-versions) pod annotation); with 1.1 restart the KBS deployment
    after a change (the M(confidential.gpu.trustee_info) wait and the trustee role do the right thing for both).
  - Values are lists (policies test membership with C(in)); the SNP configuration names the default policy compares
    with C(==) stay single values.
seealso:
  - module: confidential.gpu.initdata
"""

EXAMPLES = r"""
- name: Reference values for two OpenShift versions (from veritas), checked for TDX
  confidential.gpu.reference_values:
    sources:
      - veritas/4.21.9/rvps-reference-values.yaml
      - veritas/4.21.10/rvps-reference-values.yaml
    values:
      allowed_driver_versions: ["580.159.04"]
    tee: tdx
  register: rv

- name: Show what will not affirm
  ansible.builtin.debug:
    msg: "{{ rv.completeness.groups | selectattr('why') | map(attribute='why') | list }}"

- name: Pin the initdata the pods carry (for a custom policy rule), and nothing else
  confidential.gpu.reference_values:
    sources: [veritas/rvps-reference-values.yaml]
    initdata: ["{{ initdata.toml }}"]
    tee: tdx
    keep_unowned: false
    fail_on_incomplete: true
"""

RETURN = r"""
reference_values:
  description: Everything the ConfigMap holds after the change, name to C(value) and C(expiration).
  returned: always
  type: dict
owned:
  description: Names this module now owns.
  returned: always
  type: list
  elements: str
configmap_name:
  description: The ConfigMap written.
  returned: always
  type: str
  sample: trustee-config-rvps-reference-values
data_key:
  description: The ConfigMap key written.
  returned: always
  type: str
  sample: reference-values.json
format:
  description: C(list) or C(kv-base64).
  returned: always
  type: str
completeness:
  description:
    - Per AR4SI group of C(cpu0) (and C(gpu0)), the best value these reference values allow (C(value), C(tier)),
      the names missing, the conditions the token must also meet, and C(why) in words when it cannot affirm.
  returned: when O(tee) is set
  type: dict
"""

import os

from ansible_collections.confidential.gpu.plugins.module_utils._k8s import CgpuModule
from ansible_collections.confidential.gpu.plugins.module_utils.reference_values import (
    ReferenceValueError,
    add_init_data,
    check_completeness,
    choose_format,
    configmap_name,
    data_key,
    dump,
    load,
    merge,
    merge_owned,
)

OWNED_ANNOTATION = "confidential.gpu/owned-reference-values"


def argspec():
    return dict(
        trusteeconfig=dict(type="str", default="trustee-config"),
        namespace=dict(type="str", default="trustee-operator-system"),
        configmap_name=dict(type="str"),
        sources=dict(type="list", elements="path", default=[]),
        values=dict(type="dict", default={}),
        initdata=dict(type="list", elements="str", default=[]),
        tee=dict(type="str", choices=["tdx", "snp"]),
        gpu=dict(type="bool", default=True),
        expiration=dict(type="str"),
        format=dict(type="str", choices=["auto", "list", "kv-base64"], default="auto"),
        trustee_version=dict(type="str"),
        keep_unowned=dict(type="bool", default=True),
        fail_on_incomplete=dict(type="bool", default=False),
    )


def read_sources(paths):
    sets = []
    for path in paths:
        try:
            with open(path, "r", encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ReferenceValueError("{0}: cannot read ({1})".format(path, exc))
        sets.append(load(text, where=os.path.basename(path)))
    return sets


def plan(params, existing):
    """(data key, ConfigMap value, annotations, result facts) for the wanted state; pure."""
    ours = merge(*read_sources(params["sources"]), load(params["values"] or {}, where="values"),
                 expiration=params["expiration"])
    if params["initdata"]:
        if not params["tee"]:
            raise ReferenceValueError("initdata needs tee (tdx or snp) to compute the init_data value")
        ours = add_init_data(ours, params["initdata"], params["tee"], expiration=params["expiration"])
    if not ours:
        raise ReferenceValueError("no reference values given: set sources, values or initdata")
    data = (existing or {}).get("data") or {}
    annotations = ((existing or {}).get("metadata") or {}).get("annotations") or {}
    if params["format"] == "auto":
        fmt, key = choose_format(data.keys(), params["trustee_version"])
    else:
        fmt = params["format"]
        key = data_key(fmt)
    current = load(data[key], where="existing ConfigMap data[{0}]".format(key)) if data.get(key) else {}
    previously = [n for n in annotations.get(OWNED_ANNOTATION, "").split(",") if n]
    merged, owned = merge_owned(current, ours, previously_owned=previously, keep_unowned=params["keep_unowned"])
    facts = {"reference_values": merged, "owned": owned, "data_key": key, "format": fmt}
    if params["tee"]:
        facts["completeness"] = check_completeness(merged, params["tee"], gpu=params["gpu"],
                                                   trustee_version=params["trustee_version"])
    return key, dump(merged, fmt), {OWNED_ANNOTATION: ",".join(owned)}, facts


class ReferenceValues(CgpuModule):
    def execute_module(self):
        name = self.params["configmap_name"] or configmap_name(self.params["trusteeconfig"])
        namespace = self.params["namespace"]
        existing = self.get("v1", "ConfigMap", name, namespace)
        try:
            key, value, annotations, facts = plan(self.params, existing)
        except ReferenceValueError as exc:
            self.fail_json(msg=str(exc), configmap_name=name)
        completeness = facts.get("completeness")
        if completeness:
            for note in completeness["notes"]:
                self.warn(note)
            if self.params["fail_on_incomplete"] and not completeness["affirming"]:
                reasons = [g["why"] for g in completeness["groups"] if g["why"]]
                self.fail_json(msg="These reference values cannot affirm (nothing was written): " + "; ".join(reasons),
                               changed=False, configmap_name=name, **facts)
        definition = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
            "data": {key: value},
        }
        applied = self.ensure(definition)  # sends nothing when the ConfigMap already holds it
        result = dict(changed=applied["changed"], configmap_name=name, **facts)
        if self._diff:
            if "diff" in applied:
                result["diff"] = applied["diff"]
            elif applied.get("method") == "create":
                result["diff"] = {"before": {}, "after": applied.get("result") or definition}
        self.exit_json(**result)


def main():
    ReferenceValues(argument_spec=argspec(), supports_check_mode=True).run()


if __name__ == "__main__":
    main()
