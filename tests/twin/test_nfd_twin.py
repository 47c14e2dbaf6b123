"""The NFD twin labels nodes from their simulated hardware, evaluates NodeFeatureRules, follows reboots.

Upstream: openshift/node-feature-discovery release-4.21 (NFD v0.18) and openshift/cluster-nfd-operator
release-4.21 (see twin/controllers/nfd.py for the files and functions).
"""

import pytest
from olm_helpers import CSVS, operator_group, subscribe, wait_for

from twin import profile as profiles
from twin.cluster import Cluster
from twin.kube import path

pytestmark = [pytest.mark.twin, pytest.mark.slow]

PROFILE = {
    "name": "nfd-mixed",
    "description": "one node of each kind NFD must tell apart",
    "openshift": {"version": "4.21.9", "platform": "BareMetal"},
    "nodes": [
        {"name": "master-0", "roles": ["control-plane", "master"], "cpu": {"vendor": "intel"}},
        {"name": "worker-tdx", "cpu": {"vendor": "intel"}, "tee": {"type": "tdx"},
         "gpus": [{"model": "NVIDIA H100 PCIe", "device_id": "0x2331", "cc_capable": True}]},
        {"name": "worker-snp", "cpu": {"vendor": "amd"}, "tee": {"type": "snp"},
         "gpus": [{"model": "NVIDIA RTX PRO 6000 Blackwell Server Edition", "device_id": "0x2bb5", "cc_capable": True}]},
        {"name": "worker-vm", "cpu": {"vendor": "intel"}, "virtualized": True},
        # TDX on from the first boot, on a kernel whose misc cgroup reports no TDX keys.
        {"name": "worker-nokeys", "cpu": {"vendor": "intel"}, "tee": {"type": "tdx", "total_keys": None},
         "kernel_cmdline": "BOOT_IMAGE=(hd0,gpt3)/ostree/rhcos/vmlinuz rw kvm_intel.tdx=1 root=UUID=twin"},
    ],
    "timings": {"reboot": 0.5, "nfd_relabel": 0.2},
}

NFD = "openshift-nfd"
PREFIX = "feature.node.kubernetes.io/"

# The OSC rule's forms (operators.md §3.3), plus one rule with a misspelled matcher.
TEE_RULE = {
    "apiVersion": "nfd.openshift.io/v1alpha1", "kind": "NodeFeatureRule",
    "metadata": {"name": "tee-features", "namespace": NFD},
    "spec": {"rules": [
        {"name": "runtime.kata", "labels": {PREFIX + "runtime.kata": "true"}, "matchAny": [
            {"matchFeatures": [
                {"feature": "cpu.cpuid", "matchExpressions": {"SSE42": {"op": "Exists"}, "VMX": {"op": "Exists"}}},
                {"feature": "kernel.loadedmodule", "matchExpressions": {"kvm": {"op": "Exists"}, "kvm_intel": {"op": "Exists"}}}]},
            {"matchFeatures": [
                {"feature": "cpu.cpuid", "matchExpressions": {"SSE42": {"op": "Exists"}, "SVM": {"op": "Exists"}}},
                {"feature": "kernel.loadedmodule", "matchExpressions": {"kvm": {"op": "Exists"}, "kvm_amd": {"op": "Exists"}}}]}]},
        {"name": "intel.tdx", "labels": {"intel.feature.node.kubernetes.io/tdx": "true"},
         "extendedResources": {"tdx.intel.com/keys": "@cpu.security.tdx.total_keys"},
         "matchFeatures": [{"feature": "cpu.cpuid", "matchExpressions": {"VMX": {"op": "Exists"}}},
                           {"feature": "cpu.security", "matchExpressions": {"tdx.enabled": {"op": "Exists"}}}]},
        {"name": "amd.sev-snp", "labels": {"amd.feature.node.kubernetes.io/snp": "true"},
         "extendedResources": {"sev-snp.amd.com/esids": "@cpu.security.sev.encrypted_state_ids"},
         "matchFeatures": [{"feature": "cpu.cpuid", "matchExpressions": {"SVM": {"op": "Exists"}}},
                           {"feature": "cpu.security", "matchExpressions": {"sev.snp.enabled": {"op": "Exists"}}}]},
        {"name": "nvidia", "labels": {"nvidia.com/allowed": "true", PREFIX + "nvidia.h100": "true",
                                      "node-role.kubernetes.io/not-allowed": "true"},
         "matchFeatures": [{"feature": "pci.device", "matchExpressions": {
             "vendor": {"op": "In", "value": ["10de"]}, "device": {"op": "In", "value": ["2331"]}}}]},
    ]},
}
MATCH_ALL_BUG = {
    "apiVersion": "nfd.openshift.io/v1alpha1", "kind": "NodeFeatureRule",
    "metadata": {"name": "ibm-se", "namespace": NFD},
    "spec": {"rules": [{"name": "ibm.se", "labels": {"ibm.feature.node.kubernetes.io/se": "true"},
                        "matchAll": [{"feature": "cpu.cpuid", "matchExpressions": {"S390": {"op": "Exists"}}}]}]},
}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, twin_crds):
    cluster = Cluster("test-nfd-mixed", tmp_path_factory.mktemp("twin-nfd"))
    cluster.up(profiles.expand(PROFILE), conformance=twin_crds, log=lambda msg: None)
    try:
        yield cluster.kube("admin")
    finally:
        assert cluster.down() == []


