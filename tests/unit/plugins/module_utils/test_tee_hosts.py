"""tee_hosts: from probe facts (host_facts on rendered twin roots) to MachineConfigs, stops and verdicts."""

import copy

import pytest

from ansible_collections.confidential.gpu.plugins.module_utils import machine_config as m
from ansible_collections.confidential.gpu.plugins.module_utils import node_probe, tee_hosts
from twin.controllers.probe import render_host
from twin.profile import expand, load
from twin.world import Host


def facts_of(tmp_path, spec, configured=False, tee="tdx"):
    h = Host(spec)
    if configured:
        h.cmdline += ["kvm_intel.tdx=1", "nohibernate", "intel_iommu=on"] if tee == "tdx" else ["amd_iommu=on"]
        h.files = {m.VSOCK_FILE: "vsock-loopback\n"} if tee == "tdx" else {}
    root = tmp_path / spec["name"]
    render_host(root, h)
    return node_probe.probe(str(root), [m.VSOCK_FILE])


def nodes_of(tmp_path, profile="default", configured=False, tee="tdx", only=None):
    specs = [n for n in load(profile)["nodes"] if "worker" in n["roles"] and (only is None or n["name"] in only)]
    return {s["name"]: facts_of(tmp_path, s, configured, tee) for s in specs}


def bios_off_profile():
    return expand({"name": "x", "nodes": [
        {"name": "worker-{i}", "count": 2, "tee": {"type": "tdx"},
         "gpus": [{"model": "NVIDIA H100 PCIe", "device_id": "0x2331", "cc_capable": True}]},
        {"name": "worker-bad", "tee": {"type": "tdx", "bios_enabled": False},
         "gpus": [{"model": "NVIDIA H100 PCIe", "device_id": "0x2331", "cc_capable": True}]}]})


def test_unconfigured_tdx_workers_need_tdx_and_iommu(tmp_path):
    got = tee_hosts.plan(nodes_of(tmp_path), "worker")
    assert got["tee"] == "tdx" and not got["errors"] and not got["blockers"]
    assert [mc["metadata"]["name"] for mc in got["machine_configs"]] == ["99-worker-cgpu-tdx", "99-worker-cgpu-iommu"]
    assert got["needs"] == {"tee": True, "iommu": True}
    assert got["stop_message"] == ""


def test_configured_hosts_keep_our_configs_and_need_nothing_new(tmp_path):
    nodes = nodes_of(tmp_path, configured=True)
    assert tee_hosts.plan(nodes, "worker")["machine_configs"] == []
    kept = tee_hosts.plan(nodes, "worker", existing=["00-worker", "99-worker-cgpu-tdx", "99-worker-cgpu-iommu"])
    assert [mc["metadata"]["name"] for mc in kept["machine_configs"]] == ["99-worker-cgpu-tdx", "99-worker-cgpu-iommu"]


def test_firmware_with_tdx_off_stops_before_anything_changes(tmp_path):
    profile = bios_off_profile()
    nodes = {s["name"]: facts_of(tmp_path, s) for s in profile["nodes"]}
    got = tee_hosts.plan(nodes, "worker")
    assert list(got["blockers"]) == ["worker-bad"]
    assert got["blockers"]["worker-bad"][0]["id"] == "tdx_bios_disabled"
    assert "Nothing was changed and no node rebooted" in got["stop_message"]
    assert "worker-bad: TDX is disabled in the firmware" in got["stop_message"]
    assert "SEAM Loader" in got["stop_message"]
    assert "Ready for configuration once the others are fixed: worker-0, worker-1." in got["stop_message"]


def test_a_kernel_log_that_lost_its_boot_messages_proves_nothing(tmp_path):
    profile = bios_off_profile()
    facts = facts_of(tmp_path, next(s for s in profile["nodes"] if s["name"] == "worker-bad"))
    assert facts["dmesg"]["from_boot"] is True
    facts["dmesg"]["from_boot"] = False
    got = tee_hosts.plan({"worker-bad": facts}, "worker")
    assert got["blockers"] == {}, "the reboot and the verification after it will tell"
    assert [mc["metadata"]["name"] for mc in got["machine_configs"]] == ["99-worker-cgpu-tdx", "99-worker-cgpu-iommu"]


def test_snp_workers_with_snp_on_need_nothing(tmp_path):
    got = tee_hosts.plan(nodes_of(tmp_path, "snp-rtx-pro-6000"), "worker")
    assert got["tee"] == "snp" and not got["blockers"]
    assert got["machine_configs"] == [], "SNP and the AMD IOMMU are on by default: no reboot for nothing"


def test_snp_off_with_working_firmware_gets_the_snp_switches(tmp_path):
    spec = copy.deepcopy(next(n for n in load("snp-rtx-pro-6000")["nodes"] if n["name"] == "worker-0"))
    spec["kernel_cmdline"] += " kvm_amd.sev_snp=0"
    got = tee_hosts.plan({"worker-0": facts_of(tmp_path, spec, tee="snp")}, "worker")
    assert [mc["metadata"]["name"] for mc in got["machine_configs"]] == ["99-worker-cgpu-snp"]


def test_mixed_tees_and_vms_stop(tmp_path):
    mixed = tee_hosts.plan(nodes_of(tmp_path, "broken-mixed-tee"), "worker")
    assert mixed["errors"] and "different TEEs (snp, tdx)" in mixed["errors"][0]
    vms = tee_hosts.plan(nodes_of(tmp_path, "broken-vm-nodes"), "worker")
    assert {b["id"] for bs in vms["blockers"].values() for b in bs} >= {"virtualized_host"}


def test_explicit_tee_against_the_cpu(tmp_path):
    got = tee_hosts.plan(nodes_of(tmp_path, "snp-rtx-pro-6000", only=["worker-0"]), "worker", tee="tdx")
    assert got["blockers"]["worker-0"][0]["id"] == "tee_impossible"


def test_verify_configured_and_unconfigured(tmp_path):
    good = tee_hosts.verify(nodes_of(tmp_path, configured=True, only=["worker-0"]), "tdx")
    assert good["worker-0"]["ok"], good
    assert good["worker-0"]["line"].startswith("worker-0: ok (kvm_intel.tdx=1 nohibernate; kvm_intel tdx=Y")
    bad = tee_hosts.verify(nodes_of(tmp_path / "b", only=["worker-1"]), "tdx")
    assert not bad["worker-1"]["ok"]
    failed = {c["check"] for c in bad["worker-1"]["checks"] if not c["ok"]}
    assert failed >= {"kernel arguments (TDX)", "TDX module initialized", "vsock loopback loaded", "IOMMU groups present"}
    assert "Fix:" in bad["worker-1"]["line"]


@pytest.mark.parametrize("driver,ok", [("", True), ("nvidia", True), ("vfio-pci", False)])
def test_verify_gpu_driver(tmp_path, driver, ok):
    got = tee_hosts.verify(nodes_of(tmp_path, configured=True, only=["worker-0"]), "tdx", gpu_driver=driver)
    assert got["worker-0"]["ok"] is ok
