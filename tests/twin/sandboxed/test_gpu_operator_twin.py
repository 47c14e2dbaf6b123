"""The GPU operator twin does what the collection relies on, observed only through the API."""

import pytest

from twin.controllers import gpu_operator as gpuop
from twin.kube import path

from .conftest import GPU_NAMESPACE, cluster_policy, wait_for

CP = path("nvidia.com/v1", "clusterpolicies")
NODES = path("v1", "nodes")
WORKERS = ("worker-0", "worker-1", "worker-2")
KATA_DEPLOY = {f"nvidia.com/gpu.deploy.{d}": "true" for d in
               ("sandbox-validator", "vfio-manager", "cc-manager", "kata-sandbox-device-plugin", "kata-manager")}


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


def test_pgpu_resource_name_is_pgpu_unless_the_alias_is_empty():
    gpu = {"model": "NVIDIA H100 PCIe", "architecture": "Hopper"}
    assert gpuop.pgpu_resource(cluster_policy(), gpu) == "nvidia.com/pgpu"
    assert gpuop.pgpu_resource(cluster_policy(alias=False), gpu) == "nvidia.com/pgpu"  # unset: the plugin's default
    empty = cluster_policy()
    empty["spec"]["kataSandboxDevicePlugin"]["env"] = [{"name": "P_GPU_ALIAS", "value": ""}]
    assert gpuop.pgpu_resource(empty, gpu) == "nvidia.com/GH100_H100_PCIE"


def test_only_the_oldest_policy_counts_and_kubevirt_mode_deploys_no_cc_manager():
    a = {"metadata": {"name": "b", "creationTimestamp": "2026-01-01T00:00:00Z"}}
    b = {"metadata": {"name": "a", "creationTimestamp": "2026-01-02T00:00:00Z"}}
    assert gpuop.honoured([b, a])["metadata"]["name"] == "b"
    kubevirt = cluster_policy()
    kubevirt["spec"]["sandboxWorkloads"]["mode"] = "kubevirt"
    names = {operand[1] for operand in gpuop.enabled_operands(kubevirt)}
    assert "nvidia-cc-manager" not in names and "nvidia-sandbox-device-plugin-daemonset" in names


# -- issue 13, the operator as its source behaves ----------------------------------------------------------------------

NFD = {"feature.node.kubernetes.io/pci-10de.present": "true"}
DEPLOY = "nvidia.com/gpu.deploy."
KATA_26_3 = {"kata-sandbox-device-plugin", "sandbox-validator", "vfio-manager", "kata-manager", "cc-manager"}


def _deploy_set(patch):
    return {k[len(DEPLOY):] for k, v in patch.items() if k.startswith(DEPLOY) and v == "true"}


def test_deploy_labels_per_operator_version():
    """gpu-operator controllers/state_manager.go gpuStateLabels + getEffectiveStateLabels: kata-manager in both,
    nvidia.com/gpu.deploy.client only from 26.7.0."""
    cp = cluster_policy()
    assert _deploy_set(gpuop.label_patch(cp, NFD, (26, 3, 3))) == KATA_26_3
    assert _deploy_set(gpuop.label_patch(cp, NFD, (26, 7, 0))) == KATA_26_3 | {"client"}
    assert gpuop.label_patch(cp, NFD, (26, 3, 3))["nvidia.com/gpu.present"] == "true"


