"""Issue 15 item 7: a hardware profile written from a live cluster (``python -m twin profile-from-cluster``).

The live cluster here is a twin with NFD installed by the collection's nfd role: the profile read from its API
must give back the profile it was started with, in every field the API shows, and list the rest.
"""

import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO
from twin import from_cluster, profile as profiles

pytestmark = [pytest.mark.twin]

SHOWN = ("name", "roles", "memory_gib")
SHOWN_CPU = ("vendor", "family", "model_id", "cores")


def _gpus(node):
    counts = {}
    for gpu in node.get("gpus") or []:
        counts[gpu["device_id"]] = counts.get(gpu["device_id"], 0) + 1
    return counts


def test_a_cluster_without_nfd_gives_what_the_nodes_show_and_lists_the_rest():
    node = {"metadata": {"name": "w0", "labels": {"node-role.kubernetes.io/worker": ""}},
            "status": {"capacity": {"cpu": "96", "memory": "263921700Ki"}}}
    got = from_cluster.profile_from({"nodes": [node], "infrastructure": {"status": {
        "platformStatus": {"type": "BareMetal"}, "apiServerURL": "https://api.prod.corp.example:6443"}}})
    assert got["openshift"] == {"platform": "BareMetal", "cluster_name": "prod", "base_domain": "corp.example"}
    assert got["nodes"] == [{"name": "w0", "roles": ["worker"], "cpu": {"cores": 96}, "memory_gib": 252}]
    assert "w0: cpu.vendor and tee (no NodeFeature with cpu.model; is NFD installed?)" in got["unknown"]
    assert "openshift.version (no ClusterVersion)" in got["unknown"]
    profiles.expand(got)  # the twin takes it, its defaults standing in


def test_the_profile_read_from_a_twin_with_nfd_is_the_one_it_was_started_with(twin_factory, run_playbook, tmp_path):
    handle = twin_factory("snp-rtx-pro-6000", name="from-cluster")
    play = [{"name": "NFD", "hosts": "localhost", "gather_facts": False,
             "tasks": [{"name": "NFD", "ansible.builtin.include_role": {"name": "confidential.gpu.nfd"}}]}]
    run = run_playbook(yaml.safe_dump(play), env=handle.env())
    assert run.rc == 0, run.stdout[-4000:]
    out = tmp_path / "profile.yaml"
    proc = subprocess.run([sys.executable, "-m", "twin", "profile-from-cluster", "--kubeconfig",
                           str(handle.state / "admin.kubeconfig"), "-o", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    print(proc.stderr)
    got, want = profiles.load(str(out)), profiles.load_state(handle.state)
    for key in ("version", "channel", "platform", "cluster_name", "base_domain", "apps_domain"):
        assert got["openshift"][key] == want["openshift"][key], key
    assert [n["name"] for n in got["nodes"]] == sorted(n["name"] for n in want["nodes"])
    by_name = {n["name"]: n for n in want["nodes"]}
    for node in got["nodes"]:
        expected = by_name[node["name"]]
        assert {k: node[k] for k in SHOWN} == {k: expected[k] for k in SHOWN}
        assert {k: node["cpu"][k] for k in SHOWN_CPU} == {k: expected["cpu"][k] for k in SHOWN_CPU}
        assert node["tee"]["type"] == expected["tee"]["type"], node["name"]
        assert _gpus(node) == _gpus(expected), node["name"]
    # The twin's GPU operator is not installed: no label names the GPUs, and the profile says so.
    assert any("gpus model of 0x2bb5" in line for line in got["unknown"]), got["unknown"]


def test_a_tdx_host_in_cc_mode_after_the_bring_up():
    """What a brought-up TDX worker shows: TDX enabled by the kernel, the H100 named by GFD and in CC mode."""
    node = {"metadata": {"name": "w0", "labels": {"node-role.kubernetes.io/worker": "",
                                                  "nvidia.com/gpu.product": "NVIDIA-H100-PCIe",
                                                  "nvidia.com/cc.mode.state": "on"}},
            "status": {"capacity": {"cpu": "64", "memory": "512Gi"}}}
    features = {"metadata": {"name": "w0", "labels": {"nfd.node.kubernetes.io/node-name": "w0"}}, "spec": {"features": {
        "attributes": {"cpu.model": {"elements": {"vendor_id": "Intel", "family": "6", "id": "207"}},
                       "cpu.security": {"elements": {"tdx.enabled": "true", "tdx.total_keys": "63"}}},
        "instances": {"pci.device": {"elements": [{"attributes": {"class": "0302", "vendor": "10de", "device": "2331"}}]}}}}}
    (got,) = from_cluster.profile_from({"nodes": [node], "nodefeatures": [features]})["nodes"]
    assert got == {"name": "w0", "roles": ["worker"], "cpu": {"vendor": "intel", "family": 6, "model_id": 207, "cores": 64},
                   "memory_gib": 512, "tee": {"type": "tdx", "bios_enabled": True, "total_keys": 63},
                   "gpus": [{"model": "NVIDIA H100 PCIe", "device_id": "0x2331", "count": 1, "cc_capable": True}]}
