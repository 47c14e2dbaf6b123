#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: initdata
short_description: Build or check initdata for confidential containers, and optionally publish it
version_added: 0.1.0
author:
  - confidential.gpu team (@confidential-gpu)
description:
  - Renders the initdata TOML a confidential pod carries (C(aa.toml), C(cdh.toml) and the agent policy), or validates
    initdata you already have (as text or as the pod annotation value).
  - Returns the exact TOML, its digest, the values the TEE reports for it (TDX MRCONFIGID, SNP HOSTDATA) and the
    value of the C(io.katacontainers.config.hypervisor.cc_init_data) annotation (gzip, then base64).
  - With O(configmap), publishes those values in a ConfigMap that workloads and later tasks read.
  - The digest covers the exact bytes of the TOML, so use the returned RV(toml) and RV(annotation) together and never
    re-serialise the document.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - confidential.gpu._attributes
  - confidential.gpu._attributes.ACTIONGROUP_CGPU
attributes:
  check_mode:
    support: full
    details:
      - Without O(configmap) nothing is changed anyway; with it, the ConfigMap change is predicted.
  diff_mode:
    support: full
    details:
      - Shows the ConfigMap before and after.
  idempotent:
    support: full
options:
  kbs_url:
    description:
      - URL of the Trustee KBS the pod attests to, for example the C(kbs-service) route.
      - Must be C(https) unless O(allow_insecure_http=true).
      - Builds new initdata; mutually exclusive with O(content) and O(annotation).
    type: str
  kbs_cert:
    description:
      - PEM certificate (or chain) the guest uses to trust the KBS HTTPS endpoint, when its certificate is not
        signed by a public CA. Goes to C(cert) in C(aa.toml) and C(kbs_cert) in C(cdh.toml).
    type: str
  policy:
    description:
      - Kata agent policy. V(restrictive) denies C(ExecProcessRequest) and C(ReadStreamRequest), so the host can
        neither exec into the containers nor read their output (C(oc exec), C(oc logs)).
      - V(allow-all) allows every request; for debugging only.
      - V(custom) uses O(policy_text).
    type: str
    choices: [restrictive, allow-all, custom]
    default: restrictive
  policy_text:
    description:
      - Rego text of the agent policy when O(policy=custom). It must start with C(package agent_policy) and name
        every request the agent knows, since the agent denies a request without a rule.
    type: str
  algorithm:
    description:
      - Digest algorithm named in the initdata. V(sha384) fills the 48-byte TDX MRCONFIGID exactly and is what
        veritas computes; SNP keeps the first 32 bytes of any digest.
    type: str
    choices: [sha256, sha384, sha512]
    default: sha384
  image:
    description:
      - Confidential Data Hub image settings written to the C([image]) table of C(cdh.toml).
      - "Keys: C(image_security_policy_uri), C(image_security_policy), C(sigstore_config_uri),
        C(authenticated_registry_credentials_uri), C(registry_configuration_uri), C(extra_root_certificates)
        (list of PEM), C(max_concurrent_layer_downloads_per_image), C(work_dir) and C(image_pull_proxy)
        (C(https_proxy), C(http_proxy), C(no_proxy))."
    type: dict
  allow_insecure_http:
    description:
      - Accept a plain C(http) KBS URL (Trustee C(insecure_http = true)). The attestation traffic is then
        unencrypted outside the guest's own protocol; use only in labs.
    type: bool
    default: false
  content:
    description:
      - Existing initdata TOML to validate and describe instead of building one. Its bytes are used as they are.
    type: str
  annotation:
    description:
      - An existing C(cc_init_data) annotation value to decode, validate and describe.
    type: str
  configmap:
    description:
      - Publish the initdata in this ConfigMap (keys C(initdata.toml), C(cc_init_data), C(algorithm), C(digest),
        C(tdx_mrconfigid), C(snp_hostdata)).
    type: dict
    suboptions:
      name:
        description: ConfigMap name.
        type: str
        required: true
      namespace:
        description: ConfigMap namespace.
        type: str
        required: true
      state:
        description: V(absent) deletes the ConfigMap.
        type: str
        choices: [present, absent]
        default: present
requirements:
  - python >= 3.11
  - kubernetes >= 24.2.0 (always loaded by the connection layer; the cluster is only contacted with O(configmap))
notes:
  - Validation refuses what the guest would refuse (version other than C(0.1.0), an algorithm other than
    C(sha256), C(sha384), C(sha512), non-string C(data) values, C(aa.toml) or C(cdh.toml) that are not TOML) and what
    defeats attestation (a plain http KBS without opt-in, CRLF line endings). Each error names the field.
  - The annotation must be allowed by the runtime class (C(enable_annotations) contains C(cc_init_data)).
seealso:
  - module: confidential.gpu.reference_values
  - module: confidential.gpu.attestation_token_info
"""

EXAMPLES = r"""
- name: Build initdata for pods that attest to the cluster's Trustee
  confidential.gpu.initdata:
    kbs_url: https://kbs-service-trustee-operator-system.apps.example.com
    kbs_cert: "{{ lookup('ansible.builtin.file', 'trustee-route-ca.pem') }}"
  register: initdata

- name: Run a confidential GPU pod with it
  kubernetes.core.k8s:
    definition:
      apiVersion: v1
      kind: Pod
      metadata:
        name: sample-gpu-pod
        namespace: demo
        annotations:
          io.katacontainers.config.hypervisor.cc_init_data: "{{ initdata.annotation }}"
      spec:
        runtimeClassName: kata-cc-nvidia-gpu
        containers:
          - name: app
            image: registry.example.com/app:1.0