def test_deploy_labels_keep_existing_values_and_operands_false():
    """addGPUStateLabels sets a state label only where it is missing (26.7.0 also where it is empty);
    nvidia.com/gpu.deploy.operands=false removes every state label (updateGPUStateLabels)."""
    cp = cluster_policy()
    present = dict(NFD, **{"nvidia.com/gpu.present": "true"})
    kept = dict(present, **{DEPLOY + "cc-manager": "false", DEPLOY + "vfio-manager": "paused-for-cc-mode-change"})
    patch = gpuop.label_patch(cp, kept, (26, 3, 3))
    assert DEPLOY + "cc-manager" not in patch and DEPLOY + "vfio-manager" not in patch
    empty = dict(present, **{DEPLOY + "cc-manager": ""})
    assert DEPLOY + "cc-manager" not in gpuop.label_patch(cp, empty, (26, 3, 3))
    assert gpuop.label_patch(cp, empty, (26, 7, 0))[DEPLOY + "cc-manager"] == "true"
    labelled = dict(present, **{DEPLOY + d: "true" for d in KATA_26_3})
    off = dict(labelled, **{DEPLOY + "operands": "false"})
    patch = gpuop.label_patch(cp, off, (26, 3, 3))
    assert patch == {DEPLOY + d: None for d in KATA_26_3}  # the operands label itself stays
    # a node whose GPUs are gone: gpu.present=false and no state label (labelGPUNodes)
    gone = gpuop.label_patch(cp, {k: v for k, v in labelled.items() if k not in NFD}, (26, 3, 3))
    assert gone == dict({"nvidia.com/gpu.present": "false"}, **{DEPLOY + d: None for d in KATA_26_3})


def _gpu(model, device_id, arch, group, name=None):
    gpu = {"model": model, "device_id": device_id, "architecture": arch, "driver": "vfio-pci", "iommu_group": group,
           "pci_address": "0000:{0:02x}:00.0".format(group)}
    if name:
        gpu["pci_name"] = name
    return gpu


H100 = ("NVIDIA H100 PCIe", "0x2331", "Hopper")
RTX = ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "0x2bb5", "Blackwell")
EMPTY_ALIAS = [{"name": "P_GPU_ALIAS", "value": ""}]


def test_sandbox_device_plugin_counts_iommu_groups_and_defaults_to_pgpu():
    """NVIDIA/sandbox-device-plugin v0.0.3 cmd/main.go (P_GPU_ALIAS unset: pgpu) and pkg/device_plugin/device_plugin.go
    (one device per IOMMU group, one plugin per PCI device id, the model name only with P_GPU_ALIAS='')."""
    two = [_gpu(*H100, 20), _gpu(*H100, 21)]
    assert gpuop.sandbox_plugin_resources([], two) == {"nvidia.com/pgpu": 2}
    assert gpuop.sandbox_plugin_resources([{"name": "P_GPU_ALIAS", "value": "pgpu"}], two) == {"nvidia.com/pgpu": 2}
    assert gpuop.sandbox_plugin_resources(EMPTY_ALIAS, two) == {"nvidia.com/GH100_H100_PCIE": 2}
    shared = [_gpu(*H100, 20), _gpu(*H100, 20)]
    assert gpuop.sandbox_plugin_resources([], shared) == {"nvidia.com/pgpu": 1}
    not_bound = [dict(_gpu(*H100, 20), driver="nvidia"), _gpu(*H100, 21)]
    assert gpuop.sandbox_plugin_resources([], not_bound) == {"nvidia.com/pgpu": 1}
    mixed = [_gpu(*H100, 20), _gpu(*RTX, 21), _gpu(*RTX, 22)]
    # two plugins register nvidia.com/pgpu; the kubelet keeps the endpoint registered last: one model's count
    assert gpuop.sandbox_plugin_resources([], mixed)["nvidia.com/pgpu"] in (1, 2)
    rtx_name = "GB202GL [RTX PRO 6000 Blackwell Server Edition]"
    named = gpuop.sandbox_plugin_resources(EMPTY_ALIAS, [_gpu(*H100, 20), _gpu(*RTX, 21, name=rtx_name)])
    assert named == {"nvidia.com/GH100_H100_PCIE": 1, "nvidia.com/GB202GL_RTX_PRO_6000_BLACKWELL_SERVER_EDITION": 1}


