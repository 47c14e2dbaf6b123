#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: smoke_result
short_description: Wait for a confidential smoke pod to finish, read its log and decide each check
version_added: 0.1.0
author:
  - confidential.gpu team (@confidential-gpu)
description:
  - Watches the pod until it has finished, reads its log through the API (C(pods/log)) and parses its last line,
    C(CGPU-SMOKE-RESULT <json>) (vectorAdd's exit code, the in-pod API's token answer, the KBS resource's
    status and SHA-256).
  - For the positive case (O(case=positive)) decides, each as one named check, vectorAdd C(Test PASSED), the EAR
    token's signature against Trustee's token certificate, its freshness, C(cpu0) and C(gpu0) affirming (with their
    trust vectors), C(init_data) equal to the binding of the rendered initdata, the KBS URL, and the secret's digest.
  - For a negative case (O(case=negative)) the one check passes only when the pod did not get the secret, and
    carries Trustee's reason; a negative pod that got it fails the check.
  - In check mode nothing is waited for or read; the checks say C(would).
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - confidential.gpu._attributes
  - confidential.gpu._attributes.ACTIONGROUP_CGPU
attributes:
  check_mode:
    support: full
    details:
      - Reads nothing; returns the checks that would run with status C(would).
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  name:
    description: The pod's name. Required unless in check mode or O(log) is given.
    type: str
  namespace:
    description: The pod's namespace.
    type: str
    default: default
  container:
    description: The container whose log holds the result line.
    type: str
    default: smoke
  case:
    description: V(positive) expects attestation and the secret; V(negative) expects a refusal.
    type: str
    choices: [positive, negative]
    default: positive
  check_name:
    description: "Name of the negative case's check, for example C(refused: initdata one byte changed)."
    type: str
  secret_sha256:
    description: Hex SHA-256 of the secret the KBS resource holds (the secret itself is never given).
    type: str
    required: true
  token_cert:
    description: PEM certificate of Trustee's attestation-token signer; the token's signature is checked against it.
    type: str
  initdata:
    description: The initdata TOML the positive pod runs; its binding for O(tee) is the expected C(init_data).
    type: str
  tee:
    description: The TEE the pod runs in.
    type: str
    choices: [tdx, snp]
  kbs_url:
    description: The KBS URL the pod's initdata names.
    type: str
  leeway:
    description: Seconds of clock skew tolerated when checking the token's C(iat) and C(exp).
    type: int
    default: 30
  timeout:
    description: Seconds to wait for the pod to finish.
    type: int
    default: 900
  log:
    description: Judge this log text instead of reading a pod (no cluster is contacted).
    type: str
  progress_file:
    description: Internal, a pipe the action plugin reads progress lines from while the module runs.
    type: str
requirements:
  - python >= 3.11
  - kubernetes >= 24.2.0
notes:
  - The token is never returned, nor its C(tee_keypair); the secret is only compared by digest.
seealso:
  - module: confidential.gpu.attestation_token_info
  - module: confidential.gpu.initdata
"""

EXAMPLES = r"""
- name: Judge the positive smoke pod
  confidential.gpu.smoke_result:
    name: "{{ pod.result.metadata.name }}"
    namespace: cgpu-smoke
    secret_sha256: "{{ secret | hash('sha256') }}"
    token_cert: "{{ token_cert_pem }}"
    initdata: "{{ initdata.toml }}"
    tee: tdx
    kbs_url: https://kbs-trustee-operator-system.apps.example.com
  register: positive

- name: Judge a negative one
  confidential.gpu.smoke_result:
    name: "{{ tampered.result.metadata.name }}"
    namespace: cgpu-smoke
    case: negative
    check_name: "refused: initdata one byte changed"
    secret_sha256: "{{ secret | hash('sha256') }}"
"""

RETURN = r"""
checks:
  description: One entry per check, C(name), C(status) (C(pass), C(fail), C(would)), C(detail), C(negative), C(reason).
  returned: always
  type: list
  elements: dict
passed:
  description: True when every check passed.
  returned: always
  type: bool
claims:
  description: For the positive case, C(cpu0) and C(gpu0) (C(status), C(tee), C(vector)), C(init_data), C(kbs_url), C(issuer), C(expires_at).
  returned: when O(case=positive)
  type: dict
pod:
  description: C(name), C(phase), C(exit_code) of the pod's container and C(outcome) (C(finished), or C(refused) when its sandbox never started).
  returned: unless in check mode
  type: dict
result:
  description: The parsed result line, the token replaced by whether there was one.
  returned: when the log had a result line
  type: dict
progress:
  description: The lines said while waiting for the pod (heartbeats naming its last state), with the seconds since the wait began.
  returned: when a pod was waited for
  type: list
  elements: str
