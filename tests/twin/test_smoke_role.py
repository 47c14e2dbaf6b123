"""Role confidential.gpu.smoke against a twin whose guests are confidential VMs (tests/twin/test_guest.py's setup).

The proof runs as a user runs it: positive pod, the negative pods (one byte of initdata changed, runtime class
kata, twin faults), then cleanup; and in check mode, where nothing runs and no check says pass.
"""

import json
import re

import pytest
import yaml

from tests.conftest import REPO

from tests.twin.guest_helpers import TRUSTEE_NS, confidential_gpu_twin, restricted_trustee
from twin.kube import path

pytestmark = [pytest.mark.twin, pytest.mark.slow]

SMOKE_NS = "cgpu-smoke"


@pytest.fixture(scope="module")
def proof_twin(twin_factory, tmp_path_factory, twin_crds):
    handle = confidential_gpu_twin(twin_factory, tmp_path_factory, twin_crds, "smoke")
    kbs = restricted_trustee(handle, twin_crds)
    return {"handle": handle, "vars": {"smoke_kbs_url": f"https://{kbs['host']}",
                                       "smoke_kbs_ca_cert": kbs["material"].ca_pem, "smoke_tee": "tdx"}}


def _playbook(role_vars):
    return yaml.safe_dump([{
        "name": "Proof", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Smoke role", "ansible.builtin.include_role": {"name": "confidential.gpu.smoke"},
                   "vars": role_vars},
                  {"name": "Outputs", "ansible.builtin.debug": {"msg": "{{ smoke_result }}"}}],
    }])


def _failures(run):
    """Failed tasks and their messages (the json callback's output is long)."""
    out = []
    for play in (run.json or {}).get("plays", []):
        for task in play["tasks"]:
            for result in task["hosts"].values():
                if result.get("failed"):
                    out.append((task["task"]["name"], result.get("msg"), result.get("results", [{}])[-1:]))
    return out or (run.stdout[-3000:] + run.stderr[-3000:])


def _pods(kube):
    return kube.list(path("v1", "pods", namespace=SMOKE_NS))["items"] if _has_ns(kube) else []


def _has_ns(kube):
    return any(n["metadata"]["name"] == SMOKE_NS for n in kube.list(path("v1", "namespaces"))["items"])


def test_check_mode_runs_nothing_and_passes_nothing(proof_twin, run_playbook):
    kube = proof_twin["handle"].kube
    run = run_playbook(_playbook(proof_twin["vars"]), env=proof_twin["handle"].env(), check=True)
    assert run.rc == 0, _failures(run)
    result = run.result("Outputs")["msg"]
    assert result["passed"] is False
    assert result["checks"] and {c["status"] for c in result["checks"]} == {"would"}
    assert not _pods(kube)
    secrets = kube.list(path("v1", "secrets", namespace=TRUSTEE_NS))["items"]
    assert "cgpu-smoke" not in {s["metadata"]["name"] for s in secrets}


def test_the_proof_passes_refuses_the_negatives_and_cleans_up(proof_twin, run_playbook):
    kube = proof_twin["handle"].kube
    role_vars = dict(proof_twin["vars"], smoke_twin_faults=True, smoke_timeout=180)
    run = run_playbook(_playbook(role_vars), env=proof_twin["handle"].env())
    output = run.stdout + run.stderr
    assert run.rc == 0, _failures(run)
    result = run.result("Outputs")["msg"]
    (REPO / "tests" / "output").mkdir(parents=True, exist_ok=True)
    (REPO / "tests" / "output" / "smoke-result.json").write_text(json.dumps(result, indent=2))
    checks = {c["name"]: c for c in result["checks"]}
    assert result["passed"] is True, [c for c in result["checks"] if c["status"] != "pass"]
    for name in ("vectorAdd on the GPU", "token signature", "token freshness", "cpu0 affirming", "gpu0 affirming",
                 "init_data binding", "KBS URL", "secret released"):
        assert checks[name]["status"] == "pass" and not checks[name]["negative"], checks[name]
    for name in ("refused: initdata one byte changed", "refused: runtime class kata",
                 "refused: GPU left out of CC mode", "refused: a reference value made wrong", "refused: debug TD"):
        assert checks[name]["status"] == "pass" and checks[name]["negative"] and checks[name]["reason"], checks[name]
    assert result["claims"]["cpu0"]["status"] == "affirming" and result["claims"]["gpu0"]["status"] == "affirming"
    assert result["claims"]["init_data"] == result["claims"]["expected_init_data"]
    # cleanup: no pods, no test secret, no pinning, faults as before
    assert not _pods(kube)
    secrets = kube.list(path("v1", "secrets", namespace=TRUSTEE_NS))["items"]
    assert "cgpu-smoke" not in {s["metadata"]["name"] for s in secrets}
    cpu = kube.get(path("v1", "configmaps", "trustee-config-attestation-policy-cpu", TRUSTEE_NS))
    assert "confidential.gpu initdata pinning: begin" not in next(iter(cpu["data"].values()))
    assert "tee_keypair" not in output
    # the wait for each pod says its state while it waits (the action plugin prints the module's progress)
    assert re.search(r"\[localhost\] +\d+s phase \w+", output), output[-3000:]
