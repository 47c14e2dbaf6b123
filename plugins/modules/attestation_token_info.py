#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: attestation_token_info
short_description: Check and explain a Trustee EAR attestation token
version_added: 0.1.0
author:
  - confidential.gpu team (@confidential-gpu)
description:
  - Takes the token a confidential pod gets from C(http://127.0.0.1:8006/aa/token?token_type=kbs) (the JSON with
    C(token) and C(tee_keypair), or the bare JWT) and says whether it proves a good attestation.
  - Verifies the ES256 signature against the Trustee attestation certificate O(key). Without O(key) the key embedded
    in the token is used, which proves integrity only (anyone can sign a token with a key of their own), so the
    result is then never RV(ok) and never RV(affirming).
  - Checks the certificate chain Trustee embeds in the header (C(jwk.x5c)) against O(key) (its leaf must be the given
    certificate and carry the header's key); the chain is never returned.
  - Refuses a token issued in the future (C(iat) beyond O(leeway)), an expired one, and one whose C(eat_profile) is
    not Trustee's.
  - Computes the AR4SI tier of every trust claim and the status of every submod, types each submod by its name
    (C(cpu0), C(gpu0), C(switch0), C(ppcie0), C(nvidia-dpu0), C(dpu0), as Trustee names them C(<tee class><index>)),
    and explains each claim that is not affirming in words.
  - Compares the C(init_data) claim with the binding of the initdata the pod should run, and the KBS URL in its
    C(aa.toml) with the intended one.
  - Runs on the host that has the token; talks to nothing.
extends_documentation_fragment:
  - confidential.gpu._attributes
  - confidential.gpu._attributes.INFO_MODULE
options:
  token:
    description:
      - The C(/aa/token) response (JSON with C(token) and C(tee_keypair)) or the compact JWT alone.
      - The C(tee_keypair) private key is never returned.
    type: str
    required: true
  key:
    description:
      - PEM certificate (for example C(trustee-config-attestation-cert-secret)), PEM public key or JWK (JSON) of the
        Trustee attestation service.
      - Without it, the key embedded in the token is used, which proves integrity only; RV(ok) and RV(affirming) are
        then false.
    type: str
  expected_profile:
    description: The C(eat_profile) the token must carry (Trustee's C(profile_name); its default unless renamed).
    type: str
    default: tag:github.com,2024:confidential-containers/Trustee
  expected_init_data:
    description: Hex TDX MRCONFIGID or SNP HOSTDATA the C(init_data) claim must equal (the M(confidential.gpu.initdata) module returns both).
    type: str
  initdata:
    description: Initdata TOML the pod should run; its binding for O(tee) becomes the expected C(init_data).
    type: str
  tee:
    description: The TEE of O(initdata).
    type: str
    choices: [tdx, snp]
  expected_kbs_url:
    description: The KBS URL the pod's C(aa.toml) must name.
    type: str
  require_gpu:
    description: Report a problem when the token has no C(gpu) submod.
    type: bool
    default: false
  verify_signature:
    description: Check the signature.
    type: bool
    default: true
  leeway:
    description: Seconds of clock skew to tolerate when checking C(exp) and C(iat).
    type: int
    default: 0
  fail_on_problems:
    description: Fail when RV(problems) is not empty.
    type: bool
    default: false
requirements:
  - python >= 3.11
  - joserfc >= 1.0, or cryptography (used when joserfc is absent)
notes:
  - Trustee's default C(Restricted) resource policy releases secrets only when every submod is C(affirming);
    RV(affirming) says that, and only for a token whose signature was verified against O(key).
seealso:
  - module: confidential.gpu.initdata
"""

EXAMPLES = r"""
- name: Get a token from inside the pod
  kubernetes.core.k8s_exec:
    namespace: demo
    pod: sample-gpu-pod
    command: curl -s http://127.0.0.1:8006/aa/token?token_type=kbs
  register: aa_token

- name: Check it
  confidential.gpu.attestation_token_info:
    token: "{{ aa_token.stdout }}"
    key: "{{ trustee_attestation_cert }}"
    expected_init_data: "{{ initdata.tdx_mrconfigid }}"
    expected_kbs_url: https://kbs-service-trustee-operator-system.apps.example.com
    require_gpu: true
    fail_on_problems: true
  register: ear
"""

RETURN = r"""
ok:
  description: True when RV(problems) is empty (never without O(key)).
  returned: always
  type: bool
affirming:
  description: True when every submod's C(ear.status) is C(affirming) and the signature was verified against O(key).
  returned: always
  type: bool
claims_affirming:
  description: What the payload says (every submod C(affirming)), whoever signed it. Not a verdict.
  returned: always
  type: bool
trusted:
  description: The signature was verified against O(key) and the header's C(x5c) chain, if any, is O(key)'s.
  returned: always
  type: bool
devices:
  description: Submod names per kind (C(cpu), C(gpu), C(switch), C(ppcie), C(nvidia-dpu), C(dpu), C(unknown)).
  returned: always
  type: dict
profile:
  description: The token's C(eat_profile).
  returned: always
  type: str
issued_at:
  description: Issue time (UTC, ISO 8601).
  returned: always
  type: str
problems:
  description: Everything wrong with the token, one sentence each.
  returned: always
  type: list
  elements: str
submods:
  description:
    - Per submod (C(cpu0), C(gpu0), ...), its C(kind), C(status), the C(computed_status) from its trust vector, the
      C(trust_vector) with C(value), C(tier) and C(meaning) per AR4SI group, C(not_affirming) explanations, C(tee)
      and C(init_data).
  returned: always
  type: dict
signature:
  description:
    - C(checked), C(verified), C(key_source) (C(given), C(embedded-jwk), C(embedded-x5c)), C(library), C(error), C(note).
    - C(chain) - C(present), C(length), C(leaf_subject), C(leaf_is_given), C(jwk_matches_leaf), C(linked), C(error)
      for the header's C(x5c) (the certificates themselves are not returned).
  returned: when O(verify_signature=true)
  type: dict
expires_at:
  description: Expiry time (UTC, ISO 8601).
  returned: always
  type: str
expired:
  description: Whether the token has expired.
  returned: always
  type: bool
init_data:
  description: C(claim), C(expected) and C(match) for the C(init_data) claim.
  returned: when the token has the claim or an expectation was given
  type: dict
kbs_url:
  description: C(claim), C(expected) and C(match) for the KBS URL in the token's C(aa.toml) claims.
  returned: when the token has the claim or an expectation was given
  type: dict
gpus:
  description: Names of the GPU submods.
  returned: always
  type: list
  elements: str
claims:
  description: The token payload as decoded.
  returned: always
  type: dict
header:
  description: The JWS header (without any C(x5c) chain, also none inside C(jwk)).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.confidential.gpu.plugins.module_utils import ear
from ansible_collections.confidential.gpu.plugins.module_utils.initdata import InitdataError, bindings


def main():
    module = AnsibleModule(
        argument_spec=dict(
            token=dict(type="str", required=True, no_log=True),
            key=dict(type="str", no_log=False),
            expected_init_data=dict(type="str"),
            initdata=dict(type="str"),
            tee=dict(type="str", choices=["tdx", "snp"]),
            expected_kbs_url=dict(type="str"),
            require_gpu=dict(type="bool", default=False),
            verify_signature=dict(type="bool", default=True),
            leeway=dict(type="int", default=0),
            expected_profile=dict(type="str", default=ear.TRUSTEE_PROFILE),
            fail_on_problems=dict(type="bool", default=False),
        ),
        mutually_exclusive=[("expected_init_data", "initdata")],
        required_together=[("initdata", "tee")],
        supports_check_mode=True,
    )
    params = module.params
    if params["verify_signature"] and not (ear.HAS_JOSERFC or ear.HAS_CRYPTOGRAPHY):
        module.fail_json(msg=missing_required_lib("joserfc or cryptography"), exception=ear.JOSERFC_IMPORT_ERROR)
    expected = params["expected_init_data"]
    if params["initdata"] is not None:
        try:
            expected = bindings(params["initdata"])["tdx_mrconfigid" if params["tee"] == "tdx" else "snp_hostdata"]
        except InitdataError as exc:
            module.fail_json(msg="initdata: {0}".format(exc))
    try:
        result = ear.inspect(params["token"], key=params["key"], expected_init_data=expected,
                             expected_kbs_url=params["expected_kbs_url"], require_gpu=params["require_gpu"],
                             verify_signature=params["verify_signature"], leeway=params["leeway"],
                             expected_profile=params["expected_profile"])
    except ear.EarError as exc:
        module.fail_json(msg=str(exc))
    if params["fail_on_problems"] and result["problems"]:
        module.fail_json(msg="The attestation token does not prove a good attestation: " + "; ".join(result["problems"]),
                         **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
