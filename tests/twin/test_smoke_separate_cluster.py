"""The proof with Trustee on a separate trusted cluster (issue 12), run as the bring-up runs it.

Two twins, one pair for the module: a workload twin whose TDX worker runs confidential GPU pods
(tests/twin/guest_helpers.py) and a trusted twin where the trustee role installs Trustee through
OLM. ``twin.dns link`` makes the trusted twin's routes resolvable from the workload twin, as DNS
between real clusters does, so the guests reach the KBS route of the other cluster. Each run is
site.yml's tail: the trustee role with its ``trustee_*`` connection variables, the smoke role
against the workload cluster, and the report in ``always``.

In order (one pair of twins, so the tests share what the first one set up):
the proof passes and the tampered initdata is refused; ``--check`` says only "would"; the KBS
stopped makes the proof fail with the reason, and nothing says PASS or READY.
"""

import json

import pytest
import yaml

from tests.conftest import REPO
from tests.twin.guest_helpers import KERNEL_PARAMS, NODE, TRUSTEE_NS, confidential_gpu_twin
from twin import dns, tee
from twin.kube import path

pytestmark = [pytest.mark.twin, pytest.mark.slow]

SMOKE_NS = "cgpu-smoke"
OUTPUT = REPO / "tests" / "output"


@pytest.fixture(scope="module")
def pair(twin_factory, tmp_path_factory, twin_crds):
    workload = confidential_gpu_twin(twin_factory, tmp_path_factory, twin_crds, "workload")
    trusted = twin_factory("sno", name="trusted")
    # Linked as soon as both are up: the trusted twin's router may not have published its zone yet.
    dns.link(trusted.kube, workload.kube)
    profile = yaml.safe_load((workload.state / "profile.yaml").read_text())
    node = next(n for n in profile["nodes"] if n["name"] == NODE)
    # The twin's veritas for the workload cluster's guest image, with the smoke pod's measured kernel parameter.
    values = tee.reference_values(profile["openshift"]["version"], "tdx", gpu=True, cmdline_extra=KERNEL_PARAMS,
                                  host_spec=node)
    sources = tmp_path_factory.mktemp("reference-values") / "reference-values.json"
    sources.write_text(json.dumps(values))
    trusted_profile = yaml.safe_load((trusted.state / "profile.yaml").read_text())
    host = f"kbs-{TRUSTEE_NS}.{trusted_profile['openshift']['apps_domain']}"
    # What the workload cluster's guests (and, here, the controller) resolve the trusted cluster's route to.
    found = dns.resolve(host, dns.entries(workload.kube))
    assert found, f"after twin.dns link the workload twin does not resolve {host}: {dns.entries(workload.kube)}"
    addr, port = found
    # What a user of site.yml gives for Trustee on another cluster (extra vars: the whole play sees them).
    play_vars = {"trustee_kubeconfig": trusted.kubeconfig, "trustee_tee": "tdx",
                 "trustee_reference_values_sources": [str(sources)],
                 "trustee_kbs_resolve": [f"{host}:443:{addr}:{port}"], "trustee_wait_timeout": 300}
    return {"workload": workload, "trusted": trusted, "host": host, "vars": play_vars}


def _bring_up_tail(pair, report_dir, smoke_vars, between=()):
    """site.yml from Trustee on: trustee, (``between``), smoke in a block; the report in always."""
    return yaml.safe_dump([{
        "name": "Proof with Trustee on a separate cluster", "hosts": "localhost", "gather_facts": False,
        "vars": dict(pair["vars"], site_failed=False),
        "tasks": [{
            "name": "Bring up, step by step",
            "block": [
                {"name": "Trustee", "ansible.builtin.include_role": {"name": "confidential.gpu.trustee"}},
                *between,
                {"name": "The proof", "ansible.builtin.include_role": {"name": "confidential.gpu.smoke"},
                 "vars": smoke_vars},
            ],
            "rescue": [{"name": "Remember what failed", "ansible.builtin.set_fact": {
                "site_failed": True,
                "site_failure": "{{ ansible_failed_task.name }}: {{ ansible_failed_result.msg | default('failed') }}"}}],
            "always": [{"name": "Report", "ansible.builtin.include_role": {"name": "confidential.gpu.report"},
                        "vars": {"report_dir": str(report_dir),
                                 "report_failure": "{{ site_failure if site_failed else none }}"}}],
        }, {"name": "Fail when a step failed", "ansible.builtin.fail": {"msg": "Bring-up stopped at: {{ site_failure }}"},
            "when": "site_failed"}],
    }])


