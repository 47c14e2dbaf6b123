"""olm_state: catalog checks, version resolution, upgrade steps and InstallPlan verdicts, from objects by hand."""

import pytest

from ansible_collections.confidential.gpu.plugins.module_utils import olm_state as o
from ansible_collections.confidential.gpu.plugins.module_utils.olm_state import OlmError


def catalog(name, state="READY"):
    return {"metadata": {"name": name}, "spec": {"image": f"registry.example/{name}:v4.21"},
            "status": {"connectionState": {"lastObservedState": state}} if state else {}}


def manifest(name="gpu-operator-certified", source="certified-operators", default="v26.7", channels=None):
    channels = channels or {"v26.3": ["26.3.1", "26.3.3"], "v26.7": ["26.7.0"], "stable": ["26.3.1", "26.3.3", "26.7.0"]}
    return {"metadata": {"name": name}, "status": {
        "catalogSource": source, "defaultChannel": default,
        "channels": [{"name": ch, "currentCSV": f"{name}.v{vs[-1]}",
                      "entries": [{"name": f"{name}.v{v}", "version": v} for v in reversed(vs)]}
                     for ch, vs in channels.items()]}}


def plan(csvs, approved=False, name="install-abcde"):
    return {"metadata": {"name": name, "namespace": "ns"},
            "spec": {"clusterServiceVersionNames": csvs, "approved": approved, "approval": "Manual"}}


# -- catalog ------------------------------------------------------------------------------------------


def test_ready_catalog_passes():
    o.check_catalog("redhat-operators", "openshift-marketplace", catalog("redhat-operators"), [catalog("redhat-operators")])


def test_catalog_not_ready_names_state_and_the_ready_ones():
    with pytest.raises(OlmError) as exc:
        o.check_catalog("redhat-operators", "openshift-marketplace", catalog("redhat-operators", "TRANSIENT_FAILURE"),
                        [catalog("redhat-operators", "TRANSIENT_FAILURE"), catalog("certified-operators")])
    message = str(exc.value)
    assert "redhat-operators is TRANSIENT_FAILURE, not READY" in message
    assert "ready catalog sources in openshift-marketplace: certified-operators" in message
    assert "registry.example/redhat-operators:v4.21" in message


def test_missing_catalog_says_so():
    with pytest.raises(OlmError, match="CatalogSource openshift-marketplace/mine does not exist; ready catalog sources "
                                       "in openshift-marketplace: none"):
        o.check_catalog("mine", "openshift-marketplace", None, [catalog("redhat-operators", None)])


# -- package, channel, version -----------------------------------------------------------------------


def test_default_channel_and_newest_version():
    target = o.resolve_target(manifest(), "gpu-operator-certified", "certified-operators")
    assert (target["channel"], target["csv"], target["version"]) == ("v26.7", "gpu-operator-certified.v26.7.0", "26.7.0")


@pytest.mark.parametrize("version", ["26.3.1", "v26.3.1"])
def test_version_in_channel(version):
    target = o.resolve_target(manifest(), "gpu-operator-certified", "certified-operators", channel="v26.3", version=version)
    assert target["csv"] == "gpu-operator-certified.v26.3.1"
    assert [e["name"] for e in target["entries"]] == ["gpu-operator-certified.v26.3.1", "gpu-operator-certified.v26.3.3"]


def test_csv_by_name():
    target = o.resolve_target(manifest(), "gpu-operator-certified", "certified-operators", channel="stable",
                              csv="gpu-operator-certified.v26.3.3")
    assert target["version"] == "26.3.3"


def test_missing_package_lists_the_catalog():
    others = [{"metadata": {"name": "nfd"}}, {"metadata": {"name": "trustee-operator"}}]
    with pytest.raises(OlmError, match="package nfdx is not in catalog redhat-operators; it has: nfd, trustee-operator"):
        o.resolve_target(None, "nfdx", "redhat-operators", others)


def test_package_from_another_catalog_is_missing():
    with pytest.raises(OlmError, match="not in catalog redhat-operators"):
        o.resolve_target(manifest(), "gpu-operator-certified", "redhat-operators")


def test_missing_channel_lists_channels():
    with pytest.raises(OlmError, match=r"has no channel v25.10; channels: v26.3, v26.7, stable \(default v26.7\)"):
        o.resolve_target(manifest(), "gpu-operator-certified", "certified-operators", channel="v25.10")


