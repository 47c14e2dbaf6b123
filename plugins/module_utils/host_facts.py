# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read-only facts about a confidential-computing host: CPU, TEE, IOMMU, GPUs, firmware.

PRIVATE to this collection. :func:`collect` reads a host as if ``root`` were ``/``, so the same
code runs on a RHEL host over SSH, in a node probe pod that mounts the host at ``/host``, and
against a fake root written by the twin's ``twin/host_root.py`` (``render_root``) for the twin cluster.

Kernel log: dmesg is not a file. Callers that can run ``dmesg`` pass its text as ``dmesg_text``;
otherwise :func:`collect` reads the capture file ``<root>/var/log/dmesg`` (:data:`DMESG_CAPTURE`)
when present. Without either, the markers that explain *why* a TEE is off are reported as not
checked, and verdicts fall back to the generic fix.

Nothing here writes to the host, and nothing needs a package beyond the standard library.
"""

from __future__ import annotations

import os
import re

from ansible_collections.confidential.gpu.plugins.module_utils.gpu_facts import lookup as _gpu_lookup

__all__ = ["DMESG_CAPTURE", "DMI_FIELDS", "collect", "MARKERS"]

# Relative to root. RHEL 7 wrote it at boot; on newer hosts the caller saves `dmesg` there.
DMESG_CAPTURE = "var/log/dmesg"

DMI_FIELDS = ("bios_vendor", "bios_version", "bios_date", "sys_vendor", "product_name",
              "product_version", "board_vendor", "board_name")

NVIDIA_VENDOR = "0x10de"
# PCI base class 03 is display; NVIDIA data-centre GPUs report 0302 (3D controller), some 0300.
_DISPLAY_CLASS_PREFIX = "0x03"
# NVSwitch bridges (class 0680) matter for multi-GPU protected PCIe mode.
_NVSWITCH_CLASS_PREFIX = "0x0680"
_BRIDGE_CLASS_PREFIX = "0x0604"

# cpuinfo flags that say something about TEEs or virtualization; the full list is noise.
_INTERESTING_FLAGS = ("hypervisor", "vmx", "svm", "tdx_host_platform", "tdx_guest", "sme", "sev",
                      "sev_es", "sev_snp", "sgx", "sgx_lc", "tme")

# DMI strings only a virtual machine reports; bare-metal clouds (e.g. "Amazon EC2" *.metal) are
# deliberately absent because they also say their own name.
_VM_DMI_HINTS = ("qemu", "kvm", "vmware", "virtualbox", "virtual machine", "xen", "bochs",
                 "standard pc (q35", "standard pc (i440fx", "cloud hypervisor", "firecracker")

# Kernel log markers that explain TEE, IOMMU and GPU state (shared/reference/anchors.md, T1).
# (id, regex, kind) where kind is "good", "bad" or "info".
MARKERS = (
    ("tdx_keyid_range", r"virt/tdx: BIOS enabled: private KeyID range", "info"),
    ("tdx_module_initialized", r"virt/tdx: module initialized", "good"),
    ("tdx_module_not_loaded", r"virt/tdx: module not loaded", "bad"),
    ("tdx_seamcall_failed", r"SEAMCALL\b.*\bfailed: (0x[0-9a-fA-F]+)", "bad"),
    ("tdx_init_failed", r"virt/tdx: module initialization failed \((-?\d+)\)", "bad"),
    ("tdx_module_version", r"virt/tdx: (?:TDX module[: ].*version.*|module ver[s]?ion: ?[\d.]+)", "info"),
    ("snp_rmp_not_reserved", r"Memory for the RMP table has not been reserved by BIOS", "bad"),
    ("snp_rmp_partial", r"Memory reserved for the RMP table does not cover full system RAM", "bad"),
    ("snp_rmp_invalid", r"RMP configuration not valid", "bad"),
    ("snp_rmp_range", r"SEV-SNP: RMP table physical range", "good"),
    ("snp_firmware_api", r"SEV-SNP API:\s*(\d+\.\d+) build:\s*(\d+)", "good"),
    ("sev_init_failed", r"SEV(?:-SNP)?: .*INIT.*failed|SEV: failed to INIT", "bad"),
    ("kvm_snp_enabled", r"kvm_amd: SEV-SNP enabled", "good"),
    ("iommu_dmar_enabled", r"DMAR: IOMMU enabled", "good"),
    ("iommu_amdvi", r"AMD-Vi: (?:Interrupt remapping enabled|Found IOMMU)", "good"),
    ("nvrm_open_modules_required", r"NVRM: .*requires use of the NVIDIA open kernel modules", "bad"),
    ("nvrm_init_failed", r"NVRM: .*RmInitAdapter failed", "bad"),
    ("hypervisor_detected", r"Hypervisor detected: (\S+)", "info"),
    ("dmi_absent", r"DMI not present or invalid", "info"),
)
_COMPILED_MARKERS = tuple((mid, re.compile(rx), kind) for mid, rx, kind in MARKERS)


# --------------------------------------------------------------------------------------------
# reading


def _path(root, rel):
    return os.path.join(root, rel.lstrip("/"))


def _read(root, rel, limit=4 * 1024 * 1024):
    """File text with surrounding whitespace removed, or None when it cannot be read."""
    try:
        with open(_path(root, rel), "rb") as handle:
            data = handle.read(limit)
    except OSError:
        return None
    return data.decode("utf-8", "replace").strip()


def _link_name(path):
    """Last component of a symlink's target (sysfs names drivers and groups this way)."""
    try:
        return os.path.basename(os.readlink(path).rstrip("/"))
    except OSError:
        return None


