# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What TEE hosts need, from their node probe facts, and whether they got it (pure functions).

PRIVATE to this collection. :func:`plan` turns the probe facts of a pool's nodes into the
MachineConfigs to apply, or into the firmware fixes that must come first; :func:`verify` checks
the facts probed after the reboots. Facts are what ``host_facts.collect`` returns (plus the
probe's ``modules`` and ``files``).
"""

from __future__ import annotations

from ansible_collections.confidential.gpu.plugins.module_utils import machine_config as mcfg

__all__ = ["plan", "verify", "FIRMWARE_VERDICTS"]

# Verdicts no kernel argument fixes: the firmware, the CPU, the kernel or the machine must change.
FIRMWARE_VERDICTS = frozenset((
    "cpuinfo_unreadable", "running_in_tee_guest", "virtualized_host", "vmx_disabled", "svm_disabled",
    "cpu_vendor_unsupported", "tdx_param_missing", "snp_param_missing", "tdx_module_not_loaded",
    "tdx_module_init_failed", "tdx_module_not_initialized", "tdx_disabled", "snp_rmp_not_reserved",
    "snp_rmp_partial", "snp_rmp_invalid", "sev_firmware_init_failed", "snp_cpu_flag_missing", "snp_needs_iommu",
))
GPU_VERDICTS = frozenset(("no_gpu", "gpu_not_cc_capable"))
# What the MachineConfigs of this role fix by themselves.
FIXED_BY_CONFIG = frozenset(("tdx_not_requested", "iommu_disabled", "snp_disabled"))

TDX_BIOS_FIX = ("BIOS: enable Memory Encryption (TME), Total Memory Encryption Multi-Tenant (TME-MT) with a non-zero "
                "number of TDX key IDs (key split), Trust Domain Extension (TDX) and the TDX Secure Arbitration Mode "
                "Loader (SEAM Loader); enable SGX with 'SGX Factory Reset' for attestation; disable 'Limit CPU PA to "
                "46 bits'. If the BIOS offers no TDX options, install the vendor's BIOS update that carries the TDX module.")


def _marker_ids(facts):
    return {m.get("id") for m in ((facts.get("dmesg") or {}).get("markers") or [])}


def _tdx_firmware_off(facts):
    """TDX off in the firmware, seen before any kernel argument is set.

    The kernel logs "virt/tdx: BIOS enabled: private KeyID range" and sets the CPU flag
    tdx_host_platform at boot when the BIOS reserved TDX key IDs, whether or not KVM was asked to
    use TDX; neither is there when the firmware keeps TDX off. Without a kernel log only the flag
    is known, which older kernels do not report, so that alone decides nothing; nor does a log
    whose boot messages the ring buffer has already dropped.
    """
    if (facts.get("tee") or {}).get("type") != "tdx" or (facts.get("tee") or {}).get("enabled"):
        return False
    dmesg = facts.get("dmesg") or {}
    if not dmesg.get("available") or dmesg.get("from_boot") is False:
        return False
    return "tdx_keyid_range" not in _marker_ids(facts) and "tdx_host_platform" not in (
        (facts.get("cpu") or {}).get("flags") or [])


def _node(name, facts, tee, require_gpus):
    """Per node: blockers (firmware first), warnings, and what the MachineConfigs must give it."""
    blockers, warnings = [], []
    cpu_vendor = (facts.get("cpu") or {}).get("vendor")
    want_vendor = {"tdx": "intel", "snp": "amd"}.get(tee)
    if want_vendor and cpu_vendor and cpu_vendor != want_vendor:
        blockers.append({"id": "tee_impossible", "message": "{0} asks for {1} but this is an {2} CPU.".format(
            name, tee.upper(), cpu_vendor), "fix": "Choose tee_hosts_tee to match the CPUs, or a pool without this node."})
    if _tdx_firmware_off(facts):
        blockers.append({"id": "tdx_bios_disabled",
                         "message": "TDX is disabled in the firmware: the kernel found no TDX private key IDs at boot "
                                    "(no 'virt/tdx: BIOS enabled' line, no tdx_host_platform CPU flag), so kvm_intel.tdx=1 "
                                    "would not turn it on.",
                         "fix": TDX_BIOS_FIX})
    for verdict in facts.get("verdicts") or []:
        item = {"id": verdict.get("id"), "message": verdict.get("message"), "fix": verdict.get("fix")}
        if verdict.get("id") in FIRMWARE_VERDICTS:
            blockers.append(item)
        elif verdict.get("id") in GPU_VERDICTS and require_gpus:
            blockers.append(item)
        elif verdict.get("id") not in FIXED_BY_CONFIG and verdict.get("severity") in ("error", "warning"):
            warnings.append(item)
    args = (facts.get("kernel") or {}).get("args") or {}
    modules = facts.get("modules") or []
    tee_facts = facts.get("tee") or {}
    needs = {
        "tdx": tee == "tdx" and not (tee_facts.get("enabled") and "nohibernate" in args
                                     and "vsock_loopback" in modules),
        "snp_kernel_arguments": tee == "snp" and not tee_facts.get("enabled")
        and any(v.get("id") == "snp_disabled" for v in facts.get("verdicts") or []),
        "iommu": not (facts.get("iommu") or {}).get("enabled"),
    }
    return {"blockers": blockers, "warnings": warnings, "needs": needs, "cpu_vendor": cpu_vendor,
            "tee_type": tee_facts.get("type"), "tee_enabled": bool(tee_facts.get("enabled"))}


def plan(nodes, pool, tee="auto", iommu=True, require_gpus=True, existing=(), prefix="99"):
    """The MachineConfigs a pool's TEE hosts need, or what stops the role before it changes anything.

    ``nodes`` maps node names to probe facts; ``existing`` names the MachineConfigs the pool selects
    now (ours among them are kept, so a re-run on configured hosts changes nothing).
    """
    errors = []
    types = sorted({(f.get("tee") or {}).get("type") for f in nodes.values()} - {None})
    if tee == "auto":
        if len(types) > 1:
            errors.append("The nodes of pool {0} have different TEEs ({1}): OpenShift sandboxed containers supports one "
                          "TEE type per cluster. Use a pool with one kind of host.".format(pool, ", ".join(types)))
        tee = types[0] if len(types) == 1 else None
        if tee is None and not errors:
            errors.append("No node of pool {0} has a TDX or SEV-SNP capable CPU.".format(pool))
    per_node = {name: _node(name, facts, tee, require_gpus) for name, facts in sorted(nodes.items())}
    blockers = {name: n["blockers"] for name, n in per_node.items() if n["blockers"]}
    existing = set(existing or ())
    machine_configs = []
    needs = {}
    if tee in ("tdx", "snp"):
        candidates = {mc["metadata"]["name"]: mc for mc in mcfg.host_machine_configs(
            pool, tee, iommu=iommu, snp_kernel_arguments=True, prefix=prefix)}
        needs = {
            "tee": any(n["needs"]["tdx"] if tee == "tdx" else n["needs"]["snp_kernel_arguments"] for n in per_node.values()),
            "iommu": iommu and any(n["needs"]["iommu"] for n in per_node.values()),
        }
        for name, mc in candidates.items():
            concern = "iommu" if name.endswith("-iommu") else "tee"
            # Ours from an earlier run stay: the hosts look fine *because* of them.
            if needs[concern] or name in existing:
                machine_configs.append(mc)
    lines = []
    for name, node_blockers in sorted(blockers.items()):
        for b in node_blockers:
            lines.append("- {0}: {1} Fix: {2}".format(name, b["message"], b["fix"]))
    stop = ""
    if errors or blockers:
        fine = sorted(set(per_node) - set(blockers))
        stop = "Nothing was changed and no node rebooted: {0}\n{1}".format(
            " ".join(errors) if errors else "these hosts need a fix that no MachineConfig can make:",
            "\n".join(lines))
        if fine:
            stop += "\nReady for configuration once the others are fixed: {0}.".format(", ".join(fine))
    return {"tee": tee, "errors": errors, "blockers": blockers, "stop_message": stop.strip(),
            "machine_configs": machine_configs, "needs": needs,
            "warnings": {name: n["warnings"] for name, n in per_node.items() if n["warnings"]},
            "nodes": {name: {k: n[k] for k in ("cpu_vendor", "tee_type", "tee_enabled", "needs")}
                      for name, n in per_node.items()}}


def _check(name, ok, detail):
    return {"check": name, "ok": bool(ok), "detail": detail}


def verify(nodes, tee, iommu=True, require_gpus=True, gpu_driver=""):
    """Per node, whether the host is what the MachineConfigs promised: ``{node: {ok, checks, line}}``."""
    out = {}
    for name, facts in sorted(nodes.items()):
        tokens = ((facts.get("kernel") or {}).get("cmdline") or "").split()
        markers = _marker_ids(facts)
        checks = []
        tee_facts = facts.get("tee") or {}
        if tee == "tdx":
            missing = [a for a in mcfg.TDX_KERNEL_ARGUMENTS if a not in tokens]
            checks.append(_check("kernel arguments (TDX)", not missing,
                                 "missing " + " ".join(missing) if missing else " ".join(mcfg.TDX_KERNEL_ARGUMENTS)))
            initialized = tee_facts.get("enabled") and (
                "tdx_module_initialized" in markers or not (facts.get("dmesg") or {}).get("available"))
            checks.append(_check("TDX module initialized", initialized,
                                 "kvm_intel tdx={0}{1}".format(tee_facts.get("kvm_param"),
                                                               ", 'virt/tdx: module initialized' logged"
                                                               if "tdx_module_initialized" in markers else "")))
            modules = facts.get("modules")
            checks.append(_check("vsock loopback loaded", modules is None or "vsock_loopback" in modules,
                                 "vsock_loopback in /proc/modules" if modules and "vsock_loopback" in modules
                                 else "vsock_loopback not loaded"))
        elif tee == "snp":
            checks.append(_check("SEV-SNP enabled", tee_facts.get("enabled"),
                                 "kvm_amd sev_snp={0}".format(tee_facts.get("kvm_param"))))
        if iommu:
            vendor = (facts.get("cpu") or {}).get("vendor") or "intel"
            arg = mcfg.IOMMU_KERNEL_ARGUMENTS.get(vendor, ("intel_iommu=on",))[0]
            groups = (facts.get("iommu") or {}).get("groups") or 0
            checks.append(_check("IOMMU groups present", groups > 0,
                                 "{0} IOMMU groups{1}".format(groups, ", " + arg if arg in tokens else "")))
        gpus = facts.get("gpus") or []
        if require_gpus:
            checks.append(_check("GPUs present", bool(gpus), "{0} NVIDIA GPU(s)".format(len(gpus))))
        for gpu in gpus:
            problems = []
            if iommu and gpu.get("iommu_group") is None:
                problems.append("in no IOMMU group")
            if gpu_driver and gpu.get("driver") != gpu_driver:
                problems.append("bound to {0}, expected {1}".format(gpu.get("driver") or "no driver", gpu_driver))
            checks.append(_check("GPU {0}".format(gpu.get("pci_address")), not problems, "{0}: {1}".format(
                gpu.get("model") or gpu.get("device_id"), "; ".join(problems) if problems else
                "IOMMU group {0}, driver {1}".format(gpu.get("iommu_group"), gpu.get("driver") or "none"))))
        failed = [c for c in checks if not c["ok"]]
        fixes = [v.get("fix") for v in facts.get("verdicts") or []
                 if v.get("severity") == "error" and (require_gpus or v.get("id") not in GPU_VERDICTS)]
        if failed:
            line = "{0}: FAILED {1}".format(name, "; ".join("{0}: {1}".format(c["check"], c["detail"]) for c in failed))
            if fixes:
                line += ". Fix: " + " ".join(f for f in fixes if f)
        else:
            line = "{0}: ok ({1})".format(name, "; ".join(c["detail"] for c in checks))
        out[name] = {"ok": not failed, "checks": checks, "line": line}
    return out
