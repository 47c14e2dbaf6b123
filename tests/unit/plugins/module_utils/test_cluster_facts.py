"""cluster_facts: the verdict cluster_info gives, from API objects written out by hand."""

import pytest

from ansible_collections.confidential.gpu.plugins.module_utils import cluster_facts as cf


def cluster_version(version, history=True):
    status = {"desired": {"version": version}}
    if history:
        status["history"] = [{"state": "Partial", "version": "9.9.9"}, {"state": "Completed", "version": version}]
    return {"status": status}


def node(name, labels=None, pgpu=None, ready=True, roles=("worker",)):
    all_labels = {f"node-role.kubernetes.io/{r}": "" for r in roles}
    all_labels.update(labels or {})
    status = {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}], "allocatable": {}}
    if pgpu is not None:
        status["allocatable"]["nvidia.com/pgpu"] = str(pgpu)
    return {"metadata": {"name": name, "labels": all_labels}, "status": status}


READY_NODE_LABELS = {
    "feature.node.kubernetes.io/cpu-security.tdx.enabled": "true",
    "intel.feature.node.kubernetes.io/tdx": "true",
    "feature.node.kubernetes.io/pci-10de.present": "true",
    "nvidia.com/cc.mode.state": "on",
    "nvidia.com/cc.ready.state": "true",
}
CSVS = [{"metadata": {"name": n, "namespace": ns}, "spec": {"version": v}, "status": {"phase": "Succeeded"}}
        for n, ns, v in [("nfd.4.21.0-202610", "openshift-nfd", "4.21.0"),
                         ("gpu-operator-certified.v26.3.3", "nvidia-gpu-operator", "26.3.3"),
                         ("sandboxed-containers-operator.v1.12.1", "openshift-sandboxed-containers-operator", "1.12.1"),
                         ("trustee-operator.v1.2.1", "trustee-operator-system", "1.2.1")]]
RUNTIME_CLASSES = [{"metadata": {"name": "kata-cc"}, "handler": "kata-tdx"},
                   {"metadata": {"name": "kata-cc-nvidia-gpu"}, "handler": "kata-tdx-nvidia-gpu",
                    "scheduling": {"nodeSelector": {"nvidia.com/cc.mode.state": "on"}},
                    "overhead": {"podFixed": {"cpu": "250m"}}}]
INFRA = {"status": {"platformStatus": {"type": "BareMetal"}, "controlPlaneTopology": "HighlyAvailable"}}


@pytest.mark.parametrize("text, expected", [
    ("4.21.9", (4, 21, 9)), ("4.21.0-rc.2", (4, 21, 0)), ("4.22", (4, 22, 0)), ("", None), (None, None), ("x.y", None),
])
def test_parse_version(text, expected):
    assert cf.parse_version(text) == expected


def test_version_is_the_last_completed_update_not_the_one_in_progress():
    cv = {"status": {"desired": {"version": "4.22.1"},
                     "history": [{"state": "Partial", "version": "4.22.1"}, {"state": "Completed", "version": "4.21.9"}]}}
    assert cf.openshift_version(cv) == "4.21.9"
    assert cf.openshift_version({"status": {"desired": {"version": "4.21.9"}}}) == "4.21.9"
    assert cf.openshift_version(None) is None


def test_a_ready_cluster_has_nothing_missing():
    facts = cf.summarize(cluster_version("4.21.9"), INFRA, [node("w0", READY_NODE_LABELS, pgpu=1)], CSVS, RUNTIME_CLASSES)
    assert facts["missing"] == []
    assert facts["ready_for_confidential_gpus"] is True
    assert facts["nodes"][0]["tee"] == ["tdx"]
    assert facts["nodes"][0]["pgpu_allocatable"] == 1
    assert [o["package"] for o in facts["operators"]] == [
        "gpu-operator-certified", "nfd", "sandboxed-containers-operator", "trustee-operator"]
    assert facts["runtime_classes"][1] == {
        "name": "kata-cc-nvidia-gpu", "handler": "kata-tdx-nvidia-gpu",
        "node_selector": {"nvidia.com/cc.mode.state": "on"}, "overhead": {"cpu": "250m"}}


def test_old_openshift_and_two_tee_types_are_named():
    snp = dict(READY_NODE_LABELS)
    del snp["feature.node.kubernetes.io/cpu-security.tdx.enabled"]
    del snp["intel.feature.node.kubernetes.io/tdx"]
    snp["amd.feature.node.kubernetes.io/snp"] = "true"
    facts = cf.summarize(cluster_version("4.21.8"), INFRA,
                         [node("w0", READY_NODE_LABELS, pgpu=1), node("w1", snp, pgpu=1)], CSVS, RUNTIME_CLASSES)
    assert facts["missing"] == [
        "OpenShift 4.21.8 is older than 4.21.9, the first release with confidential GPU support",
        "nodes show 2 TEE types (snp, tdx); a cluster supports one",
    ]


def test_plain_kubernetes_and_a_cloud_platform():
    facts = cf.summarize(None, {"status": {"platform": "AWS"}}, [node("n")], [], [])
    assert facts["openshift_version"] is None
    assert facts["missing"][0].startswith("OpenShift version unknown")
    assert "platform is AWS: confidential GPUs with OSC need bare-metal TEE hosts" in facts["missing"]
    assert "runtime class kata-cc-nvidia-gpu does not exist" in facts["missing"]


def test_gpus_not_in_cc_mode_and_failed_csvs_do_not_count():
    labels = dict(READY_NODE_LABELS, **{"nvidia.com/cc.mode.state": "failed"})
    csvs = [dict(c) for c in CSVS]
    csvs[0] = dict(csvs[0], status={"phase": "Failed"})
    facts = cf.summarize(cluster_version("4.21.9"), INFRA, [node("w0", labels, pgpu=1)], csvs, RUNTIME_CLASSES)
    assert facts["missing"] == [
        "no node advertises nvidia.com/pgpu with its GPUs in CC mode (nvidia.com/cc.mode.state=on)",
        "operator Node Feature Discovery (nfd) is not installed",
    ]


def test_olm_copied_csvs_are_not_installs():
    copied = dict(CSVS[0], status={"phase": "Succeeded", "reason": "Copied"})
    assert cf.operator_facts([copied]) == []