def _listdir(root, rel):
    try:
        return sorted(os.listdir(_path(root, rel)))
    except OSError:
        return []


def _parse_cpuinfo(text):
    blocks = []
    current = {}
    for line in (text or "").splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current.setdefault(key.strip(), value.strip())
    if current:
        blocks.append(current)
    return [b for b in blocks if "processor" in b] or blocks


def _int(value, base=10):
    try:
        return int(value, base)
    except (TypeError, ValueError):
        return None


def _cpu(root):
    text = _read(root, "/proc/cpuinfo")
    blocks = _parse_cpuinfo(text)
    first = blocks[0] if blocks else {}
    vendor_id = first.get("vendor_id")
    vendor = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}.get(vendor_id)
    flags = set(first.get("flags", "").split())
    sockets = {b.get("physical id") for b in blocks if b.get("physical id") is not None}
    return {
        "vendor": vendor,
        "vendor_id": vendor_id,
        "model": first.get("model name"),
        "family": _int(first.get("cpu family")),
        "model_number": _int(first.get("model")),
        "stepping": _int(first.get("stepping")),
        "microcode": first.get("microcode"),
        "logical_cpus": len(blocks),
        "sockets": len(sockets) or (1 if blocks else 0),
        "flags": sorted(flags.intersection(_INTERESTING_FLAGS)),
    }, text is not None


def _cmdline(root):
    raw = _read(root, "/proc/cmdline")
    args = {}
    for token in (raw or "").split():
        if token == "--":  # the rest goes to init, not to the kernel
            break
        key, sep, value = token.partition("=")
        args[key] = value if sep else True
    return raw, args


def _param(root, rel):
    value = _read(root, rel)
    if value is None:
        return None, None
    return value, value in ("Y", "y", "1")


def _modprobe_options(root):
    """`options` lines from modprobe.d, since kvm_intel.tdx=1 may be set there instead of the cmdline."""
    found = []
    for directory in ("etc/modprobe.d", "usr/lib/modprobe.d"):
        for name in _listdir(root, directory):
            if not name.endswith(".conf"):
                continue
            for line in (_read(root, os.path.join(directory, name)) or "").splitlines():
                line = line.strip()
                if line.startswith("options "):
                    found.append(line)
    return found


def _dmi(root):
    base = "sys/class/dmi/id"
    return {field: _read(root, os.path.join(base, field)) for field in DMI_FIELDS}


def _pci(root):
    devices = []
    base = "sys/bus/pci/devices"
    for address in _listdir(root, base):
        rel = os.path.join(base, address)
        devices.append({
            "pci_address": address,
            "vendor_id": (_read(root, os.path.join(rel, "vendor")) or "").lower() or None,
            "device_id": (_read(root, os.path.join(rel, "device")) or "").lower() or None,
            "class": (_read(root, os.path.join(rel, "class")) or "").lower() or None,
            "driver": _link_name(_path(root, os.path.join(rel, "driver"))),
            "iommu_group": _link_name(_path(root, os.path.join(rel, "iommu_group"))),
        })
    return devices


def _iommu_groups(root):
    groups = {}
    for group in _listdir(root, "sys/kernel/iommu_groups"):
        groups[group] = _listdir(root, os.path.join("sys/kernel/iommu_groups", group, "devices"))
    return groups


