"""nfd_labels: node views, selectors, contradictions, missing labels and the vendor-guarded TEE rule."""

import pytest

from ansible_collections.confidential.gpu.plugins.module_utils import nfd_labels as n

P = "feature.node.kubernetes.io/"


def node(name, vendor=None, roles=("worker",), capacity=None):
    all_labels = {f"node-role.kubernetes.io/{r}": "" for r in roles}
    if vendor:
        all_labels[P + "cpu-model.vendor_id"] = vendor
    return {"metadata": {"name": name, "labels": all_labels, "annotations": {}}, "status": {"capacity": capacity or {}}}


def with_labels(name, vendor, extra, roles=("worker",)):
    obj = node(name, vendor, roles)
    obj["metadata"]["labels"].update(extra)
    return obj


TDX = {P + "cpu-security.tdx.enabled": "true", "intel.feature.node.kubernetes.io/tdx": "true"}
SNP = {P + "cpu-security.sev.snp.enabled": "true", "amd.feature.node.kubernetes.io/snp": "true"}


def test_node_view():
    view = n.node_view(with_labels("w", "Intel", dict(TDX, **{P + "pci-10de.present": "true"})))
    assert view["vendor"] == "Intel" and view["tee"] == ["tdx"] and view["gpu"] and view["labelled"]
    assert not view["hypervisor"]
    bare = n.node_view(node("x"))
    assert bare["vendor"] is None and bare["tee"] == [] and not bare["labelled"]


@pytest.mark.parametrize("selector,expected", [
    ("node-role.kubernetes.io/worker", ["w1", "w2"]),
    ("node-role.kubernetes.io/worker,!node-role.kubernetes.io/master", ["w1"]),
    (P + "cpu-model.vendor_id=AMD", ["w2"]),
    (P + "cpu-model.vendor_id!=AMD", ["m", "w1"]),
    ("", ["m", "w1", "w2"]),
])
def test_selectors(selector, expected):
    nodes = [node("m", "Intel", ("master",)), node("w1", "Intel"), node("w2", "AMD", ("worker", "master"))]
    terms = n.parse_selector(selector)
    assert [x["metadata"]["name"] for x in nodes if n.selected(x["metadata"]["labels"], terms)] == expected


def test_contradiction_names_node_vendor_and_label():
    views = [n.node_view(with_labels("w1", "Intel", {"amd.feature.node.kubernetes.io/snp": "true"})),
             n.node_view(with_labels("w2", "AMD", SNP)),
             n.node_view(with_labels("w3", "Intel", {"ibm.feature.node.kubernetes.io/se": "true"}))]
    found = n.contradictions(views)
    assert len(found) == 2
    assert found[0].startswith("w1 has an Intel CPU but carries SNP (amd.feature.node.kubernetes.io/snp)")
    assert found[1].startswith("w3 has an Intel CPU but carries SE (ibm.feature.node.kubernetes.io/se)")


def test_two_tee_types_among_targets():
    targets = [n.node_view(with_labels("a", "Intel", TDX)), n.node_view(with_labels("b", "AMD", SNP))]
    assert n.problems(targets, targets) == [
        "target nodes show 2 TEE types (SNP: b; TDX: a); OpenShift sandboxed containers supports one per cluster: "
        "select nodes of one type"]
    assert n.problems(targets[:1], targets) == []


def test_missing_labels_and_tee():
    view = n.node_view(with_labels("a", "Intel", {P + "cgpu.tee-rule": "abc"}))
    assert n.missing(view, {P + "cgpu.tee-rule": "abc"}) == []
    assert n.missing(view, {P + "cgpu.tee-rule": "def"}) == [P + "cgpu.tee-rule=def"]
    assert n.missing(view, {P + "pci-10de.present": None}) == [P + "pci-10de.present=*"]
    assert n.missing(view, {}, require_tee=True) == [
        P + "cpu-security.tdx.enabled=true", "intel.feature.node.kubernetes.io/tdx=true"]
    assert n.missing(n.node_view(node("x")), {}, require_tee=True) == ["a CPU vendor label (no TEE without one)"]
    assert n.describe([view], {}, True).startswith("a: lacks " + P + "cpu-security.tdx.enabled=true")


@pytest.mark.parametrize("vendor,tee_rule,resource", [
    ("Intel", "intel.tdx", "tdx.intel.com/keys"), ("AMD", "amd.sev-snp", "sev-snp.amd.com/esids")])
def test_tee_rule_is_guarded_by_vendor_everywhere(vendor, tee_rule, resource):
    rule = n.tee_rule(vendor, namespace="nfd")
    assert rule["metadata"] == {"name": n.rule_name(vendor), "namespace": "nfd",
                                "labels": {"app.kubernetes.io/managed-by": "confidential.gpu"}}
    names = [r["name"] for r in rule["spec"]["rules"]]
    assert names == ["runtime.kata", tee_rule, "cgpu.tee-rule"]
    for item in rule["spec"]["rules"]:
        assert {"feature": "cpu.model", "matchExpressions": {"vendor_id": {"op": "In", "value": [vendor]}}} \
            in item["matchFeatures"]
    assert resource in rule["spec"]["rules"][1]["extendedResources"]


def test_tee_rule_digest_changes_with_the_rules():
    intel, amd = n.tee_rule("Intel"), n.tee_rule("AMD")
    assert len(n.rule_digest(intel)) == 12 and n.rule_digest(intel) != n.rule_digest(amd)
    assert n.rule_digest(intel) == n.rule_digest(n.tee_rule("Intel", namespace="elsewhere"))


def test_unknown_vendor_has_no_rule():
    with pytest.raises(ValueError, match="CPU vendor 'IBM' has no TEE rule; known: AMD, Intel"):
        n.tee_rule("IBM")


def test_resource_gaps_names_tee_nodes_without_their_extended_resource():
    keys = n.node_view(dict(with_labels("w0", "Intel", TDX), status={"capacity": {"tdx.intel.com/keys": "63"}}))
    nokeys = n.node_view(with_labels("w1", "Intel", TDX))
    snp = n.node_view(dict(with_labels("w2", "AMD", SNP), status={"capacity": {"sev-snp.amd.com/esids": "0"}}))
    plain = n.node_view(node("w3", "Intel"))
    gaps = n.resource_gaps([keys, nokeys, snp, plain])
    assert len(gaps) == 2
    assert gaps[0].startswith("w1: TDX is enabled but the node has no tdx.intel.com/keys")
    assert gaps[1].startswith("w2: SNP is enabled but the node has no sev-snp.amd.com/esids")
