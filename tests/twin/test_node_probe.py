"""The node probe end to end: the module starts pods, the kubelet twin runs the probe's real code
against each node's simulated host, the module returns host_facts per node."""

import pytest

pytestmark = pytest.mark.twin

PROBE = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Probe
      confidential.gpu.node_probe:
        nodes: {nodes}
        files: [/etc/modules-load.d/vsock.conf]
      register: probe
"""


def probe(run_playbook, twin, nodes, check=False):
    run = run_playbook(PROBE.format(nodes=list(nodes)), env=twin.env(), check=check)
    assert run.rc == 0, run.stdout[-4000:] + run.stderr[-2000:]
    return run.result("Probe")


def test_probe_reports_host_facts_per_node(twin, run_playbook):
    result = probe(run_playbook, twin, ["worker-0", "worker-1"])
    assert result["changed"] is False
    assert sorted(result["nodes"]) == ["worker-0", "worker-1"]
    facts = result["nodes"]["worker-0"]
    assert facts["cpu"]["vendor"] == "intel"
    assert facts["tee"]["type"] == "tdx"
    assert facts["virtualized"] is False
    assert [g["model"] for g in facts["gpus"]] and facts["gpus"][0]["device_id"] == "0x2331"
    # the kernel log came from /dev/kmsg: the BIOS reserved TDX key IDs
    assert facts["dmesg"]["source"] == "/dev/kmsg"
    assert any(m["id"] == "tdx_keyid_range" for m in facts["dmesg"]["markers"])
    assert "kvm_intel" in facts["modules"]
    assert facts["files"] == {"/etc/modules-load.d/vsock.conf": None}


def test_probe_leaves_nothing_behind_and_check_mode_writes_nothing(twin, run_playbook):
    from tests.bench.writes import describe, real_writes
    from twin.kube import path

    node = "worker-2"
    twin.kube.merge_patch(path("v1", "nodes", node), {"metadata": {"annotations": {"confidential.gpu/host-facts": None}}})
    start = twin.audit.offset()
    result = probe(run_playbook, twin, [node], check=True)
    assert result["nodes"] == {} and result["would_probe"] == [node]
    assert [describe(e) for e in real_writes(twin.audit.events(start))] == []

    result = probe(run_playbook, twin, [node])
    assert result["probed"] == [node] and result["cached"] == []
    pods = twin.kube.list(path("v1", "pods", namespace="confidential-gpu-probe"))["items"]
    assert [p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")] == []
    cms = twin.kube.list(path("v1", "configmaps", namespace="confidential-gpu-probe"),
                         labelSelector="app.kubernetes.io/name=cgpu-node-probe")["items"]
    assert cms == []

    # The same boot: the facts kept on the node answer, in check mode too, and nothing is written.
    for check in (False, True):
        start = twin.audit.offset()
        again = probe(run_playbook, twin, [node], check=check)
        assert again["cached"] == [node] and again["probed"] == [] and again["would_probe"] == []
        assert again["nodes"][node]["tee"] == result["nodes"][node]["tee"]
        assert again["nodes"][node]["files"] == {"/etc/modules-load.d/vsock.conf": None}
        assert [describe(e) for e in real_writes(twin.audit.events(start))] == []

    # A reboot (new boot ID) probes again.
    twin.kube.merge_patch(path("v1", "nodes", node) + "/status", {"status": {"nodeInfo": {"bootID": "rebooted"}}})
    assert probe(run_playbook, twin, [node])["probed"] == [node]