"""

import copy

from ansible_collections.confidential.gpu.plugins.module_utils import ear, smoke
from ansible_collections.confidential.gpu.plugins.module_utils._k8s import CgpuModule, CoreException
from ansible_collections.confidential.gpu.plugins.module_utils.initdata import InitdataError, digest, tee_binding


def argspec():
    return dict(
        name=dict(type="str"),
        namespace=dict(type="str", default="default"),
        container=dict(type="str", default="smoke"),
        case=dict(type="str", choices=["positive", "negative"], default="positive"),
        check_name=dict(type="str"),
        secret_sha256=dict(type="str", required=True, no_log=False),
        token_cert=dict(type="str", no_log=False),
        initdata=dict(type="str"),
        tee=dict(type="str", choices=["tdx", "snp"]),
        kbs_url=dict(type="str"),
        leeway=dict(type="int", default=30),
        timeout=dict(type="int", default=900),
        log=dict(type="str"),
        progress_file=dict(type="str"),
    )


def judge(params, log, pod_error=None):
    """(checks, claims, result) for one pod's log; pure apart from the clock."""
    try:
        result = smoke.parse_log(log) if pod_error is None else None
        error = pod_error
    except smoke.SmokeError as exc:
        result, error = None, str(exc)
    if params["case"] == "negative":
        name = params["check_name"] or "refused: negative case"
        token_report = None
        if result is not None and result["token"]["token"] and params["token_cert"]:
            try:
                token_report = ear.inspect(result["token"]["token"], key=params["token_cert"], leeway=params["leeway"])
            except ear.EarError:
                token_report = None  # the refusal stands on the KBS's answer alone
        return [smoke.negative_check(name, result, params["secret_sha256"], error=error,
                                     token_report=token_report)], None, _public(result)
    if result is None:
        checks = [smoke.check(n, "fail", error) for n in (
            "vectorAdd on the GPU", "token signature", "token freshness", "cpu0 affirming", "gpu0 affirming",
            "init_data binding", "KBS URL", "secret released")]
        return checks, smoke.claims(None, params["kbs_url"]), None
    report, report_error = None, None
    if result["token"]["token"]:
        expected = None
        if params["initdata"] and params["tee"]:
            try:
                expected = tee_binding(digest(params["initdata"]), params["tee"]).hex()
            except InitdataError as exc:
                report_error = "the rendered initdata does not bind: {0}".format(exc)
        try:
            report = ear.inspect(result["token"]["token"], key=params["token_cert"], expected_init_data=expected,
                                 expected_kbs_url=params["kbs_url"], require_gpu=True, leeway=params["leeway"])
        except ear.EarError as exc:
            report_error = "the token cannot be read: {0}".format(exc)
    checks = smoke.positive_checks(result, report, params["secret_sha256"], leeway=params["leeway"],
                                   report_error=report_error)
    return checks, smoke.claims(report, params["kbs_url"]), _public(result)


def _public(result):
    if result is None:
        return None
    out = copy.deepcopy(result)
    out["token"]["token"] = bool(result["token"]["token"])
    return out


class SmokeResult(CgpuModule):
    def _wait(self, name, namespace):
        """(outcome, pod, line): follow the pod and its Events until it finished or its sandbox was refused.

        Judged after each burst of changes on the latest state (smoke.pod_outcome); outages of the API
        are retried until the deadline (CgpuModule.follow). The Events are those whose
        ``involvedObject.name`` is the pod's, a field the API server selects Events by (kubernetes
        pkg/registry/core/event/strategy.go ToSelectableFields).
        """
        pods = self.informer("v1", "Pod", namespace=namespace, field_selector="metadata.name=" + name)
        events = self.informer("v1", "Event", namespace=namespace, field_selector="involvedObject.name=" + name)
        seen = {}

        def judge():
            pod = pods.objects.get((namespace, name))
            try:
                seen["outcome"], line = smoke.pod_outcome(pod, events.values(), name, namespace)
            except smoke.SmokeError as exc:
                raise CoreException(str(exc))
            seen["pod"] = pod
            return seen["outcome"] is not None, line

        _done, line = self.follow([pods, events], judge, self.params["timeout"],
                                  "pod {0}/{1} to finish".format(namespace, name))
        return seen["outcome"], seen["pod"], line

    def _log(self, name, namespace):
        return self.pod_log(name, namespace, container=self.params["container"])

    def execute_module(self):
        params = self.params
        negatives = [params["check_name"] or "refused: negative case"] if params["case"] == "negative" else []
        if self.check_mode and params["log"] is None:
            checks = smoke.would_checks(negatives) if params["case"] == "positive" else smoke.would_checks(negatives)[-1:]
            self.exit_json(changed=False, checks=checks, passed=False,
                           claims=smoke.claims(None, params["kbs_url"]) if params["case"] == "positive" else None)
        pod_info, pod_error, log = None, None, None
        if params["log"] is not None:
            log = params["log"]
        else:
            if not params["name"]:
                self.fail_json(msg="name is required to read a pod (or give log)")
            outcome, pod, line = self._wait(params["name"], params["namespace"])
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            state = next((s.get("state") or {} for s in statuses if s.get("name") == params["container"]), {})
            pod_info = {"name": params["name"], "phase": pod["status"].get("phase"),
                        "exit_code": (state.get("terminated") or {}).get("exitCode"), "outcome": outcome}
            if outcome == "refused":
                pod_error = "the pod's sandbox was refused: " + line
            else:
                log = self._log(params["name"], params["namespace"])
        checks, claims, result = judge(params, log, pod_error=pod_error)
        out = dict(changed=False, checks=checks, passed=smoke.summary(checks)["passed"], result=result)
        if claims is not None:
            out["claims"] = claims
        if pod_info is not None:
            out["pod"], out["progress"] = pod_info, self.progress_lines
        self.exit_json(**out)


def main():
    SmokeResult(argument_spec=argspec(), supports_check_mode=True).run()


if __name__ == "__main__":
    main()