def nodes_where(kube, predicate, timeout=30):
    return wait_for(kube, "v1", "nodes", None, lambda items: predicate({n["metadata"]["name"]: n for n in items}),
                    timeout=timeout)


def labels(node, prefix=""):
    return {k: v for k, v in node["metadata"]["labels"].items() if k.startswith(prefix) and "cpu-cpuid" not in k}


def test_nfd_labels_from_hardware_and_rules_and_follows_a_reboot(mixed):
    kube = mixed
    kube.create(path("v1", "namespaces"), {"metadata": {"name": NFD}})
    operator_group(kube, NFD)
    subscribe(kube, NFD, "nfd", approval="Automatic")
    wait_for(kube, *CSVS, NFD, lambda items: any(c.get("status", {}).get("phase") == "Succeeded" for c in items))
    # No instance, no nfd-worker: nothing is labelled yet.
    assert not any("feature.node.kubernetes.io/cpu-model.vendor_id" in n["metadata"]["labels"]
                   for n in kube.list(path("v1", "nodes"))["items"])
    kube.create(path("nfd.openshift.io/v1", "nodefeaturediscoveries", namespace=NFD), {
        "apiVersion": "nfd.openshift.io/v1", "kind": "NodeFeatureDiscovery", "metadata": {"name": "nfd-instance"},
        "spec": {"operand": {"servicePort": 12000}, "workerConfig": {"configData": "sources: {}\n"}}})
    kube.create(path("nfd.openshift.io/v1alpha1", "nodefeaturerules", namespace=NFD), TEE_RULE)

    nodes = nodes_where(kube, lambda n: len(n) == 5 and all(
        PREFIX + "runtime.kata" in n[name]["metadata"]["labels"] for name in ("master-0", "worker-tdx", "worker-snp"))
        and "sev-snp.amd.com/esids" in n["worker-snp"]["status"]["capacity"]
        and PREFIX + "cpu-cpuid.HYPERVISOR" in n["worker-vm"]["metadata"]["labels"] and n)
    tdx, snp, vm = (labels(nodes[n]) for n in ("worker-tdx", "worker-snp", "worker-vm"))
    assert tdx[PREFIX + "cpu-model.vendor_id"] == "Intel" and snp[PREFIX + "cpu-model.vendor_id"] == "AMD"
    # workerConfig "sources: {}": the pci source's defaults (classes 03, 0b40, 12; label fields class, vendor).
    assert tdx[PREFIX + "pci-0302_10de.present"] == "true" and snp[PREFIX + "pci-0302_10de.present"] == "true"
    assert PREFIX + "pci-0302_10de.present" not in vm and PREFIX + "pci-10de.present" not in tdx
    # The default cpuid blacklist: SSE42, SGX and SGXLC are features for rules, never labels.
    tdx_all = nodes["worker-tdx"]["metadata"]["labels"]
    assert PREFIX + "cpu-cpuid.VMX" in tdx_all
    assert not {PREFIX + "cpu-cpuid." + f for f in ("SSE42", "SGX", "SGXLC", "POPCNT")} & set(tdx_all)
    # SGX EPC present: sgx.enabled is a label, sgx.epc only a feature (skipLabel).
    assert tdx[PREFIX + "cpu-security.sgx.enabled"] == "true" and PREFIX + "cpu-security.sgx.epc" not in tdx
    # SEV-SNP is on once the firmware enables it; TDX needs kvm_intel.tdx=1, which the kernel does not have yet.
    assert snp[PREFIX + "cpu-security.sev.snp.enabled"] == "true" and snp["amd.feature.node.kubernetes.io/snp"] == "true"
    assert nodes["worker-snp"]["status"]["capacity"]["sev-snp.amd.com/esids"] == "509"
    assert PREFIX + "cpu-security.tdx.enabled" not in tdx and "intel.feature.node.kubernetes.io/tdx" not in tdx
    # A VM has no VMX for its guests, hence no kata, and shows the hypervisor.
    assert nodes["worker-vm"]["metadata"]["labels"][PREFIX + "cpu-cpuid.HYPERVISOR"] == "true"
    assert PREFIX + "runtime.kata" not in vm
    # Rules: instance features (pci.device) match; only kubernetes.io namespaces other than NFD's are refused.
    assert tdx[PREFIX + "nvidia.h100"] == "true" and PREFIX + "nvidia.h100" not in snp
    assert tdx_all["nvidia.com/allowed"] == "true"
    assert "node-role.kubernetes.io/not-allowed" not in tdx_all
    instance = wait_for(kube, "nfd.openshift.io/v1", "nodefeaturediscoveries", NFD, lambda items: next(
        (i for i in items if any(c["type"] == "Available" and c["status"] == "True"
                                 for c in i.get("status", {}).get("conditions", []))), None))
    assert instance["metadata"]["name"] == "nfd-instance"
    features = kube.get(path("nfd.k8s-sigs.io/v1alpha1", "nodefeatures", "worker-tdx", NFD))
    devices = [e["attributes"] for e in features["spec"]["features"]["instances"]["pci.device"]["elements"]]
    assert {"2331", "159b"} <= {d["device"] for d in devices}  # every PCI device, not only GPUs
    assert all(set(d) >= {"class", "vendor", "device", "subsystem_vendor", "subsystem_device"} for d in devices)
    # nfd-worker's built-in labels travel in spec.labels: nfd-master takes them from there only.
    assert features["spec"]["labels"][PREFIX + "cpu-model.vendor_id"] == "Intel"
    # The operator copied our nfd.openshift.io rule into nfd.k8s-sigs.io (rules only, owned by the source).
    source = kube.get(path("nfd.openshift.io/v1alpha1", "nodefeaturerules", "tee-features", NFD))
    copied = kube.get(path("nfd.k8s-sigs.io/v1alpha1", "nodefeaturerules", "tee-features", NFD))
    assert copied["spec"] == source["spec"]
    assert [(r["kind"], r["uid"], r["controller"]) for r in copied["metadata"]["ownerReferences"]] == [
        ("NodeFeatureRule", source["metadata"]["uid"], True)]
    csv = next(c for c in kube.list(path(*CSVS, namespace=NFD))["items"] if c["status"]["phase"] == "Succeeded")
    assert sorted(c["name"] for c in csv["spec"]["customresourcedefinitions"]["owned"]) == [
        "nodefeaturediscoveries.nfd.openshift.io", "nodefeaturegroups.nfd.k8s-sigs.io",
        "nodefeaturerules.nfd.k8s-sigs.io", "nodefeaturerules.nfd.openshift.io", "nodefeatures.nfd.k8s-sigs.io",
        "nodefeatures.nfd.openshift.io"]

    # The MCO twin reboots the workers with kvm_intel.tdx=1: TDX is enabled and NFD relabels.
    kube.create(path("machineconfiguration.openshift.io/v1", "machineconfigs"), {
        "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfig",
        "metadata": {"name": "99-test-tdx", "labels": {"machineconfiguration.openshift.io/role": "worker"}},
        "spec": {"kernelArguments": ["kvm_intel.tdx=1", "nohibernate"]}})
    # nfd-master patches the extended resources (status) before the labels: wait for both.
    nodes = nodes_where(kube, lambda n: "tdx.intel.com/keys" in n.get("worker-tdx", {}).get(
        "status", {}).get("capacity", {}) and PREFIX + "cpu-security.tdx.enabled" in n["worker-tdx"]["metadata"][
        "labels"] and n, timeout=120)
    tdx = nodes["worker-tdx"]
    assert tdx["metadata"]["labels"][PREFIX + "cpu-security.tdx.enabled"] == "true"
    assert tdx["status"]["capacity"]["tdx.intel.com/keys"] == "63"
    assert "intel.feature.node.kubernetes.io/tdx" not in nodes["worker-vm"]["metadata"]["labels"]
    # No tdx.total_keys from the kernel: the TDX labels, but no tdx.intel.com/keys (the @ value is missing).
    nokeys = nodes["worker-nokeys"]
    assert nokeys["metadata"]["labels"][PREFIX + "cpu-security.tdx.enabled"] == "true"
    assert nokeys["metadata"]["labels"]["intel.feature.node.kubernetes.io/tdx"] == "true"
    assert "tdx.intel.com/keys" not in nokeys["status"]["capacity"]


