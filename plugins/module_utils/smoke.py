# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The smoke proof's decisions: what a smoke pod's log line says and which named check passes.

A confidential GPU pod prints one line ``CGPU-SMOKE-RESULT <json>`` as its last log line (vectorAdd's
exit code, the in-pod API's token answer, the resource's status and SHA-256). The role judges from
that line alone, so no exec into the pod is needed and the same pod works on a real cluster.

Every check is one dict ``{name, status, detail, negative, reason}`` with ``status`` one of
``pass``, ``fail``, ``would`` (check mode: nothing ran) or ``skip``. A negative case passes only
when Trustee refused; a negative pod that got the secret is a loud ``fail``.
"""

from __future__ import annotations

import datetime
import json
import re

from ansible_collections.confidential.gpu.plugins.module_utils import reference_values as rv
from ansible_collections.confidential.gpu.plugins.module_utils.initdata import AGENT_REQUESTS

RESULT_MARKER = "CGPU-SMOKE-RESULT"
# The CUDA sample's own last line on success (cuda-samples Samples/0_Introduction/vectorAdd/vectorAdd.cu
# prints "Test PASSED" before "Done"); failures print "Failed to ..." and exit non-zero.
VECTORADD_PASSED = "Test PASSED"
STATUSES = ("pass", "fail", "would", "skip")
# The launch measurement each TEE's default CPU policy compares first: made wrong, no guest is the
# expected one, so Trustee must refuse even the proof's own pod (trustee-operator's
# ear_default_attestation_policy_cpu.rego: TDX mr_td for hardware, SNP snp_launch_measurement for executables).
WRONG_REFERENCE_VALUE = {"tdx": "mr_td", "snp": "snp_launch_measurement"}


class SmokeError(ValueError):
    """A smoke pod log that cannot be judged (no result line, or one that is not the contract's JSON)."""


# --------------------------------------------------------------------------------------------
# the pod's agent policy


def agent_policy(denied=("ExecProcessRequest",)) -> str:
    """Kata agent policy allowing every request but ``denied``.

    The default denies only ``ExecProcessRequest``: the proof reads the container log
    (``ReadStreamRequest``) and never execs. Same shape as upstream kata's test policy
    (kata-containers tests/integration/kubernetes/runtimeclass_workloads/allow-all-except-exec-process.rego,
    used by k8s-exec-rejected.bats): every request a default, only exec false. A request the agent knows
    but the policy does not name is denied by the agent, so all of ``AGENT_REQUESTS`` are named.
    """
    denied = set(denied or ())
    unknown = sorted(denied - set(AGENT_REQUESTS))
    if unknown:
        raise SmokeError("agent policy: unknown request(s) {0}; the agent knows {1}".format(
            ", ".join(unknown), ", ".join(AGENT_REQUESTS)))
    lines = ["package agent_policy", ""]
    lines.extend("default {0} := {1}".format(req, "false" if req in denied else "true") for req in AGENT_REQUESTS)
    return "\n".join(lines) + "\n"


def tamper(toml_text: str) -> str:
    """The same initdata with exactly one byte changed, still valid TOML that means the same.

    The final newline becomes a space (trailing whitespace is insignificant to TOML), so the guest
    runs it as before while its digest, and so its TDX MRCONFIGID / SNP HOSTDATA, differ from the
    pinned one.
    """
    if not isinstance(toml_text, str) or not toml_text.endswith("\n"):
        raise SmokeError("tamper: expected initdata TOML ending in a newline")
    return toml_text[:-1] + " "


# --------------------------------------------------------------------------------------------
# reading the log


def _int(value, where):
    if isinstance(value, bool) or not isinstance(value, int):
        raise SmokeError("{0}: expected an integer, got {1!r}".format(where, value))
    return value


def _text_or_none(value, where):
    if value is not None and not isinstance(value, str):
        raise SmokeError("{0}: expected text or null, got {1!r}".format(where, value))
    return value


def parse_log(log: str) -> dict:
    """The result line of a smoke pod's log, checked against the contract.

    Returns ``{vectoradd: {exit_code}, token: {status, token, error}, resource: {status, sha256, error},
    vectoradd_output: [lines above the result], vectoradd_passed: bool}``. The last non-empty line must
    be the result line; anything else is a :class:`SmokeError` naming what was found.
    """
    lines = [line.rstrip("\r") for line in (log or "").splitlines()]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise SmokeError("the pod's log is empty: the smoke script did not run (or the log could not be read)")
    last = lines[-1].strip()
    if not last.startswith(RESULT_MARKER + " "):
        raise SmokeError("the pod's last log line is not a {0} line: {1!r}".format(RESULT_MARKER, last[:200]))
    try:
        data = json.loads(last[len(RESULT_MARKER) + 1:])
    except ValueError as exc:
        raise SmokeError("the {0} line is not JSON: {1}".format(RESULT_MARKER, exc))
    if not isinstance(data, dict):
        raise SmokeError("the {0} line is not a JSON object".format(RESULT_MARKER))
    for part in ("vectoradd", "token", "resource"):
        if not isinstance(data.get(part), dict):
            raise SmokeError("the {0} line has no {1!r} object".format(RESULT_MARKER, part))
    token = data["token"]
    resource = data["resource"]
    sha = _text_or_none(resource.get("sha256"), "resource.sha256")
    if sha is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha):
        raise SmokeError("resource.sha256: not a SHA-256 in hex: {0!r}".format(sha[:80]))
    above = lines[:-1]
    return {
        "vectoradd": {"exit_code": _int(data["vectoradd"].get("exit_code"), "vectoradd.exit_code")},
        "token": {
            "status": _int(token.get("status"), "token.status"),
            "token": _text_or_none(token.get("token"), "token.token"),
            "error": _text_or_none(token.get("error"), "token.error"),
        },
        "resource": {
            "status": _int(resource.get("status"), "resource.status"),
            "sha256": sha.lower() if sha else None,
            "error": _text_or_none(resource.get("error"), "resource.error"),
        },
        "vectoradd_output": above[-20:],
        "vectoradd_passed": any(VECTORADD_PASSED in line for line in above),
    }


