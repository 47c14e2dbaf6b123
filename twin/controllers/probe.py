"""The node probe on the twin: the probe pod's own code, run against the node's simulated host.

The kubelet twin runs no images, so this workload does what the container would: it lays out the
pod's volumes (the ConfigMap that carries the collection's probe code, and the host's ``/``),
then runs the container's command with ``python3`` standing for this interpreter without site
packages (the probe needs only the standard library, as in a UBI image). The host's ``/`` is a
directory written from the node's Host as it is *now*: CPU flags, kernel command line, kvm module
parameters, IOMMU groups, GPUs and their drivers, the files MachineConfigs wrote, the modules
loaded at boot and the kernel log in ``/dev/kmsg`` form. The writing of the ordinary files is
``twin.host_root.render_root`` (the same writer the collection's host_facts unit tests use); what it
does not cover (MachineConfig files, ``/proc/modules``, ``/dev/kmsg``) is added here.

So the code under test is the very code a real node runs; only the host is simulated.
"""

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .. import host_root, workloads
from ..kube import path

log = logging.getLogger("twin.probe")

APP = "cgpu-node-probe"
KERNEL_RELEASE = "5.14.0-570.el9_6.x86_64"
NIC = {"pci_address": "0000:01:00.0", "vendor_id": 0x8086, "device_id": 0x1593, "class": 0x020000, "driver": "ice"}


def host_spec(host):
    """The host_root spec of a twin Host as it is now."""
    spec = host.spec
    vendor = host.cpu_vendor
    tee = spec["tee"]
    cpu = spec["cpu"]
    params = host.module_params()
    virtualized = bool(spec.get("virtualized"))
    flags = ["hypervisor"] if virtualized else []
    if vendor == "intel":
        flags += [] if virtualized else ["vmx", "tme"]
        if tee["type"] == "tdx":
            flags += ["sgx", "sgx_lc"]
            if tee["bios_enabled"]:
                flags.append("tdx_host_platform")  # set by the kernel when the BIOS reserved TDX key IDs
    else:
        flags += [] if virtualized else ["svm", "sme", "sev", "sev_es"]
        if tee["type"] == "snp" and tee["bios_enabled"]:
            flags.append("sev_snp")
    iommu = host.iommu_enabled()
    gpus = [{"pci_address": g["pci_address"], "device_id": g["device_id"], "vendor_id": g.get("vendor_id", "0x10de"),
             "driver": g.get("driver"), "iommu_group": g.get("iommu_group", 20 + i)}
            for i, g in enumerate(host.gpus)]
    out = {
        "cpu": {"vendor": vendor, "model": cpu["model"], "family": cpu["family"], "model_number": cpu["model_id"],
                "flags": flags, "count": min(int(cpu["cores"]), 8)},
        "cmdline": " ".join(host.cmdline),
        "kernel_release": KERNEL_RELEASE,
        "bios": {"vendor": spec["firmware"].get("bios_vendor"), "version": spec["firmware"].get("bios_version"),
                 "date": spec["firmware"].get("bios_date", "01/15/2026")},
        "system": {"vendor": spec["firmware"].get("system_vendor", "QEMU" if virtualized else "Supermicro"),
                   "product": spec["firmware"].get("product_name",
                                                   "Standard PC (Q35 + ICH9, 2009)" if virtualized else "SYS-821GE-TNHR")},
        "gpus": gpus,
        "pci_devices": [dict(NIC, iommu_group=0)],
        "iommu": iommu,
    }
    if vendor == "intel":
        out["kvm_intel_tdx"] = params.get("kvm_intel.tdx")
    else:
        out["kvm_amd_sev_snp"] = params.get("kvm_amd.sev_snp")
    return out


def kernel_log(host):
    """What the node's kernel logged at boot, for the markers host_facts looks for."""
    spec = host.spec
    tee = spec["tee"]
    params = host.module_params()
    lines = [f"Linux version {KERNEL_RELEASE} (mockbuild@x86-vm-07.build.eng.bos.redhat.com) #1 SMP PREEMPT_DYNAMIC",
             "Command line: " + " ".join(host.cmdline)]
    if spec.get("virtualized"):
        lines.append("Hypervisor detected: KVM")
    if host.cpu_vendor == "intel":
        if host.iommu_enabled():
            lines.append("DMAR: IOMMU enabled")
        if tee["type"] == "tdx" and tee["bios_enabled"]:
            lines.append(f"virt/tdx: BIOS enabled: private KeyID range [16, {16 + int(tee.get('total_keys') or 63) + 1})")
            if params.get("kvm_intel.tdx") == "Y":
                lines += ["virt/tdx: 1050644 KB allocated for PAMT", "virt/tdx: module initialized"]
    else:
        if host.iommu_enabled():
            lines += ["AMD-Vi: Found IOMMU at 0000:00:00.2 cap 0x40", "AMD-Vi: Interrupt remapping enabled"]
        if tee["type"] == "snp" and tee["bios_enabled"]:
            lines.append("SEV-SNP: RMP table physical range [0x0000000035600000 - 0x0000000075bfffff]")
            if params.get("kvm_amd.sev_snp") == "Y":
                lines += ["ccp 0000:01:00.5: SEV-SNP API:1.55 build:21",
                          f"kvm_amd: SEV-SNP enabled (ASIDs 1 - {tee.get('encrypted_state_ids') or 509})"]
    return lines


