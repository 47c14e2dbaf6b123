"""The gpu_operator and sandboxed_containers roles on the SNP profile, through OLM, run as users run them."""

from pathlib import Path

import pytest
import yaml

from twin import crds
from twin.kube import path
from tests.conftest import shared_path

from .conftest import GPU_NAMESPACE, prepare

pytestmark = [pytest.mark.twin, pytest.mark.slow]

NODES = path("v1", "nodes")
RC = path("node.k8s.io/v1", "runtimeclasses")
WORKERS = ("worker-0", "worker-1")
SNP = "amd.feature.node.kubernetes.io/snp"
ELIGIBLE = "feature.node.kubernetes.io/runtime.kata"
BOOTS = "twin.confidential.gpu/boots"


def roles_play(*roles, **variables):
    return [{"hosts": "localhost", "gather_facts": False, "vars": variables,
             "tasks": [{"name": f"Run {r}", "ansible.builtin.include_role": {"name": f"confidential.gpu.{r}"}}
                       for r in roles]}]


def boots(kube):
    return {n["metadata"]["name"]: int((n["metadata"].get("annotations") or {}).get(BOOTS, "1"))
            for n in kube.list(NODES)["items"]}


@pytest.fixture(scope="module")
def snp(cgpu_twin_factory, twin_crds):
    handle = cgpu_twin_factory("snp-rtx-pro-6000")
    prepare(handle, twin_crds is not None, operand_crds_too=False)
    for node in WORKERS:  # what NFD and OSC's NodeFeatureRule say about these hosts
        handle.kube.merge_patch(path("v1", "nodes", node), {"metadata": {"labels": {SNP: "true", ELIGIBLE: "true"}}})
    return handle


def test_gpu_operator_then_sandboxed_containers_then_idempotent(snp, run_playbook):
    kube = snp.kube
    check = run_playbook(roles_play("gpu_operator", "sandboxed_containers"), env=snp.env(), check=True,
                         callback="ansible.builtin.default")
    assert check.rc == 0, check.stdout[-4000:]
    before = boots(kube)
    run = run_playbook(roles_play("gpu_operator", "sandboxed_containers", gpu_operator_version="26.3.3"),
                       env=snp.env(), callback="ansible.builtin.default")
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "kata-oc: " in run.stdout and "nodes updated" in run.stdout  # progress lines while nodes reboot
    after = boots(kube)
    assert {n: after[n] - before[n] for n in WORKERS} == {"worker-0": 1, "worker-1": 1}
    nodes = {n["metadata"]["name"]: n for n in kube.list(NODES)["items"]}
    for name in WORKERS:
        labels = nodes[name]["metadata"]["labels"]
        assert (labels["nvidia.com/cc.mode.state"], labels["nvidia.com/cc.ready.state"]) == ("on", "true")
        assert nodes[name]["status"]["allocatable"]["nvidia.com/pgpu"] == "2"
    classes = {rc["metadata"]["name"]: rc for rc in kube.list(RC)["items"]}
    assert classes["kata-cc"]["handler"] == "kata-snp"
    assert classes["kata-cc"]["overhead"]["podFixed"]["sev-snp.amd.com/esids"] == "1"
    assert classes["kata-cc-nvidia-gpu"]["handler"] == "kata-snp-nvidia-gpu"

    again = run_playbook(roles_play("gpu_operator", "sandboxed_containers", gpu_operator_version="26.3.3"),
                         env=snp.env(), callback="ansible.builtin.default")
    assert again.rc == 0 and "changed=0" in again.stdout, again.stdout[-4000:]
    assert boots(kube) == after
    check_again = run_playbook(roles_play("gpu_operator", "sandboxed_containers", gpu_operator_version="26.3.3"),
                               env=snp.env(), check=True, callback="ansible.builtin.default")
    assert check_again.rc == 0 and "changed=0" in check_again.stdout, check_again.stdout[-4000:]


def test_old_operator_versions_are_refused_before_any_change(snp, run_playbook):
    run = run_playbook(roles_play("gpu_operator", gpu_operator_version="25.10.1"), env=snp.env(),
                       callback="ansible.builtin.default")
    assert run.rc != 0
    assert "gpu_operator_version=25.10.1: NVIDIA GPU operator 25.10.1 is older than 26.3.0" in run.stdout
    assert "Nothing was changed" in run.stdout


# -- the CC mode through the role, on Hopper (H100) hosts, with the real ClusterPolicy CRD ----------------------------

CP = path("nvidia.com/v1", "clusterpolicies")
HOPPER_WORKERS = ("worker-0", "worker-1", "worker-2")


@pytest.fixture(scope="module")
def hopper(cgpu_twin_factory, configured_profile, twin_crds, tmp_path_factory):
    """The configured default profile (TDX, IOMMU on, one H100 per worker) under a name of its own, with
    gpu-operator's own ClusterPolicy CRD (ccManager.defaultMode enum on/off/devtools) in place before OLM."""
    real = [d for d in crds.real_crds(shared_path("crds", "gpu-operator")) if d["spec"]["names"]["kind"] == "ClusterPolicy"]
    data = yaml.safe_load(Path(configured_profile).read_text())
    data["name"] = "hopper-cc-role"
    file = tmp_path_factory.mktemp("profiles") / "hopper-cc-role.yaml"
    file.write_text(yaml.safe_dump(data, sort_keys=False))
    handle = cgpu_twin_factory(str(file))
    prepare(handle, twin_crds is not None, operand_crds_too=False)
    crds.install(handle.kube, real)  # OLM installs only the CRDs that are missing
    return handle


def _modes(kube):
    return {n["metadata"]["name"]: (n["metadata"].get("labels") or {}).get("nvidia.com/cc.mode.state")
            for n in kube.list(NODES)["items"] if n["metadata"]["name"] in HOPPER_WORKERS}


def test_devtools_is_refused_before_anything_changes(hopper, run_playbook):
    kube = hopper.kube
    run = run_playbook(roles_play("gpu_operator", gpu_operator_version="26.3.3", gpu_operator_cc_mode="devtools"),
                       env=hopper.env(), callback="ansible.builtin.default")
    assert run.rc != 0
    assert "gpu_operator_allow_devtools" in run.stdout and "Nothing was changed" in run.stdout, run.stdout[-3000:]
    subs = kube.list(path("operators.coreos.com/v1alpha1", "subscriptions", namespace=GPU_NAMESPACE))["items"] \
        if kube.get_or_none(path("v1", "namespaces", GPU_NAMESPACE)) else []
    assert subs == [] and "devtools" not in _modes(kube).values()


def test_ppcie_through_the_role_with_the_real_crd(hopper, run_playbook):
    kube = hopper.kube
    run = run_playbook(roles_play("gpu_operator", gpu_operator_version="26.3.3", gpu_operator_cc_mode="ppcie"),
                       env=hopper.env(), callback="ansible.builtin.default")
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-2000:]
    policy = kube.get(f"{CP}/gpu-cluster-policy")
    assert policy["spec"]["ccManager"]["defaultMode"] == "off"  # ppcie is a node label, never the default
    assert _modes(kube) == {n: "ppcie" for n in HOPPER_WORKERS}
    labels = {n["metadata"]["name"]: n["metadata"]["labels"] for n in kube.list(NODES)["items"]}
    assert all(labels[n]["nvidia.com/cc.mode"] == "ppcie" and labels[n]["nvidia.com/cc.ready.state"] == "true"
               for n in HOPPER_WORKERS)
