"""The GPU operator twin does what the collection relies on, observed only through the API."""

import pytest

from twin.controllers import gpu_operator as gpuop
from twin.kube import path

from .conftest import GPU_NAMESPACE, cluster_policy, wait_for

CP = path("nvidia.com/v1", "clusterpolicies")
NODES = path("v1", "nodes")
WORKERS = ("worker-0", "worker-1", "worker-2")
KATA_DEPLOY = {f"nvidia.com/gpu.deploy.{d}": "true" for d in
               ("sandbox-validator", "vfio-manager", "cc-manager", "kata-sandbox-device-plugin", "client")}


def _labels(node):
    return node["metadata"].get("labels") or {}


def _state(nodes, name):
    labels = _labels(nodes[name])
    return labels.get("nvidia.com/cc.mode.state"), labels.get("nvidia.com/cc.ready.state")


def _set_mode(kube, node, mode):
    kube.merge_patch(path("v1", "nodes", node), {"metadata": {"labels": {"nvidia.com/cc.mode": mode}}})


@pytest.fixture(scope="module")
def policy(gpu_twin):
    kube = gpu_twin.kube
    if kube.get_or_none(f"{CP}/gpu-cluster-policy") is None:
        kube.create(CP, cluster_policy())
    wait_for(kube, CP, lambda items: (items.get("gpu-cluster-policy", {}).get("status") or {}).get("state") == "ready",
             timeout=90, what="ClusterPolicy ready")
    wait_for(kube, NODES, lambda items: all(_state(items, n) == ("on", "true") for n in WORKERS)
             and all(_labels(items[n]).get("nvidia.com/gpu.deploy.vfio-manager") == "true" for n in WORKERS),
             timeout=60, what="cc-manager done")
    wait_for(kube, CP, lambda items: items["gpu-cluster-policy"]["status"]["state"] == "ready", timeout=60)
    return gpu_twin


@pytest.mark.twin
def test_clusterpolicy_labels_operands_binds_and_advertises(policy):
    kube = policy.kube
    nodes = {n["metadata"]["name"]: n for n in kube.list(NODES)["items"]}
    for name in WORKERS:
        labels = _labels(nodes[name])
        assert labels["nvidia.com/gpu.present"] == "true"
        assert {k: labels.get(k) for k in KATA_DEPLOY} == KATA_DEPLOY
        assert "nvidia.com/gpu.deploy.driver" not in labels  # no host driver on passthrough nodes
        assert nodes[name]["status"]["allocatable"]["nvidia.com/pgpu"] == "1"
        assert nodes[name]["status"]["capacity"]["nvidia.com/pgpu"] == "1"
    for name in ("master-0", "master-1", "master-2"):
        assert "nvidia.com/gpu.present" not in _labels(nodes[name])
    daemonsets = {d["metadata"]["name"]: d for d in kube.list(path("apps/v1", "daemonsets", namespace=GPU_NAMESPACE))["items"]}
    for name in ("nvidia-cc-manager", "nvidia-vfio-manager", "nvidia-sandbox-validator",
                 "nvidia-kata-sandbox-device-plugin-daemonset"):
        assert daemonsets[name]["status"]["numberReady"] == 3, name
    assert "nvidia-sandbox-device-plugin-daemonset" not in daemonsets  # the KubeVirt plugin is not for kata
    assert "nvidia-driver-daemonset" not in daemonsets
    pods = kube.list(path("v1", "pods", namespace=GPU_NAMESPACE), labelSelector="name=nvidia-vfio-manager")["items"]
    assert sorted(p["spec"]["nodeName"] for p in pods) == list(WORKERS)
    log = kube.get(path("v1", "pods", pods[0]["metadata"]["name"], GPU_NAMESPACE, "log"))
    assert "to vfio-pci" in log
    # cc-manager's pods carry name=, not app= (gpu-operator v26.3.3 assets/state-cc-manager/0500_daemonset.yaml)
    cc_pods = kube.list(path("v1", "pods", namespace=GPU_NAMESPACE), labelSelector="name=nvidia-cc-manager")["items"]
    assert sorted(p["spec"]["nodeName"] for p in cc_pods) == list(WORKERS)
    assert not kube.list(path("v1", "pods", namespace=GPU_NAMESPACE), labelSelector="app=nvidia-cc-manager")["items"]
    assert daemonsets["nvidia-cc-manager"]["metadata"]["labels"]["app"] == "nvidia-cc-manager"
    cp = kube.get(f"{CP}/gpu-cluster-policy")
    assert cp["status"]["namespace"] == GPU_NAMESPACE
    # cc-manager's default mode applies where no node label says otherwise
    for name in WORKERS:
        if "nvidia.com/cc.mode" not in _labels(nodes[name]):
            assert _state(nodes, name) == ("on", "true")