def _failures(run):
    out = []
    for play in (run.json or {}).get("plays", []):
        for task in play["tasks"]:
            for result in task["hosts"].values():
                if result.get("failed"):
                    out.append((task["task"]["name"], str(result.get("msg"))[:1500]))
    return out or (run.stdout[-3000:] + run.stderr[-3000:])


def _report(run, report_dir, name):
    """report.json and the console summary the report role printed (kept in tests/output)."""
    data = json.loads((report_dir / "report.json").read_text())
    lines = next(next(iter(task["hosts"].values()))["msg"] for play in (run.json or {}).get("plays", [])
                 for task in play["tasks"] if task["task"]["name"].endswith(" : Say plainly what was shown"))
    summary = "\n".join(lines) + "\n"
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / f"report-{name}.json").write_text(json.dumps(data, indent=2))
    (OUTPUT / f"report-{name}.txt").write_text(summary)
    return data, summary


def _smoke_pods(kube):
    if not any(n["metadata"]["name"] == SMOKE_NS for n in kube.list(path("v1", "namespaces"))["items"]):
        return []
    return kube.list(path("v1", "pods", namespace=SMOKE_NS))["items"]


def _secret_names(kube):
    return {s["metadata"]["name"] for s in kube.list(path("v1", "secrets", namespace=TRUSTEE_NS))["items"]}


def test_the_proof_attests_against_the_trusted_cluster_and_the_tampered_initdata_is_refused(
        pair, run_playbook, tmp_path):
    workload, trusted = pair["workload"], pair["trusted"]
    report_dir = tmp_path / "report"
    smoke_vars = {"smoke_timeout": 240}
    with workload.audit.window(user="admin") as workload_window:
        run = run_playbook(_bring_up_tail(pair, report_dir, smoke_vars), env=workload.env())
    assert run.rc == 0, _failures(run)
    data, summary = _report(run, report_dir, "separate-cluster")
    result = data["proof"]
    checks = {c["name"]: c for c in result["checks"]}
    assert result["passed"] is True, [c for c in result["checks"] if c["status"] != "pass"]
    for name in ("vectorAdd on the GPU", "token signature", "token freshness", "cpu0 affirming", "gpu0 affirming",
                 "init_data binding", "KBS URL", "secret released"):
        assert checks[name]["status"] == "pass" and not checks[name]["negative"], checks[name]
    for name in ("refused: initdata one byte changed", "refused: runtime class kata"):
        assert checks[name]["status"] == "pass" and checks[name]["negative"] and checks[name]["reason"], checks[name]
    # The KBS the guest attested to is the trusted cluster's route, not one of the workload cluster.
    assert result["claims"]["kbs_url"] == f"https://{pair['host']}"
    assert result["claims"]["init_data"] == result["claims"]["expected_init_data"]
    assert result["claims"]["cpu0"]["status"] == "affirming" and result["claims"]["gpu0"]["status"] == "affirming"
    # Trustee's objects live on the trusted cluster only; the proof left nothing behind on either.
    writes = {(w["objectRef"].get("resource"), w["objectRef"].get("namespace")) for w in workload_window.writes}
    assert not {w for w in writes if w[1] == TRUSTEE_NS}, sorted(writes, key=str)
    assert not _smoke_pods(workload.kube)
    assert "cgpu-smoke" not in _secret_names(trusted.kube)
    cpu = trusted.kube.get(path("v1", "configmaps", "trustee-config-attestation-policy-cpu", TRUSTEE_NS))
    assert "confidential.gpu initdata pinning: begin" not in cpu["data"]["default_cpu.rego"]
    assert {s["name"]: s["status"] for s in data["steps"]}["smoke"] == "pass"
    assert {s["name"]: s["status"] for s in data["steps"]}["trustee"] == "pass"
    assert "tee_keypair" not in run.stdout + run.stderr


