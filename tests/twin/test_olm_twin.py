"""The OLM twin resolves, plans and installs like OLM, including its traps and failures."""

import pytest
from olm_helpers import CSVS, PLANS, SUBS, approve, operator_group, subscribe, wait_for

from twin.controllers import olm
from twin.kube import path

pytestmark = pytest.mark.twin


def test_catalog_serves_package_manifests_with_channels(twin):
    manifests = {m["metadata"]["name"]: m for m in twin.kube.list(
        path("packages.operators.coreos.com/v1", "packagemanifests", namespace="openshift-marketplace"))["items"]}
    assert set(olm.PACKAGES) <= set(manifests)
    gpu = manifests["gpu-operator-certified"]["status"]
    assert gpu["catalogSource"] == "certified-operators" and gpu["defaultChannel"] == "v26.7"
    channels = {c["name"]: c for c in gpu["channels"]}
    assert channels["v26.3"]["currentCSV"] == "gpu-operator-certified.v26.3.3"
    assert [e["name"] for e in channels["stable"]["entries"]] == [
        "gpu-operator-certified.v26.7.0", "gpu-operator-certified.v26.3.3", "gpu-operator-certified.v26.3.1"]


def test_manual_install_then_next_upgrade_waits_in_its_own_plan(twin, namespace):
    kube = twin.kube
    operator_group(kube, namespace)
    subscribe(kube, namespace, "gpu-operator-certified", starting="gpu-operator-certified.v26.3.1", channel="v26.3")
    plan = wait_for(kube, *PLANS, namespace, lambda items: next((p for p in items if p.get("status", {}).get("phase")), None))
    assert plan["spec"]["clusterServiceVersionNames"] == ["gpu-operator-certified.v26.3.1"]
    assert plan["spec"]["approval"] == "Manual" and plan["spec"]["approved"] is False
    assert plan["status"]["phase"] == "RequiresApproval"
    # OLM writes the plan first, then points the Subscription at it.
    sub = wait_for(kube, *SUBS, namespace, lambda items: next(
        (s for s in items if s.get("status", {}).get("installPlanRef")), None))
    assert sub["status"]["state"] == "UpgradePending"
    assert sub["status"]["installPlanRef"]["name"] == plan["metadata"]["name"]
    assert any(c["type"] == "InstallPlanPending" and c["reason"] == "RequiresApproval" for c in sub["status"]["conditions"])
    # Nothing is installed until the plan is approved.
    assert kube.list(path(*CSVS, namespace=namespace))["items"] == []
    approve(kube, namespace, plan)
    phases = []

    def succeeded(items):
        for csv in items:
            phases.append(csv.get("status", {}).get("phase"))
            if csv.get("status", {}).get("phase") == "Succeeded":
                return csv
        return None

    csv = wait_for(kube, *CSVS, namespace, succeeded)
    assert csv["metadata"]["name"] == "gpu-operator-certified.v26.3.1"
    assert [p for i, p in enumerate(phases) if p and p not in phases[:i]] == [
        "Pending", "InstallReady", "Installing", "Succeeded"]
    assert csv["metadata"]["annotations"]["olm.operatorGroup"] == namespace
    # The operand's CRD exists once the CSV has succeeded.
    assert kube.get(path("apiextensions.k8s.io/v1", "customresourcedefinitions", "clusterpolicies.nvidia.com"))
    upgrade = wait_for(kube, *PLANS, namespace, lambda items: next(
        (p for p in items if p["spec"]["clusterServiceVersionNames"] == ["gpu-operator-certified.v26.3.3"]), None))
    assert upgrade["spec"]["approved"] is False and upgrade["spec"]["generation"] == 2
    sub = wait_for(kube, *SUBS, namespace, lambda items: next(
        (s for s in items if s["status"].get("installedCSV") == "gpu-operator-certified.v26.3.1"
         and s["status"].get("currentCSV") == "gpu-operator-certified.v26.3.3"), None))
    assert sub["status"]["state"] == "UpgradePending"


