"""Role confidential.gpu.smoke against a twin whose guests are confidential VMs (tests/twin/test_guest.py's setup).

The proof runs as a user runs it: positive pod, the negative pods (one byte of initdata changed, runtime class
kata, twin faults), then cleanup; and in check mode, where nothing runs and no check says pass.
"""

import json

import pytest
import yaml

from tests.conftest import REPO

from tests.twin.sandboxed.conftest import CONFIGURED_ARGS, ensure_namespace, prepare
from tests.twin.sandboxed.conftest import wait_for as wait_for_items
from tests.twin.test_guest import KERNEL_PARAMS, NODE, TRUSTEE_NS
from tests.twin.test_trustee_twin import _set_reference_values
from tests.twin.trustee_helpers import (
    API,
    TrusteePki,
    admitted,
    ensure_trustee_crds,
    route,
    tls_secret,
    trustee_config,
    wait_for,
)
from twin import tee
from twin.kube import path

pytestmark = [pytest.mark.twin, pytest.mark.slow]

SMOKE_NS = "cgpu-smoke"


@pytest.fixture(scope="module")
def proof_twin(twin_factory, tmp_path_factory, twin_crds):
    from tests.twin.sandboxed.conftest import cluster_policy
    from twin import profile as profiles

    data = yaml.safe_load((profiles.PROFILES_DIR / "default.yaml").read_text())
    data["name"] = "smoke-configured"
    for node in data["nodes"]:
        if "worker" in node.get("roles", ["worker"]):
            node["kernel_cmdline"] = "BOOT_IMAGE=/vmlinuz rw root=UUID=twin " + CONFIGURED_ARGS
    file = tmp_path_factory.mktemp("smoke-profile") / "smoke-configured.yaml"
    file.write_text(yaml.safe_dump(data, sort_keys=False))
    handle = twin_factory(str(file), name="smoke")
    prepare(handle, twin_crds is not None)
    kube = handle.kube
    kube.create(path("nvidia.com/v1", "clusterpolicies"), cluster_policy())
    for name, handler in (("kata", "kata"), ("kata-cc-nvidia-gpu", "kata-tdx-nvidia-gpu")):
        kube.create(path("node.k8s.io/v1", "runtimeclasses"), {
            "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": name}, "handler": handler})
    wait_for_items(kube, path("v1", "nodes"), lambda items: (
        items[NODE]["metadata"]["labels"].get("nvidia.com/cc.mode.state") == "on"
        and (items[NODE].get("status") or {}).get("allocatable", {}).get("nvidia.com/pgpu") == "1"),
        timeout=90, what=f"{NODE}: GPU bound to vfio-pci and in CC mode")
    ensure_namespace(kube, TRUSTEE_NS)
    ensure_trustee_crds(kube, twin_crds)
    ns = TRUSTEE_NS
    kube.create(path("route.openshift.io/v1", "routes", namespace=ns), route(ns))
    host = wait_for(kube, path("route.openshift.io/v1", "routes", namespace=ns), "kbs", admitted,
                    what="route kbs admitted")["spec"]["host"]
    material = TrusteePki(host, ns)
    secrets = path("v1", "secrets", namespace=ns)
    kube.create(secrets, tls_secret("kbs-tls-secret", ns, material.kbs_key, material.kbs_cert))
    kube.create(secrets, tls_secret("kbs-attestation-token-secret", ns, material.token_key, material.token_cert))
    kube.create(path(API, "trusteeconfigs", namespace=ns), trustee_config("trustee-config", ns))
    wait_for(kube, path(API, "trusteeconfigs", namespace=ns), "trustee-config",
             lambda o: (o.get("status") or {}).get("isReady") is True, timeout=90, what="TrusteeConfig ready")
    profile = yaml.safe_load((handle.state / "profile.yaml").read_text())
    node = next(n for n in profile["nodes"] if n["name"] == NODE)
    _set_reference_values(kube, ns, tee.reference_values(profile["openshift"]["version"], "tdx", gpu=True,
                                                         cmdline_extra=KERNEL_PARAMS, host_spec=node))
    return {"handle": handle, "vars": {"smoke_kbs_url": f"https://{host}", "smoke_kbs_ca_cert": material.ca_pem,
                                       "smoke_tee": "tdx"}}


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
