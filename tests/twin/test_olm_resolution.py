"""The OLM twin resolves as release-4.21's catalog operator and packageserver do (issue 13, OLM).

Each test names the upstream function it holds the twin to (openshift/operator-framework-olm
release-4.21 @ 149d553b, staging/operator-lifecycle-manager/pkg/...).
"""

import pytest
from olm_helpers import CSVS, PLANS, SUBS, approve, catalog, nothing_for, operator_group, subscribe, wait_for

from twin.kube import path

pytestmark = pytest.mark.twin

PM = ("packages.operators.coreos.com/v1", "packagemanifests")
CATSRC = ("operators.coreos.com/v1alpha1", "catalogsources")


def _condition(sub, ctype):
    return next((c for c in (sub.get("status") or {}).get("conditions") or [] if c["type"] == ctype), None)


def _sub(items, name):
    return next((s for s in items if s["metadata"]["name"] == name), None)


def test_a_second_catalog_serves_the_same_package_from_its_namespace(twin, namespace):
    """package-server/provider/registry.go: one PackageManifest per package and catalog, in the catalog's namespace,
    labelled catalog/catalog-namespace; resolution uses the Subscription's catalog, not another of the same name."""
    kube = twin.kube
    catalog(kube, namespace, "redhat-operators", packages={"nfd": ["4.21.0"]})
    wait_for(kube, *CATSRC, namespace, lambda items: any(
        (c.get("status") or {}).get("connectionState", {}).get("lastObservedState") == "READY" for c in items))
    mine = wait_for(kube, *PM, namespace, lambda items: next((m for m in items if m["metadata"]["name"] == "nfd"), None))
    assert mine["metadata"]["labels"]["catalog"] == "redhat-operators"
    assert mine["metadata"]["labels"]["catalog-namespace"] == namespace
    assert mine["status"]["catalogSourceNamespace"] == namespace
    assert [e["name"] for e in mine["status"]["channels"][0]["entries"]] == ["nfd.v4.21.0"]
    labelled = kube.list(path(*PM, namespace=namespace),
                         labelSelector=f"catalog=redhat-operators,catalog-namespace={namespace}")["items"]
    assert [m["status"]["catalogSourceNamespace"] for m in labelled] == [namespace]
    # The global catalog of the same name still serves its own (newer) nfd.
    marketplace = kube.get(path(*PM, "nfd", "openshift-marketplace"))
    assert marketplace["status"]["channels"][0]["currentCSV"] == "nfd.v4.21.1"
    operator_group(kube, namespace)
    subscribe(kube, namespace, "nfd", approval="Automatic", source_namespace=namespace)
    sub = wait_for(kube, *SUBS, namespace, lambda items: next(
        (s for s in items if (s.get("status") or {}).get("state") == "AtLatestKnown"), None))
    assert sub["status"]["installedCSV"] == "nfd.v4.21.0", "the mirror has no 4.21.1"
    # A version only the other catalog has is not satisfiable from this one.
    subscribe(kube, namespace, "trustee-operator", source_namespace=namespace, name="trustee")
    sub = wait_for(kube, *SUBS, namespace, lambda items: next(
        (s for s in items if _condition(s, "ResolutionFailed")), None))
    assert _condition(sub, "ResolutionFailed")["reason"] == "ConstraintsNotSatisfiable"
    assert "no operators found in package trustee-operator" in _condition(sub, "ResolutionFailed")["message"]


