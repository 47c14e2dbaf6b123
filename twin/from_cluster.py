"""A hardware profile of a live cluster, so that a rehearsal runs against its nodes rather than a sample.

``python -m twin profile-from-cluster [--kubeconfig K] [--context C] [-o FILE]`` reads (GET and LIST
only) the ClusterVersion, the Infrastructure and the Ingress ``cluster``, the Nodes and NFD's
NodeFeature objects, and writes a profile ``twin up --profile FILE`` takes.

What the API shows becomes the profile's fields:

* release, channel and platform from the ClusterVersion and the Infrastructure; cluster name and base
  domain from ``status.apiServerURL`` (``https://api.<cluster>.<base domain>:6443``), the apps domain
  from the Ingress;
* per node, its roles (``node-role.kubernetes.io/*``), cores and memory (``status.capacity``);
* from its NodeFeature (nfd-worker's ``spec.features``, NFD 0.14 and later): the CPU vendor, family and
  model (``cpu.model``), the TEE (``cpu.security``: ``tdx.enabled`` and ``tdx.total_keys``,
  ``sev.snp.enabled`` and ``sev.encrypted_state_ids``) and the NVIDIA PCI functions (``pci.device``,
  vendor 10de, class 0302 or 0300), named after GPU feature discovery's ``nvidia.com/gpu.product``
  label when the node has it, CC-capable when cc-manager shows it in CC mode (``nvidia.com/cc.mode.state``).

What it does not show is left to the twin's defaults and listed in the profile's ``unknown`` (also on
stderr): the BIOS, the host kernel command line, VBIOS versions, whether a GPU is CC-capable, whether the
host is a VM, and everything per node without a NodeFeature (NFD not installed yet). Install NFD first,
or edit those fields, for a twin that is the cluster.
"""

import re

NFD_FEATURES = ("nfd.k8s-sigs.io/v1alpha1", "NodeFeature")
NODE_NAME_LABEL = "nfd.node.kubernetes.io/node-name"
ROLE_PREFIX = "node-role.kubernetes.io/"
ROLES = ("control-plane", "master", "worker")
# nfd-worker's cpu.model vendor_id: cpuid.CPU.VendorID.String() (node-feature-discovery getCPUModel), whose
# klauspost/cpuid/v2 Vendor names are "Intel" and "AMD".
VENDORS = {"Intel": "intel", "AMD": "amd"}
NVIDIA = "10de"
GPU_CLASSES = ("0302", "0300")
# Fields the API cannot show; the twin's defaults stand in for them.
NOT_SHOWN = ("firmware (BIOS vendor and version)", "kernel_cmdline", "gpus[].vbios",
             "gpus[].cc_capable unless cc-manager shows the GPU in CC mode (nvidia.com/cc.mode.state): the twin's "
             "default is false, so set true for an H100 or RTX PRO 6000 to rehearse CC mode", "virtualized")


def _quantity_gib(text):
    """A memory quantity (Ki, Mi, Gi or bytes) in whole GiB."""
    match = re.match(r"^(\d+)(Ki|Mi|Gi|Ti)?$", str(text or ""))
    if not match:
        return None
    factor = {"Ki": 1 / (1024 * 1024), "Mi": 1 / 1024, "Gi": 1, "Ti": 1024, None: 1 / 1024 ** 3}[match.group(2)]
    return max(1, round(int(match.group(1)) * factor))


def _features_by_node(node_features):
    """Node name -> features; nfd-worker's own NodeFeature (named after its node) wins over others for it."""
    found = {}
    for nf in sorted(node_features or [], key=lambda o: o["metadata"].get("name") == (
            (o["metadata"].get("labels") or {}).get(NODE_NAME_LABEL))):
        meta = nf.get("metadata") or {}
        name = (meta.get("labels") or {}).get(NODE_NAME_LABEL) or meta.get("name")
        found[name] = (nf.get("spec") or {}).get("features") or {}
    return found


def _elements(features, kind, name):
    return ((features.get(kind) or {}).get(name) or {}).get("elements") or {}


