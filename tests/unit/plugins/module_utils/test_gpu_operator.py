"""gpu_operator: the ClusterPolicy per operator version, readiness lines and the pgpu check."""

import pytest

from ansible_collections.confidential.gpu.plugins.module_utils import gpu_operator as gpuop


@pytest.mark.parametrize("text, parsed", [
    ("26.3.1", (26, 3, 1)), ("v26.7.0", (26, 7, 0)), ("gpu-operator-certified.v26.3.3", (26, 3, 3)),
    ("25.10", (25, 10, 0)), ("26.3.0-rc.1", (26, 3, 0)), ("latest", None), (None, None),
])
def test_versions_from_csv_names_and_tags(text, parsed):
    assert gpuop.parse_version(text) == parsed


def test_operators_before_26_3_are_refused_with_what_is_missing():
    assert gpuop.version_problem("26.3.0") is None
    assert gpuop.version_problem("26.7.0") is None
    problem = gpuop.version_problem("25.10.1")
    assert "25.10.1 is older than 26.3.0" in problem
    assert "sandboxWorkloads.mode" in problem and "kataSandboxDevicePlugin" in problem and "Pin 26.3.0" in problem
    assert "cannot read" in gpuop.version_problem("next")
    with pytest.raises(ValueError, match="older than 26.3.0"):
        gpuop.cluster_policy("25.10.1")


def test_cluster_policy_for_osc_confidential_gpus():
    policy = gpuop.cluster_policy("26.3.3")
    spec = policy["spec"]
    assert policy["metadata"]["name"] == "gpu-cluster-policy"
    assert spec["sandboxWorkloads"] == {"enabled": True, "defaultWorkload": "vm-passthrough", "mode": "kata"}
    assert spec["ccManager"] == {"enabled": True, "defaultMode": "on"}
    assert {"name": "P_GPU_ALIAS", "value": "pgpu"} in spec["kataSandboxDevicePlugin"]["env"]
    assert spec["driver"] == {"enabled": False} and spec["devicePlugin"] == {"enabled": False}
    assert spec["kataManager"] == {"enabled": False}
    # every field the real CRD requires is there
    for required in ("daemonsets", "dcgm", "dcgmExporter", "devicePlugin", "driver", "gfd", "nodeStatusExporter",
                     "operator", "toolkit"):
        assert required in spec


def test_kata_manager_left_out_where_no_longer_honoured_and_extra_spec_merges():
    spec = gpuop.cluster_policy("26.7.0", cc_mode="ppcie", extra_spec={
        "ccManager": {"repository": "mirror.example/nvidia"}, "gfd": {"enabled": False}})["spec"]
    assert "kataManager" not in spec
    assert spec["ccManager"] == {"enabled": True, "defaultMode": "off", "repository": "mirror.example/nvidia"}  # ppcie: a node label
    assert spec["gfd"] == {"enabled": False}


def test_policy_summary_names_state_message_and_broken_operand_pods():
    assert gpuop.policy_summary(None) == (False, "the ClusterPolicy does not exist")
    ready = {"metadata": {"name": "p"}, "status": {"state": "ready"}}
    assert gpuop.policy_summary(ready) == (True, "ClusterPolicy p is ready")
    policy = {"metadata": {"name": "p"}, "status": {"state": "notReady", "conditions": [
        {"type": "Ready", "status": "False", "message": "worker-0: 0 of 1 GPUs bound to vfio-pci"}]}}
    pods = [
        {"metadata": {"name": "nvidia-vfio-manager-a"}, "spec": {"nodeName": "worker-0"},
         "status": {"phase": "Running", "containerStatuses": [{"ready": True}]}},
        {"metadata": {"name": "nvidia-cc-manager-b"}, "spec": {"nodeName": "worker-1"},
         "status": {"phase": "Running", "containerStatuses": [{"ready": False, "lastState": {"terminated": {
             "message": "Some GPUs are not cc-capable"}}}]}},
        {"metadata": {"name": "nvidia-sandbox-validator-c"}, "spec": {},
         "status": {"phase": "Pending"}},
    ]
    done, line = gpuop.policy_summary(policy, pods)
    assert not done
    assert line.startswith("ClusterPolicy p is notReady. worker-0: 0 of 1 GPUs bound to vfio-pci")
    assert "nvidia-cc-manager-b on worker-1: Running, not ready: Some GPUs are not cc-capable" in line
    assert "nvidia-sandbox-validator-c on no node: Pending" in line
    assert "vfio-manager" not in line


