# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The smoke proof's decisions: the result line of THE CONTRACT, each named check, refusals with reasons.

Tokens are signed here with joserfc as test setup (ES256, a fresh P-256 key and certificate); the
judge is the module's ``judge`` with the collection's EAR reader behind it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from joserfc import jws
from joserfc.jwk import ECKey

from ansible_collections.confidential.gpu.plugins.module_utils import initdata, smoke
from ansible_collections.confidential.gpu.plugins.module_utils.smoke import SmokeError
from ansible_collections.confidential.gpu.plugins.modules.smoke_result import argspec, judge

KBS = "https://kbs-trustee-operator-system.apps.twin.example"
SECRET = b"not-a-real-secret-0123456789abcdef"
SECRET_SHA = hashlib.sha256(SECRET).hexdigest()
VECTORADD_OK = ["[Vector addition of 50000 elements]", "Copy input data from the host memory to the CUDA device",
                "CUDA kernel launch with 196 blocks of 256 threads", "Copy output data from the CUDA device to the host memory",
                "Test PASSED", "Done"]


def result_line(va=0, token_status=200, token=None, token_error=None, res_status=200, sha=SECRET_SHA, res_error=None):
    body = {"vectoradd": {"exit_code": va}, "token": {"status": token_status, "token": token, "error": token_error},
            "resource": {"status": res_status, "sha256": sha, "error": res_error}}
    return smoke.RESULT_MARKER + " " + json.dumps(body, separators=(",", ":"))


def log(*lines):
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def signer():
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trustee attestation token signer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
            .serial_number(7).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(private, hashes.SHA256()))
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return ECKey.import_key(pem), cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def toml():
    return initdata.render(KBS, policy="custom", policy_text=smoke.agent_policy())


def claims_for(toml_text, cpu_status="affirming", gpu=True, iat=None, exp=None, url=KBS):
    iat = int(time.time()) if iat is None else iat
    binding = initdata.tee_binding(initdata.digest(toml_text), "tdx").hex()
    cpu_vector = {"instance-identity": 0, "configuration": 2, "executables": 3, "file-system": 0, "hardware": 2,
                  "runtime-opaque": 0, "storage-opaque": 0, "sourced-data": 0}
    if cpu_status != "affirming":
        cpu_vector["configuration"] = 96
    submods = {"cpu0": {
        "ear.status": cpu_status, "ear.trustworthiness-vector": cpu_vector, "ear.appraisal-policy-id": "default_cpu",
        "ear.veraison.annotated-evidence": {
            "init_data": binding,
            "init_data_claims": {"aa.toml": {"token_configs": {"kbs": {"url": url}}}},
            "tdx": {"quote": {"body": {"mr_config_id": binding}}}}}}
    if gpu:
        submods["gpu0"] = {
            "ear.status": "affirming",
            "ear.trustworthiness-vector": {"instance-identity": 0, "configuration": 3, "executables": 3,
                                           "file-system": 0, "hardware": 2, "runtime-opaque": 0,
                                           "storage-opaque": 0, "sourced-data": 0},
            "ear.appraisal-policy-id": "default_gpu",
            "ear.veraison.annotated-evidence": {"nvidia": {"secboot": True, "dbgstat": "disabled"}}}
    return {"eat_profile": "tag:github.com,2024:confidential-containers/Trustee", "iat": iat,
            "exp": (iat + 300) if exp is None else exp, "iss": "CoCo-Attestation-Service",
            "ear.verifier-id": {"developer": "https://confidentialcontainers.org", "build": "attestation-service 0.1.0"},
            "submods": submods}


def sign(claims, key):
    header = {"alg": "ES256", "typ": "JWT", "jwk": key.as_dict(private=False)}
    return jws.serialize_compact(header, json.dumps(claims), key)


def params(**over):
    base = {k: v.get("default") for k, v in argspec().items()}
    base.update(secret_sha256=SECRET_SHA, kbs_url=KBS, tee="tdx")
    base.update(over)
    return base


def by_name(checks):
    return {c["name"]: c for c in checks}


# -- the agent policy and the tampered initdata -------------------------------------------------


def test_agent_policy_allows_reading_the_log_and_refuses_exec():
    rego = smoke.agent_policy()
    assert rego.startswith("package agent_policy\n")
    assert "default ExecProcessRequest := false" in rego
    assert "default ReadStreamRequest := true" in rego
    # every request the agent knows is named (a request without a rule is denied by the agent)
    for request in initdata.AGENT_REQUESTS:
        assert "default {0} := ".format(request) in rego
    assert rego.count(":= false") == 1