def test_two_manual_subscriptions_in_one_namespace_share_one_install_plan(twin, namespace):
    """OLM's trap (operator-lifecycle-manager#2352): approving one operator approves the other too."""
    kube = twin.kube
    operator_group(kube, namespace)
    subscribe(kube, namespace, "nfd", starting="nfd.v4.21.0")
    first = wait_for(kube, *PLANS, namespace, lambda items: next(iter(items), None))
    subscribe(kube, namespace, "trustee-operator", starting="trustee-operator.v1.1.0")
    both = wait_for(kube, *PLANS, namespace, lambda items: next(
        (p for p in items if len(p["spec"]["clusterServiceVersionNames"]) == 2), None))
    assert both["spec"]["clusterServiceVersionNames"] == ["nfd.v4.21.0", "trustee-operator.v1.1.0"]
    # setIPReference only on the Subscriptions whose currentCSV changed: nfd keeps its first plan.
    refs = wait_for(kube, *SUBS, namespace, lambda items: len(items) == 2 and all(
        s.get("status", {}).get("installPlanRef") for s in items) and items)
    assert {s["metadata"]["name"]: s["status"]["installPlanRef"]["name"] for s in refs} == {
        "nfd": first["metadata"]["name"], "trustee-operator": both["metadata"]["name"]}
    approve(kube, namespace, both)
    done = wait_for(kube, *CSVS, namespace, lambda items: len(
        [c for c in items if c.get("status", {}).get("phase") == "Succeeded"]) == 2 and items)
    assert sorted(c["metadata"]["name"] for c in done) == ["nfd.v4.21.0", "trustee-operator.v1.1.0"]


def test_operator_group_problems_fail_the_csv_until_fixed(twin, namespace):
    kube = twin.kube
    subscribe(kube, namespace, "trustee-operator", approval="Automatic", starting="trustee-operator.v1.2.1")
    # No OperatorGroup: the catalog operator does not resolve at all (no plan, no CSV).
    wait_for(kube, *SUBS, namespace, lambda items: any(s.get("status") for s in items))
    assert kube.list(path(*PLANS, namespace=namespace))["items"] == []
    operator_group(kube, namespace, targets=[])  # AllNamespaces: not supported by the operator
    wait_for(kube, *CSVS, namespace, lambda items: next(
        (c for c in items if c.get("status", {}).get("reason") == "UnsupportedOperatorGroup"), None))
    kube.merge_patch(path("operators.coreos.com/v1", "operatorgroups", namespace, namespace),
                     {"spec": {"targetNamespaces": [namespace]}})
    wait_for(kube, *CSVS, namespace, lambda items: next(
        (c for c in items if c.get("status", {}).get("phase") == "Succeeded"), None))