def test_unknown_rule_field_is_ignored_so_the_rule_matches_every_node(mixed):
    """coco-pattern's matchAll bug: NFD drops the field it does not know; a rule without matchers matches all."""
    kube = mixed
    kube.create(path("nfd.openshift.io/v1alpha1", "nodefeaturerules", namespace=NFD), MATCH_ALL_BUG)
    nodes = nodes_where(kube, lambda n: len(n) == 5 and all(
        node["metadata"]["labels"].get("ibm.feature.node.kubernetes.io/se") == "true" for node in n.values()) and n)
    assert len(nodes) == 5
    # Deleting the rule: the garbage collector deletes the operator's copy, and NFD removes the labels it owned.
    kube.delete(path("nfd.openshift.io/v1alpha1", "nodefeaturerules", "ibm-se", NFD))
    nodes_where(kube, lambda n: len(n) == 5 and not any(
        "ibm.feature.node.kubernetes.io/se" in node["metadata"]["labels"] for node in n.values()) and n, timeout=90)
    assert kube.get_or_none(path("nfd.k8s-sigs.io/v1alpha1", "nodefeaturerules", "ibm-se", NFD)) is None


def test_master_reads_nodefeatures_and_upstream_rules_only(mixed):
    """nfd-master labels from NodeFeature objects (any of them, for the node) and nfd.k8s-sigs.io rules."""
    kube = mixed
    kube.create(path("nfd.k8s-sigs.io/v1alpha1", "nodefeatures", namespace=NFD), {
        "apiVersion": "nfd.k8s-sigs.io/v1alpha1", "kind": "NodeFeature",
        "metadata": {"name": "vendor-x", "labels": {"nfd.node.kubernetes.io/node-name": "worker-vm"}},
        "spec": {"labels": {"vendor-x.example/agent": "yes"},
                 "features": {"attributes": {"vendor.x": {"elements": {"level": "7", "version": "1.4.2"}}}}}})
    rules = [
        # Feature names ignore case. (Ge, Le and GeLe: the engine has them, the 4.21 CRDs' enum refuses them.)
        {"name": "ge", "labels": {"vendor-x.example/ge": "true"}, "matchFeatures": [
            {"feature": "VENDOR.X", "matchExpressions": {
                "level": {"op": "Gt", "value": ["6"]}, "version": {"op": "InRegexp", "value": ["^1[.]4"]}}}]},
        # Exists with a value is an error: the whole rule is skipped.
        {"name": "bad", "labels": {"vendor-x.example/bad": "true"}, "matchFeatures": [
            {"feature": "vendor.x", "matchExpressions": {"level": {"op": "Exists", "value": ["7"]}}}]},
        {"name": "le", "labels": {"vendor-x.example/le": "true"}, "matchFeatures": [
            {"feature": "vendor.x", "matchExpressions": {"level": {"op": "Lt", "value": ["7"]}}}]},
    ]
    kube.create(path("nfd.k8s-sigs.io/v1alpha1", "nodefeaturerules", namespace=NFD), {
        "apiVersion": "nfd.k8s-sigs.io/v1alpha1", "kind": "NodeFeatureRule", "metadata": {"name": "vendor-x"},
        "spec": {"rules": rules}})
    nodes = nodes_where(kube, lambda n: n.get("worker-vm", {}).get("metadata", {}).get("labels", {}).get(
        "vendor-x.example/ge") == "true" and n)
    vm = nodes["worker-vm"]["metadata"]["labels"]
    assert vm["vendor-x.example/agent"] == "yes"
    assert "vendor-x.example/bad" not in vm and "vendor-x.example/le" not in vm
    assert PREFIX + "cpu-model.vendor_id" in vm  # the worker's own NodeFeature still counts
    kube.delete(path("nfd.k8s-sigs.io/v1alpha1", "nodefeatures", "vendor-x", NFD))
    kube.delete(path("nfd.k8s-sigs.io/v1alpha1", "nodefeaturerules", "vendor-x", NFD))
    nodes_where(kube, lambda n: "vendor-x.example/agent" not in n["worker-vm"]["metadata"]["labels"]
                and "vendor-x.example/ge" not in n["worker-vm"]["metadata"]["labels"] and n)