def _dmesg(root, dmesg_text):
    if dmesg_text is not None:
        return dmesg_text, "argument"
    text = _read(root, DMESG_CAPTURE, limit=32 * 1024 * 1024)
    if text is not None:
        return text, "/" + DMESG_CAPTURE
    return None, None


def _markers(text):
    hits = {}
    for line in (text or "").splitlines():
        for mid, rx, kind in _COMPILED_MARKERS:
            match = rx.search(line)
            if match and mid not in hits:
                hits[mid] = {"id": mid, "kind": kind, "line": line.strip(), "groups": list(match.groups())}
    return hits


# --------------------------------------------------------------------------------------------
# judging


def _verdict(vid, severity, subject, message, fix, evidence=None):
    return {"id": vid, "severity": severity, "subject": subject, "message": message,
            "fix": fix, "evidence": evidence}


_TDX_BIOS = ("BIOS: enable Memory Encryption (TME), Total Memory Encryption Multi-Tenant (TME-MT) "
             "with a non-zero number of TDX key IDs (key split), Trust Domain Extension (TDX) and "
             "the TDX Secure Arbitration Mode Loader (SEAM Loader); disable 'Limit CPU PA to 46 bits'")
_SNP_BIOS = ("BIOS: enable SMEE (Secure Memory Encryption), SEV-SNP Support, the IOMMU, and set "
             "'SNP Memory (RMP Table) Coverage' to Enabled (all memory), not a custom size")


def _tee_verdicts(facts, marks, dmesg_ok, modprobe):
    out = []
    cpu = facts["cpu"]
    tee = facts["tee"]
    args = facts["kernel"]["args"]
    if cpu["vendor"] == "intel":
        if "vmx" not in cpu["flags"] and not facts["virtualized"]:
            out.append(_verdict("vmx_disabled", "error", "cpu",
                                "The CPU does not report VT-x (vmx), so KVM and TDX cannot run.",
                                "BIOS: enable Intel Virtualization Technology (VT-x)."))
        if tee["kvm_param"] is None:
            out.append(_verdict("tdx_param_missing", "error", "tee",
                                "/sys/module/kvm_intel/parameters/tdx is absent: kvm_intel is not loaded "
                                "or the kernel has no TDX host support.",
                                "Use a kernel with TDX host support (OpenShift 4.21+ / RHEL 10) and load "
                                "kvm_intel; then set the kernel argument kvm_intel.tdx=1."))
        elif not tee["enabled"]:
            out.extend(_tdx_off(marks, dmesg_ok, args, modprobe))
        if tee["enabled"] and "sgx" not in cpu["flags"]:
            out.append(_verdict("sgx_missing", "warning", "tee",
                                "TDX is on but the CPU does not report SGX: TDX quotes are generated by an "
                                "SGX quoting enclave (DCAP), so attestation will fail.",
                                "BIOS: enable SGX (Software Guard Extensions) with Flexible Launch Control "
                                "and register the platform with the PCCS."))
    elif cpu["vendor"] == "amd":
        if "svm" not in cpu["flags"] and not facts["virtualized"]:
            out.append(_verdict("svm_disabled", "error", "cpu",
                                "The CPU does not report AMD-V (svm), so KVM and SEV-SNP cannot run.",
                                "BIOS: enable SVM Mode (AMD-V)."))
        if tee["kvm_param"] is None:
            out.append(_verdict("snp_param_missing", "error", "tee",
                                "/sys/module/kvm_amd/parameters/sev_snp is absent: kvm_amd is not loaded "
                                "or the kernel has no SEV-SNP host support.",
                                "Use a kernel with SEV-SNP host support (OpenShift 4.21+ / RHEL 10) and load kvm_amd."))
        elif not tee["enabled"]:
            out.extend(_snp_off(facts, marks, dmesg_ok, args))
        if "sev_init_failed" in marks:
            out.append(_verdict("sev_firmware_init_failed", "error", "tee",
                                "The AMD secure processor failed to initialise SEV/SNP.",
                                "Firmware: update the BIOS (AGESA) and the SEV firmware; check the SNP BIOS settings. "
                                + _SNP_BIOS + ".", marks["sev_init_failed"]["line"]))
    elif cpu["vendor"] is None:
        out.append(_verdict("cpu_vendor_unsupported", "error", "cpu",
                            "CPU vendor {0!r} has no TDX or SEV-SNP; confidential GPUs need an Intel Xeon "
                            "with TDX or an AMD EPYC with SEV-SNP.".format(cpu["vendor_id"]),
                            "Use a TDX-capable Intel Xeon (4th gen or later) or an SEV-SNP-capable AMD EPYC "
                            "(3rd gen or later) host."))
    return out