def test_missing_version_lists_versions_and_other_channels():
    with pytest.raises(OlmError) as exc:
        o.resolve_target(manifest(), "gpu-operator-certified", "certified-operators", channel="v26.7", version="26.3.1")
    message = str(exc.value)
    assert "channel v26.7 has no version 26.3.1; it has: 26.7.0 (gpu-operator-certified.v26.7.0)" in message
    assert "channels that have it: stable, v26.3" in message


# -- OperatorGroups and Subscriptions ------------------------------------------------------------------


def test_foreign_operator_groups():
    groups = [{"metadata": {"name": "mine"}}, {"metadata": {"name": "global-operators"}}]
    assert o.foreign_operator_groups(groups, "mine") == ["global-operators"]
    assert o.foreign_operator_groups(groups[:1], "mine") == []


def test_contains_ignores_fields_the_server_adds():
    desired = o.operator_group_definition("og", "ns")
    existing = {"apiVersion": "operators.coreos.com/v1", "kind": "OperatorGroup",
                "metadata": {"name": "og", "namespace": "ns", "uid": "1", "labels": dict(o.MANAGED_BY, extra="x")},
                "spec": {"targetNamespaces": ["ns"], "upgradeStrategy": "Default"}, "status": {"namespaces": ["ns"]}}
    assert o.contains(existing, desired)
    existing["spec"]["targetNamespaces"] = ["ns", "other"]
    assert not o.contains(existing, desired)


def test_subscription_conflict():
    sub = {"metadata": {"name": "nfd", "namespace": "ns"}, "spec": {"name": "other", "source": "redhat-operators"}}
    assert "exists for package other" in o.subscription_conflict(sub, "nfd", "redhat-operators")
    assert o.subscription_conflict(None, "nfd", "redhat-operators") is None


def test_fatal_condition_and_description():
    sub = {"status": {"state": "UpgradePending", "currentCSV": "a.v2", "installedCSV": "a.v1",
                      "installPlanRef": {"name": "install-x"},
                      "conditions": [{"type": "ResolutionFailed", "status": "True", "reason": "ConstraintsNotSatisfiable",
                                      "message": "no operators found"},
                                     {"type": "CatalogSourcesUnhealthy", "status": "False"}]}}
    assert o.fatal_condition(sub) == ("ResolutionFailed", "ResolutionFailed: ConstraintsNotSatisfiable: no operators found")
    text = o.describe_subscription(sub)
    assert "state UpgradePending" in text and "installedCSV a.v1" in text and "InstallPlan install-x" in text
    assert "ResolutionFailed=ConstraintsNotSatisfiable: no operators found" in text


def test_retried_conditions_are_not_fatal():
    """OLM retries ErrorPreventedResolution; CatalogSourcesUnhealthy is true for any unhealthy catalog."""
    sub = {"status": {"conditions": [
        {"type": "ResolutionFailed", "status": "True", "reason": "ErrorPreventedResolution", "message": "error using"},
        {"type": "CatalogSourcesUnhealthy", "status": "True", "reason": "UnhealthyCatalogSourceFound"}]}}
    assert o.fatal_condition(sub) is None
    for ctype in ("InstallPlanFailed", "BundleUnpackFailed"):
        sub = {"status": {"conditions": [{"type": ctype, "status": "True", "reason": "R", "message": "m"}]}}
        assert o.fatal_condition(sub) == (ctype, ctype + ": R: m")
        sub["status"]["conditions"][0]["status"] = "False"
        assert o.fatal_condition(sub) is None


def test_recovery_steps_in_the_documented_order():
    text = o.recovery_steps("ns", "nfd", ["nfd.v1"], ["install-b", "install-a"])
    assert text == ("delete Subscription ns/nfd, then CSV nfd.v1 and InstallPlan install-a, install-b, "
                    "then create the Subscription again (never only the Subscription)")
    plans = [{"metadata": {"name": "p1"}, "spec": {"clusterServiceVersionNames": ["nfd.v1", "x.v1"]}},
             {"metadata": {"name": "p2"}, "spec": {"clusterServiceVersionNames": ["x.v1"]}}]
    assert o.plans_naming(plans, ["nfd.v1"]) == ["p1"]