def test_rule_engine_operators_as_upstream():
    """expression.go evaluateMatchExpression: Ge/Le/GeLe, type version, errors that skip a rule."""
    from twin.controllers import nfd

    features = {"flags": {"cpu.cpuid": {"elements": {"VMX": {}}}}, "instances": {},
                "attributes": {"kernel.version": {"elements": {"full": "5.14.0-570.el9_6.x86_64", "major": "5"}},
                               "vendor.x": {"elements": {"level": "7", "version": "1.4.2"}}}}

    def labels(*terms, any_of=None):
        rule = {"name": "r", "labels": {"x": "y"}, "matchFeatures": list(terms)}
        if any_of:
            rule["matchAny"] = [{"matchFeatures": [t]} for t in any_of]
        return nfd.evaluate_rules([{"metadata": {"name": "r"}, "spec": {"rules": [rule]}}], features)[0]

    def term(feature, **expressions):
        return {"feature": feature, "matchExpressions": expressions}

    hit = {PREFIX + "x": "y"}
    assert labels(term("vendor.x", level={"op": "Ge", "value": ["7"]})) == hit
    assert labels(term("vendor.x", level={"op": "Le", "value": ["6"]})) == {}
    assert labels(term("vendor.x", level={"op": "GeLe", "value": ["7", "9"]})) == hit
    assert labels(term("vendor.x", level={"op": "GeLe", "value": ["9", "7"]})) == {}  # value[0] >= value[1]: error
    assert labels(term("vendor.x", version={"op": "Gt", "type": "version", "value": ["1.4.1"]})) == hit
    assert labels(term("vendor.x", version={"op": "Gt", "value": ["1"]})) == {}  # "1.4.2" is not a number: error
    assert labels(term("Kernel.Version", major={"op": "In", "value": ["5"]})) == hit  # feature names ignore case
    assert labels(term("cpu.cpuid", VMX={"op": "Exists", "value": ["x"]})) == {}  # Exists with a value: error
    assert labels(term("cpu.cpuid", VMX={"op": "Exists"})) == hit
    assert labels(term("cpu.cpuid", VMX={"op": "IsTrue"})) == {}  # a flag has no value
    assert labels(term("cpu.cpuid", VMX={"op": "Bogus"})) == {}
    assert labels(term("no.such", a={"op": "DoesNotExist"})) == {}  # a feature the node lacks never matches
    # matchAny is evaluated first: an error there skips the rule even if matchFeatures would match.
    assert labels(term("cpu.cpuid", VMX={"op": "Exists"}), any_of=[term("vendor.x", level={"op": "In"})]) == {}


