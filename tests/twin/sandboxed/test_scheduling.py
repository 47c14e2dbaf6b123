"""With the real kube-scheduler: a confidential GPU pod lands only where the GPU is in CC mode and ready.

The runtime class is OSC's own (the OSC twin created it after the KataConfig rollout), the GPU labels
and ``nvidia.com/pgpu`` are the GPU operator twin's, and the CC state is cc-manager's: nothing here
is hand-written except the TEE keys NFD would advertise on the hosts.
"""

import time

import pytest

from twin.kube import ApiError, path

from ansible_collections.confidential.gpu.plugins.module_utils import pod_spec

from .conftest import OSC_NAMESPACE, cluster_policy, ensure_namespace, wait_for

pytestmark = pytest.mark.twin

CP = path("nvidia.com/v1", "clusterpolicies")
KC = path("kataconfiguration.openshift.io/v1", "kataconfigs")
NODES = path("v1", "nodes")
TDX = "intel.feature.node.kubernetes.io/tdx"
NAMESPACE = "confidential-workloads"


def _labels(node):
    return node["metadata"].get("labels") or {}


@pytest.fixture(scope="module")
def kata_gpu(gpu_twin):
    """ClusterPolicy and KataConfig in place on worker-0 and worker-1 (created here when run alone)."""
    kube = gpu_twin.kube
    if kube.get_or_none(f"{CP}/gpu-cluster-policy") is None:
        kube.create(CP, cluster_policy())
    for node in ("worker-0", "worker-1"):
        kube.merge_patch(path("v1", "nodes", node), {"metadata": {"labels": {
            TDX: "true", "feature.node.kubernetes.io/runtime.kata": "true"}}})
    if kube.get_or_none(path("v1", "configmaps", "osc-feature-gates", OSC_NAMESPACE)) is None:
        kube.create(path("v1", "configmaps", namespace=OSC_NAMESPACE), {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "osc-feature-gates"},
            "data": {"confidential": "true"}})
    if kube.get_or_none(f"{KC}/example-kataconfig") is None:
        kube.create(KC, {"apiVersion": "kataconfiguration.openshift.io/v1", "kind": "KataConfig",
                         "metadata": {"name": "example-kataconfig"}, "spec": {"checkNodeEligibility": True}})
    wait_for(kube, path("node.k8s.io/v1", "runtimeclasses"), lambda items: "kata-cc-nvidia-gpu" in items, timeout=120,
             what="kata-cc-nvidia-gpu")
    # NFD's extended resource for TDX guests (one key per pod VM: the runtime class's overhead asks for it)
    for node in ("worker-0", "worker-1", "worker-2"):
        kube.merge_patch(path("v1", "nodes", node, subresource="status"), {"status": {
            "capacity": {"tdx.intel.com/keys": "63"}, "allocatable": {"tdx.intel.com/keys": "63"}}})
    ensure_namespace(kube, NAMESPACE)
    return gpu_twin


def smoke_pod(name, pgpu=1):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"runtimeClassName": "kata-cc-nvidia-gpu",
                     "containers": [{"name": "cuda", "image": "registry.example/cuda-server:12",
                                     "resources": {"limits": {"nvidia.com/pgpu": str(pgpu)}}}]}}


