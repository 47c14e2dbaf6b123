# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""host_facts.collect() against fake roots written by host_root.render_root(), and against the
raw files captured on the lent H200 machine (tests/unit/fixtures/hosts/h200-lent)."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import shutil

import pytest

from ansible_collections.confidential.gpu.plugins.module_utils import host_facts
from twin.host_root import render_root  # the twin's fake-root writer: tests may use the twin

H200 = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "hosts" / "h200-lent"

TDX_HOST = {
    "cpu": {"vendor": "intel", "model": "Intel(R) Xeon(R) Platinum 8480+", "family": 6, "model_number": 143,
            "flags": ["vmx", "sgx", "sgx_lc", "tme", "avx512f"], "count": 4, "sockets": 2},
    "cmdline": "BOOT_IMAGE=(hd0)/vmlinuz intel_iommu=on iommu=pt kvm_intel.tdx=1",
    "kernel_release": "6.12.0-124.el10.x86_64",
    "kvm_intel_tdx": "Y",
    "bios": {"vendor": "Dell Inc.", "version": "2.3.5", "date": "05/12/2026"},
    "system": {"vendor": "Dell Inc.", "product": "PowerEdge R760xa"},
    "gpus": [{"pci_address": "0000:4a:00.0", "device_id": "0x2331", "driver": "vfio-pci", "iommu_group": 61}],
    "pci_devices": [{"pci_address": "0000:4b:00.0", "vendor_id": "0x10de", "device_id": "0x22a3",
                     "class": 0x068000, "driver": "nvidia-nvswitch", "iommu_group": 62},
                    {"pci_address": "0000:00:14.0", "vendor_id": "0x8086", "device_id": "0x1bcd",
                     "class": 0x0c0330, "driver": "xhci_hcd", "iommu_group": 3}],
    "dmesg": ["[    0.000000] x86/tme: enabled by BIOS",
              "[    4.112233] virt/tdx: BIOS enabled: private KeyID range [32, 64)",
              "[   19.556677] virt/tdx: module initialized",
              "[    1.234567] DMAR: IOMMU enabled"],
}

SNP_HOST = {
    "cpu": {"vendor": "amd", "model": "AMD EPYC 9354 32-Core Processor", "family": 25, "model_number": 17,
            "flags": ["svm", "sme", "sev", "sev_es", "sev_snp"]},
    "cmdline": "BOOT_IMAGE=/vmlinuz amd_iommu=on iommu=pt",
    "kvm_amd_sev_snp": "Y",
    "bios": {"vendor": "American Megatrends International, LLC.", "version": "1.8"},
    "gpus": [{"pci_address": "0000:c1:00.0", "device_id": "0x2bb5", "driver": "vfio-pci", "iommu_group": 40}],
    "dmesg": ["ccp 0000:44:00.1: SEV-SNP API:1.55 build:24",
              "SEV-SNP: RMP table physical range [0x0000000100000000 - 0x0000000101000000]",
              "kvm_amd: SEV-SNP enabled (ASIDs 1 - 99)"],
}


def facts_for(tmp_path, spec, **kwargs):
    root = str(tmp_path / "root")
    render_root(root, spec)
    return host_facts.collect(root, **kwargs)


def ids(facts, severity=None):
    return [v["id"] for v in facts["verdicts"] if severity is None or v["severity"] == severity]


def verdict(facts, vid):
    return next(v for v in facts["verdicts"] if v["id"] == vid)


# -- round trips through render_root ----------------------------------------------------------