def test_gpu_nodes_are_recognised_by_every_label_the_gpu_operator_takes():
    """nfd-worker's default pci label fields are [class, vendor] (source/pci/pci.go newDefaultConfig, NFD v0.18): a GPU
    node gets pci-0302_10de.present (3D controller) or pci-0300_10de.present (VGA), not pci-10de.present, unless
    the worker config narrows the fields to vendor. The GPU operator takes all three (NVIDIA/gpu-operator
    controllers/state_manager.go gpuNodeLabels); the collection's node view must too."""
    from plugins.module_utils import nfd_labels
    from twin.controllers import nfd

    def view(device_class, config=None):
        features = {"flags": {"cpu.cpuid": {"elements": {}}},
                    "attributes": {"cpu.model": {"elements": {"vendor_id": "Intel"}}, "cpu.security": {"elements": {}},
                                   "kernel.version": {"elements": {}},
                                   "system.osrelease": {"elements": {"ID": "rhcos", "VERSION_ID": "4.21"}}},
                    "instances": {"pci.device": {"elements": [{"attributes": {
                        "class": device_class, "vendor": "10de", "device": "2bb5", "subsystem_vendor": "10de",
                        "subsystem_device": "204e"}}]}}}
        labels = nfd.builtin_labels(features, config)
        return labels, nfd_labels.node_view({"metadata": {"name": "n", "labels": labels}})

    labels, seen = view("0302")
    assert labels[PREFIX + "pci-0302_10de.present"] == "true" and seen["gpu"] is True
    labels, seen = view("0300")
    assert labels[PREFIX + "pci-0300_10de.present"] == "true" and seen["gpu"] is True
    narrowed = dict(nfd.worker_config(None), pci_fields=["vendor"])
    labels, seen = view("0302", narrowed)
    assert labels[PREFIX + "pci-10de.present"] == "true" and seen["gpu"] is True
    assert nfd_labels.node_view({"metadata": {"name": "n", "labels": {
        PREFIX + "pci-0302_10de.present": "false"}}})["gpu"] is False
