"""Twins of their own for the GPU operator and OSC tests.

These tests bind GPUs to vfio-pci, switch CC modes and reboot nodes: host state no test can undo.
They get their own twins (one per profile, per session) so the session's shared ``twin`` stays as
the other tests expect it.
"""

import time
from pathlib import Path

import pytest
import yaml

from twin import crds
from twin.kube import ApiError, path
from tests.conftest import SHARED, TwinHandle

GPU_NAMESPACE = "nvidia-gpu-operator"
OSC_NAMESPACE = "openshift-sandboxed-containers-operator"
OPERAND_ROWS = [
    ("nvidia.com", "v1", "ClusterPolicy", "clusterpolicies", "Cluster", {}),
    ("kataconfiguration.openshift.io", "v1", "KataConfig", "kataconfigs", "Cluster", {}),
]
NFD_GPU = "feature.node.kubernetes.io/pci-10de.present"


@pytest.fixture(scope="session")
def cgpu_twin_factory(tmp_path_factory, twin_crds):
    from twin.cluster import Cluster

    started = {}

    def get(profile="default"):
        if profile not in started:
            short = Path(profile).stem
            state = tmp_path_factory.mktemp(f"cgpu-{short}")
            cluster = Cluster(f"cgpu-{short}", state)
            cluster.up(profile, conformance=twin_crds, log=lambda msg: None)
            started[profile] = TwinHandle(cluster, profile)
        return started[profile]

    yield get
    from tests.conftest import _keep_logs

    for handle in started.values():
        survivors = handle.cluster.down()
        _keep_logs(handle)
        assert not survivors, f"twin processes left running after down: {survivors}"


def operand_crds(handle, upstream):
    """The ClusterPolicy and KataConfig CRDs, as OLM installs them when the operators' CSVs succeed."""
    if upstream:
        docs = crds.real_crds(SHARED / "crds" / "gpu-operator") + crds.real_crds(SHARED / "crds" / "osc")
        docs = [d for d in docs if d["spec"]["names"]["kind"] in ("ClusterPolicy", "KataConfig")]
    else:
        docs = [crds.twin_crd(*row) for row in OPERAND_ROWS]
    crds.install(handle.kube, docs)


def ensure_namespace(kube, name):
    try:
        kube.create(path("v1", "namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    except ApiError as exc:
        if exc.status != 409:
            raise


def create_pod(kube, namespace, body, timeout=20):
    """Create a pod once the namespace's default ServiceAccount exists (the ServiceAccount admission plugin
    refuses pods before kube-controller-manager made it): watched, not retried."""
    wait_for(kube, path("v1", "serviceaccounts", namespace=namespace), lambda items: "default" in items,
             timeout=timeout, what=f"the default ServiceAccount of {namespace}")
    return kube.create(path("v1", "pods", namespace=namespace), body)


def label_gpu_nodes(handle):
    """What NFD's pci source reports on nodes with an NVIDIA device."""
    for node in handle.profile_spec()["nodes"]:
        if node["gpus"]:
            handle.kube.merge_patch(path("v1", "nodes", node["name"]), {"metadata": {"labels": {NFD_GPU: "true"}}})


CONFIGURED_ARGS = "intel_iommu=on kvm_intel.tdx=1 nohibernate"


@pytest.fixture(scope="session")
def configured_profile(tmp_path_factory):
    """The default hardware with the host configuration already done (IOMMU and TDX kernel arguments),
    as after the tee_hosts role: GPU operator tests need vfio-pci, which needs the IOMMU."""
    from twin import profile as profiles

    data = yaml.safe_load((profiles.PROFILES_DIR / "default.yaml").read_text())
    data["name"] = "default-configured"
    for node in data["nodes"]:
        if "worker" in node.get("roles", ["worker"]):
            node["kernel_cmdline"] = (
                "BOOT_IMAGE=(hd0,gpt3)/ostree/rhcos/vmlinuz-5.14.0-570.el9_6.x86_64 rw ostree=/ostree/boot.1/rhcos/0 "
                "ignition.platform.id=metal root=UUID=twin " + CONFIGURED_ARGS)
    file = tmp_path_factory.mktemp("profiles") / "default-configured.yaml"
    file.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(file)


@pytest.fixture(scope="session")
def gpu_twin(cgpu_twin_factory, configured_profile, twin_crds):
    """3 TDX workers with an H100 each, hosts configured, operand CRDs and NFD's GPU labels present."""
    handle = cgpu_twin_factory(configured_profile)
    prepare(handle, twin_crds is not None)
    return handle


def prepare(handle, upstream, operand_crds_too=True):
    """NFD's GPU labels; with ``operand_crds_too``, what OLM would have installed (CRDs, namespaces)."""
    handle.profile_spec = lambda: yaml.safe_load((handle.state / "profile.yaml").read_text())
    if operand_crds_too:
        operand_crds(handle, upstream)
        ensure_namespace(handle.kube, GPU_NAMESPACE)
        ensure_namespace(handle.kube, OSC_NAMESPACE)
    label_gpu_nodes(handle)


def wait_for(kube, p, predicate, timeout=60, what="", **params):
    """Watch a collection until predicate(items_by_name) is true; returns the items."""
    deadline = time.monotonic() + timeout
    seen = {}
    while True:
        listing = kube.list(p, **params)
        seen = {o["metadata"]["name"]: o for o in listing["items"]}
        if predicate(seen):
            return seen
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out waiting for {what or p}; last seen: {_brief(seen)}")
        try:
            for kind, obj in kube.watch(p, listing["metadata"]["resourceVersion"],
                                        timeout_seconds=max(1, int(remaining)), **params):
                if kind == "ERROR":
                    break
                if kind == "BOOKMARK":
                    continue
                if kind == "DELETED":
                    seen.pop(obj["metadata"]["name"], None)
                else:
                    seen[obj["metadata"]["name"]] = obj
                if predicate(seen):
                    return seen
                if time.monotonic() > deadline:
                    break
        except ApiError:
            pass


def _brief(seen):
    """What a timeout message shows of each object: the labels and status fields these tests look at."""
    out = {}
    for name, obj in list(seen.items())[:8]:
        labels = {k: v for k, v in (obj["metadata"].get("labels") or {}).items()
                  if k.startswith(("nvidia.com/cc.", "nvidia.com/gpu.deploy.vfio", "nvidia.com/gpu.present"))}
        status = obj.get("status") or {}
        brief = {k: status[k] for k in ("state", "phase", "kataNodes", "runtimeClasses") if k in status}
        for cond in status.get("conditions") or []:
            if cond.get("type") in ("InProgress", "Ready", "PodScheduled") and obj.get("kind") != "Node":
                brief[cond["type"]] = [cond.get("status"), cond.get("reason"), cond.get("message")]
        out[name] = {"labels": labels, **brief} if labels else brief
    return out


def cluster_policy(name="gpu-cluster-policy", default_mode="on", alias=True):
    """The ClusterPolicy the gpu_operator role renders (26.3), optionally without the pgpu alias."""
    from ansible_collections.confidential.gpu.plugins.module_utils import gpu_operator as rendering

    policy = rendering.cluster_policy("26.3.3", name=name, cc_mode=default_mode)
    if not alias:
        policy["spec"]["kataSandboxDevicePlugin"]["env"] = []
    return policy