def test_a_good_tdx_host_is_ready(tmp_path):
    facts = facts_for(tmp_path, TDX_HOST)
    assert facts["ready"] is True, facts["verdicts"]
    assert facts["cpu"]["vendor"] == "intel"
    assert facts["cpu"]["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert (facts["cpu"]["logical_cpus"], facts["cpu"]["sockets"]) == (4, 2)
    assert facts["virtualized"] is False
    assert facts["tee"] == {"type": "tdx", "enabled": True, "kvm_param": "Y",
                            "kvm_param_path": "/sys/module/kvm_intel/parameters/tdx"}
    assert facts["iommu"] == {"enabled": True, "groups": 3, "kernel_args": {"intel_iommu": "on", "iommu": "pt"}}
    assert facts["kernel"]["release"] == "6.12.0-124.el10.x86_64"
    assert facts["dmi"]["bios_version"] == "2.3.5" and facts["dmi"]["product_name"] == "PowerEdge R760xa"
    assert facts["gpus"] == [{"pci_address": "0000:4a:00.0", "vendor_id": "0x10de", "device_id": "0x2331",
                              "class": "0x030200", "driver": "vfio-pci", "iommu_group": "61",
                              "model": "H100 PCIe", "cc_capable": True, "support": "tested",
                              "architecture": "hopper"}]
    assert [s["pci_address"] for s in facts["nvswitches"]] == ["0000:4b:00.0"]
    assert facts["dmesg"]["source"] == "/var/log/dmesg"
    assert {m["id"] for m in facts["dmesg"]["markers"]} >= {"tdx_module_initialized", "tdx_keyid_range"}


def test_a_good_snp_host_is_ready(tmp_path):
    facts = facts_for(tmp_path, SNP_HOST)
    assert facts["ready"] is True, facts["verdicts"]
    assert facts["tee"]["type"] == "snp" and facts["tee"]["enabled"] is True
    assert facts["gpus"][0]["model"] == "RTX PRO 6000 Blackwell Server Edition"
    api = next(m for m in facts["dmesg"]["markers"] if m["id"] == "snp_firmware_api")
    assert api["groups"] == ["1.55", "24"]


def test_dmesg_text_argument_wins_over_the_capture_file(tmp_path):
    facts = facts_for(tmp_path, TDX_HOST, dmesg_text="")
    assert facts["dmesg"] == {"available": True, "source": "argument", "markers": []}


def test_render_root_rejects_unknown_keys(tmp_path):
    with pytest.raises(ValueError, match="unknown host spec keys.*gpu"):
        render_root(str(tmp_path), {"gpu": []})


def test_an_empty_root_gives_facts_and_verdicts_not_a_traceback(tmp_path):
    facts = host_facts.collect(str(tmp_path))
    assert facts["cpu"]["vendor"] is None
    assert {"cpuinfo_unreadable", "cpu_vendor_unsupported", "iommu_disabled", "no_gpu", "dmesg_unavailable"} <= set(ids(facts))
    assert facts["ready"] is False


# -- TDX failures (anchors.md T1) -------------------------------------------------------------


def tdx(**changes):
    spec = json.loads(json.dumps(TDX_HOST))
    spec.update(changes)
    return spec


@pytest.mark.parametrize("lines,vid,fix_words", [
    (["virt/tdx: BIOS enabled: private KeyID range [16, 64)"], "tdx_module_not_initialized", ["SEAM Loader", "update the BIOS"]),
    (["virt/tdx: SEAMCALL (0x0000000000000022) failed: 0xc000090000000000"], "tdx_module_init_failed", ["update the BIOS"]),
    (["virt/tdx: SEAMCALL (0x22) failed: 0xc000050500000000", "virt/tdx: module initialization failed (-5)"],
     "tdx_module_init_failed", ["update the BIOS"]),
    (["virt/tdx: module not loaded"], "tdx_module_not_loaded", ["SEAM Loader", "BIOS update"]),
    ([], "tdx_disabled", ["TME-MT", "update the BIOS"]),
])
def test_tdx_off_names_the_cause_and_the_fix(tmp_path, lines, vid, fix_words):
    facts = facts_for(tmp_path, tdx(kvm_intel_tdx="N", dmesg=lines))
    assert facts["tee"]["enabled"] is False and facts["ready"] is False
    found = verdict(facts, vid)
    assert found["severity"] == "error"
    for word in fix_words:
        assert word in found["fix"]
    if lines:
        assert found["evidence"] in lines


def test_tdx_not_requested_points_at_the_kernel_argument(tmp_path):
    facts = facts_for(tmp_path, tdx(kvm_intel_tdx="N", cmdline="intel_iommu=on", dmesg=[]))
    assert "kvm_intel.tdx=1" in verdict(facts, "tdx_not_requested")["fix"]


def test_tdx_requested_through_modprobe_counts(tmp_path):
    facts = facts_for(tmp_path, tdx(kvm_intel_tdx="N", cmdline="intel_iommu=on", dmesg=[],
                                    modprobe={"kvm-intel-tdx.conf": "options kvm_intel tdx=1\n"}))
    assert "tdx_disabled" in ids(facts) and "tdx_not_requested" not in ids(facts)


def test_tdx_without_sgx_warns_about_quote_generation(tmp_path):
    spec = tdx()
    spec["cpu"]["flags"] = ["vmx", "tme"]
    assert "SGX" in verdict(facts_for(tmp_path, spec), "sgx_missing")["fix"]


def test_tdx_param_missing_and_vmx_off(tmp_path):
    spec = tdx(kvm_intel_tdx=None)
    spec["cpu"]["flags"] = ["sgx"]
    facts = facts_for(tmp_path, spec)
    assert facts["tee"]["type"] == "tdx"  # dmesg still shows TDX markers
    assert {"tdx_param_missing", "vmx_disabled"} <= set(ids(facts, "error"))


# -- SNP failures -----------------------------------------------------------------------------


def snp(**changes):
    spec = json.loads(json.dumps(SNP_HOST))
    spec.update(changes)
    return spec


@pytest.mark.parametrize("line,vid,fix_word", [
    ("SEV-SNP: Memory for the RMP table has not been reserved by BIOS", "snp_rmp_not_reserved", "OEM BIOS update"),
    ("SEV-SNP: Memory reserved for the RMP table does not cover full system RAM (expected 0x1 got 0x2)",
     "snp_rmp_partial", "SNP Memory (RMP Table) Coverage"),
    ("SEV-SNP: RMP configuration not valid: base=0x2, end=0x1", "snp_rmp_invalid", "SEV-SNP Support"),
])
def test_snp_rmp_problems_name_the_bios_setting(tmp_path, line, vid, fix_word):
    facts = facts_for(tmp_path, snp(kvm_amd_sev_snp="N", dmesg=[line]))
    found = verdict(facts, vid)
    assert fix_word in found["fix"] and found["evidence"] == line


def test_snp_needs_the_iommu(tmp_path):
    facts = facts_for(tmp_path, snp(kvm_amd_sev_snp="N", dmesg=[], iommu=False, cmdline="amd_iommu=off"))
    assert "amd_iommu=off" in verdict(facts, "snp_needs_iommu")["fix"]
    assert "remove amd_iommu=off" in verdict(facts, "iommu_disabled")["fix"]


def test_sev_firmware_init_failure_asks_for_a_firmware_update(tmp_path):
    facts = facts_for(tmp_path, snp(dmesg=["ccp 0000:44:00.1: SEV: INIT failed 0x13, rc -5"]))
    assert "SEV firmware" in verdict(facts, "sev_firmware_init_failed")["fix"]


def test_snp_flag_missing(tmp_path):
    spec = snp(kvm_amd_sev_snp="N", dmesg=[])
    spec["cpu"]["flags"] = ["svm", "sme", "sev"]
    assert verdict(facts_for(tmp_path, spec), "snp_cpu_flag_missing")["severity"] == "error"


# -- virtualization, IOMMU, GPUs --------------------------------------------------------------


def test_a_vm_is_refused(tmp_path):
    spec = tdx(system={"vendor": "QEMU", "product": "Standard PC (Q35 + ICH9, 2009)"})
    facts = facts_for(tmp_path, spec)
    assert facts["virtualized"] is True and facts["virtualization"]["dmi_hint"] == "qemu"
    assert "bare-metal" in verdict(facts, "virtualized_host")["fix"]


def test_a_tdx_guest_is_told_it_is_not_a_host(tmp_path):
    spec = tdx()
    spec["cpu"]["flags"] = ["tdx_guest", "hypervisor"]
    facts = facts_for(tmp_path, spec)
    assert facts["virtualization"]["guest_tee"] == "tdx" and facts["tee"]["enabled"] is False
    assert "running_in_tee_guest" in ids(facts)


def test_iommu_off_asks_for_vt_d_and_the_kernel_argument(tmp_path):
    facts = facts_for(tmp_path, tdx(iommu=False, cmdline="kvm_intel.tdx=1 intel_iommu=off"))
    fix = verdict(facts, "iommu_disabled")["fix"]
    assert "VT-d" in fix and "intel_iommu=on" in fix and "remove intel_iommu=off" in fix
    assert facts["gpus"][0]["iommu_group"] is None


def test_gpu_verdicts(tmp_path):
    spec = tdx(gpus=[{"pci_address": "0000:17:00.0", "device_id": "0x20b5", "driver": "nvidia", "iommu_group": 7},
                     {"pci_address": "0000:18:00.0", "device_id": "0x2901", "driver": "vfio-pci", "iommu_group": 8},
                     {"pci_address": "0000:19:00.0", "device_id": "0x2335", "driver": "vfio-pci", "iommu_group": 9}],
               pci_devices=[{"pci_address": "0000:19:00.1", "vendor_id": "0x10de", "device_id": "0x22e8",
                             "class": 0x040300, "driver": "snd_hda_intel", "iommu_group": 9}],
               dmesg=["virt/tdx: module initialized",
                      "NVRM: GPU 0000:17:00.0: RmInitAdapter failed! (0x22:0x56:884)"])
    facts = facts_for(tmp_path, spec)
    by_subject = {(v["id"], v["subject"]) for v in facts["verdicts"]}
    assert ("gpu_not_cc_capable", "gpu 0000:17:00.0") in by_subject
    assert ("gpu_not_tested_on_openshift", "gpu 0000:18:00.0") in by_subject
    assert ("gpu_iommu_group_shared", "gpu 0000:19:00.0") in by_subject
    assert ("nvrm_init_failed", "gpu") in by_subject


def test_no_gpu(tmp_path):
    assert "no_gpu" in ids(facts_for(tmp_path, tdx(gpus=[])), "error")


# -- the real H200 machine --------------------------------------------------------------------


def h200_root(tmp_path):
    """The captured files at their paths, plus /sys/bus/pci/devices rebuilt from the table."""
    root = tmp_path / "h200"
    shutil.copytree(H200 / "root", root)
    with open(H200 / "pci-devices.tsv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            device = root / "sys/bus/pci/devices" / row["address"]
            device.mkdir(parents=True)
            for field in ("vendor", "device", "class"):
                (device / field).write_text(row[field] + "\n", encoding="utf-8")
            for link, target in (("driver", row["driver_link"]), ("iommu_group", row["iommu_group_link"])):
                if target:
                    os.symlink(target, device / link)
    (root / "sys/kernel/iommu_groups").mkdir(parents=True)
    return str(root)


def test_h200_lent_machine_as_captured(tmp_path):
    dmesg = (H200 / "cmd" / "dmesg.txt").read_text(encoding="utf-8")
    facts = host_facts.collect(h200_root(tmp_path), dmesg_text=dmesg)
    assert facts["cpu"]["vendor"] == "intel"
    assert facts["cpu"]["vendor_id"] == "GenuineIntel"
    assert facts["cpu"]["model"] == "Intel(R) Xeon(R) Processor"
    assert (facts["cpu"]["family"], facts["cpu"]["model_number"], facts["cpu"]["stepping"]) == (6, 207, 2)
    assert (facts["cpu"]["logical_cpus"], facts["cpu"]["sockets"]) == (16, 1)
    assert facts["cpu"]["flags"] == ["hypervisor"]  # no vmx, sgx, tdx or sev flags inside that VM
    assert facts["kernel"]["release"] == "6.18.44-fc-v657-gpu"
    assert facts["virtualized"] is True
    assert facts["virtualization"]["kernel_hypervisor"] == "KVM"
    assert facts["tee"] == {"type": None, "enabled": False, "kvm_param": None,
                            "kvm_param_path": "/sys/module/kvm_intel/parameters/tdx"}
    assert facts["iommu"] == {"enabled": False, "groups": 0, "kernel_args": {}}
    assert facts["dmi"]["bios_version"] is None  # "DMI not present or invalid."
    assert facts["gpus"] == [{"pci_address": "0000:00:06.0", "vendor_id": "0x10de", "device_id": "0x2335",
                              "class": "0x030200", "driver": "nvidia", "iommu_group": None,
                              "model": "H200 SXM 141GB", "cc_capable": True, "support": "upstream",
                              "architecture": "hopper"}]
    assert ids(facts, "error") == ["virtualized_host", "tdx_param_missing", "iommu_disabled"]
    assert ids(facts, "warning") == ["gpu_not_tested_on_openshift"]
    assert facts["ready"] is False
    assert {m["id"] for m in facts["dmesg"]["markers"]} == {"hypervisor_detected", "dmi_absent"}


def test_h200_lent_machine_collect_json_from_the_device():
    facts = json.loads((H200 / "collect.json").read_text(encoding="utf-8"))
    assert facts["cpu"]["model"] == "Intel(R) Xeon(R) Processor"
    assert facts["cpu"]["logical_cpus"] == 16
    assert facts["virtualized"] is True
    assert facts["tee"]["type"] is None and facts["tee"]["enabled"] is False
    assert facts["iommu"]["enabled"] is False
    assert [(g["pci_address"], g["device_id"], g["driver"]) for g in facts["gpus"]] == [
        ("0000:00:06.0", "0x2335", "nvidia")]
    assert facts["dmesg"]["source"] == "argument"