# --------------------------------------------------------------------------------------------
# deciding


def check(name, status, detail, negative=False, reason=None) -> dict:
    if status not in STATUSES:
        raise ValueError("check status {0!r} not in {1}".format(status, STATUSES))
    return {"name": name, "status": status, "detail": detail, "negative": bool(negative), "reason": reason}


def _verdict(ok):
    return "pass" if ok else "fail"


def _vector_text(submod):
    vector = (submod or {}).get("trust_vector") or {}
    return ", ".join("{0}={1}".format(group, (entry or {}).get("value")) for group, entry in sorted(vector.items()))


def _parse_time(text):
    if not text:
        return None
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def positive_checks(result: dict, report: dict | None, secret_sha256: str, now=None, leeway: int = 0,
                    report_error: str | None = None) -> list:
    """The checks of the positive pod, from its parsed log line and the EAR reader's report of its token.

    ``report`` is what ``ear.inspect`` returned for the token (verified against Trustee's token
    certificate, with the expected ``init_data`` and KBS URL), or None when there was no token to read
    (``report_error`` says why).
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    checks = []
    va = result["vectoradd"]["exit_code"]
    checks.append(check(
        "vectorAdd on the GPU", _verdict(va == 0 and result["vectoradd_passed"]),
        "exit code {0}, {1}".format(va, "'Test PASSED' printed" if result["vectoradd_passed"]
                                    else "no 'Test PASSED' in its output: " + " | ".join(result["vectoradd_output"][-3:]))))
    token = result["token"]
    if report is None:
        why = report_error or "HTTP {0} from /aa/token: {1}".format(token["status"], token["error"] or "no token")
        for name in ("token signature", "token freshness", "cpu0 affirming", "gpu0 affirming", "init_data binding",
                     "KBS URL"):
            checks.append(check(name, "fail", "no token to check: " + why))
    else:
        sig = report.get("signature") or {}
        signed = bool(sig.get("verified")) and sig.get("key_source") == "given"
        checks.append(check("token signature", _verdict(signed),
                            "ES256 verified against Trustee's token certificate" if signed else
                            "not verified against Trustee's token certificate: {0}".format(
                                sig.get("error") or "key source {0}".format(sig.get("key_source")))))
        issued = _parse_time(report.get("issued_at"))
        expires = _parse_time(report.get("expires_at"))
        skew = datetime.timedelta(seconds=leeway)
        fresh = (expires is not None and now < expires + skew and issued is not None and issued <= now + skew)
        checks.append(check("token freshness", _verdict(fresh),
                            "issued {0}, expires {1}".format(report.get("issued_at"), report.get("expires_at"))))
        submods = report.get("submods") or {}
        for name in ("cpu0", "gpu0"):
            sub = submods.get(name)
            if sub is None:
                checks.append(check(name + " affirming", "fail", "the token has no {0} submod (present: {1})".format(
                    name, ", ".join(sorted(submods)) or "none")))
                continue
            ok = sub.get("status") == "affirming" and signed
            detail = "{0} ({1})".format(sub.get("status"), _vector_text(sub))
            if sub.get("status") == "affirming" and not signed:
                detail += "; not trusted: the signature was not verified"
            elif sub.get("not_affirming"):
                detail += ": " + "; ".join(sub["not_affirming"])
            checks.append(check(name + " affirming", _verdict(ok), detail))
        init = report.get("init_data") or {}
        checks.append(check("init_data binding", _verdict(init.get("match") is True),
                            "claim {0}, rendered initdata binds to {1}".format(init.get("claim"), init.get("expected"))))
        url = report.get("kbs_url") or {}
        checks.append(check("KBS URL", _verdict(url.get("match") is True),
                            "aa.toml in the token names {0!r}, expected {1!r}".format(url.get("claim"), url.get("expected"))))
    resource = result["resource"]
    expected = (secret_sha256 or "").lower()
    got = resource["sha256"]
    if resource["status"] == 200 and got == expected:
        checks.append(check("secret released", "pass", "HTTP 200, SHA-256 equals the secret's"))
    elif resource["status"] == 200:
        checks.append(check("secret released", "fail", "HTTP 200 but SHA-256 {0} is not the secret's".format(got)))
    else:
        checks.append(check("secret released", "fail", "HTTP {0}: {1}".format(
            resource["status"], refusal_reason(result))))
    return checks


def refusal_reason(result: dict) -> str:
    """Trustee's reason, as the pod saw it: the resource's error, else the token's, else the connection."""
    resource = result["resource"]
    token = result["token"]
    if resource["status"] == 0:
        return "no in-pod API answered (connection refused: no confidential guest components)"
    for text in (resource.get("error"), token.get("error")):
        if text:
            return " ".join(text.split())[:500]
    return "HTTP {0} with no body".format(resource["status"])