def _node(node, features, unknown):
    meta, status = node["metadata"], node.get("status") or {}
    name, labels = meta["name"], meta.get("labels") or {}
    out = {"name": name, "roles": [r for r in ROLES if ROLE_PREFIX + r in labels] or ["worker"]}
    capacity = status.get("capacity") or {}
    cpu = {}
    model = _elements(features, "attributes", "cpu.model")
    vendor = VENDORS.get(model.get("vendor_id", ""))
    if vendor:
        cpu["vendor"] = vendor
        for field, key in (("family", "family"), ("model_id", "id")):
            if str(model.get(key, "")).isdigit():
                cpu[field] = int(model[key])
    else:
        unknown.append(f"{name}: cpu.vendor and tee (no NodeFeature with cpu.model; is NFD installed?)")
    if str(capacity.get("cpu", "")).isdigit():
        cpu["cores"] = int(capacity["cpu"])
    out["cpu"] = cpu
    memory = _quantity_gib(capacity.get("memory"))
    if memory:
        out["memory_gib"] = memory
    security = _elements(features, "attributes", "cpu.security")
    if vendor == "intel" and security.get("tdx.enabled") == "true":
        out["tee"] = {"type": "tdx", "bios_enabled": True}
        if str(security.get("tdx.total_keys", "")).isdigit():
            out["tee"]["total_keys"] = int(security["tdx.total_keys"])
    elif vendor == "amd" and security.get("sev.snp.enabled") == "true":
        out["tee"] = {"type": "snp", "bios_enabled": True}
        if str(security.get("sev.encrypted_state_ids", "")).isdigit():
            out["tee"]["encrypted_state_ids"] = int(security["sev.encrypted_state_ids"])
    elif vendor == "amd" and "SEV_SNP" in _elements(features, "flags", "cpu.cpuid"):
        # The CPU reports SNP before the kernel enables it (the bring-up's MachineConfig does that).
        out["tee"] = {"type": "snp", "bios_enabled": True}
    elif vendor:
        # A TDX host shows nothing before its kernel enables TDX (kvm_intel.tdx), and a CPU without a TEE looks
        # the same as one whose BIOS has it off.
        out["tee"] = {"type": None}
        if "worker" in out["roles"]:
            unknown.append(f"{name}: tee (none enabled yet; set tee.type tdx or snp if the host has one)")
    gpus = {}
    instances = ((features.get("instances") or {}).get("pci.device") or {}).get("elements") or []
    for device in instances:
        attrs = device.get("attributes") or {}
        if attrs.get("vendor") == NVIDIA and str(attrs.get("class", "")).startswith(GPU_CLASSES):
            device_id = "0x" + attrs.get("device", "")
            gpus[device_id] = gpus.get(device_id, 0) + 1
    product = labels.get("nvidia.com/gpu.product")
    for device_id, count in sorted(gpus.items()):
        if product and len(gpus) == 1:
            model_name = product.replace("-", " ")
        else:
            model_name = f"NVIDIA device {device_id}"
            unknown.append(f"{name}: gpus model of {device_id} (no nvidia.com/gpu.product label to name it)")
        gpu = {"model": model_name, "device_id": device_id, "count": count}
        if labels.get("nvidia.com/cc.mode.state") in ("on", "ppcie"):
            gpu["cc_capable"] = True  # cc-manager has put it in CC mode, so it can take it
        out.setdefault("gpus", []).append(gpu)
    return out


def profile_from(cluster):
    """The profile dict, with the fields the API did not show listed under ``unknown``.

    ``cluster``: ``clusterversion``, ``infrastructure``, ``ingress`` (objects or None), ``nodes`` and
    ``nodefeatures`` (lists), as the API returned them.
    """
    unknown = []
    cv = cluster.get("clusterversion") or {}
    infra = (cluster.get("infrastructure") or {}).get("status") or {}
    openshift = {}
    version = ((cv.get("status") or {}).get("desired") or {}).get("version")
    if version:
        openshift["version"] = version
    else:
        unknown.append("openshift.version (no ClusterVersion)")
    if (cv.get("spec") or {}).get("channel"):
        openshift["channel"] = cv["spec"]["channel"]
    platform = (infra.get("platformStatus") or {}).get("type") or infra.get("platform")
    if platform:
        openshift["platform"] = platform
    match = re.match(r"^https://api\.([^.]+)\.([^:/]+)", infra.get("apiServerURL") or "")
    if match:
        openshift["cluster_name"], openshift["base_domain"] = match.group(1), match.group(2)
    domain = ((cluster.get("ingress") or {}).get("spec") or {}).get("domain")
    if domain:
        openshift["apps_domain"] = domain
    features = _features_by_node(cluster.get("nodefeatures"))
    nodes = [_node(n, features.get(n["metadata"]["name"]) or {}, unknown)
             for n in sorted(cluster.get("nodes") or [], key=lambda n: n["metadata"]["name"])]
    name = openshift.get("cluster_name", "cluster")
    profile = {"description": f"{len(nodes)} nodes of cluster {name}, read from its API",
               "openshift": openshift, "nodes": nodes, "unknown": unknown + [f"every node: {f}" for f in NOT_SHOWN]}
    return profile


def read(kubeconfig=None, context=None):
    """GET and LIST what :func:`profile_from` needs, with the kubernetes client (as kubectl would connect)."""
    from kubernetes import config, dynamic
    from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

    api = dynamic.DynamicClient(config.new_client_from_config(config_file=kubeconfig, context=context))

    def get(api_version, kind, name):
        try:
            return api.resources.get(api_version=api_version, kind=kind).get(name=name).to_dict()
        except (NotFoundError, ResourceNotFoundError):
            return None

    def items(api_version, kind):
        try:
            return api.resources.get(api_version=api_version, kind=kind).get().to_dict()["items"]
        except (NotFoundError, ResourceNotFoundError):
            return []

    return {"clusterversion": get("config.openshift.io/v1", "ClusterVersion", "version"),
            "infrastructure": get("config.openshift.io/v1", "Infrastructure", "cluster"),
            "ingress": get("config.openshift.io/v1", "Ingress", "cluster"),
            "nodes": items("v1", "Node"), "nodefeatures": items(*NFD_FEATURES)}
