"""A twin whose TDX workers run confidential GPU pods, and a Restricted Trustee on it: what the guest
and smoke-role tests start from (one place, so both prove the same setup)."""

import yaml

from tests.twin.sandboxed.conftest import CONFIGURED_ARGS, cluster_policy, ensure_namespace, prepare
from tests.twin.sandboxed.conftest import wait_for as wait_for_items
from tests.twin.trustee_helpers import (
    API,
    TrusteePki,
    admitted,
    ensure_trustee_crds,
    route,
    set_reference_values,
    tls_secret,
    trustee_config,
    wait_for,
)
from twin import tee
from twin.kube import path

NODE = "worker-0"
TRUSTEE_NS = "trustee-operator-system"
KERNEL_PARAMS = "agent.guest_components_rest_api=all"


def confidential_gpu_twin(twin_factory, tmp_path_factory, twin_crds, name):
    """The default profile with its workers already configured for TDX and the IOMMU, the GPU operator's
    ClusterPolicy and the kata runtime classes, once NODE's GPU is bound to vfio-pci and in CC mode."""
    from twin import profile as profiles

    data = yaml.safe_load((profiles.PROFILES_DIR / "default.yaml").read_text())
    data["name"] = f"{name}-configured"
    for node in data["nodes"]:
        if "worker" in node.get("roles", ["worker"]):
            node["kernel_cmdline"] = "BOOT_IMAGE=/vmlinuz rw root=UUID=twin " + CONFIGURED_ARGS
    file = tmp_path_factory.mktemp(f"{name}-profile") / f"{name}-configured.yaml"
    file.write_text(yaml.safe_dump(data, sort_keys=False))
    handle = twin_factory(str(file), name=name)
    prepare(handle, twin_crds is not None)
    kube = handle.kube
    kube.create(path("nvidia.com/v1", "clusterpolicies"), cluster_policy())
    for rc_name, handler in (("kata", "kata"), ("kata-cc-nvidia-gpu", "kata-tdx-nvidia-gpu")):
        kube.create(path("node.k8s.io/v1", "runtimeclasses"), {
            "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": rc_name}, "handler": handler})
    wait_for_items(kube, path("v1", "nodes"), lambda items: (
        items[NODE]["metadata"]["labels"].get("nvidia.com/cc.mode.state") == "on"
        and (items[NODE].get("status") or {}).get("allocatable", {}).get("nvidia.com/pgpu") == "1"),
        timeout=90, what=f"{NODE}: GPU bound to vfio-pci and in CC mode")
    ensure_namespace(kube, TRUSTEE_NS)
    return handle


def restricted_trustee(handle, twin_crds):
    """A ready Restricted TrusteeConfig behind route ``kbs``, with the reference values of NODE's guest image
    for pods that add KERNEL_PARAMS (measured). Returns ``{host, material, values}``."""
    kube, ns = handle.kube, TRUSTEE_NS
    ensure_trustee_crds(kube, twin_crds)
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
    values = tee.reference_values(profile["openshift"]["version"], "tdx", gpu=True, cmdline_extra=KERNEL_PARAMS,
                                  host_spec=node)
    set_reference_values(kube, ns, values)
    return {"host": host, "material": material, "values": values}
