"""Fallback only: policies run in OPA (built from its Go module by ``twin.build.ensure_opa``), one ``opa eval`` each.

The twin KBS evaluates with ``twin.kbs.engine`` (upstream's own crates: regorus, ear, kbs-types). This
module stays for machines without cargo, with the SAME query semantics as upstream's attestation
service: only ``trust_claims`` is read, and when it is undefined every claim is 0 (trustee
``attestation-service/src/ear_token/broker.rs`` ``issue``).

Trustee gives its policies one extension, ``query_reference_value(name)``, which reads the
reference value store. OPA has no such built-in, so each evaluation loads, beside the policy and in
the policy's own package, a small module that defines it over ``data.reference`` (an unknown name
gives ``null``, as in Trustee). The policy text itself is evaluated exactly as written.

One process per evaluation keeps policies apart (Trustee evaluates each policy in its own engine;
two policies that share ``package policy`` must not merge) and costs ~0.1 s.
"""

import json
import re
import subprocess
import tempfile
from pathlib import Path

AR4SI_RULES = {
    "instance_identity": "instance-identity",
    "configuration": "configuration",
    "executables": "executables",
    "file_system": "file-system",
    "hardware": "hardware",
    "runtime_opaque": "runtime-opaque",
    "storage_opaque": "storage-opaque",
    "sourced_data": "sourced-data",
}

_PACKAGE = re.compile(r"^\s*package\s+([A-Za-z_][\w.]*)\s*$", re.MULTILINE)

PRELUDE = """package {package}

import rego.v1

# The twin's stand-in for Trustee's query_reference_value extension.
query_reference_value(name) := data.reference[name] if name in object.keys(data.reference)

query_reference_value(name) := null if not name in object.keys(data.reference)
"""


class PolicyError(RuntimeError):
    """The policy does not compile, or its evaluation failed; the message is OPA's."""


def package_of(policy_text: str) -> str:
    match = _PACKAGE.search(policy_text or "")
    if not match:
        raise PolicyError("the policy has no 'package' line")
    return match.group(1)


def evaluate(opa: Path, policy_text: str, input_doc, data_doc=None, query=None, timeout=30):
    """Evaluate ``query`` (default: the policy's whole package) and return its value (None if undefined)."""
    package = package_of(policy_text)
    query = query or f"data.{package}"
    data_doc = dict(data_doc or {})
    data_doc.setdefault("reference", {})
    with tempfile.TemporaryDirectory(prefix="twin-rego-") as tmp:
        tmp = Path(tmp)
        (tmp / "policy.rego").write_text(policy_text)
        (tmp / "twin_prelude.rego").write_text(PRELUDE.format(package=package))
        (tmp / "data.json").write_text(json.dumps(data_doc))
        (tmp / "input.json").write_text(json.dumps(input_doc))
        cmd = [str(opa), "eval", "--format", "json", "--fail-defined=false",
               "-d", str(tmp / "policy.rego"), "-d", str(tmp / "twin_prelude.rego"), "-d", str(tmp / "data.json"),
               "-i", str(tmp / "input.json"), query]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise PolicyError(_opa_error(proc.stdout or proc.stderr))
    result = json.loads(proc.stdout).get("result") or []
    if not result:
        return None
    return result[0]["expressions"][0]["value"]


def trust_vector(opa: Path, policy_text: str, input_doc, reference: dict) -> dict:
    """The AR4SI claims an attestation policy gives, as broker.rs reads them: ``trust_claims`` only.

    Undefined ``trust_claims``: every group 0. A value is cast to i8 as upstream does (wrapping);
    a non-integer or an unknown group name fails.
    """
    package = package_of(policy_text)
    claims = evaluate(opa, policy_text, input_doc, {"reference": reference}, query=f"data.{package}.trust_claims")
    if claims is None:
        return {group: 0 for group in AR4SI_RULES.values()}
    if not isinstance(claims, dict):
        raise PolicyError("Trust claims is not an object")
    vector = {}
    for group, value in claims.items():
        if group not in AR4SI_RULES.values():
            raise PolicyError(f"unknown trust claim {group!r}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise PolicyError("Trust claim value not number")
        vector[group] = (value + 128) % 256 - 128
    if not vector:
        raise PolicyError("At least one policy claim must be set.")
    return vector


def allows(opa: Path, policy_text: str, input_doc, data_doc=None) -> bool:
    """A resource policy's decision: its ``allow`` rule, false when undefined."""
    package = package_of(policy_text)
    return evaluate(opa, policy_text, input_doc, data_doc, query=f"data.{package}.allow") is True


def _opa_error(text):
    try:
        errors = json.loads(text).get("errors") or []
        return "; ".join(
            f"{e.get('message')} ({(e.get('location') or {}).get('file', '').rsplit('/', 1)[-1]}"
            f":{(e.get('location') or {}).get('row', '?')})" for e in errors) or text.strip()
    except ValueError:
        return text.strip()[-2000:]
