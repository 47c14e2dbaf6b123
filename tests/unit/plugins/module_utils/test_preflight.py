"""preflight: every verdict from API objects written by hand, and the overall status."""

import pytest

from ansible_collections.confidential.gpu.plugins.module_utils import preflight as pf

P = "feature.node.kubernetes.io/"
TDX = {P + "cpu-security.tdx.enabled": "true", "intel.feature.node.kubernetes.io/tdx": "true"}
SNP = {P + "cpu-security.sev.snp.enabled": "true", "amd.feature.node.kubernetes.io/snp": "true"}


def node(name, vendor="Intel", roles=("worker",), gpu=True, extra=None, nfd=True, unschedulable=False):
    labels = {f"node-role.kubernetes.io/{r}": "" for r in roles}
    annotations = {}
    if nfd:
        labels[P + "cpu-model.vendor_id"] = vendor
        annotations["nfd.node.kubernetes.io/feature-labels"] = "cpu-model.vendor_id"
        if gpu:
            labels[P + "pci-10de.present"] = "true"
    labels.update(extra or {})
    return {"metadata": {"name": name, "labels": labels, "annotations": annotations},
            "spec": {"unschedulable": unschedulable}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


def feature(node_name, *devices):
    return {"metadata": {"name": node_name, "labels": {"nfd.node.kubernetes.io/node-name": node_name}},
            "spec": {"features": {"instances": {"pci.device": {"elements": [
                {"attributes": {"vendor": "10de", "device": d, "class": "0302"}} for d in devices] + [
                {"attributes": {"vendor": "8086", "device": "1572", "class": "0200"}}]}}}}}


def views(*nodes):
    return [pf.nfd_labels.node_view(n) for n in nodes]


def catalog(name, state="READY"):
    return {"metadata": {"name": name}, "status": {"connectionState": {"lastObservedState": state}}}


def manifest(name, source):
    return {"metadata": {"name": name}, "status": {"catalogSource": source}}


GOOD_MANIFESTS = [manifest(o["name"], o["source"]) for o in pf.operators_for()]


def host(tee="tdx", enabled=True, markers=("tdx_keyid_range", "tdx_module_initialized"), verdicts=()):
    return {"cpu": {"vendor": "intel" if tee == "tdx" else "amd", "flags": []},
            "tee": {"type": tee, "enabled": enabled}, "kernel": {"args": {"nohibernate": ""}, "cmdline": ""},
            "dmesg": {"available": True, "markers": [{"id": m} for m in markers]},
            "iommu": {"enabled": True, "groups": 10}, "modules": ["vsock_loopback"], "verdicts": list(verdicts)}


def evaluate(nodes, features=(), version="4.21.9", platform="BareMetal", topology="HighlyAvailable",
             catalogs=None, manifests=None, groups=(), pdbs=(), egress=None, host_facts=None):
    return pf.evaluate(
        cluster_version={"spec": {"clusterID": "x"}, "status": {"history": [{"state": "Completed", "version": version}]}},
        infrastructure={"status": {"platformStatus": {"type": platform}, "controlPlaneTopology": topology}},
        nodes=nodes, node_features=list(features),
        catalogs=[catalog("redhat-operators"), catalog("certified-operators")] if catalogs is None else catalogs,
        manifests=GOOD_MANIFESTS if manifests is None else manifests, operator_groups=list(groups), pdbs=list(pdbs),
        egress=egress if egress is not None else {"nras": "reachable", "intel_pcs": "reachable", "amd_kds": "offline"},
        host_facts=host_facts if host_facts is not None else {n["metadata"]["name"]: host() for n in nodes})


def by_name(report):
    return {v["name"]: v for v in report["verdicts"]}


def masters():
    return [node(f"master-{i}", roles=("master", "control-plane"), gpu=False) for i in range(3)]


def test_a_ready_tdx_cluster_passes_everything():
    workers = [node(f"worker-{i}", extra=TDX) for i in range(3)]
    report = evaluate(masters() + workers, [feature(f"worker-{i}", "2331") for i in range(3)])
    assert report["overall"] == "pass", [v for v in report["verdicts"] if v["status"] != "pass"]
    assert [v["name"] for v in report["verdicts"]] == [
        "openshift_version", "platform", "nfd_labels", "tee_type", "gpus", "tee_gpu_nodes", "host_firmware",
        "drain_capacity",
        "operator_groups", "catalog_sources", "egress"]
    assert report["nodes"][0]["gpu_devices"] == ["2331"]
    assert all(v["fix"] == "" for v in report["verdicts"])


@pytest.mark.parametrize("version,status", [("4.21.9", "pass"), ("4.21.10", "pass"), ("4.22.0", "pass"),
                                            ("4.21.8", "fail"), ("4.20.8", "fail"), (None, "fail")])
def test_openshift_version(version, status):
    assert pf.check_openshift_version(version)["status"] == status


def test_host_firmware():
    workers = views(node("w0", extra=TDX), node("w1", extra=TDX))
    assert pf.check_host_firmware(workers, {"w0": host(), "w1": host()})["status"] == "pass"
    missing = pf.check_host_firmware(workers, {})
    assert missing["status"] == "warn" and "confidential.gpu.node_probe" in missing["fix"]
    partial = pf.check_host_firmware(workers, {"w0": host()})
    assert partial["status"] == "warn" and partial["details"] == ["w1: not probed"]
    # TDX off in the BIOS: no key IDs reserved at boot, so no kernel argument can help.
    off = pf.check_host_firmware(workers, {"w0": host(), "w1": host(enabled=False, markers=())})
    assert off["status"] == "fail"
    assert off["details"][0].startswith("w1: TDX is disabled in the firmware") and "BIOS:" in off["details"][0]
    vm = pf.check_host_firmware(workers, {"w0": host(), "w1": host(verdicts=[
        {"id": "virtualized_host", "severity": "error", "message": "This host is a virtual machine.", "fix": "Use metal."}])})
    assert vm["status"] == "fail" and "w1: This host is a virtual machine. Fix: Use metal." in vm["details"]


def test_old_version_says_how_to_upgrade():
    result = pf.check_openshift_version("4.20.8")
    assert "older than 4.21.9" in result["summary"] and "oc adm upgrade --to=4.21.9" in result["fix"]


@pytest.mark.parametrize("platform,nodes,status", [
    ("BareMetal", [node("w")], "pass"),
    ("None", [node("w")], "pass"),
    ("None", [node("w", nfd=False)], "warn"),
    ("AWS", [node("w")], "fail"),
    ("None", [node("w", extra={P + "cpu-cpuid.HYPERVISOR": "true"})], "fail"),
    ("BareMetal", [node("w", extra={P + "cpu-cpuid.HYPERVISOR": "true"})], "fail"),
])
def test_platform(platform, nodes, status):
    assert pf.check_platform(platform, views(*nodes))["status"] == status


def test_without_nfd_hardware_checks_warn_and_say_so():
    report = evaluate(masters() + [node("worker-0", nfd=False)])
    checks = by_name(report)
    for name in ("nfd_labels", "tee_type", "gpus", "tee_gpu_nodes"):
        assert checks[name]["status"] == "warn", name
        assert "confidential.gpu.nfd" in checks[name]["fix"]
    assert report["overall"] == "warn"


def test_no_target_node_fails():
    assert pf.check_nfd([], "node-role.kubernetes.io/worker")["status"] == "fail"


def test_two_vendors_fail():
    result = pf.check_tee(views(node("a", "Intel"), node("b", "AMD", extra=SNP)), [])
    assert result["status"] == "fail" and "AMD and Intel" in result["summary"]


def test_two_tee_types_fail():
    nodes = views(node("a", "Intel", extra=TDX), node("b", "Intel", extra=SNP))
    result = pf.check_tee(nodes, nodes)
    assert result["status"] == "fail"  # b's SNP label contradicts its Intel CPU first
    assert "b has an Intel CPU but carries SNP" in result["details"][0]


def test_tee_not_enabled_yet_warns_with_the_vendor_fix():
    intel = pf.check_tee(views(node("a")), [])
    assert intel["status"] == "warn" and "kvm_intel.tdx=1" in intel["fix"]
    amd = pf.check_tee(views(node("a", "AMD")), [])
    assert amd["status"] == "warn" and "SEV-SNP" in amd["fix"]
    partly = pf.check_tee(views(node("a", extra=TDX), node("b")), [])
    assert partly["status"] == "warn" and partly["summary"] == "TDX enabled on 1 of 2 target nodes"


def test_tee_pass():
    assert pf.check_tee(views(node("a", "AMD", extra=SNP)), [])["status"] == "pass"


@pytest.mark.parametrize("devices,status,text", [
    (["2331"], "pass", "H100 PCIe (2331) tested by Red Hat"),
    (["2bb5", "2bb5"], "pass", "RTX PRO 6000 Blackwell Server Edition (2bb5) tested"),
    (["2335"], "warn", "H200 SXM 141GB (2335) CC-capable, listed upstream only"),
    (["20b5"], "fail", "A100 PCIe 80GB (20b5) has no confidential-computing mode"),
    (["2331", "20b5"], "fail", "A100"),
    (["ffff"], "fail", "unknown NVIDIA device (ffff) has no confidential-computing mode"),
])
def test_gpus_against_the_support_matrix(devices, status, text):
    result = pf.check_gpus(views(node("w")), pf.node_gpus([feature("w", *devices)]))
    assert result["status"] == status
    assert any(text in d for d in result["details"]), result["details"]


def test_gpu_label_without_node_feature_warns():
    result = pf.check_gpus(views(node("w")), {})
    assert result["status"] == "warn" and "model unknown" in result["details"][0]


def test_no_gpu_fails():
    assert pf.check_gpus(views(node("w", gpu=False)), {})["status"] == "fail"


def test_tee_gpu_nodes():
    assert pf.check_tee_gpu_nodes(views(node("a", extra=TDX)), {})["status"] == "pass"
    assert pf.check_tee_gpu_nodes(views(node("a")), {})["status"] == "warn"
    assert pf.check_tee_gpu_nodes(views(node("a", extra=TDX, gpu=False)), {})["status"] == "fail"
    vm = node("a", extra={P + "cpu-cpuid.HYPERVISOR": "true"})
    assert pf.check_tee_gpu_nodes(views(vm), {})["status"] == "fail"


def pdb(name, expected, allowed):
    return {"metadata": {"name": name, "namespace": "app"},
            "status": {"expectedPods": expected, "disruptionsAllowed": allowed, "currentHealthy": expected,
                       "desiredHealthy": expected}}


def test_drain_capacity():
    workers = [node(f"w{i}") for i in range(2)]
    assert pf.check_drain("HighlyAvailable", masters() + workers, [])["status"] == "pass"
    assert pf.check_drain("HighlyAvailable", masters() + workers, [pdb("ok", 2, 1), pdb("empty", 0, 0)])["status"] == "pass"
    blocked = pf.check_drain("HighlyAvailable", masters() + workers, [pdb("db", 1, 0)])
    assert blocked["status"] == "fail" and "PodDisruptionBudget app/db allows 0 disruptions" in blocked["details"][0]
    single = pf.check_drain("HighlyAvailable", masters() + workers[:1], [])
    assert single["status"] == "warn" and "one schedulable worker (w0)" in single["summary"]
    cordoned = pf.check_drain("HighlyAvailable", masters() + [node("w0"), node("w1", unschedulable=True)], [])
    assert cordoned["status"] == "warn"
    sno = pf.check_drain("SingleReplica", [node("sno-0", roles=("master", "worker"))], [])
    assert sno["status"] == "warn" and "single-node" in sno["summary"]


def test_foreign_operator_group_is_named():
    groups = [{"metadata": {"name": "global", "namespace": "openshift-nfd"}},
              {"metadata": {"name": "nvidia-gpu-operator-group", "namespace": "nvidia-gpu-operator"}}]
    result = pf.check_operator_groups(groups, pf.operators_for())
    assert result["status"] == "fail"
    assert result["details"] == ["namespace openshift-nfd (for nfd) has OperatorGroup global; the collection manages "
                                 "openshift-nfd"]
    adopted = pf.check_operator_groups(groups, pf.operators_for({"nfd": {"operator_group": "global"}}))
    assert adopted["status"] == "pass"


def test_catalogs():
    ops = pf.operators_for()
    bad = pf.check_catalogs([catalog("redhat-operators", "TRANSIENT_FAILURE")], GOOD_MANIFESTS, ops)
    assert bad["status"] == "fail"
    assert bad["details"] == ["CatalogSource redhat-operators is TRANSIENT_FAILURE",
                              "CatalogSource certified-operators does not exist"]
    missing = pf.check_catalogs([catalog("redhat-operators"), catalog("certified-operators")], GOOD_MANIFESTS[:1], ops)
    assert missing["status"] == "fail" and "package gpu-operator-certified is not served by certified-operators" in missing["details"]


def test_egress_needs_follow_the_cpu_vendor():
    assert pf.egress_needed(views(node("a"))) == ["nras", "intel_pcs"]
    assert pf.egress_needed(views(node("a", "AMD"))) == ["nras", "amd_kds"]
    assert pf.egress_needed(views(node("a", nfd=False))) == ["nras", "intel_pcs", "amd_kds"]


def test_egress_declared_undeclared_blocked():
    intel = views(node("a"))
    assert pf.check_egress(intel, {"nras": "offline", "intel_pcs": "reachable"})["status"] == "pass"
    undeclared = pf.check_egress(intel, {"nras": "reachable"})
    assert undeclared["status"] == "warn" and "preflight_egress: {intel_pcs: reachable}" in undeclared["fix"]
    assert pf.check_egress(intel, {"nras": "blocked", "intel_pcs": "reachable"})["status"] == "fail"


def test_summary_lines_show_fixes_only_for_what_did_not_pass():
    report = evaluate(masters() + [node("worker-0")], [feature("worker-0", "2331")], version="4.20.8")
    lines = pf.summary_lines(report)
    assert lines[0].startswith("confidential GPU preflight: FAIL (")
    assert "[FAIL] OpenShift version: OpenShift 4.20.8 is older than 4.21.9" in lines[1]
    assert lines[2].startswith("       fix: upgrade the cluster")
    assert "[PASS] Bare metal: platform BareMetal" in lines


def test_overall():
    assert pf.overall([{"status": "pass"}, {"status": "warn"}]) == "warn"
    assert pf.overall([{"status": "fail"}, {"status": "warn"}]) == "fail"
    assert pf.overall([{"status": "pass"}]) == "pass"