def test_agent_policy_refuses_unknown_requests():
    with pytest.raises(SmokeError, match="ExecProcesRequest"):
        smoke.agent_policy(["ExecProcesRequest"])


def test_initdata_with_the_smoke_policy_validates_as_exec_denied_log_allowed(toml):
    info = initdata.validate(toml)
    assert info["kbs_url"] == KBS


def test_tamper_changes_exactly_one_byte_and_the_binding(toml):
    bad = smoke.tamper(toml)
    assert len(bad) == len(toml)
    assert sum(a != b for a, b in zip(bad, toml)) == 1
    assert initdata.validate(bad)["kbs_url"] == KBS
    assert initdata.tee_binding(initdata.digest(bad), "tdx") != initdata.tee_binding(initdata.digest(toml), "tdx")


# -- reading the log ----------------------------------------------------------------------------


def test_parse_log_reads_the_last_line_and_vectoradd_output():
    parsed = smoke.parse_log(log(*VECTORADD_OK, result_line(token="a.b.c")))
    assert parsed["vectoradd"] == {"exit_code": 0}
    assert parsed["vectoradd_passed"] is True
    assert parsed["token"] == {"status": 200, "token": "a.b.c", "error": None}
    assert parsed["resource"]["sha256"] == SECRET_SHA


@pytest.mark.parametrize("text,match", [
    ("", "empty"),
    ("Test PASSED\nDone\n", "not a CGPU-SMOKE-RESULT line"),
    (result_line() + "\nsomething after\n", "not a CGPU-SMOKE-RESULT line"),
    ("CGPU-SMOKE-RESULT {not json\n", "not JSON"),
    ("CGPU-SMOKE-RESULT []\n", "not a JSON object"),
    ('CGPU-SMOKE-RESULT {"vectoradd": {"exit_code": 0}, "token": {}}\n', "'resource'"),
    (result_line(va="0"), "vectoradd.exit_code"),
    (result_line(sha="zz"), "resource.sha256"),
])
def test_parse_log_refuses_what_is_not_the_contract(text, match):
    with pytest.raises(SmokeError, match=match):
        smoke.parse_log(text)


# -- the positive case ------------------------------------------------------------------------------


def test_positive_pod_passes_every_check(signer, toml):
    key, cert = signer
    token = sign(claims_for(toml), key)
    checks, claims, result = judge(params(token_cert=cert, initdata=toml), log(*VECTORADD_OK, result_line(token=token)))
    assert [c["status"] for c in checks] == ["pass"] * 8, checks
    assert [c["name"] for c in checks] == ["vectorAdd on the GPU", "token signature", "token freshness",
                                           "cpu0 affirming", "gpu0 affirming", "init_data binding", "KBS URL",
                                           "secret released"]
    assert not any(c["negative"] for c in checks)
    assert claims["cpu0"]["status"] == "affirming" and claims["cpu0"]["vector"]["executables"] == 3
    assert claims["gpu0"]["vector"]["configuration"] == 3
    assert claims["init_data"] == initdata.tee_binding(initdata.digest(toml), "tdx").hex()
    assert claims["kbs_url"] == KBS
    assert result["token"]["token"] is True and token not in json.dumps(result)
    assert smoke.summary(checks)["passed"] is True


def test_a_token_signed_by_another_key_fails_signature_and_affirming(signer, toml):
    cert = signer[1]
    other = ECKey.generate_key("P-256")
    token = sign(claims_for(toml), other)
    checks = by_name(judge(params(token_cert=cert, initdata=toml), log(*VECTORADD_OK, result_line(token=token)))[0])
    assert checks["token signature"]["status"] == "fail"
    assert checks["cpu0 affirming"]["status"] == "fail"
    assert "signature was not verified" in checks["cpu0 affirming"]["detail"]


def test_no_certificate_means_no_signature_pass(signer, toml):
    key = signer[0]
    checks = by_name(judge(params(initdata=toml), log(*VECTORADD_OK, result_line(token=sign(claims_for(toml), key))))[0])
    assert checks["token signature"]["status"] == "fail"