def test_faults_catalog_package_installplan_and_csv(twin, namespace):
    kube = twin.kube
    operator_group(kube, namespace)
    try:
        twin.set_faults([{"kind": "catalog-not-ready", "catalog": "redhat-operators"},
                         {"kind": "package-missing", "package": "trustee-operator"}])
        catalog = path("operators.coreos.com/v1alpha1", "catalogsources", namespace="openshift-marketplace")
        wait_for(kube, "operators.coreos.com/v1alpha1", "catalogsources", "openshift-marketplace", lambda items: next(
            (c for c in items if c["metadata"]["name"] == "redhat-operators"
             and c["status"]["connectionState"]["lastObservedState"] == "TRANSIENT_FAILURE"), None))
        wait_for(kube, "packages.operators.coreos.com/v1", "packagemanifests", "openshift-marketplace",
                 lambda items: "trustee-operator" not in [m["metadata"]["name"] for m in items])
        subscribe(kube, namespace, "nfd", approval="Automatic")  # a Manual one would make every plan Manual
        sub = wait_for(kube, *SUBS, namespace, lambda items: next((s for s in items if any(
            c["type"] == "CatalogSourcesUnhealthy" and c["status"] == "True" for c in s.get("status", {}).get("conditions", []))), None))
        assert "openshift-marketplace/redhat-operators" in next(
            c["message"] for c in sub["status"]["conditions"] if c["type"] == "CatalogSourcesUnhealthy")
        assert kube.list(path(*PLANS, namespace=namespace))["items"] == []

        twin.set_faults([{"kind": "installplan-missing", "package": "nfd"},
                         {"kind": "csv-failed", "package": "gpu-operator-certified"}])
        wait_for(kube, "operators.coreos.com/v1alpha1", "catalogsources", "openshift-marketplace", lambda items: all(
            c["status"]["connectionState"]["lastObservedState"] == "READY" for c in items))
        subscribe(kube, namespace, "gpu-operator-certified", approval="Automatic", starting="gpu-operator-certified.v26.7.0")
        failed = wait_for(kube, *CSVS, namespace, lambda items: next(
            (c for c in items if c.get("status", {}).get("phase") == "Failed"), None))
        assert failed["status"]["reason"] == "InstallCheckFailed"
        plans = kube.list(path(*PLANS, namespace=namespace))["items"]
        assert [p["spec"]["clusterServiceVersionNames"] for p in plans] == [["gpu-operator-certified.v26.7.0"]]
        assert kube.get(catalog + "/redhat-operators")["status"]["connectionState"]["lastObservedState"] == "READY"
    finally:
        twin.set_faults([])
    # With the fault gone, the held-back InstallPlan appears.
    wait_for(kube, *PLANS, namespace, lambda items: next(
        (p for p in items if "nfd.v4.21.1" in p["spec"]["clusterServiceVersionNames"]), None))
    wait_for(kube, "packages.operators.coreos.com/v1", "packagemanifests", "openshift-marketplace",
             lambda items: "trustee-operator" in [m["metadata"]["name"] for m in items])


def _condition(sub, ctype):
    return next((c for c in (sub.get("status") or {}).get("conditions") or [] if c["type"] == ctype), None)


def test_failed_csv_recovers_unless_no_retry(twin, namespace):
    """olm/operator.go transitionCSVState: Failed is retried (healthy again -> Succeeded); NoRetry is terminal."""
    kube = twin.kube
    operator_group(kube, namespace)
    try:
        twin.set_faults([{"kind": "csv-failed", "package": "nfd", "namespace": namespace, "once": True},
                         {"kind": "csv-failed", "package": "trustee-operator", "namespace": namespace,
                          "reason": "InstallComponentFailedNoRetry"}])
        subscribe(kube, namespace, "nfd", approval="Automatic", starting="nfd.v4.21.1")
        subscribe(kube, namespace, "trustee-operator", approval="Automatic", starting="trustee-operator.v1.2.1")
        seen = []

        def nfd_succeeded(items):
            for c in items:
                if c["metadata"]["name"] == "nfd.v4.21.1":
                    seen.append((c.get("status") or {}).get("reason"))
                    if (c.get("status") or {}).get("phase") == "Succeeded":
                        return c
            return None

        wait_for(kube, *CSVS, namespace, nfd_succeeded)
        assert "InstallCheckFailed" in seen
        stuck = wait_for(kube, *CSVS, namespace, lambda items: next(
            (c for c in items if c["metadata"]["name"] == "trustee-operator.v1.2.1"
             and (c.get("status") or {}).get("reason") == "InstallComponentFailedNoRetry"), None))
        assert stuck["status"]["phase"] == "Failed"
    finally:
        twin.set_faults([])
    # Cleared fault or not, a NoRetry CSV is not synced again.
    again = kube.get(path(*CSVS, "trustee-operator.v1.2.1", namespace))
    assert again["status"]["reason"] == "InstallComponentFailedNoRetry"