def test_pgpu_report_compares_allocatable_with_gpus_found():
    nodes = [{"metadata": {"name": "w-0"}, "status": {"allocatable": {"nvidia.com/pgpu": "2"}}},
             {"metadata": {"name": "w-1"}, "status": {"allocatable": {"nvidia.com/pgpu": "1"}}},
             {"metadata": {"name": "w-2"}, "status": {"allocatable": {}}}]
    report, bad = gpuop.pgpu_report(nodes, {"w-0": 2, "w-1": 2, "w-2": 1, "w-9": 1})
    assert [r["ok"] for r in report] == [True, False, False, False]
    assert bad[0] == "w-1: nvidia.com/pgpu allocatable is 1, 2 GPU(s) found on the host"
    assert "w-2: nvidia.com/pgpu allocatable is 0, 1 GPU(s)" in bad[1]
    assert bad[2].endswith("(node not found)")


@pytest.mark.parametrize("mode, default", [("on", "on"), ("off", "off"), ("ppcie", "off"), ("devtools", "off")])
def test_default_mode_is_one_the_crd_accepts_and_never_ppcie_or_devtools(mode, default):
    from tests.conftest import shared_path
    import yaml

    crd = yaml.safe_load(shared_path("crds", "gpu-operator", "nvidia.com_clusterpolicies.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    enum = schema["ccManager"]["properties"]["defaultMode"]["enum"]
    rendered = gpuop.cluster_policy("26.3.3", cc_mode=mode)["spec"]["ccManager"]["defaultMode"]
    assert rendered == default and rendered in enum
    with pytest.raises(ValueError, match="not one of"):
        gpuop.policy_default_mode("bogus")


# -- issue 13: what the kata sandbox device plugin advertises, and what the role claims -------------------------------

def _probe_gpu(address, device_id, group):
    return {"pci_address": address, "device_id": device_id, "iommu_group": group, "driver": "vfio-pci"}


def test_expected_pgpu_counts_iommu_groups_as_the_plugin_does():
    """NVIDIA/sandbox-device-plugin v0.0.3 device_plugin.go: one device per IOMMU group, however many GPUs it holds."""
    nodes = {"w-0": {"gpus": [_probe_gpu("0000:18:00.0", "0x2331", "20"), _probe_gpu("0000:38:00.0", "0x2331", "21")]},
             "w-1": {"gpus": [_probe_gpu("0000:18:00.0", "0x2331", "20"), _probe_gpu("0000:38:00.0", "0x2331", "20")]},
             "w-2": {"gpus": [_probe_gpu("0000:18:00.0", "0x2331", None)]}, "w-3": {"gpus": []}}
    assert gpuop.pgpu_expected(nodes) == {"w-0": 2, "w-1": 1, "w-2": 1, "w-3": 0}


def test_mixed_gpu_models_on_a_node_are_a_problem_for_one_pgpu_resource():
    nodes = {"w-0": {"gpus": [_probe_gpu("0000:18:00.0", "0x2331", "20"), _probe_gpu("0000:38:00.0", "0x2bb5", "21")]},
             "w-1": {"gpus": [_probe_gpu("0000:18:00.0", "0x2331", "20")]}}
    problems = gpuop.pgpu_problems(nodes)
    assert len(problems) == 1
    assert problems[0].startswith("w-0 has GPUs of 2 models (0x2331, 0x2bb5)")
    assert "kubelet keeps only the last" in problems[0]


def test_extra_spec_that_renames_the_gpu_resource_is_refused():
    assert gpuop.spec_problem({}) is None
    assert gpuop.spec_problem({"gfd": {"enabled": False}}) is None
    assert gpuop.spec_problem({"kataSandboxDevicePlugin": {"env": []}}) is None  # unset: the plugin's pgpu default
    problem = gpuop.spec_problem({"kataSandboxDevicePlugin": {"env": [{"name": "P_GPU_ALIAS", "value": ""}]}})
    assert problem.startswith("gpu_operator_policy_extra_spec sets kataSandboxDevicePlugin P_GPU_ALIAS=''")
    assert "nvidia.com/pgpu" in problem
    assert "P_GPU_ALIAS='gpu'" in gpuop.spec_problem(
        {"kataSandboxDevicePlugin": {"env": [{"name": "P_GPU_ALIAS", "value": "gpu"}]}})


def test_role_says_only_what_it_showed():
    """A task that runs with gpu_operator_verify_gpus=false claims nothing about GPUs bound or advertised; the
    result says whether nvidia.com/pgpu was checked."""
    from pathlib import Path

    import yaml

    tasks = yaml.safe_load((Path(__file__).resolve().parents[4] / "roles/gpu_operator/tasks/main.yml").read_text())
    for task in tasks:
        when = " ".join(task.get("when") or []) if isinstance(task.get("when"), list) else str(task.get("when", ""))
        if "gpu_operator_verify_gpus" in when or "ansible.builtin.debug" in task:
            continue
        name = task.get("name", "").lower()
        assert "advertised" not in name and "bound to vfio-pci" not in name, task["name"]
    result = next(t for t in tasks if "gpu_operator_result" in (t.get("ansible.builtin.set_fact") or {}))
    assert "pgpu_checked" in result["ansible.builtin.set_fact"]["gpu_operator_result"]