def test_expired_token_and_other_initdata_and_url_fail_by_name(signer, toml):
    key, cert = signer
    old = int(time.time()) - 3600
    token = sign(claims_for(smoke.tamper(toml), iat=old, exp=old + 300, url="https://elsewhere.example"), key)
    checks = by_name(judge(params(token_cert=cert, initdata=toml), log(*VECTORADD_OK, result_line(token=token)))[0])
    assert checks["token freshness"]["status"] == "fail"
    assert checks["init_data binding"]["status"] == "fail"
    assert checks["KBS URL"]["status"] == "fail"
    assert checks["vectorAdd on the GPU"]["status"] == "pass"


def test_missing_gpu_submod_and_failed_vectoradd(signer, toml):
    key, cert = signer
    token = sign(claims_for(toml, gpu=False), key)
    text = log("Failed to allocate device vector A (error code CUDA-capable device(s) is/are busy or unavailable)!",
               result_line(va=1, token=token))
    checks = by_name(judge(params(token_cert=cert, initdata=toml), text)[0])
    assert checks["gpu0 affirming"]["status"] == "fail" and "no gpu0 submod" in checks["gpu0 affirming"]["detail"]
    assert checks["vectorAdd on the GPU"]["status"] == "fail"
    assert "exit code 1" in checks["vectorAdd on the GPU"]["detail"]


def test_wrong_digest_of_the_secret_fails(signer, toml):
    key, cert = signer
    text = log(*VECTORADD_OK, result_line(token=sign(claims_for(toml), key), sha="0" * 64))
    checks = by_name(judge(params(token_cert=cert, initdata=toml), text)[0])
    assert checks["secret released"]["status"] == "fail"


def test_no_token_fails_every_token_check_with_the_api_error(toml):
    text = log(*VECTORADD_OK, result_line(token_status=500, token_error="attestation failed", res_status=500, sha=None,
                                          res_error="rpc error"))
    checks = judge(params(initdata=toml), text)[0]
    assert [c["status"] for c in checks[1:]] == ["fail"] * 7
    assert "attestation failed" in checks[1]["detail"]


def test_positive_without_a_result_line_fails_with_why():
    checks, claims, result = judge(params(), "Test PASSED\n")
    assert all(c["status"] == "fail" for c in checks) and "not a CGPU-SMOKE-RESULT" in checks[0]["detail"]
    assert result is None and claims["cpu0"] is None


# -- negative cases -----------------------------------------------------------------------------------


def test_negative_pass_only_when_refused_with_trustees_reason():
    text = log(*VECTORADD_OK, result_line(token="x.y.z", res_status=401, sha=None,
                                          res_error='{"type":"PolicyDeny","detail":"Resource policy denied"}'))
    [check] = judge(params(case="negative", check_name="refused: initdata one byte changed"), text)[0]
    assert check["status"] == "pass" and check["negative"] is True
    assert check["name"] == "refused: initdata one byte changed"
    assert "PolicyDeny" in check["reason"]


def test_negative_connection_refused_is_a_refusal():
    [check] = judge(params(case="negative", check_name="refused: runtime class kata"),
                    log(result_line(va=1, token_status=0, token_error=None, res_status=0, sha=None)))[0]
    assert check["status"] == "pass"
    assert "connection refused" in check["reason"]


def test_negative_that_gets_the_secret_fails_loudly():
    [check] = judge(params(case="negative", check_name="refused: debug TD"), log(result_line(token="x.y.z")))[0]
    assert check["status"] == "fail" and "NOT REFUSED" in check["detail"]
    assert smoke.summary([check])["leaked"] == ["refused: debug TD"]


def test_negative_without_result_line_is_refused_with_what_happened():
    [check] = judge(params(case="negative", check_name="refused: x"), "kata: initdata malformed\n")[0]
    assert check["status"] == "pass" and "not a CGPU-SMOKE-RESULT" in check["reason"]


# -- check mode and the summary --------------------------------------------------------------------


def test_would_checks_never_pass():
    checks = smoke.would_checks(["refused: runtime class kata"])
    assert {c["status"] for c in checks} == {"would"}
    assert checks[-1]["negative"] is True
    assert smoke.summary(checks)["passed"] is False


def test_summary_needs_a_check_that_ran():
    assert smoke.summary([])["passed"] is False
    assert smoke.summary([smoke.check("a", "pass", ""), smoke.check("b", "skip", "")])["passed"] is True
    with pytest.raises(ValueError):
        smoke.check("a", "PASS", "")