def test_daemonset_readiness_as_is_daemonset_ready():
    """gpu-operator v26.3.3 controllers/object_controls.go isDaemonSetReady: nothing desired is ready;
    any unavailable pod is not; GPUs advertised or not plays no part."""
    rolling = {"spec": {"updateStrategy": {"type": "RollingUpdate"}}}
    assert gpuop.daemonset_ready(dict(rolling, status={"desiredNumberScheduled": 0}))
    assert not gpuop.daemonset_ready(dict(rolling, status={"desiredNumberScheduled": 3, "numberReady": 2,
                                                           "numberUnavailable": 1}))
    assert gpuop.daemonset_ready(dict(rolling, status={"desiredNumberScheduled": 3, "numberReady": 3,
                                                       "numberAvailable": 3}))


@pytest.mark.twin
def test_kept_deploy_label_and_ready_without_advertised_gpus(policy):
    """A node labelled kata-sandbox-device-plugin=false keeps it: no plugin pod there, its GPU not advertised,
    and the ClusterPolicy is ready all the same (readiness counts DaemonSet pods, not GPUs)."""
    kube = policy.kube
    node = "worker-2"
    label = "nvidia.com/gpu.deploy.kata-sandbox-device-plugin"
    try:
        kube.merge_patch(path("v1", "nodes", node), {"metadata": {"labels": {label: "false"}}})
        wait_for(kube, NODES, lambda items: (items[node]["status"].get("allocatable") or {}).get("nvidia.com/pgpu") == "0",
                 timeout=30, what=f"{node} without nvidia.com/pgpu")
        assert _labels(kube.get(path("v1", "nodes", node)))[label] == "false"
        wait_for(kube, CP, lambda items: items["gpu-cluster-policy"]["status"]["state"] == "ready", timeout=30,
                 what="ClusterPolicy ready without worker-2's GPU advertised")
        plugins = kube.list(path("v1", "pods", namespace=GPU_NAMESPACE),
                            labelSelector="app=nvidia-kata-sandbox-device-plugin-daemonset")["items"]
        assert node not in {p["spec"]["nodeName"] for p in plugins}
    finally:
        kube.merge_patch(path("v1", "nodes", node), {"metadata": {"labels": {label: None}}})
    wait_for(kube, NODES, lambda items: items[node]["status"]["allocatable"].get("nvidia.com/pgpu") == "1", timeout=30)


@pytest.mark.twin
def test_operands_false_removes_the_state_labels(policy):
    kube = policy.kube
    node = "worker-1"
    try:
        kube.merge_patch(path("v1", "nodes", node), {"metadata": {"labels": {DEPLOY + "operands": "false"}}})
        wait_for(kube, NODES, lambda items: not [k for k in _labels(items[node]) if k.startswith(DEPLOY)
                                                 and k != DEPLOY + "operands"], timeout=30, what="no state labels")
        wait_for(kube, path("v1", "pods", namespace=GPU_NAMESPACE), lambda items: not items, timeout=30,
                 fieldSelector=f"spec.nodeName={node}", what=f"no operand pods on {node}")
    finally:
        kube.merge_patch(path("v1", "nodes", node), {"metadata": {"labels": {DEPLOY + "operands": None}}})
    wait_for(kube, NODES, lambda items: _labels(items[node]).get(DEPLOY + "vfio-manager") == "true"
             and _labels(items[node]).get(DEPLOY + "kata-manager") == "true", timeout=30)
    wait_for(kube, CP, lambda items: items["gpu-cluster-policy"]["status"]["state"] == "ready", timeout=60)