def test_operator_label_is_cut_like_olm():
    label = o.operator_label("gpu-operator-certified", "t-a-very-long-namespace-name-used-by-tests-abcdef")
    assert len(label.split("/", 1)[1]) <= 63
    assert o.operator_label("nfd", "openshift-nfd") == "operators.coreos.com/nfd.openshift-nfd"


# -- upgrades and InstallPlans --------------------------------------------------------------------------

ENTRIES = [{"name": f"g.v{v}", "version": v} for v in ("1", "2", "3")]


def test_steps_first_install_is_the_target_only():
    assert o.steps_to(ENTRIES, None, "g.v2") == ["g.v2"]


def test_steps_walk_up_to_the_target_and_no_further():
    assert o.steps_to(ENTRIES, "g.v1", "g.v3") == ["g.v2", "g.v3"]
    assert o.steps_to(ENTRIES, "g.v1", "g.v2") == ["g.v2"]
    assert o.steps_to(ENTRIES, "g.v2", "g.v2") == []


def test_no_downgrade():
    with pytest.raises(OlmError, match="installed g.v3 is newer than the pinned g.v1: OLM does not downgrade"):
        o.steps_to(ENTRIES, "g.v3", "g.v1")


def test_verdict_approves_exactly_the_step():
    assert o.install_plan_verdict(plan(["g.v2"]), ["g.v2"])["action"] == "approve"
    assert o.install_plan_verdict(plan(["g.v2"], approved=True), ["g.v2"])["action"] == "approved"


def test_verdict_refuses_a_shared_plan_and_names_the_extra_csv():
    """OLM's trap: the plan for our CSV also upgrades another operator of the namespace."""
    p = plan(["g.v2", "other.v9"])
    verdict = o.install_plan_verdict(p, ["g.v2"])
    assert verdict == {"action": "refuse", "csvs": ["g.v2", "other.v9"], "extra": ["other.v9"]}
    message = o.refusal_message(p, verdict, ["g.v2"])
    assert "it would install other.v9" in message and "not approving" in message


def test_verdict_refuses_a_version_past_the_pin():
    p = plan(["g.v3"])
    verdict = o.install_plan_verdict(p, ["g.v2"])
    assert verdict["action"] == "refuse" and verdict["extra"] == ["g.v3"]
    assert "not the pinned step (g.v2)" in o.refusal_message(p, verdict, ["g.v2"])


def test_verdict_refuses_two_steps_at_once():
    assert o.install_plan_verdict(plan(["g.v2", "g.v3"]), ["g.v2", "g.v3"])["action"] == "refuse"


def test_csv_state():
    assert o.csv_state(None) == ("absent", "CSV not created yet")
    csv = {"metadata": {"name": "g.v1"}, "status": {"phase": "Failed", "reason": "InstallCheckFailed", "message": "install timeout"}}
    assert o.csv_state(csv) == ("retrying", "CSV g.v1 Failed (InstallCheckFailed: install timeout), OLM retries it")
    for reason in ("InstallComponentFailedNoRetry", "NoOperatorGroup", "TooManyOperatorGroups", "UnsupportedOperatorGroup"):
        csv["status"] = {"phase": "Failed", "reason": reason, "message": "m"}
        assert o.csv_state(csv) == ("failed", "CSV g.v1 Failed ({0}: m)".format(reason))
    csv["status"] = {"phase": "Installing"}
    assert o.csv_state(csv)[0] == "installing"
    csv["status"] = {"phase": "Succeeded"}
    assert o.csv_state(csv)[0] == "succeeded"


def test_owned_kinds():
    csv = {"spec": {"customresourcedefinitions": {"owned": [
        {"name": "clusterpolicies.nvidia.com", "version": "v1", "kind": "ClusterPolicy"}, {"name": "broken"}]}}}
    assert o.owned_kinds(csv) == [("nvidia.com/v1", "ClusterPolicy")]


def test_defaults_for_the_four_packages():
    assert o.defaults("gpu-operator-certified") == {"source": "certified-operators", "namespace": "nvidia-gpu-operator",
                                                    "operator_group": "nvidia-gpu-operator-group"}
    assert o.defaults("unknown") == {}


# -- issue 13: catalog lookup, skipRange, stale plans, OperatorGroups ------------------------------------


def skip_ranged(name="gpu-operator-certified"):
    """The GPU operator's manifest with its heads' olm.skipRange '>=1.9.0 <VERSION', as the packageserver shows it."""
    m = manifest(name)
    for channel in m["status"]["channels"]:
        version = channel["entries"][0]["version"]
        channel["currentCSVDesc"] = {"version": version, "annotations": {"olm.skipRange": f">=1.9.0 <{version}"}}
    return m