def create(kube, body, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return kube.create(path("v1", "pods", namespace=NAMESPACE), body)
        except ApiError as exc:  # the namespace's default ServiceAccount comes a moment later
            if "serviceaccount" not in exc.message or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def scheduled(pod):
    return pod.get("spec", {}).get("nodeName")


def unschedulable(pod):
    return next((c for c in (pod.get("status") or {}).get("conditions") or []
                 if c["type"] == "PodScheduled" and c["status"] == "False"), None)


def set_mode(kube, node, mode):
    kube.merge_patch(path("v1", "nodes", node), {"metadata": {"labels": {"nvidia.com/cc.mode": mode}}})


def test_gpu_pod_lands_only_where_cc_mode_is_on_and_ready(kata_gpu):
    kube = kata_gpu.kube
    pods = path("v1", "pods", namespace=NAMESPACE)
    try:
        # worker-0 in CC mode; worker-1 with CC off; worker-2 has no kata (not eligible there) and CC off too
        set_mode(kube, "worker-0", "on")
        set_mode(kube, "worker-1", "off")
        set_mode(kube, "worker-2", "off")
        nodes = wait_for(kube, NODES, lambda i: (
            _labels(i["worker-0"]).get("nvidia.com/cc.ready.state") == "true"
            and _labels(i["worker-1"]).get("nvidia.com/cc.ready.state") == "false"
            and _labels(i["worker-2"]).get("nvidia.com/cc.ready.state") == "false"
            and all(_labels(i[n]).get("nvidia.com/gpu.deploy.vfio-manager") == "true" for n in i if n.startswith("w"))),
            timeout=60, what="worker-0 ready, worker-1 and worker-2 off")
        # both nodes advertise a GPU: only the CC state tells them apart
        assert nodes["worker-0"]["status"]["allocatable"]["nvidia.com/pgpu"] == "1"
        assert nodes["worker-1"]["status"]["allocatable"]["nvidia.com/pgpu"] == "1"

        create(kube, smoke_pod("gpu-one"))
        placed = wait_for(kube, pods, lambda i: scheduled(i.get("gpu-one", {})), timeout=30)["gpu-one"]
        assert placed["spec"]["nodeName"] == "worker-0"
        assert placed["spec"]["overhead"]["tdx.intel.com/keys"] == "1"  # RuntimeClass admission

        create(kube, smoke_pod("gpu-two"))
        pending = wait_for(kube, pods, lambda i: unschedulable(i.get("gpu-two", {})), timeout=30)["gpu-two"]
        message = unschedulable(pending)["message"]
        assert "Insufficient nvidia.com/pgpu" in message  # worker-0's one GPU is taken
        assert "didn't match Pod's node affinity/selector" in message  # the CC-off nodes
        assert not scheduled(pending)

        # worker-1 comes into CC mode: the waiting pod goes there, and nowhere else
        set_mode(kube, "worker-1", "on")
        placed = wait_for(kube, pods, lambda i: scheduled(i.get("gpu-two", {})), timeout=60)["gpu-two"]
        assert placed["spec"]["nodeName"] == "worker-1"
    finally:
        for name in ("gpu-one", "gpu-two"):
            kube.delete(path("v1", "pods", name, NAMESPACE), gracePeriodSeconds=0)
        for node in ("worker-0", "worker-1", "worker-2"):
            set_mode(kube, node, None)


def test_preflight_refuses_a_pod_asking_for_two_gpus(kata_gpu, run_playbook):
    verdicts = pod_spec.check_pod_spec(smoke_pod("greedy", pgpu=2))
    failed = [v for v in verdicts if v["severity"] == "fail"]
    assert [v["id"] for v in failed] == ["pod-one-gpu"]
    assert "asks for 2 nvidia.com/pgpu" in failed[0]["message"]
    # through the preflight, as users run it: the workloads verdict fails and names the pod
    run = run_playbook([{"hosts": "localhost", "gather_facts": False, "tasks": [{
        "name": "preflight", "confidential.gpu.preflight_facts": {
            "workloads": [smoke_pod("smoke"), smoke_pod("greedy", pgpu=2)]},
        "register": "out"}]}], env=kata_gpu.env())
    result = run.result("preflight")
    workloads = next(v for v in result["verdicts"] if v["name"] == "workloads")
    assert workloads["status"] == "fail" and result["overall"] == "fail"
    assert workloads["summary"] == "1 of 2 workload(s) would not run as confidential GPU pods"
    assert workloads["details"] == ["greedy: the pod asks for 2 nvidia.com/pgpu; OpenShift sandboxed containers pass "
                                    "one confidential GPU per pod (Technology Preview), so it would never be "
                                    "scheduled on a kata-cc-nvidia-gpu node"]