def test_failed_install_plan_and_bundle_unpack_show_on_the_subscription(twin, namespace):
    kube = twin.kube
    operator_group(kube, namespace)
    try:
        twin.set_faults([{"kind": "installplan-failed", "package": "nfd", "namespace": namespace}])
        subscribe(kube, namespace, "nfd", approval="Automatic", starting="nfd.v4.21.1")
        sub = wait_for(kube, *SUBS, namespace, lambda items: next(
            (s for s in items if (_condition(s, "InstallPlanFailed") or {}).get("status") == "True"), None))
        cond = _condition(sub, "InstallPlanFailed")
        assert cond["reason"] == "InstallComponentFailed" and "nodefeaturediscoveries.nfd.openshift.io" in cond["message"]
        assert sub["status"]["state"] == "UpgradePending"
        plans = kube.list(path(*PLANS, namespace=namespace))["items"]
        assert [p["status"]["phase"] for p in plans] == ["Failed"], "a Failed plan is not replaced by OLM"
        # Deleting the failed plan makes OLM resolve again; with the fault gone the new plan completes.
        twin.set_faults([])
        kube.delete(path(*PLANS, plans[0]["metadata"]["name"], namespace))
        wait_for(kube, *CSVS, namespace, lambda items: next(
            (c for c in items if (c.get("status") or {}).get("phase") == "Succeeded"), None))

        twin.set_faults([{"kind": "bundle-unpack-failed", "package": "trustee-operator"}])
        subscribe(kube, namespace, "trustee-operator", approval="Automatic", starting="trustee-operator.v1.2.1")
        sub = wait_for(kube, *SUBS, namespace, lambda items: next(
            (s for s in items if s["metadata"]["name"] == "trustee-operator"
             and (_condition(s, "BundleUnpackFailed") or {}).get("status") == "True"), None))
        assert "DeadlineExceeded" in _condition(sub, "BundleUnpackFailed")["message"]
        assert not any("trustee-operator.v1.2.1" in p["spec"]["clusterServiceVersionNames"]
                       for p in kube.list(path(*PLANS, namespace=namespace))["items"])
    finally:
        twin.set_faults([])
    wait_for(kube, *PLANS, namespace, lambda items: next(
        (p for p in items if "trustee-operator.v1.2.1" in p["spec"]["clusterServiceVersionNames"]), None))


def test_unrelated_unhealthy_catalog_blocks_resolution_until_it_recovers(twin, namespace):
    """registry/resolver/cache: any failed catalog snapshot fails the namespace's resolution (retried)."""
    kube = twin.kube
    operator_group(kube, namespace)
    try:
        twin.set_faults([{"kind": "catalog-not-ready", "catalog": "certified-operators"}])
        wait_for(kube, "operators.coreos.com/v1alpha1", "catalogsources", "openshift-marketplace", lambda items: any(
            c["status"]["connectionState"]["lastObservedState"] != "READY" for c in items))
        subscribe(kube, namespace, "nfd", approval="Automatic")
        sub = wait_for(kube, *SUBS, namespace, lambda items: next(
            (s for s in items if _condition(s, "ResolutionFailed")), None))
        unhealthy = _condition(sub, "CatalogSourcesUnhealthy")
        assert unhealthy["status"] == "True" and "redhat-operators" not in unhealthy["message"]
        failed = _condition(sub, "ResolutionFailed")
        assert failed["reason"] == "ErrorPreventedResolution"
        assert "error using catalogsource openshift-marketplace/certified-operators" in failed["message"]
        assert kube.list(path(*PLANS, namespace=namespace))["items"] == []
    finally:
        twin.set_faults([])
    sub = wait_for(kube, *SUBS, namespace, lambda items: next(
        (s for s in items if (s.get("status") or {}).get("installPlanRef")), None))
    assert _condition(sub, "ResolutionFailed") is None