def test_skip_range_upgrade_replaces_the_old_csv_only_after_the_new_one_succeeds(twin, namespace):
    """NFD's CSV has no replaces but an olm.skipRange (resolver.go SkipRangeIncludesPredicate); the CSV the plan
    creates replaces the installed one (c.Replaces = current.Name); olm/operator.go: Replacing, then Deleting
    once the new one has Succeeded, then deleted."""
    kube = twin.kube
    operator_group(kube, namespace)
    subscribe(kube, namespace, "nfd", approval="Manual", starting="nfd.v4.21.0")
    first = wait_for(kube, *PLANS, namespace, lambda items: next(iter(items), None))
    approve(kube, namespace, first)
    upgrade = wait_for(kube, *PLANS, namespace, lambda items: next(
        (p for p in items if p["spec"]["clusterServiceVersionNames"] == ["nfd.v4.21.1"]), None))
    old = wait_for(kube, *CSVS, namespace, lambda items: next(
        (c for c in items if c.get("status", {}).get("phase") == "Succeeded"), None))
    assert old["metadata"]["name"] == "nfd.v4.21.0" and "replaces" not in old["spec"]
    assert old["metadata"]["annotations"]["olm.skipRange"] == ">=4.9.0 <4.21.0"
    phases = {}

    def replaced(items):
        for csv in items:
            phases.setdefault(csv["metadata"]["name"], []).append((csv.get("status") or {}).get("phase"))
        names = [c["metadata"]["name"] for c in items]
        return names == ["nfd.v4.21.1"] and items[0]["status"].get("phase") == "Succeeded" and items

    approve(kube, namespace, upgrade)
    done = wait_for(kube, *CSVS, namespace, replaced)
    assert done[0]["spec"]["replaces"] == "nfd.v4.21.0"
    seen = [p for i, p in enumerate(phases["nfd.v4.21.0"]) if p not in phases["nfd.v4.21.0"][:i]]
    assert seen == ["Succeeded", "Replacing", "Deleting"], seen


def test_manual_if_any_subscription_is_manual_and_only_changed_subscriptions_move(twin, namespace):
    """syncResolvingNamespace: any Manual Subscription makes the plan Manual; setIPReference only on updatedSubs."""
    kube = twin.kube
    operator_group(kube, namespace)
    subscribe(kube, namespace, "trustee-operator", approval="Manual", starting="trustee-operator.v1.1.0")
    first = wait_for(kube, *PLANS, namespace, lambda items: next(iter(items), None))
    subscribe(kube, namespace, "nfd", approval="Automatic")
    both = wait_for(kube, *PLANS, namespace, lambda items: next(
        (p for p in items if len(p["spec"]["clusterServiceVersionNames"]) == 2), None))
    assert both["spec"]["approval"] == "Manual" and both["spec"]["approved"] is False
    subs = wait_for(kube, *SUBS, namespace, lambda items: (
        (_sub(items, "nfd") or {}).get("status", {}).get("installPlanRef") and items))
    assert _sub(subs, "nfd")["status"]["installPlanRef"]["name"] == both["metadata"]["name"]
    # trustee's currentCSV did not change: it keeps its own plan.
    assert _sub(subs, "trustee-operator")["status"]["installPlanRef"]["name"] == first["metadata"]["name"]


def test_an_upgrade_pending_subscription_is_not_resolved_again_until_its_plan_is_deleted(twin, namespace):
    """nothingToUpdate: UpgradePending with an InstallPlan skips resolution; InstallPlanNotFound clears the reference."""
    kube = twin.kube
    operator_group(kube, namespace)
    subscribe(kube, namespace, "gpu-operator-certified", starting="gpu-operator-certified.v26.3.1", channel="v26.3")
    stale = wait_for(kube, *PLANS, namespace, lambda items: next(iter(items), None))
    wait_for(kube, *SUBS, namespace, lambda items: any(s.get("status", {}).get("state") == "UpgradePending" for s in items))
    kube.merge_patch(path(*SUBS, "gpu-operator-certified", namespace),
                     {"spec": {"channel": "v26.7", "startingCSV": "gpu-operator-certified.v26.7.0"}})
    assert nothing_for(kube, *PLANS, namespace, lambda items: len(items) > 1), "OLM resolved a pending Subscription"
    kube.delete(path(*PLANS, stale["metadata"]["name"], namespace))
    fresh = wait_for(kube, *PLANS, namespace, lambda items: next(iter(items), None))
    assert fresh["spec"]["clusterServiceVersionNames"] == ["gpu-operator-certified.v26.7.0"]
    sub = wait_for(kube, *SUBS, namespace, lambda items: next((s for s in items if (
        s.get("status") or {}).get("installPlanRef", {}).get("name") == fresh["metadata"]["name"]), None))
    assert sub["status"]["currentCSV"] == "gpu-operator-certified.v26.7.0"