def _tdx_off(marks, dmesg_ok, args, modprobe):
    opted_in = str(args.get("kvm_intel.tdx", "")).lower() in ("1", "y", "on", "true") or any(
        re.search(r"\bkvm[_-]intel\b.*\btdx=(1|y|Y|on)\b", line) for line in modprobe)
    if "tdx_module_not_loaded" in marks:
        return [_verdict("tdx_module_not_loaded", "error", "tee",
                         "The TDX module is not loaded: the BIOS did not load it (SEAMRR not enabled, or no "
                         "P-SEAMLDR in this firmware).",
                         "BIOS: enable the TDX Secure Arbitration Mode Loader (SEAM Loader) and TDX; if no such "
                         "option exists, install the OEM BIOS update that bundles the TDX module.",
                         marks["tdx_module_not_loaded"]["line"])]
    if "tdx_seamcall_failed" in marks or "tdx_init_failed" in marks:
        line = (marks.get("tdx_seamcall_failed") or marks["tdx_init_failed"])["line"]
        return [_verdict("tdx_module_init_failed", "error", "tee",
                         "The TDX module failed to initialise (SEAMCALL error); this is typically an old BIOS "
                         "or TDX module.",
                         "Firmware: update the BIOS to the vendor's latest release (it carries a newer TDX "
                         "module), then re-check the TDX BIOS settings. " + _TDX_BIOS + ".", line)]
    if "tdx_keyid_range" in marks and "tdx_module_initialized" not in marks and opted_in:
        return [_verdict("tdx_module_not_initialized", "error", "tee",
                         "The BIOS reserved TDX key IDs but the kernel never logged 'virt/tdx: module "
                         "initialized'.",
                         "Re-check the TDX settings (" + _TDX_BIOS + "); if they are right, update the BIOS.",
                         marks["tdx_keyid_range"]["line"])]
    if not opted_in:
        return [_verdict("tdx_not_requested", "error", "tee",
                         "kvm_intel reports tdx=N and TDX was not requested: the kernel keeps TDX off by default.",
                         "Kernel argument: add kvm_intel.tdx=1 (on OpenShift through a MachineConfig) and reboot. "
                         "If it stays off, " + _TDX_BIOS + ".")]
    why = "" if dmesg_ok else " The kernel log was not available to say why."
    return [_verdict("tdx_disabled", "error", "tee",
                     "kvm_intel reports tdx=N although kvm_intel.tdx=1 was requested." + why,
                     _TDX_BIOS + "; if the settings are right, update the BIOS.")]


def _snp_off(facts, marks, dmesg_ok, args):
    for mid, message in (
        ("snp_rmp_not_reserved", "The BIOS did not reserve memory for the RMP table."),
        ("snp_rmp_partial", "The RMP table the BIOS reserved does not cover all system memory."),
        ("snp_rmp_invalid", "The BIOS programmed an invalid RMP table range."),
    ):
        if mid in marks:
            return [_verdict(mid, "error", "tee", message,
                             _SNP_BIOS + ". If the BIOS offers no such option, install the OEM BIOS update.",
                             marks[mid]["line"])]
    if not facts["iommu"]["enabled"] or any(k in args and str(args[k]).lower() == "off"
                                            for k in ("amd_iommu", "iommu")):
        return [_verdict("snp_needs_iommu", "error", "tee",
                         "SEV-SNP stays off while the IOMMU is disabled.",
                         "BIOS: enable the IOMMU; kernel arguments: remove amd_iommu=off / iommu=off.")]
    if "sev_snp" not in facts["cpu"]["flags"]:
        return [_verdict("snp_cpu_flag_missing", "error", "tee",
                         "The CPU does not report sev_snp: SEV-SNP is disabled in the BIOS or the RMP setup failed.",
                         _SNP_BIOS + ".")]
    why = "" if dmesg_ok else " The kernel log was not available to say why."
    return [_verdict("snp_disabled", "error", "tee",
                     "kvm_amd reports sev_snp=N." + why,
                     "Kernel argument: kvm_amd.sev_snp=1 (and do not pass mem_encrypt=off). " + _SNP_BIOS + ".")]