def test_check_mode_on_the_configured_pair_says_would_and_writes_nothing(pair, run_playbook, tmp_path):
    workload, trusted = pair["workload"], pair["trusted"]
    report_dir = tmp_path / "report"
    with trusted.audit.window(user="admin") as trusted_window, workload.audit.window(user="admin") as workload_window:
        run = run_playbook(_bring_up_tail(pair, report_dir, {"smoke_timeout": 60}), env=workload.env(), check=True)
    assert run.rc == 0, _failures(run)
    persisted = [w for w in trusted_window.writes + workload_window.writes if "dryRun=" not in w["requestURI"]]
    assert persisted == [], [(w["verb"], w["requestURI"]) for w in persisted]
    data, summary = _report(run, report_dir, "check-mode")
    assert data["check_mode"] is True and data["verdict"]["ready"] is False
    assert {s["status"] for s in data["steps"]} == {"would"}, data["steps"]
    assert data["proof"]["passed"] is False and data["proof"]["checks"]
    assert {c["status"] for c in data["proof"]["checks"]} == {"would"}, data["proof"]["checks"]
    assert "[PASS]" not in summary and "READY: the cluster" not in summary and "NOT READY" in summary


def test_with_the_kbs_stopped_the_proof_fails_with_the_reason_and_nothing_is_ready(pair, run_playbook, tmp_path):
    """The KBS stops after Trustee was found ready: upstream's operator keeps the Deployment at the replicas its
    KbsConfig asks for (a direct scale of the Deployment is reverted), so that is where it is stopped."""
    workload, trusted = pair["workload"], pair["trusted"]
    report_dir = tmp_path / "report"
    stop = [{"name": "The KBS stops", "kubernetes.core.k8s": {
        "kubeconfig": "{{ trustee_kubeconfig }}", "state": "patched",
        "api_version": "confidentialcontainers.org/v1alpha1", "kind": "KbsConfig",
        "namespace": TRUSTEE_NS, "name": "trustee-config-kbs-config",
        "definition": {"spec": {"KbsDeploymentSpec": {"replicas": 0}}}}}]
    run = run_playbook(_bring_up_tail(pair, report_dir, {"smoke_timeout": 30}, between=stop), env=workload.env())
    assert run.rc != 0, "the bring-up must fail when the KBS does not answer"
    data, summary = _report(run, report_dir, "kbs-stopped")
    assert data["verdict"]["ready"] is False
    steps = {s["name"]: s for s in data["steps"]}
    assert steps["trustee"]["status"] == "pass", steps["trustee"]  # it was ready when the trustee role looked
    assert steps["smoke"]["status"] == "fail", steps["smoke"]
    assert data["proof"]["ran"] is True and data["proof"]["passed"] is False
    assert data["proof"]["checks"], "the proof must say why it did not pass"
    assert "pass" not in {c["status"] for c in data["proof"]["checks"]}, data["proof"]["checks"]
    stopped = [c for c in data["proof"]["checks"] if c["status"] == "fail"]
    assert any("trustee-config" in c["detail"] and "timed out" in c["detail"].lower() for c in stopped), stopped
    assert "READY: the cluster" not in summary and "NOT READY" in summary
    # Nothing the proof added stays on the trusted cluster, even though it stopped halfway.
    assert "cgpu-smoke" not in _secret_names(trusted.kube)