@pytest.mark.twin
def test_cc_manager_modes_as_the_real_one(policy):
    kube = policy.kube
    node = "worker-2"
    try:
        for mode, expected in (("off", ("off", "false")), ("devtools", ("devtools", "")), ("ppcie", ("ppcie", "true")),
                               ("on", ("on", "true")), ("bogus", ("failed", ""))):
            _set_mode(kube, node, mode)
            wait_for(kube, NODES, lambda items: _state(items, node) == expected, timeout=30,
                     what=f"{node} in mode {mode}")
        # an unknown mode gets as far as the GPU set, which errors: failed, and the pod keeps running
        pod = next(iter(kube.list(path("v1", "pods", namespace=GPU_NAMESPACE), labelSelector="name=nvidia-cc-manager",
                                  fieldSelector=f"spec.nodeName={node}")["items"]))
        assert pod["status"]["containerStatuses"][0]["ready"] is True
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
        _set_mode(kube, node, "on")
        wait_for(kube, NODES, lambda items: _state(items, node) == ("on", "true"), timeout=30)
        pods = wait_for(kube, path("v1", "pods", namespace=GPU_NAMESPACE),
                        lambda items: all(p["status"]["containerStatuses"][0]["ready"] for p in items.values()),
                        labelSelector="name=nvidia-cc-manager", fieldSelector=f"spec.nodeName={node}", timeout=30)
        assert pods
        # the operands cc-manager evicted for the switch are back
        labels = _labels(kube.get(path("v1", "nodes", node)))
        assert labels["nvidia.com/gpu.deploy.vfio-manager"] == "true"
    finally:
        _set_mode(kube, node, None)


@pytest.mark.twin
def test_faults_stuck_failed_and_hanging_switch(policy):
    kube = policy.kube
    try:
        policy.set_faults([{"kind": "gpu-cc-stuck-failed", "node": "worker-1"},
                           {"kind": "cc-mode-switch-hangs", "node": "worker-0"}])
        _set_mode(kube, "worker-1", "off")
        _set_mode(kube, "worker-0", "off")
        wait_for(kube, NODES, lambda items: _state(items, "worker-1") == ("failed", ""), timeout=30)
        # worker-0 never gets there while the fault lasts: it still reports the mode it had
        assert _state({n["metadata"]["name"]: n for n in kube.list(NODES)["items"]}, "worker-0") == ("on", "true")
        policy.set_faults([])
        _set_mode(kube, "worker-1", "on")
        wait_for(kube, NODES, lambda items: _state(items, "worker-1") == ("on", "true"), timeout=30)
    finally:
        policy.set_faults([])
        _set_mode(kube, "worker-0", None)
        _set_mode(kube, "worker-1", None)
        # the switch given up on worker-0 gives back the operands it evicted
        wait_for(kube, NODES, lambda items: all(_state(items, n) == ("on", "true") and _labels(items[n]).get(
            "nvidia.com/gpu.deploy.vfio-manager") == "true" for n in WORKERS), timeout=30)


@pytest.mark.twin
def test_cc_manager_crash_loops_without_writing_failed(policy):
    """A GPU that cannot take the mode: exit(1) before any label (k8s-cc-manager v0.4.3 set_cc_mode), restarts."""
    kube = policy.kube
    node = "worker-1"
    pods = path("v1", "pods", namespace=GPU_NAMESPACE)
    selector = dict(labelSelector="name=nvidia-cc-manager", fieldSelector=f"spec.nodeName={node}")
    try:
        policy.set_faults([{"kind": "cc-manager-crash-loop", "node": node}])
        _set_mode(kube, node, "off")
        crashed = wait_for(kube, pods, lambda items: any(
            s.get("restartCount", 0) >= 2 and not s.get("ready")
            for p in items.values() for s in p["status"].get("containerStatuses") or []), timeout=30,
            what="cc-manager restarting", **selector)
        status = next(iter(crashed.values()))["status"]["containerStatuses"][0]
        assert status["lastState"]["terminated"]["exitCode"] == 1
        assert "cannot take CC mode 'off'" in status["lastState"]["terminated"]["message"]
        # no failed label: the state is what it was before
        assert _state({n["metadata"]["name"]: n for n in kube.list(NODES)["items"]}, node) == ("on", "true")
        policy.set_faults([])
        # the next restart applies the label
        wait_for(kube, NODES, lambda items: _state(items, node) == ("off", "false"), timeout=30)
        up = wait_for(kube, pods, lambda items: all(p["status"]["containerStatuses"][0]["ready"]
                                                    for p in items.values()), timeout=30, **selector)
        assert next(iter(up.values()))["status"]["containerStatuses"][0]["restartCount"] >= 2
    finally:
        policy.set_faults([])
        _set_mode(kube, node, None)
        wait_for(kube, NODES, lambda items: _state(items, node) == ("on", "true"), timeout=60)