def token_verdict(report: dict | None) -> str | None:
    """What the pod's own EAR token says made Trustee refuse: the submods not affirming and their claims.

    The KBS answers a refused resource with a bare ``PolicyDeny``; the token the same guest got
    carries the appraisal that the resource policy read (``report`` is ``ear.inspect``'s).
    """
    if not report:
        return None
    parts = []
    for name, sub in sorted((report.get("submods") or {}).items()):
        if sub.get("status") != "affirming":
            parts.append("{0} {1}: {2}".format(name, sub.get("status"), "; ".join(sub.get("not_affirming") or [])
                                               or "no claim reached the affirming tier"))
    if not parts:
        return "every submod affirming (the resource policy refused on something else)"
    return "Trustee's token: " + " | ".join(parts)


def negative_check(name: str, result: dict | None, secret_sha256: str, error: str | None = None,
                   token_report: dict | None = None) -> dict:
    """One negative case: a pass only when the pod did not get the secret, with Trustee's reason.

    ``result`` None means the pod produced no result line (``error`` says why): it did not get the
    secret either, so that is a refusal, reported with what happened. ``token_report`` (the pod's
    token read by ``ear.inspect``) adds what the appraisal said to the KBS's bare refusal.
    """
    if result is None:
        return check(name, "pass", "refused: the pod produced no result", negative=True, reason=error)
    resource = result["resource"]
    got = resource["sha256"]
    if resource["status"] == 200:
        leaked = got is not None and got == (secret_sha256 or "").lower()
        return check(name, "fail", "NOT REFUSED: the KBS released {0} to a pod it must refuse".format(
            "the secret" if leaked else "a resource (SHA-256 {0})".format(got)), negative=True,
            reason="released with HTTP 200")
    reason = refusal_reason(result)
    verdict = token_verdict(token_report)
    return check(name, "pass", "refused with HTTP {0}".format(resource["status"]), negative=True,
                 reason="{0} ({1})".format(reason, verdict) if verdict else reason)


