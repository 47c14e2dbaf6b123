"""node_probe: the pod's entry point against rendered host roots, the kmsg reader, the pod and its log."""

import json
import subprocess
import sys

import pytest

from ansible_collections.confidential.gpu.plugins.module_utils import node_probe
from twin.controllers.probe import render_host
from twin.profile import load
from twin.world import Host

REPO_COLLECTIONS = str(__import__("pathlib").Path(__file__).resolve().parents[4] / "build" / "collections")


def host(profile="default", name="worker-0"):
    spec = next(n for n in load(profile)["nodes"] if n["name"] == name)
    return Host(spec)


def test_read_kmsg_records_and_continuations(tmp_path):
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("6,1,100,-;virt/tdx: BIOS enabled: private KeyID range [16, 64)\n"
                    " SUBSYSTEM=cpu\n"
                    "6,2,200,-;DMAR: IOMMU enabled\n")
    assert node_probe.read_kmsg(str(kmsg)) == ("virt/tdx: BIOS enabled: private KeyID range [16, 64)\n"
                                               "DMAR: IOMMU enabled\n")
    assert node_probe.read_kmsg(str(tmp_path / "absent")) is None
    assert node_probe.read_kmsg(str(kmsg), limit=1).count("\n") == 1


def test_probe_of_an_unconfigured_tdx_host(tmp_path):
    render_host(tmp_path, host())
    facts = node_probe.probe(str(tmp_path), ["/etc/modules-load.d/vsock.conf"])
    assert facts["tee"] == {"type": "tdx", "enabled": False, "kvm_param": "N",
                            "kvm_param_path": "/sys/module/kvm_intel/parameters/tdx"}
    assert facts["dmesg"]["source"] == "/dev/kmsg"
    assert "tdx_keyid_range" in {m["id"] for m in facts["dmesg"]["markers"]}
    assert facts["files"] == {"/etc/modules-load.d/vsock.conf": None}
    assert "vsock_loopback" not in facts["modules"]
    assert {v["id"] for v in facts["verdicts"]} >= {"tdx_not_requested", "iommu_disabled"}


def test_probe_after_the_host_machine_configs(tmp_path):
    h = host()
    h.cmdline += ["kvm_intel.tdx=1", "nohibernate", "intel_iommu=on"]
    h.files = {"/etc/modules-load.d/vsock.conf": "vsock-loopback\n"}
    render_host(tmp_path, h)
    facts = node_probe.probe(str(tmp_path), ["/etc/modules-load.d/vsock.conf"])
    assert facts["tee"]["enabled"] and facts["iommu"]["enabled"]
    assert "tdx_module_initialized" in {m["id"] for m in facts["dmesg"]["markers"]}
    assert facts["files"]["/etc/modules-load.d/vsock.conf"] == "vsock-loopback\n"
    assert "vsock_loopback" in facts["modules"]
    assert facts["gpus"][0]["iommu_group"] is not None


def test_entry_point_prints_one_marked_json_line(tmp_path):
    render_host(tmp_path, host("snp-rtx-pro-6000"))
    out = subprocess.run([sys.executable, "-m", node_probe.MODULE, "--root", str(tmp_path)], capture_output=True,
                         text=True, check=True, env={"PYTHONPATH": REPO_COLLECTIONS})
    facts = node_probe.parse_log("some noise\n" + out.stdout)
    assert facts["tee"]["type"] == "snp" and facts["tee"]["enabled"]
    assert len(facts["gpus"]) == 2


def test_parse_log_failures():
    with pytest.raises(ValueError, match="empty"):
        node_probe.parse_log("")
    with pytest.raises(ValueError, match="Traceback"):
        node_probe.parse_log("Traceback (most recent call last):\n  ...\n")
    assert node_probe.parse_log(node_probe.MARKER + json.dumps({"a": 1})) == {"a": 1}