@pytest.mark.twin
def test_workload_override_label_and_invalid_value(policy):
    kube = policy.kube
    node = "worker-2"
    try:
        kube.merge_patch(path("v1", "nodes", node), {"metadata": {"labels": {"nvidia.com/gpu.workload.config": "container"}}})
        wait_for(kube, NODES, lambda items: _labels(items[node]).get("nvidia.com/gpu.deploy.device-plugin") == "true"
                 and "nvidia.com/gpu.deploy.vfio-manager" not in _labels(items[node]), timeout=30)
        # "kata" is not a workload (gpu-operator#1871): the default applies
        kube.merge_patch(path("v1", "nodes", node), {"metadata": {"labels": {"nvidia.com/gpu.workload.config": "kata"}}})
        wait_for(kube, NODES, lambda items: _labels(items[node]).get("nvidia.com/gpu.deploy.vfio-manager") == "true",
                 timeout=30)
    finally:
        kube.merge_patch(path("v1", "nodes", node), {"metadata": {"labels": {"nvidia.com/gpu.workload.config": None}}})
    wait_for(kube, CP, lambda items: items["gpu-cluster-policy"]["status"]["state"] == "ready", timeout=60)


# -- pure parts of the twin ------------------------------------------------------------------------


def test_cc_plan_follows_k8s_cc_manager():
    h100 = {"pci_address": "0000:18:00.0", "cc_capable": True, "architecture": "Hopper", "cc_mode": "off"}
    a100 = {"pci_address": "0000:38:00.0", "cc_capable": False, "architecture": "Ampere"}
    rtx = {"pci_address": "0000:58:00.0", "cc_capable": True, "architecture": "Blackwell", "cc_mode": "on"}
    assert gpuop.cc_plan("on", [h100]) == ("switch", "on")
    assert gpuop.cc_plan("on", [rtx]) == ("label", "on")  # already there: no reset
    assert gpuop.cc_plan("off", [a100]) == ("label", "off")  # nothing CC-capable: reports off
    assert gpuop.cc_plan("on", [h100, a100])[0] == "exit"  # exits before any label: a crash loop
    assert "0000:38:00.0" in gpuop.cc_plan("devtools", [a100])[1]
    assert gpuop.cc_plan("ppcie", [h100]) == ("switch", "ppcie")
    assert gpuop.cc_plan("ppcie", [rtx])[0] == "exit"  # Blackwell uses "on" for multi-GPU
    assert gpuop.cc_plan("bogus", [h100]) == ("switch", "failed")  # the set errors: the one path to failed
    assert gpuop.cc_plan("", [h100]) == ("skip", None) and gpuop.cc_plan("on", []) == ("skip", None)
    assert gpuop.ready_state("ppcie") == "true" and gpuop.ready_state("devtools") == ""


def test_pgpu_resource_name_needs_the_alias():
    gpu = {"model": "NVIDIA H100 PCIe", "architecture": "Hopper"}
    assert gpuop.pgpu_resource(cluster_policy(), gpu) == "nvidia.com/pgpu"
    assert gpuop.pgpu_resource(cluster_policy(alias=False), gpu) == "nvidia.com/GH100_H100_PCIE"


def test_only_the_oldest_policy_counts_and_kubevirt_mode_deploys_no_cc_manager():
    a = {"metadata": {"name": "b", "creationTimestamp": "2026-01-01T00:00:00Z"}}
    b = {"metadata": {"name": "a", "creationTimestamp": "2026-01-02T00:00:00Z"}}
    assert gpuop.honoured([b, a])["metadata"]["name"] == "b"
    kubevirt = cluster_policy()
    kubevirt["spec"]["sandboxWorkloads"]["mode"] = "kubevirt"
    names = {operand[1] for operand in gpuop.enabled_operands(kubevirt)}
    assert "nvidia-cc-manager" not in names and "nvidia-sandbox-device-plugin-daemonset" in names