def _iommu_verdicts(facts):
    if facts["iommu"]["enabled"]:
        return []
    args = facts["kernel"]["args"]
    if facts["cpu"]["vendor"] == "amd":
        fix = "BIOS: enable the IOMMU (AMD-Vi); kernel arguments: add amd_iommu=on iommu=pt"
    else:
        fix = "BIOS: enable VT-d; kernel arguments: add intel_iommu=on iommu=pt"
    off = [k for k in ("intel_iommu", "amd_iommu", "iommu") if str(args.get(k, "")).lower() == "off"]
    if off:
        fix += " and remove " + ", ".join("{0}=off".format(k) for k in off)
    return [_verdict("iommu_disabled", "error", "iommu",
                     "No IOMMU groups exist, so GPUs cannot be passed to a confidential VM through VFIO.",
                     fix + ".")]


def _gpu_verdicts(facts, marks, groups, by_address):
    out = []
    if not facts["gpus"]:
        out.append(_verdict("no_gpu", "error", "gpu", "No NVIDIA GPU was found on the PCI bus.",
                            "Install a CC-capable NVIDIA GPU (H100, H200, B200, RTX PRO 6000 Blackwell Server "
                            "Edition); on a VM, the GPU must be passed through."))
    for gpu in facts["gpus"]:
        subject = "gpu {0}".format(gpu["pci_address"])
        support = gpu["support"]
        if not gpu["cc_capable"]:
            out.append(_verdict("gpu_not_cc_capable", "error", subject,
                                "{0} ({1}) has no confidential-computing mode.".format(
                                    gpu["model"] or "unknown model", gpu["device_id"]),
                                "Use a Hopper or Blackwell GPU from the support matrix."))
        elif support == "upstream":
            out.append(_verdict("gpu_not_tested_on_openshift", "warning", subject,
                                "{0} is listed upstream for confidential computing but not tested by Red Hat "
                                "on OpenShift.".format(gpu["model"]),
                                "Expect rough edges; H100 and RTX PRO 6000 Blackwell are the tested models."))
        elif support == "unsupported":
            out.append(_verdict("gpu_not_listed", "warning", subject,
                                "{0} is CC-capable silicon but not listed for confidential containers.".format(gpu["model"]),
                                "Use a model from the support matrix."))
        if facts["iommu"]["enabled"] and gpu["iommu_group"] is None:
            out.append(_verdict("gpu_without_iommu_group", "error", subject,
                                "The GPU is in no IOMMU group, so it cannot be assigned through VFIO.",
                                "Check the BIOS IOMMU/ACS settings and the kernel log for DMAR/AMD-Vi errors."))
        elif gpu["iommu_group"] is not None:
            others = [a for a in groups.get(gpu["iommu_group"], []) if a != gpu["pci_address"]
                      and not str(by_address.get(a, {}).get("class") or "").startswith(_BRIDGE_CLASS_PREFIX)]
            if others:
                out.append(_verdict("gpu_iommu_group_shared", "warning", subject,
                                    "IOMMU group {0} also holds {1}: all of them must go to the same VM.".format(
                                        gpu["iommu_group"], ", ".join(others)),
                                    "BIOS: enable ACS / move the GPU to a slot with its own IOMMU group."))
    for mid, message, fix in (
        ("nvrm_open_modules_required", "The NVIDIA kernel driver refuses this GPU: it needs the open kernel modules.",
         "Install the NVIDIA open GPU kernel modules (the GPU Operator's default on OpenShift)."),
        ("nvrm_init_failed", "The NVIDIA driver failed to initialise a GPU (RmInitAdapter).",
         "Firmware: update the GPU VBIOS and the driver; check power and seating; read the full NVRM lines."),
    ):
        if mid in marks:
            out.append(_verdict(mid, "error", "gpu", message, fix, marks[mid]["line"]))
    return out


# --------------------------------------------------------------------------------------------
# the entry point