def test_manifest_of_the_named_catalog_and_namespace_only():
    ours = manifest()
    ours["status"]["catalogSourceNamespace"] = "mirror"
    other = manifest()
    other["status"]["catalogSourceNamespace"] = "openshift-marketplace"
    assert o.manifest_in_catalog([other, ours], "gpu-operator-certified", "certified-operators", "mirror") is ours
    assert o.manifest_in_catalog([other], "gpu-operator-certified", "certified-operators", "mirror") is None
    assert o.manifest_selector("redhat-operators", "mirror") == "catalog=redhat-operators,catalog-namespace=mirror"
    with pytest.raises(OlmError, match="not in catalog certified-operators of namespace mirror; it has: no packages"):
        o.resolve_target(other, "gpu-operator-certified", "certified-operators", source_namespace="mirror")


@pytest.mark.parametrize("version, expression, inside", [
    ("26.3.1", ">=1.9.0 <26.7.0", True), ("26.7.0", ">=1.9.0 <26.7.0", False), ("1.8.9", ">=1.9.0 <26.7.0", False),
    ("4.21.0", ">=4.9.0 <4.21.1", True), ("v4.21.0", "<4.0.0 || >=4.21.0", True), ("4.20.0", "", False)])
def test_skip_range(version, expression, inside):
    assert o.in_skip_range(version, expression) is inside


def test_a_pin_below_a_head_whose_skip_range_covers_the_installed_is_unreachable():
    message = o.skip_range_jump(skip_ranged(), "stable", "gpu-operator-certified.v26.3.1", "gpu-operator-certified.v26.3.3")
    assert message.startswith("OLM would upgrade gpu-operator-certified.v26.3.1 straight to gpu-operator-certified.v26.7.0")
    assert "Pin 26.7.0, or use channel v26.3 whose head is gpu-operator-certified.v26.3.3" in message
    assert o.skip_range_jump(skip_ranged(), "stable", "gpu-operator-certified.v26.3.1", "gpu-operator-certified.v26.7.0") \
        is None
    assert o.skip_range_jump(manifest(), "stable", "gpu-operator-certified.v26.3.1", "gpu-operator-certified.v26.3.3") \
        is None, "without a skipRange the replaces chain reaches every step"
    assert o.next_offer(skip_ranged(), "stable", "gpu-operator-certified.v26.3.1",
                        ["gpu-operator-certified.v26.3.3", "gpu-operator-certified.v26.7.0"]) == \
        "gpu-operator-certified.v26.7.0"


def test_stale_plan_only_for_our_unapproved_csvs_resolved_for_another_spec():
    ours = o.package_csvs(manifest())
    v267 = o.channel_entries(manifest(), "v26.7")
    old = plan(["gpu-operator-certified.v26.3.1"])
    assert o.stale_plan(old, ours, v267, None, "gpu-operator-certified.v26.7.0")
    assert not o.stale_plan(plan(["gpu-operator-certified.v26.3.1"], approved=True), ours, v267, None,
                            "gpu-operator-certified.v26.7.0")
    assert not o.stale_plan(plan(["gpu-operator-certified.v26.3.1", "nfd.v4.21.0"]), ours, v267, None,
                            "gpu-operator-certified.v26.7.0"), "another operator's CSV: not ours to delete"
    stable = o.channel_entries(manifest(), "stable")
    assert not o.stale_plan(plan(["gpu-operator-certified.v26.7.0"]), ours, stable, "gpu-operator-certified.v26.3.1",
                            "gpu-operator-certified.v26.3.3"), "an offer past the pin is OLM's answer, not stale"
    assert o.stale_plan(plan(["gpu-operator-certified.v26.3.1"]), ours, stable, None, "gpu-operator-certified.v26.3.3")


def test_operator_group_problem():
    assert o.operator_group_problem("ns", [{"metadata": {"name": "a"}}]) is None
    assert o.operator_group_problem("ns", []) == ("namespace ns has 0 OperatorGroups: OLM resolves nothing there (no "
                                                  "InstallPlan, no condition) until there is exactly one")
    assert "has 2 OperatorGroups (a, b)" in o.operator_group_problem("ns", [{"metadata": {"name": n}} for n in "ba"])
