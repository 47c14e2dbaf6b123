"""kata_config: selection, pool, TEE counting, runtime class checks and where an installation stands."""

import pytest

from ansible_collections.confidential.gpu.plugins.module_utils import kata_config as kc

TDX = "intel.feature.node.kubernetes.io/tdx"
SNP = "amd.feature.node.kubernetes.io/snp"


def labelled(name, labels, roles=("worker",)):
    all_labels = {f"node-role.kubernetes.io/{r}": "" for r in roles}
    all_labels.update(labels)
    return {"metadata": {"name": name, "labels": all_labels}}


def rc(name, handler, selector, overhead=None):
    return {"metadata": {"name": name}, "handler": handler, "scheduling": {"nodeSelector": selector},
            "overhead": {"podFixed": dict({"cpu": "250m", "memory": "350Mi"}, **(overhead or {}))}}


def test_kataconfig_and_feature_gates_as_osc_reads_them():
    obj = kc.kataconfig("kc", {"kata-cc": "true"}, check_node_eligibility=True)
    assert obj["spec"] == {"checkNodeEligibility": True, "enablePeerPods": False, "logLevel": "info",
                           "kataConfigPoolSelector": {"matchLabels": {"kata-cc": "true"}}}
    gates = kc.feature_gates("osc", extra={"deploymentMode": "mco", "layeredImageDeployment": False})
    assert gates["data"] == {"confidential": "true", "deploymentMode": "mco", "layeredImageDeployment": "false"}
    assert kc.feature_gates("osc", confidential=False)["data"] == {"confidential": "false"}


def test_selection_pool_and_eligibility():
    nodes = [labelled("m-0", {}, roles=("master",)), labelled("w-0", {kc.ELIGIBLE: "true"}), labelled("w-1", {})]
    assert kc.pool_name(nodes) == "kata-oc"
    everyone = {"spec": {"checkNodeEligibility": False}}
    eligible = {"spec": {"checkNodeEligibility": True}}
    assert [n["metadata"]["name"] for n in kc.selected_nodes(everyone, nodes)] == ["w-0", "w-1"]
    assert [n["metadata"]["name"] for n in kc.selected_nodes(eligible, nodes)] == ["w-0"]
    sno = [labelled("sno-0", {}, roles=("master", "worker"))]
    assert kc.pool_name(sno) == "master"
    assert [n["metadata"]["name"] for n in kc.selected_nodes(eligible, sno)] == ["sno-0"]


def test_tee_counting_with_osc_messages():
    assert kc.tee_of([labelled("w-0", {TDX: "true"})]) == ("tdx", TDX, "tdx.intel.com/keys")
    assert kc.tee_of([labelled("w-0", {SNP: "true"})]) == ("snp", SNP, "sev-snp.amd.com/esids")
    with pytest.raises(ValueError, match="multiple TEE platforms detected; only one per cluster supported"):
        kc.tee_of([labelled("w-0", {TDX: "true"}), labelled("w-1", {SNP: "true"})])
    with pytest.raises(ValueError, match="no TEE platform labels found .* on w-0"):
        kc.tee_of([labelled("w-0", {TDX: "false"})])


def test_runtime_class_problems_handler_scheduling_overhead():
    expected = kc.expected_runtime_classes("tdx", TDX, "tdx.intel.com/keys")
    good = [rc("kata", "kata", {}), rc("kata-cc", "kata-tdx", {TDX: "true"}, {"tdx.intel.com/keys": "1"}),
            rc("kata-cc-nvidia-gpu", "kata-tdx-nvidia-gpu", dict(kc.GPU_SELECTOR, **{TDX: "true"}),
               {"tdx.intel.com/keys": "1"})]
    assert kc.runtime_class_problems(good, expected) == []
    bad = [rc("kata", "kata", {}), rc("kata-cc", "kata-cc-intel", {TDX: "true"}),
           rc("kata-cc-nvidia-gpu", "kata-tdx-nvidia-gpu", {"nvidia.com/gpu.present": "true", TDX: "true"},
              {"tdx.intel.com/keys": "1"})]
    problems = kc.runtime_class_problems(bad, expected)
    assert "runtime class kata-cc has handler 'kata-cc-intel', expected 'kata-tdx'" in problems
    assert any("no tdx.intel.com/keys overhead" in p for p in problems)
    assert any(p.startswith("runtime class kata-cc-nvidia-gpu does not schedule on nvidia.com/cc.mode.state=on")
               for p in problems)
    assert kc.runtime_class_problems([], {"kata": expected["kata"]}) == ["runtime class kata does not exist"]


def kataconfig_status(status, reason="", message="", nodes=(2, 2), classes=("kata", "kata-cc"), **extra):
    out = {"metadata": {"name": "kc"}, "spec": {"checkNodeEligibility": False},
           "status": {"conditions": [{"type": "InProgress", "status": status, "reason": reason, "message": message}],
                      "kataNodes": {"nodeCount": nodes[0], "readyNodeCount": nodes[1]},
                      "runtimeClasses": list(classes)}}
    out["status"]["kataNodes"].update(extra)
    return out


NODES = [labelled("w-0", {TDX: "true", "nvidia.com/gpu.present": "true"}), labelled("w-1", {TDX: "true"})]
CLASSES = [rc("kata", "kata", {}), rc("kata-cc", "kata-tdx", {TDX: "true"}, {"tdx.intel.com/keys": "1"})]


def test_assess_installing_done_and_the_missing_gpu_class():
    rollout = {"line": "kata-oc: 1/2 nodes updated, w-1 rebooting"}
    state = kc.assess(kataconfig_status("True", "Installing", nodes=(2, 1)), NODES, rollout, CLASSES, ["kata", "kata-cc"])
    assert not state["done"] and not state["fatal"]
    assert state["line"] == "KataConfig kc: Installing, 1/2 nodes ready; kata-oc: 1/2 nodes updated, w-1 rebooting"
    state = kc.assess(kataconfig_status("False"), NODES, None, CLASSES, ["kata", "kata-cc"])
    assert state["done"] and state["problems"] == [] and state["tee"] == "tdx"
    assert state["gpu_class_missing"]  # w-0 has a GPU, the class is not there
    assert state["line"] == "KataConfig kc: installed, 2/2 nodes ready"
    waiting_for_gpu = kc.assess(kataconfig_status("False"), NODES, None, CLASSES, ["kata", "kata-cc", kc.GPU_CLASS])
    assert not waiting_for_gpu["done"] and "runtime classes missing: kata-cc-nvidia-gpu" in waiting_for_gpu["line"]


def test_assess_fatal_and_passing_failures():
    old = kc.assess(kataconfig_status("False", "UnsupportedOCPVersion", "OpenShift 4.20.5 is not supported"),
                    NODES, None, [], ["kata"])
    assert old["fatal"] == "KataConfig kc: UnsupportedOCPVersion: OpenShift 4.20.5 is not supported"
    degraded = kc.assess(kataconfig_status("True", "Failed", "Node w-1 Degraded: boom", failedToInstall=["w-1"]),
                         NODES, None, [], ["kata"])
    assert degraded["fatal"].startswith("KataConfig kc failed to install on w-1: Node w-1 Degraded: boom")
    tee = kc.assess(kataconfig_status("True", "Failed", "no TEE platform labels found"), NODES, None, [], ["kata"])
    assert tee["fatal"] is None and tee["failure"] == "KataConfig kc: no TEE platform labels found"
    fresh = kc.assess({"metadata": {"name": "kc"}}, NODES, None, [], ["kata"])
    assert fresh["line"] == "KataConfig kc: not reconciled yet, 0/0 nodes ready" and not fresh["done"]