- name: Publish it for later steps (the smoke test compares the token's init_data with it)
  confidential.gpu.initdata:
    kbs_url: https://kbs-service-trustee-operator-system.apps.example.com
    configmap:
      name: cgpu-initdata
      namespace: demo

- name: Check an annotation someone else wrote
  confidential.gpu.initdata:
    annotation: "{{ pod.metadata.annotations['io.katacontainers.config.hypervisor.cc_init_data'] }}"
  register: theirs
"""

RETURN = r"""
toml:
  description: The initdata document, byte for byte what the digest covers.
  returned: always
  type: str
algorithm:
  description: Digest algorithm the document names.
  returned: always
  type: str
  sample: sha384
digest:
  description: Hex digest of the exact TOML bytes.
  returned: always
  type: str
tdx_mrconfigid:
  description: Hex of the 48-byte TDX MRCONFIGID the pod's TD reports (digest truncated or zero-padded).
  returned: always
  type: str
snp_hostdata:
  description: Hex of the 32-byte SNP HOSTDATA the pod's VM reports.
  returned: always
  type: str
tdx_mrconfigid_b64:
  description: The MRCONFIGID in base64, as QEMU's C(mrconfigid=) takes it.
  returned: always
  type: str
snp_hostdata_b64:
  description: The HOSTDATA in base64, as QEMU's C(host-data=) takes it.
  returned: always
  type: str
annotation:
  description: Value for the C(io.katacontainers.config.hypervisor.cc_init_data) pod annotation.
  returned: always
  type: str
annotation_key:
  description: The annotation key.
  returned: always
  type: str
  sample: io.katacontainers.config.hypervisor.cc_init_data
info:
  description: What the document says (KBS URLs, certificate present, whether the policy allows exec and log reads) and warnings.
  returned: always
  type: dict
configmap:
  description: The ConfigMap as applied (or as it would be, in check mode).
  returned: when O(configmap) is set
  type: dict
"""

from ansible_collections.confidential.gpu.plugins.module_utils._k8s import CgpuModule
from ansible_collections.confidential.gpu.plugins.module_utils.initdata import (
    ANNOTATION_KEY,
    InitdataError,
    bindings,
    decode_annotation,
    encode_annotation,
    render,
    validate,
)

MANAGED_BY = {"app.kubernetes.io/managed-by": "confidential.gpu"}


def argspec():
    return dict(
        kbs_url=dict(type="str"),
        kbs_cert=dict(type="str"),
        policy=dict(type="str", choices=["restrictive", "allow-all", "custom"], default="restrictive"),
        policy_text=dict(type="str"),
        algorithm=dict(type="str", choices=["sha256", "sha384", "sha512"], default="sha384"),
        image=dict(type="dict"),
        allow_insecure_http=dict(type="bool", default=False),
        content=dict(type="str"),
        annotation=dict(type="str"),
        configmap=dict(type="dict", options=dict(
            name=dict(type="str", required=True),
            namespace=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        )),
    )


def describe(params):
    """The module's answer without the cluster: what to publish and return."""
    if params["content"] is not None:
        text = params["content"]
    elif params["annotation"] is not None:
        text = decode_annotation(params["annotation"])
    else:
        text = render(params["kbs_url"], kbs_cert=params["kbs_cert"], policy=params["policy"],
                      policy_text=params["policy_text"], algorithm=params["algorithm"], image=params["image"],
                      allow_insecure_http=params["allow_insecure_http"])
    info = validate(text, allow_insecure_http=params["allow_insecure_http"])
    values = bindings(text)
    annotation = params["annotation"] if params["annotation"] is not None else encode_annotation(text)
    return dict(toml=text, annotation=annotation, annotation_key=ANNOTATION_KEY, info=info, **values)


def configmap_definition(name, namespace, result):
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(MANAGED_BY)},
        "data": {
            "initdata.toml": result["toml"],
            "cc_init_data": result["annotation"],
            "algorithm": result["algorithm"],
            "digest": result["digest"],
            "tdx_mrconfigid": result["tdx_mrconfigid"],
            "snp_hostdata": result["snp_hostdata"],
        },
    }


class Initdata(CgpuModule):
    def execute_module(self):
        try:
            result = describe(self.params)
        except InitdataError as exc:
            self.fail_json(msg=str(exc), field=exc.field)
        for warning in result["info"]["warnings"]:
            self.warn(warning)
        changed = False
        target = self.params["configmap"]
        if target:
            definition = configmap_definition(target["name"], target["namespace"], result)
            applied = self.ensure(definition, state=target["state"])
            changed = applied["changed"]
            result["configmap"] = applied.get("result") or {}
            if self._diff:
                if "diff" in applied:
                    result["diff"] = applied["diff"]
                elif applied.get("method") == "create":
                    result["diff"] = {"before": {}, "after": result["configmap"]}
                elif applied.get("method") == "delete" and changed:
                    result["diff"] = {"before": {"metadata": {"name": target["name"]}}, "after": {}}
        self.exit_json(changed=changed, **result)


def main():
    Initdata(
        argument_spec=argspec(),
        supports_check_mode=True,
        mutually_exclusive=[("kbs_url", "content", "annotation")],
        required_one_of=[("kbs_url", "content", "annotation")],
    ).run()


if __name__ == "__main__":
    main()