def test_pod_and_configmap_shape():
    cm = node_probe.configmap("ns", {"node_probe": "a", "host_facts": "b", "gpu_facts": "c"})
    assert cm["metadata"]["name"].startswith("cgpu-node-probe-") and set(cm["data"]) == {
        "node_probe.py", "host_facts.py", "gpu_facts.py"}
    assert node_probe.configmap("ns", {"node_probe": "a2", "host_facts": "b", "gpu_facts": "c"})["metadata"]["name"] \
        != cm["metadata"]["name"]
    pod = node_probe.pod("worker-0", "ns", "img", cm["metadata"]["name"], "run1", ["/etc/x"])
    spec = pod["spec"]
    assert spec["nodeName"] == "worker-0" and spec["hostPID"] and spec["restartPolicy"] == "Never"
    container = spec["containers"][0]
    assert container["securityContext"]["privileged"]
    assert container["command"][-2:] == ["--file", "/etc/x"]
    assert {"name": "host", "mountPath": "/host", "readOnly": True} in container["volumeMounts"]
    items = spec["volumes"][1]["configMap"]["items"]
    assert {"key": "host_facts.py",
            "path": "ansible_collections/confidential/gpu/plugins/module_utils/host_facts.py"} in items
    long = node_probe.pod_name("n" * 80)
    assert len(long) <= 63 and long != node_probe.pod_name("n" * 81)


# -- facts kept on the node, keyed by what they depend on -------------------------------------------


def node(boot="boot-1", capacity=None, annotations=None):
    return {"metadata": {"name": "worker-0", "annotations": annotations or {}},
            "status": {"nodeInfo": {"bootID": boot}, "capacity": capacity or {"cpu": "8"}}}


def test_cache_key_follows_boot_id_gpu_resources_and_code():
    key = node_probe.cache_key(node(), "code-a")
    assert key == node_probe.cache_key(node(capacity={"cpu": "16"}), "code-a")  # not what the probe reads
    assert key != node_probe.cache_key(node(boot="boot-2"), "code-a")  # a reboot
    # the GPU operator binds the GPUs to vfio-pci without a reboot; its device plugin then advertises them
    assert key != node_probe.cache_key(node(capacity={"nvidia.com/GH100_H100_PCIE": "1"}), "code-a")
    assert key != node_probe.cache_key(node(), "code-b")  # another probe version
    assert node_probe.cache_key({"metadata": {"name": "x"}, "status": {}}, "code-a") is None  # no bootID: never cached


def test_cached_facts_round_trip_and_files():
    facts = {"tee": {"type": "tdx"}, "files": {"/etc/a": "x"}}
    key = node_probe.cache_key(node(), "code")
    annotation = node_probe.cache_annotation(key, facts)
    cached = node(annotations={node_probe.CACHE_ANNOTATION: annotation})
    assert node_probe.cached_facts(cached, key, ["/etc/a"]) == facts
    assert node_probe.cached_facts(cached, key, []) == dict(facts, files={})  # only the files asked for
    assert node_probe.cached_facts(cached, key, ["/etc/b"]) is None  # a file it never read
    assert node_probe.cached_files(cached) == ["/etc/a"]
    rebooted = node_probe.cache_key(node(boot="boot-2"), "code")
    assert node_probe.cached_facts(cached, rebooted, ["/etc/a"]) is None
    assert node_probe.cached_facts(node(annotations={node_probe.CACHE_ANNOTATION: "{not json"}), key, []) is None
    assert node_probe.cached_facts(node(), key, []) is None
    assert node_probe.cached_facts(cached, None, []) is None


def test_code_digest_changes_with_the_sources():
    assert node_probe.code_digest({"a": "1"}) == node_probe.code_digest({"a": "1"})
    assert node_probe.code_digest({"a": "1"}) != node_probe.code_digest({"a": "2"})
    assert node_probe.configmap("ns", {m: "x" for m in node_probe.SOURCE_MODULES})["metadata"]["name"].endswith(
        node_probe.code_digest({m: "x" for m in node_probe.SOURCE_MODULES}))