def loaded_modules(host):
    mods = ["kvm", "kvm_intel" if host.cpu_vendor == "intel" else "kvm_amd", "vfio", "vfio_iommu_type1", "ice"]
    drivers = {g.get("driver") for g in host.gpus}
    if "vfio-pci" in drivers:
        mods.append("vfio_pci")
    if "nvidia" in drivers:
        mods.append("nvidia")
    for file, text in host.files.items():
        if file.startswith("/etc/modules-load.d/") and file.endswith(".conf"):
            for line in (text or "").splitlines():
                line = line.strip()
                if line and not line.startswith(("#", ";")):
                    mods.append(line.replace("-", "_"))
    return sorted(set(mods))


def render_host(root, host, render_root=None):
    """Write the node's current host state under ``root``."""
    render_root = render_root or host_root.render_root
    render_root(str(root), host_spec(host))
    for file, text in host.files.items():
        target = Path(root) / file.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text or "")
    (Path(root) / "proc" / "modules").write_text("".join(
        f"{m} 94208 0 - Live 0x0000000000000000\n" for m in loaded_modules(host)))
    (Path(root) / "dev").mkdir(exist_ok=True)
    (Path(root) / "dev" / "kmsg").write_text("".join(
        f"6,{i},{i * 1000},-;{line}\n" for i, line in enumerate(kernel_log(host))))


class NodeProbe(workloads.Workload):
    """Runs a probe pod's command against the node's simulated root."""

    name = "node-probe"

    def claims(self, ctx):
        return (ctx.pod["metadata"].get("labels") or {}).get("app.kubernetes.io/name") == APP

    def run(self, ctx):
        container = ctx.container
        volumes = {v["name"]: v for v in ctx.pod["spec"].get("volumes") or []}
        with tempfile.TemporaryDirectory(prefix="twin-probe-") as tmp:
            mounts = {}
            for mount in container.get("volumeMounts") or []:
                volume = volumes.get(mount["name"]) or {}
                local = Path(tmp) / "volumes" / mount["name"]
                if "hostPath" in volume:
                    render_host(local, ctx.host)
                    local = local / volume["hostPath"]["path"].lstrip("/")
                elif "configMap" in volume:
                    error = self._configmap(ctx, volume["configMap"], local)
                    if error:
                        return workloads.Result(exit_code=1, log=error)
                else:
                    local.mkdir(parents=True, exist_ok=True)
                mounts[mount["mountPath"].rstrip("/")] = str(local)
            argv = list(container.get("command") or []) + list(container.get("args") or [])
            if argv and os.path.basename(argv[0]) in ("python3", "python"):
                argv = [sys.executable, "-S"] + argv[1:]
            argv = [_remap(a, mounts) for a in argv]
            env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
            for item in container.get("env") or []:
                env[item["name"]] = _remap(item.get("value", ""), mounts)
            try:
                proc = subprocess.run(argv, env=env, cwd=tmp, capture_output=True, text=True, timeout=60, check=False)
            except subprocess.TimeoutExpired:
                return workloads.Result(exit_code=137, log="probe did not finish in 60s\n")
            return workloads.Result(exit_code=proc.returncode, log=proc.stdout + proc.stderr)

    def _configmap(self, ctx, source, target):
        namespace = ctx.pod["metadata"]["namespace"]
        cm = ctx.world.kube.get_or_none(path("v1", "configmaps", source["name"], namespace))
        if cm is None:
            return f'configmap "{source["name"]}" not found\n'
        data = cm.get("data") or {}
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            if item["key"] not in data:
                return f'configmap "{source["name"]}" has no key "{item["key"]}"\n'
            file = target / item["path"]
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(data[item["key"]])
        return None


def _remap(value, mounts):
    """A path inside the container, as the directory that stands for it here."""
    for mount_path in sorted(mounts, key=len, reverse=True):
        if value == mount_path or value.startswith(mount_path + "/"):
            return mounts[mount_path] + value[len(mount_path):]
    return value


def register(manager, world):
    workloads.register(NodeProbe())