def collect(root: str = "/", dmesg_text: str | None = None) -> dict:
    """Facts about the host mounted at ``root``, with a verdict for every problem found.

    ``dmesg_text`` is the kernel log; when None, ``<root>/var/log/dmesg`` is read if present.
    Never raises for a missing or unreadable file: absent facts are None.
    """
    root = root or "/"
    cpu, cpuinfo_ok = _cpu(root)
    cmdline, args = _cmdline(root)
    dmi = _dmi(root)
    dmesg, dmesg_source = _dmesg(root, dmesg_text)
    marks = _markers(dmesg)
    modprobe = _modprobe_options(root)

    dmi_text = " ".join(v for v in (dmi.get("sys_vendor"), dmi.get("product_name")) if v).lower()
    dmi_hint = next((h for h in _VM_DMI_HINTS if h in dmi_text), None)
    guest_tee = "tdx" if "tdx_guest" in cpu["flags"] else None
    hypervisor = marks.get("hypervisor_detected", {}).get("groups", [None])[0]
    virtualized = ("hypervisor" in cpu["flags"] or dmi_hint is not None or guest_tee is not None
                   or hypervisor is not None)

    if cpu["vendor"] == "intel":
        param_rel = "/sys/module/kvm_intel/parameters/tdx"
    elif cpu["vendor"] == "amd":
        param_rel = "/sys/module/kvm_amd/parameters/sev_snp"
    else:
        param_rel = None
    raw_param, param_on = _param(root, param_rel) if param_rel else (None, None)
    tee_type = None
    if cpu["vendor"] == "intel" and (raw_param is not None or guest_tee == "tdx" or "tdx_host_platform" in cpu["flags"]
                                     or any(m.startswith("tdx_") for m in marks)):
        tee_type = "tdx"
    elif cpu["vendor"] == "amd" and (raw_param is not None or "sev_snp" in cpu["flags"]
                                     or any(m.startswith("snp_") for m in marks)):
        tee_type = "snp"

    devices = _pci(root)
    by_address = {d["pci_address"]: d for d in devices}
    groups = _iommu_groups(root)
    gpus = []
    nvswitches = []
    for dev in devices:
        if dev["vendor_id"] != NVIDIA_VENDOR:
            continue
        klass = dev["class"] or ""
        if klass.startswith(_DISPLAY_CLASS_PREFIX):
            info = _gpu_lookup(dev["device_id"])
            gpus.append(dict(dev, model=info["name"], cc_capable=info["cc_capable"], support=info["support"],
                             architecture=info["architecture"]))
        elif klass.startswith(_NVSWITCH_CLASS_PREFIX):
            nvswitches.append(dev)

    iommu_args = {k: args[k] for k in ("intel_iommu", "amd_iommu", "iommu") if k in args}
    facts = {
        "root": root,
        "kernel": {"release": _read(root, "/proc/sys/kernel/osrelease"), "cmdline": cmdline, "args": args},
        "cpu": cpu,
        "virtualized": virtualized,
        "virtualization": {"hypervisor_flag": "hypervisor" in cpu["flags"], "dmi_hint": dmi_hint,
                           "kernel_hypervisor": hypervisor, "guest_tee": guest_tee},
        "tee": {"type": tee_type, "enabled": bool(param_on) if tee_type and param_rel else False,
                "kvm_param": raw_param, "kvm_param_path": param_rel},
        "iommu": {"enabled": bool(groups), "groups": len(groups), "kernel_args": iommu_args},
        "gpus": gpus,
        "nvswitches": nvswitches,
        "dmi": dmi,
        "dmesg": {"available": dmesg is not None, "source": dmesg_source,
                  "markers": sorted(marks.values(), key=lambda m: m["id"])},
    }
    if guest_tee:
        facts["tee"]["enabled"] = False

    verdicts = []
    if not cpuinfo_ok:
        verdicts.append(_verdict("cpuinfo_unreadable", "error", "host",
                                 "{0} could not be read.".format(_path(root, "/proc/cpuinfo")),
                                 "Point root at the host's filesystem (e.g. /host in a probe pod)."))
    if guest_tee:
        verdicts.append(_verdict("running_in_tee_guest", "error", "host",
                                 "This is a TDX guest (a confidential VM), not a host: the operators must run on "
                                 "the bare-metal host.", "Run the preflight and the installation on the host."))
    elif virtualized:
        verdicts.append(_verdict("virtualized_host", "error", "host",
                                 "This host is a virtual machine ({0}): confidential GPUs need bare metal, because "
                                 "the host's hypervisor must launch the TDX/SNP guest and own the GPU.".format(
                                     hypervisor or dmi_hint or "hypervisor CPU flag"),
                                 "Use a bare-metal node; nested virtualization is not supported."))
    verdicts.extend(_tee_verdicts(facts, marks, dmesg is not None, modprobe))
    verdicts.extend(_iommu_verdicts(facts))
    verdicts.extend(_gpu_verdicts(facts, marks, groups, by_address))
    if dmesg is None:
        verdicts.append(_verdict("dmesg_unavailable", "info", "host",
                                 "No kernel log was given, so firmware markers were not checked.",
                                 "Run as root so dmesg is readable, or save it to <root>/" + DMESG_CAPTURE + "."))
    facts["verdicts"] = verdicts
    facts["ready"] = not any(v["severity"] == "error" for v in verdicts)
    return facts