def test_kubelet_shows_crash_loop_back_off_between_restarts():
    """kubelet (pkg/kubelet/kubelet_pods.go convertToAPIContainerStatuses): after an exit the container waits in
    CrashLoopBackOff with the exit as lastState and the crashed run's restartCount; the restart counts one more."""
    from twin import kubelet

    running = {"name": "c", "restartCount": 0, "ready": True, "started": True, "state": {"running": {"startedAt": "t0"}}}
    waiting = kubelet.crashed_container_status(running, 1, "boom", 10, pod_name="p", namespace="ns", uid="u")
    assert waiting["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert waiting["state"]["waiting"]["message"] == "back-off 10s restarting failed container=c pod=p_ns(u)"
    assert waiting["lastState"]["terminated"]["exitCode"] == 1 and waiting["lastState"]["terminated"]["message"] == "boom"
    assert waiting["restartCount"] == 0 and waiting["ready"] is False and waiting["started"] is False
    again = kubelet.restarted_container_status(waiting)
    assert again["restartCount"] == 1 and "running" in again["state"] and again["lastState"] == waiting["lastState"]


@pytest.mark.twin
def test_crash_looping_cc_manager_shows_crash_loop_back_off(policy):
    kube = policy.kube
    node = "worker-0"
    pods = path("v1", "pods", namespace=GPU_NAMESPACE)
    selector = dict(labelSelector="name=nvidia-cc-manager", fieldSelector=f"spec.nodeName={node}")
    try:
        policy.set_faults([{"kind": "cc-manager-crash-loop", "node": node}])
        _set_mode(kube, node, "off")
        seen = wait_for(kube, pods, lambda items: any(
            ((s.get("state") or {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff"
            and s.get("restartCount", 0) >= 1 for p in items.values() for s in p["status"].get("containerStatuses") or []),
            timeout=30, what="cc-manager in CrashLoopBackOff after a restart", **selector)
        status = next(iter(seen.values()))["status"]["containerStatuses"][0]
        assert status["ready"] is False and status["lastState"]["terminated"]["exitCode"] == 1
    finally:
        policy.set_faults([])
        _set_mode(kube, node, None)
        wait_for(kube, NODES, lambda items: _state(items, node) == ("on", "true"), timeout=60)


def test_cc_manager_default_forced_off_without_a_host_tee_and_a_label_applied_anyway():
    """k8s-cc-manager v0.4.3 main.py ``main``: the default becomes ``off`` where ``is_host_cc_enabled`` is false;
    ``set_cc_mode`` only warns for a label other than off there."""
    env = [{"name": "DEFAULT_CC_MODE", "value": "on"}]
    assert gpuop.cc_manager_mode("", env, host_cc=True) == "on"
    assert gpuop.cc_manager_mode("", [], host_cc=True) == "on"  # argparse default
    assert gpuop.cc_manager_mode("", env, host_cc=False) == "off"
    assert gpuop.cc_manager_mode("on", env, host_cc=False) == "on"


@pytest.mark.twin
def test_cc_manager_reapplies_at_every_pod_start(policy):
    """watch_and_apply: at start it applies the label (or default) and writes the state; later only label changes.
    A state label changed behind its back stays until its pod restarts."""
    kube = policy.kube
    node = "worker-0"
    pods = path("v1", "pods", namespace=GPU_NAMESPACE)
    selector = dict(labelSelector="name=nvidia-cc-manager", fieldSelector=f"spec.nodeName={node}")
    kube.merge_patch(path("v1", "nodes", node), {"metadata": {"labels": {"nvidia.com/cc.mode.state": "stale"}}})
    try:
        unrelated = {"metadata": {"annotations": {"twin.confidential.gpu/poke": "1"}}}
        kube.merge_patch(path("v1", "nodes", node), unrelated)  # a node event that is no label change
        assert _state({node: kube.get(path("v1", "nodes", node))}, node)[0] == "stale"
        old = next(iter(kube.list(pods, **selector)["items"]))
        kube.delete(path("v1", "pods", old["metadata"]["name"], GPU_NAMESPACE))
        wait_for(kube, NODES, lambda items: _state(items, node) == ("on", "true"), timeout=60,
                 what="cc-manager's new pod writing the state again")
    finally:
        kube.merge_patch(path("v1", "nodes", node), {"metadata": {"annotations": {"twin.confidential.gpu/poke": None}}})
        wait_for(kube, NODES, lambda items: _state(items, node) == ("on", "true"), timeout=60)