def test_no_resolution_without_exactly_one_operator_group(twin, namespace):
    """resolver.IsFailForwardEnabled: "found N operatorGroups, expected 1" ends the sync: no plan, no condition."""
    kube = twin.kube
    subscribe(kube, namespace, "nfd", approval="Automatic")
    sub = wait_for(kube, *SUBS, namespace, lambda items: next((s for s in items if s.get("status")), None))
    assert nothing_for(kube, *PLANS, namespace, lambda items: items)
    assert _condition(sub, "ResolutionFailed") is None
    operator_group(kube, namespace, name="one")
    operator_group(kube, namespace, name="two")
    plans = kube.list(path(*PLANS, namespace=namespace))["items"]
    if not plans:  # the two arrive one by one: "one" alone may already have resolved
        assert nothing_for(kube, *PLANS, namespace, lambda items: items)
        kube.delete(path("operators.coreos.com/v1", "operatorgroups", "two", namespace))
    wait_for(kube, *CSVS, namespace, lambda items: any(c.get("status", {}).get("phase") == "Succeeded" for c in items))


def test_a_new_subscription_does_not_adopt_an_existing_csv(twin, namespace):
    """variable_types.go: a CSV no Subscription references is mandatory, one operator per package: unsatisfiable."""
    kube = twin.kube
    operator_group(kube, namespace)
    subscribe(kube, namespace, "nfd", approval="Automatic")
    wait_for(kube, *CSVS, namespace, lambda items: any(c.get("status", {}).get("phase") == "Succeeded" for c in items))
    kube.delete(path(*SUBS, "nfd", namespace))
    wait_for(kube, *SUBS, namespace, lambda items: not items or None)
    subscribe(kube, namespace, "nfd", approval="Automatic")
    sub = wait_for(kube, *SUBS, namespace, lambda items: next((s for s in items if _condition(s, "ResolutionFailed")), None))
    cond = _condition(sub, "ResolutionFailed")
    assert cond["reason"] == "ConstraintsNotSatisfiable"
    assert "clusterserviceversion nfd.v4.21.1 exists and is not referenced by a subscription" in cond["message"]
    assert not sub["status"].get("installedCSV")


def test_install_plans_beyond_five_are_garbage_collected_oldest_generation_first(twin, namespace):
    kube = twin.kube
    for generation in range(1, 8):
        kube.create(path(*PLANS, namespace=namespace), {
            "apiVersion": "operators.coreos.com/v1alpha1", "kind": "InstallPlan",
            "metadata": {"name": f"old-{generation}"},
            "spec": {"approval": "Manual", "approved": False, "clusterServiceVersionNames": ["x.v1"],
                     "generation": generation}})
    subscribe(kube, namespace, "nfd")  # any sync of the namespace collects first (gcInstallPlans)
    kept = wait_for(kube, *PLANS, namespace, lambda items: len(items) <= 5 and items)
    assert sorted(p["metadata"]["name"] for p in kept) == [f"old-{g}" for g in range(3, 8)]


def test_an_unhealthy_install_fails_at_the_install_timeout_and_recovers(twin, namespace):
    """olm/operator.go Installing: failed "install timeout" 5 minutes (scaled) after the last transition."""
    kube = twin.kube
    operator_group(kube, namespace)
    try:
        twin.set_faults([{"kind": "csv-unhealthy", "package": "trustee-operator", "namespace": namespace}])
        subscribe(kube, namespace, "trustee-operator", approval="Automatic")
        failed = wait_for(kube, *CSVS, namespace, lambda items: next(
            (c for c in items if c.get("status", {}).get("phase") == "Failed"), None))
        assert (failed["status"]["reason"], failed["status"]["message"]) == ("InstallCheckFailed", "install timeout")
        installing = next(c for c in failed["status"]["conditions"] if c["phase"] == "Installing")
        assert installing["lastTransitionTime"] <= failed["status"]["lastTransitionTime"]
    finally:
        twin.set_faults([])
    wait_for(kube, *CSVS, namespace, lambda items: any(c.get("status", {}).get("phase") == "Succeeded" for c in items))
