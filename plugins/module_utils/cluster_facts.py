# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a cluster is, for confidential GPUs, from the objects the API returns (pure functions).

Inputs are plain dicts as the API serves them; nothing here talks to a cluster.
"""

from __future__ import annotations

MIN_OPENSHIFT = (4, 21, 9)

# NFD's built-in CPU-security labels (cpu source), and the vendor labels OSC counts (the TEE rule).
TEE_LABELS = {
    "tdx": ("feature.node.kubernetes.io/cpu-security.tdx.enabled", "intel.feature.node.kubernetes.io/tdx"),
    "snp": ("feature.node.kubernetes.io/cpu-security.sev.snp.enabled", "amd.feature.node.kubernetes.io/snp"),
}
OSC_TEE_LABELS = {
    "intel.feature.node.kubernetes.io/tdx": "tdx",
    "amd.feature.node.kubernetes.io/snp": "snp",
    "ibm.feature.node.kubernetes.io/se": "se",
}
GPU_PRESENT_LABELS = ("feature.node.kubernetes.io/pci-10de.present", "nvidia.com/gpu.present")
PGPU = "nvidia.com/pgpu"
GPU_RUNTIME_CLASS = "kata-cc-nvidia-gpu"
CPU_RUNTIME_CLASS = "kata-cc"

# Operators by OLM package: how their CSVs are named (prefix) and what they are for.
OPERATORS = {
    "nfd": "Node Feature Discovery",
    "gpu-operator-certified": "NVIDIA GPU Operator",
    "sandboxed-containers-operator": "OpenShift sandboxed containers",
    "trustee-operator": "Red Hat build of Trustee",
}


def parse_version(text):
    """(major, minor, patch) of an OpenShift version string such as ``4.21.9`` or ``4.21.0-rc.2``."""
    if not text:
        return None
    core = str(text).split("-", maxsplit=1)[0].split("+", maxsplit=1)[0]
    parts = core.split(".")
    try:
        numbers = tuple(int(p) for p in parts[:3])
    except ValueError:
        return None
    return numbers + (0,) * (3 - len(numbers))


def openshift_version(cluster_version):
    """The version the cluster runs: the last Completed history entry, else the desired one."""
    if not cluster_version:
        return None
    status = cluster_version.get("status") or {}
    for entry in status.get("history") or []:
        if entry.get("state") == "Completed":
            return entry.get("version")
    return (status.get("desired") or {}).get("version")


def platform(infrastructure):
    if not infrastructure:
        return None
    status = infrastructure.get("status") or {}
    return (status.get("platformStatus") or {}).get("type") or status.get("platform")


def _true(labels, key):
    return str(labels.get(key, "")).lower() == "true"


def node_facts(node):
    meta = node.get("metadata") or {}
    labels = meta.get("labels") or {}
    status = node.get("status") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    tee_types = sorted(t for t, keys in TEE_LABELS.items() if any(_true(labels, k) for k in keys))
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    allocatable = status.get("allocatable") or {}
    try:
        pgpu = int(allocatable.get(PGPU, 0))
    except (TypeError, ValueError):
        pgpu = 0
    return {
        "name": meta.get("name"),
        "roles": roles,
        "ready": ready,
        "schedulable": not (node.get("spec") or {}).get("unschedulable", False),
        "tee": tee_types,
        "tee_labels": {k: v for k, v in labels.items() if k in OSC_TEE_LABELS or "cpu-security" in k},
        "gpu_present": any(_true(labels, k) for k in GPU_PRESENT_LABELS),
        "gpu_labels": {k: v for k, v in labels.items() if k.startswith("nvidia.com/") or k.startswith("feature.node.kubernetes.io/pci-10de")},
        "cc_mode_state": labels.get("nvidia.com/cc.mode.state"),
        "cc_ready_state": labels.get("nvidia.com/cc.ready.state"),
        "pgpu_allocatable": pgpu,
    }


def operator_facts(csvs):
    """Installed operators (by CSV), marking the four this collection manages."""
    result = []
    for csv in csvs:
        meta = csv.get("metadata") or {}
        name = meta.get("name", "")
        package = next((p for p in OPERATORS if name.startswith(p + ".")), None)
        # OLM copies an AllNamespaces CSV into every namespace; the copies are not installs.
        if (csv.get("status") or {}).get("reason") == "Copied":
            continue
        result.append({
            "name": name,
            "namespace": meta.get("namespace"),
            "package": package,
            "version": (csv.get("spec") or {}).get("version"),
            "phase": (csv.get("status") or {}).get("phase"),
        })
    return sorted(result, key=lambda o: (o["namespace"] or "", o["name"]))


def runtime_class_facts(runtime_classes):
    result = []
    for rc in runtime_classes:
        scheduling = rc.get("scheduling") or {}
        result.append({
            "name": (rc.get("metadata") or {}).get("name"),
            "handler": rc.get("handler"),
            "node_selector": scheduling.get("nodeSelector") or {},
            "overhead": (rc.get("overhead") or {}).get("podFixed") or {},
        })
    return sorted(result, key=lambda r: r["name"] or "")


def summarize(cluster_version, infrastructure, nodes, csvs, runtime_classes):
    """All facts cluster_info returns, plus the verdict of what confidential GPUs still miss."""
    version = openshift_version(cluster_version)
    facts = {
        "openshift_version": version,
        "platform": platform(infrastructure),
        "control_plane_topology": ((infrastructure or {}).get("status") or {}).get("controlPlaneTopology"),
        "nodes": sorted((node_facts(n) for n in nodes), key=lambda n: n["name"] or ""),
        "operators": operator_facts(csvs),
        "runtime_classes": runtime_class_facts(runtime_classes),
    }
    facts["missing"] = missing(facts)
    facts["ready_for_confidential_gpus"] = not facts["missing"]
    return facts


def missing(facts):
    """Short sentences, each naming one thing confidential GPU pods still need on this cluster."""
    gaps = []
    version = parse_version(facts["openshift_version"])
    if version is None:
        gaps.append("OpenShift version unknown (no ClusterVersion 'version'): is this an OpenShift cluster?")
    elif version < MIN_OPENSHIFT:
        gaps.append("OpenShift {0} is older than {1}, the first release with confidential GPU support".format(
            facts["openshift_version"], ".".join(map(str, MIN_OPENSHIFT))))
    if facts["platform"] not in ("BareMetal", "None", None):
        gaps.append("platform is {0}: confidential GPUs with OSC need bare-metal TEE hosts".format(facts["platform"]))
    tee_types = sorted({t for n in facts["nodes"] for t in n["tee"]})
    if len(tee_types) > 1:
        gaps.append("nodes show {0} TEE types ({1}); a cluster supports one".format(len(tee_types), ", ".join(tee_types)))
    if not tee_types:
        gaps.append("no node is labelled with an enabled CPU TEE (Intel TDX or AMD SEV-SNP): NFD and host configuration first")
    if not any(n["gpu_present"] for n in facts["nodes"]):
        gaps.append("no node is labelled with an NVIDIA GPU (feature.node.kubernetes.io/pci-10de.present): NFD first")
    if not any(n["pgpu_allocatable"] > 0 and n["cc_mode_state"] == "on" for n in facts["nodes"]):
        gaps.append("no node advertises nvidia.com/pgpu with its GPUs in CC mode (nvidia.com/cc.mode.state=on)")
    installed = {o["package"] for o in facts["operators"] if o["package"] and o["phase"] == "Succeeded"}
    for package, title in OPERATORS.items():
        if package not in installed:
            gaps.append("operator {0} ({1}) is not installed".format(title, package))
    names = {rc["name"] for rc in facts["runtime_classes"]}
    for rc in (CPU_RUNTIME_CLASS, GPU_RUNTIME_CLASS):
        if rc not in names:
            gaps.append("runtime class {0} does not exist".format(rc))
    return gaps