# -- a reference value made wrong ---------------------------------------------------------------------

def test_the_launch_measurement_is_made_wrong_in_the_format_the_configmap_uses():
    from ansible_collections.confidential.gpu.plugins.module_utils import reference_values as rv

    values = {"mr_td": {"value": ["ab" * 48], "expiration": "2099-12-31T00:00:00Z"},
              "xfam": {"value": ["e7"], "expiration": "2099-12-31T00:00:00Z"}}
    for key, fmt in ((rv.KEY_KV, "kv-base64"), (rv.KEY_LIST, "list")):
        data = {key: rv.dump(values, fmt), "other": "kept"}
        wrong = smoke.wrong_reference_value(data, "tdx")
        assert wrong["other"] == "kept" and data[key] == rv.dump(values, fmt)  # the input is left alone
        read = rv.load(wrong[key])
        assert read["mr_td"]["value"] == ["00" * 48]
        assert read["xfam"] == values["xfam"]


def test_a_wrong_reference_value_needs_one_to_replace():
    from ansible_collections.confidential.gpu.plugins.module_utils import reference_values as rv

    with pytest.raises(smoke.SmokeError, match="snp_launch_measurement is not set"):
        smoke.wrong_reference_value({rv.KEY_KV: "{}"}, "snp")
    with pytest.raises(smoke.SmokeError, match="neither"):
        smoke.wrong_reference_value({}, "tdx")
    with pytest.raises(smoke.SmokeError, match="tee"):
        smoke.wrong_reference_value({rv.KEY_KV: "{}"}, "sev")


def test_a_refusal_carries_what_the_pods_own_token_said():
    result = {"vectoradd": {"exit_code": 0}, "token": {"status": 200, "token": "x", "error": None},
              "resource": {"status": 500, "sha256": None, "error": "403 PolicyDeny: Access denied by policy"}}
    report = {"submods": {"cpu0": {"status": "warning", "not_affirming": ["configuration 36 (warning): unavailable"]},
                          "gpu0": {"status": "affirming", "not_affirming": []}}}
    checked = smoke.negative_check("refused: debug TD", result, "ab", token_report=report)
    assert checked["status"] == "pass"
    assert checked["reason"] == ("403 PolicyDeny: Access denied by policy (Trustee's token: cpu0 warning: "
                                 "configuration 36 (warning): unavailable)")
    assert smoke.negative_check("n", result, "ab")["reason"] == "403 PolicyDeny: Access denied by policy"


def _pod(phase=None):
    return {"metadata": {"name": "smoke-1", "namespace": "cgpu-smoke"}, "status": {"phase": phase} if phase else {}}


def _event(reason, involved="smoke-1", message="", camel=True):
    ref = {"kind": "Pod", "name": involved, "namespace": "cgpu-smoke"}
    return {"metadata": {"name": involved + ".1"}, "reason": reason, "message": message,
            ("involvedObject" if camel else "involved_object"): ref}


def test_a_finished_pod_is_finished_whatever_its_events_say():
    refusal = _event("FailedCreatePodSandBox", message="initdata does not parse")
    assert smoke.pod_outcome(_pod("Succeeded"), [refusal], "smoke-1") == ("finished", "phase Succeeded")
    assert smoke.pod_outcome(_pod("Failed"), [], "smoke-1") == ("finished", "phase Failed")


def test_a_pending_pod_is_refused_only_by_its_own_sandbox_event():
    mine = _event("FailedCreatePodSandBox", message="rpc error: CreateContainer failed", camel=False)
    other = _event("FailedCreatePodSandBox", involved="smoke-2", message="not this pod")
    assert smoke.pod_outcome(_pod("Pending"), [other, _event("Scheduled")], "smoke-1") == (None, "phase Pending")
    assert smoke.pod_outcome(_pod(), [other, mine], "smoke-1") == ("refused", "rpc error: CreateContainer failed")
    assert smoke.pod_outcome(_pod(), [_event("FailedCreatePodSandBox")], "smoke-1") == \
        ("refused", "FailedCreatePodSandBox")


def test_a_pod_that_is_gone_cannot_be_judged():
    with pytest.raises(SmokeError, match="pod cgpu-smoke/smoke-1 does not exist"):
        smoke.pod_outcome(None, [], "smoke-1", "cgpu-smoke")
