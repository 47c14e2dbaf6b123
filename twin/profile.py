"""Hardware profiles: what the twin pretends the cluster is (nodes, CPUs and TEEs, GPUs, firmware).

A profile is YAML. ``nodes`` entries may carry ``count`` and a ``{i}`` in their name to stand for
several identical machines. Everything is validated up front; an error names the field, the value
and what would be valid.
"""

import copy
from pathlib import Path

import yaml

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"

ROLES = {"control-plane", "master", "worker"}
CPU_VENDORS = {"intel", "amd"}
TEE_TYPES = {"tdx", "snp", None}
PLATFORMS = {"BareMetal", "None", "Azure", "AWS", "VSphere", "KubeVirt"}

DEFAULT_TIMINGS = {
    # Simulated durations in seconds: short by default so tests run quickly; a rehearsal of a
    # real cluster's bring-up can set them to the real values.
    "pod_start": 0.5,
    "csv_install": 1.0,
    "reboot": 2.0,
    "cc_mode_switch": 1.0,
    "nfd_relabel": 0.5,
}

CPU_DEFAULTS = {
    "intel": {"model": "Intel(R) Xeon(R) Platinum 8580", "family": 6, "model_id": 207, "cores": 64},
    "amd": {"model": "AMD EPYC 9654 96-Core Processor", "family": 25, "model_id": 17, "cores": 96},
}


class ProfileError(ValueError):
    pass


def available():
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load(name_or_path):
    """Load a shipped profile by name, or a YAML file by path; returns the validated, expanded dict."""
    candidate = PROFILES_DIR / f"{name_or_path}.yaml"
    if not candidate.exists():
        candidate = Path(name_or_path)
    if not candidate.exists():
        raise ProfileError(f"profile {name_or_path!r} not found; shipped profiles: {', '.join(available())}")
    with open(candidate, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    data.setdefault("name", candidate.stem)
    return expand(data)


def load_state(state_dir):
    """The expanded profile a running twin was started with."""
    with open(Path(state_dir) / "profile.yaml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def expand(data):
    """Validate a profile dict and expand node counts; returns a new dict."""
    data = copy.deepcopy(data)
    ocp = data.setdefault("openshift", {})
    ocp.setdefault("version", "4.21.9")
    ocp.setdefault("channel", "stable-" + ".".join(str(ocp["version"]).split(".")[:2]))
    ocp.setdefault("platform", "BareMetal")
    ocp.setdefault("cluster_name", "twin")
    ocp.setdefault("base_domain", "example.com")
    ocp.setdefault("apps_domain", f"apps.{ocp['cluster_name']}.{ocp['base_domain']}")
    if ocp["platform"] not in PLATFORMS:
        raise ProfileError(f"openshift.platform is {ocp['platform']!r}; valid: {', '.join(sorted(PLATFORMS))}")
    parts = str(ocp["version"]).split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ProfileError(f"openshift.version is {ocp['version']!r}; expected X.Y.Z, e.g. 4.21.9")
    ocp["version"] = str(ocp["version"])

    timings = dict(DEFAULT_TIMINGS)
    timings.update(data.get("timings") or {})
    data["timings"] = timings
    data["faults"] = list(data.get("faults") or [])

    nodes = []
    for index, spec in enumerate(data.get("nodes") or []):
        where = f"nodes[{index}]"
        count = int(spec.get("count", 1))
        for i in range(count):
            node = copy.deepcopy(spec)
            node.pop("count", None)
            node["name"] = str(spec.get("name", f"node-{index}-{{i}}")).format(i=i)
            nodes.append(_node(node, where))
    if not nodes:
        raise ProfileError("nodes is empty; a profile needs at least one node")
    names = [n["name"] for n in nodes]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ProfileError(f"nodes: duplicate names {dupes}")
    data["nodes"] = nodes
    return data


def _node(node, where):
    roles = node.setdefault("roles", ["worker"])
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise ProfileError(f"{where}.roles has {bad}; valid: {', '.join(sorted(ROLES))}")
    cpu = node.setdefault("cpu", {})
    vendor = cpu.setdefault("vendor", "intel")
    if vendor not in CPU_VENDORS:
        raise ProfileError(f"{where}.cpu.vendor is {vendor!r}; valid: intel, amd")
    for key, value in CPU_DEFAULTS[vendor].items():
        cpu.setdefault(key, value)
    node.setdefault("memory_gib", 512)
    node.setdefault("virtualized", False)
    tee = node.setdefault("tee", {})
    tee.setdefault("type", None)
    if tee["type"] not in TEE_TYPES:
        raise ProfileError(f"{where}.tee.type is {tee['type']!r}; valid: tdx, snp, or null")
    if tee["type"] == "tdx" and vendor != "intel" or tee["type"] == "snp" and vendor != "amd":
        raise ProfileError(f"{where}.tee.type {tee['type']} is impossible on a {vendor} CPU")
    tee.setdefault("bios_enabled", tee["type"] is not None)
    tee.setdefault("total_keys", 63 if tee["type"] == "tdx" else 0)
    tee.setdefault("encrypted_state_ids", 509 if tee["type"] == "snp" else 0)
    node.setdefault("firmware", {})
    node["firmware"].setdefault("bios_vendor", "American Megatrends International, LLC.")
    node["firmware"].setdefault("bios_version", "2.1.0")
    node.setdefault("kernel_cmdline", "BOOT_IMAGE=(hd0,gpt3)/ostree/rhcos/vmlinuz-5.14.0-570.el9_6.x86_64 "
                                      "rw ostree=/ostree/boot.1/rhcos/0 ignition.platform.id=metal root=UUID=twin")
    gpus = []
    for g_index, gpu in enumerate(node.get("gpus") or []):
        gwhere = f"{where}.gpus[{g_index}]"
        for key in ("model", "device_id"):
            if key not in gpu:
                raise ProfileError(f"{gwhere}.{key} is missing; a GPU needs model and device_id (PCI id, e.g. '0x2331')")
        for n in range(int(gpu.get("count", 1))):
            one = {k: v for k, v in gpu.items() if k != "count"}
            one.setdefault("vendor_id", "0x10de")
            one.setdefault("cc_capable", False)
            one.setdefault("architecture", "unknown")
            one.setdefault("vbios", "96.00.00.00.00")
            one["pci_address"] = f"0000:{0x18 + 0x20 * len(gpus):02x}:00.0"
            one["index"] = len(gpus)
            # Each GPU in its own IOMMU group unless the profile says otherwise (two GPUs or a GPU and another
            # function behind one switch without ACS share one: VFIO and the sandbox device plugin see one device).
            one["iommu_group"] = str(gpu.get("iommu_group", 20 + one["index"]))
            gpus.append(one)
    node["gpus"] = gpus
    return node