def claims(report: dict | None, kbs_url: str | None = None) -> dict:
    """What the positive case's token says: cpu0 and gpu0 status and vectors, init_data, the KBS URL."""
    out = {"cpu0": None, "gpu0": None, "init_data": None, "kbs_url": kbs_url, "issuer": None, "expires_at": None}
    if not report:
        return out
    for name in ("cpu0", "gpu0"):
        sub = (report.get("submods") or {}).get(name)
        if sub is not None:
            out[name] = {
                "status": sub.get("status"),
                "tee": sub.get("tee"),
                "vector": {g: (e or {}).get("value") for g, e in sorted((sub.get("trust_vector") or {}).items())},
            }
    out["init_data"] = (report.get("init_data") or {}).get("claim")
    out["kbs_url"] = (report.get("kbs_url") or {}).get("claim") or kbs_url
    out["issuer"] = report.get("issuer")
    out["expires_at"] = report.get("expires_at")
    return out


def would_checks(negative_cases=()) -> list:
    """Check mode: the checks that would run, none of them passed."""
    names = ("vectorAdd on the GPU", "token signature", "token freshness", "cpu0 affirming", "gpu0 affirming",
             "init_data binding", "KBS URL", "secret released")
    out = [check(n, "would", "would run the smoke pod and check this") for n in names]
    out.extend(check(n, "would", "would run this pod and require Trustee to refuse it", negative=True)
               for n in negative_cases)
    return out


def summary(checks) -> dict:
    """``passed`` only when every check passed (skips aside); ``loud`` names negative pods that got the secret."""
    ran = [c for c in checks if c["status"] != "skip"]
    return {
        "passed": bool(ran) and all(c["status"] == "pass" for c in ran),
        "failed": [c["name"] for c in ran if c["status"] == "fail"],
        "leaked": [c["name"] for c in ran if c["negative"] and c["status"] == "fail"
                   and (c.get("reason") or "").startswith("released")],
    }


# --------------------------------------------------------------------------------------------
# a reference value made wrong (a negative case)


def wrong_reference_value(data: dict, tee: str) -> dict:
    """The RVPS ConfigMap ``data`` with ``tee``'s launch measurement replaced by one no guest has.

    Written in the format the ConfigMap already uses (``reference_value`` base64 records or the
    ``reference-values.json`` list), every other value and its expiration kept; the caller restores
    ``data`` itself afterwards.
    """
    name = WRONG_REFERENCE_VALUE.get(tee)
    if name is None:
        raise SmokeError("tee: {0!r} is not one of {1}".format(tee, ", ".join(sorted(WRONG_REFERENCE_VALUE))))
    data = dict(data or {})
    key = rv.KEY_KV if rv.KEY_KV in data else rv.KEY_LIST if rv.KEY_LIST in data else None
    if key is None:
        raise SmokeError("the reference values ConfigMap has neither {0} nor {1}".format(rv.KEY_KV, rv.KEY_LIST))
    try:
        values = rv.load(data[key], "data[{0}]".format(key))
    except rv.ReferenceValueError as exc:
        raise SmokeError(str(exc))
    if name not in values:
        raise SmokeError("reference value {0} is not set, so there is nothing to make wrong: give Trustee the "
                         "reference values of the guest image first".format(name))
    values[name] = dict(values[name], value=["00" * 48])
    data[key] = rv.dump(values, "kv-base64" if key == rv.KEY_KV else "list")
    return data


# --------------------------------------------------------------------------------------------
# the pod's end

POD_FINISHED = ("Succeeded", "Failed")
SANDBOX_REFUSED = "FailedCreatePodSandBox"


def pod_outcome(pod: dict | None, events, name: str, namespace: str | None = None) -> tuple:
    """(outcome, line) for the smoke pod as last seen: ``finished``, ``refused`` (its sandbox never started) or None.

    A sandbox the runtime refuses (malformed initdata, no TEE, a GPU it cannot pass) leaves the pod
    Pending for good; the kubelet says why in a FailedCreatePodSandBox event (kubelet
    pkg/kubelet/events/event.go FailedCreatePodSandBox, kuberuntime_manager.go SyncPod). ``events``
    are Events of the pod's namespace; only those about ``name`` count. A pod that is gone raises
    SmokeError.
    """
    if pod is None:
        raise SmokeError("pod {0}/{1} does not exist (deleted while waiting?)".format(namespace, name))
    phase = (pod.get("status") or {}).get("phase") or "Pending"
    if phase in POD_FINISHED:
        return "finished", "phase " + phase
    for event in events:
        involved = event.get("involvedObject") or event.get("involved_object") or {}
        if involved.get("name") == name and event.get("reason") == SANDBOX_REFUSED:
            return "refused", event.get("message") or SANDBOX_REFUSED
    return None, "phase " + phase
