"""olm_operator against the OLM twin: refusals that name what is wrong, faults, deadlines, no idle writes."""

import threading

import pytest
from olm_helpers import PLANS, SUBS, catalog, operator_group, subscribe, wait_for

from twin.kube import path

pytestmark = pytest.mark.twin


@pytest.fixture
def olm_operator(twin, run_playbook):
    """olm_operator(**params) -> (rc, result) of one task run through ansible-playbook."""

    def run(check=False, **params):
        task = {"name": "olm", "confidential.gpu.olm_operator": params, "register": "out", "ignore_errors": True}
        result = run_playbook([{"hosts": "localhost", "gather_facts": False, "tasks": [task]}], env=twin.env(), check=check)
        return result.result("olm")

    return run


def test_catalog_not_ready_fails_before_subscribing(twin, namespace, olm_operator):
    twin.set_faults([{"kind": "catalog-not-ready", "catalog": "redhat-operators"}])
    try:
        wait_for(twin.kube, "operators.coreos.com/v1alpha1", "catalogsources", "openshift-marketplace", lambda items: any(
            c["status"]["connectionState"]["lastObservedState"] != "READY" for c in items))
        result = olm_operator(name="nfd", namespace=namespace)
    finally:
        twin.set_faults([])
    assert result["failed"]
    assert "CatalogSource openshift-marketplace/redhat-operators is TRANSIENT_FAILURE, not READY" in result["msg"]
    assert "ready catalog sources in openshift-marketplace: certified-operators" in result["msg"]
    assert twin.kube.list(path("operators.coreos.com/v1alpha1", "subscriptions", namespace=namespace))["items"] == []


def test_missing_package_channel_and_version_list_what_exists(twin, namespace, olm_operator):
    twin.set_faults([{"kind": "package-missing", "package": "sandboxed-containers-operator"}])
    try:
        wait_for(twin.kube, "packages.operators.coreos.com/v1", "packagemanifests", "openshift-marketplace",
                 lambda items: "sandboxed-containers-operator" not in [m["metadata"]["name"] for m in items])
        missing = olm_operator(name="sandboxed-containers-operator", namespace=namespace)
    finally:
        twin.set_faults([])
    assert "package sandboxed-containers-operator is not in catalog redhat-operators; it has: nfd, trustee-operator" \
        in missing["msg"]
    channel = olm_operator(name="gpu-operator-certified", namespace=namespace, channel="v25.10")
    assert "has no channel v25.10; channels: stable, v26.3, v26.7 (default v26.7)" in channel["msg"]
    version = olm_operator(name="gpu-operator-certified", namespace=namespace, channel="v26.3", version="26.7.0")
    assert "channel v26.3 has no version 26.7.0; it has: 26.3.3 (gpu-operator-certified.v26.3.3), " \
           "26.3.1 (gpu-operator-certified.v26.3.1); channels that have it: stable, v26.7" in version["msg"]


def test_foreign_operator_group_is_refused_by_name(twin, namespace, olm_operator):
    operator_group(twin.kube, namespace, name="someone-elses")
    result = olm_operator(name="trustee-operator", namespace=namespace)
    assert result["failed"]
    assert f"namespace {namespace} has OperatorGroup someone-elses that this module does not manage" in result["msg"]
    adopted = olm_operator(name="trustee-operator", namespace=namespace, operator_group="someone-elses", timeout=60)
    assert not adopted.get("failed"), adopted["msg"]
    assert adopted["installed_csv"] == "trustee-operator.v1.2.1"


def test_shared_install_plan_is_refused_naming_the_other_csv(twin, namespace, olm_operator):
    """OLM's trap: another Manual Subscription in the namespace is pending, so OLM plans both together."""
    kube = twin.kube
    operator_group(kube, namespace, name="trustee-operator-group")
    subscribe(kube, namespace, "nfd", starting="nfd.v4.21.0")
    wait_for(kube, *PLANS, namespace, lambda items: items)
    result = olm_operator(name="trustee-operator", namespace=namespace, version="1.1.0", timeout=60)
    assert result["failed"]
    assert "names nfd.v4.21.0, trustee-operator.v1.1.0: besides trustee-operator.v1.1.0 it would install nfd.v4.21.0" \
        in result["msg"]
    plans = kube.list(path(*PLANS, namespace=namespace))["items"]
    assert not any(p["spec"]["approved"] for p in plans), "nothing may be approved"


RECOVERY = "delete Subscription {ns}/trustee-operator, then CSV trustee-operator.v1.2.1 and InstallPlan"


def test_stuck_failed_csv_ends_at_the_deadline_naming_the_documented_recovery(twin, namespace, olm_operator):
    """OLM keeps a CSV whose deployment is past its deadline Failed and retries; the module waits, then says what to do."""
    twin.set_faults([{"kind": "csv-failed", "package": "trustee-operator", "namespace": namespace}])
    try:
        result = olm_operator(name="trustee-operator", namespace=namespace, timeout=8)
    finally:
        twin.set_faults([])
    assert result["failed"]
    assert "Timed out after 8s" in result["msg"]
    assert "CSV trustee-operator.v1.2.1 Failed (InstallCheckFailed: install failed: deployment " \
           "trustee-operator-controller-manager not ready before timeout" in result["msg"]
    assert RECOVERY.format(ns=namespace) in result["msg"]
    assert "recover_failed: true" in result["msg"]


def test_temporarily_failed_csv_is_waited_through(twin, namespace, olm_operator):
    twin.set_faults([{"kind": "csv-failed", "package": "trustee-operator", "namespace": namespace, "once": True}])
    try:
        result = olm_operator(name="trustee-operator", namespace=namespace, timeout=60)
    finally:
        twin.set_faults([])
    assert not result.get("failed"), result["msg"]
    assert result["csv_phase"] == "Succeeded"
    # The wait said what it saw as it went (printed by the action plugin, returned in progress).
    assert any("CSV trustee-operator.v1.2.1" in line for line in result["progress"]), \
        result["progress"]


def test_no_retry_fails_fast_and_recover_failed_performs_the_recovery(twin, namespace, olm_operator):
    twin.set_faults([{"kind": "csv-failed", "package": "trustee-operator", "namespace": namespace,
                      "reason": "InstallComponentFailedNoRetry"}])
    try:
        result = olm_operator(name="trustee-operator", namespace=namespace, timeout=60)
    finally:
        twin.set_faults([])
    assert result["failed"]
    assert "Timed out" not in result["msg"]
    assert "(InstallComponentFailedNoRetry: install strategy failed" in result["msg"]
    assert RECOVERY.format(ns=namespace) in result["msg"]
    csvs = path("operators.coreos.com/v1alpha1", "clusterserviceversions", namespace=namespace)
    old_uid = twin.kube.get(csvs + "/trustee-operator.v1.2.1")["metadata"]["uid"]
    # OLM never retries it, even with the cause gone; the module recovers it when asked.
    recovered = olm_operator(name="trustee-operator", namespace=namespace, timeout=60, recover_failed=True)
    assert not recovered.get("failed"), recovered["msg"]
    assert recovered["csv_phase"] == "Succeeded"
    assert recovered["removed"][:2] == [f"Subscription {namespace}/trustee-operator",
                                        f"ClusterServiceVersion {namespace}/trustee-operator.v1.2.1"]
    assert any(r.startswith(f"InstallPlan {namespace}/") for r in recovered["removed"])
    assert twin.kube.get(csvs + "/trustee-operator.v1.2.1")["metadata"]["uid"] != old_uid


def test_failed_install_plan_and_bundle_unpack_fail_fast_with_the_reason(twin, namespace, olm_operator):
    twin.set_faults([{"kind": "installplan-failed", "package": "nfd", "namespace": namespace},
                     {"kind": "bundle-unpack-failed", "package": "trustee-operator"}])
    try:
        plan = olm_operator(name="nfd", namespace=namespace, timeout=15)
        unpack = olm_operator(name="trustee-operator", namespace=namespace, timeout=15, operator_group="openshift-nfd")
    finally:
        twin.set_faults([])
    assert plan["failed"] and "Timed out" not in plan["msg"], plan["msg"]
    assert "InstallPlanFailed: InstallComponentFailed: error validating existing CRs" in plan["msg"]
    assert "delete InstallPlan" in plan["msg"]
    assert unpack["failed"] and "Timed out" not in unpack["msg"], unpack["msg"]
    assert "BundleUnpackFailed: bundle unpacking failed. Reason: DeadlineExceeded" in unpack["msg"]


def test_unrelated_unhealthy_catalog_is_waited_out(twin, namespace, olm_operator):
    """CatalogSourcesUnhealthy and ErrorPreventedResolution come from any catalog; OLM retries, so the module waits."""
    twin.set_faults([{"kind": "catalog-not-ready", "catalog": "certified-operators"}])
    wait_for(twin.kube, "operators.coreos.com/v1alpha1", "catalogsources", "openshift-marketplace", lambda items: any(
        c["status"]["connectionState"]["lastObservedState"] != "READY" for c in items))
    heal = threading.Timer(5, twin.set_faults, args=([],))
    heal.start()
    try:
        result = olm_operator(name="nfd", namespace=namespace, timeout=90)
    finally:
        heal.cancel()
        twin.set_faults([])
    assert not result.get("failed"), result["msg"]
    assert result["csv_phase"] == "Succeeded"


def test_install_plan_never_created_ends_at_the_deadline_saying_what_was_seen(twin, namespace, olm_operator):
    twin.set_faults([{"kind": "installplan-missing", "package": "nfd"}])
    try:
        result = olm_operator(name="nfd", namespace=namespace, timeout=4)
    finally:
        twin.set_faults([])
    assert result["failed"]
    assert f"Timed out after 4s waiting for Subscription {namespace}/nfd to show an InstallPlan after nothing installed" \
        in result["msg"]
    assert "last seen: state (none)" in result["msg"]


def test_idempotent_run_writes_nothing_and_upgrade_approves_one_plan(twin, namespace, olm_operator):
    first = olm_operator(name="gpu-operator-certified", namespace=namespace, channel="v26.3", version="26.3.1", timeout=120)
    assert first["installed_csv"] == "gpu-operator-certified.v26.3.1", first.get("msg")
    with twin.audit.window(user="admin") as idle:
        again = olm_operator(name="gpu-operator-certified", namespace=namespace, channel="v26.3", version="26.3.1")
    assert again["changed"] is False
    assert idle.writes == [], [(e["verb"], e["requestURI"]) for e in idle.writes]
    # Pinning 26.3.3 approves that one plan; it is v26.3's head, so OLM offers nothing further there.
    upgrade = olm_operator(name="gpu-operator-certified", namespace=namespace, channel="v26.3", version="26.3.3", timeout=120)
    assert upgrade["installed_csv"] == "gpu-operator-certified.v26.3.3", upgrade.get("msg")
    assert len(upgrade["approved_install_plans"]) == 1
    assert upgrade["pending_upgrade"] is None


def test_a_pin_the_channel_head_skips_over_is_refused_before_any_change(twin, namespace, olm_operator):
    """The GPU operator's CSVs carry olm.skipRange '>=1.9.0 <VERSION': from 26.3.1 OLM offers stable's head 26.7.0 only."""
    first = olm_operator(name="gpu-operator-certified", namespace=namespace, channel="stable", version="26.3.1", timeout=120)
    assert first["installed_csv"] == "gpu-operator-certified.v26.3.1", first.get("msg")
    offered = wait_for(twin.kube, *PLANS, namespace, lambda items: next(
        (p for p in items if p["spec"]["clusterServiceVersionNames"] == ["gpu-operator-certified.v26.7.0"]), None))
    assert offered["spec"]["approved"] is False
    with twin.audit.window(user="admin") as refused:
        skipped = olm_operator(name="gpu-operator-certified", namespace=namespace, channel="stable", version="26.3.3",
                               timeout=30)
    assert skipped["failed"]
    assert "Timed out" not in skipped["msg"]
    assert "OLM would upgrade gpu-operator-certified.v26.3.1 straight to gpu-operator-certified.v26.7.0, the head of " \
           "channel stable: its olm.skipRange '>=1.9.0 <26.7.0' includes 26.3.1" in skipped["msg"]
    assert "or use channel v26.3 whose head is gpu-operator-certified.v26.3.3" in skipped["msg"]
    assert refused.writes == [], [(e["verb"], e["requestURI"]) for e in refused.writes]
    jump = olm_operator(name="gpu-operator-certified", namespace=namespace, channel="stable", version="26.7.0", timeout=120)
    assert jump["installed_csv"] == "gpu-operator-certified.v26.7.0", jump.get("msg")
    assert jump["approved_install_plans"] == [offered["metadata"]["name"]]


def test_the_package_is_read_from_the_catalog_source_and_source_namespace_name(twin, namespace, olm_operator):
    """A GET by name returns the package of any catalog; a private catalog of the same name is asked by its labels."""
    kube = twin.kube
    catalog(kube, namespace, "redhat-operators", packages={"nfd": ["4.21.0"]})
    catalog(kube, namespace, "my-mirror", packages={"trustee-operator": ["1.1.0"]})
    wait_for(kube, "packages.operators.coreos.com/v1", "packagemanifests", namespace, lambda items: len(items) == 2)
    newer = olm_operator(name="nfd", namespace=namespace, source_namespace=namespace, version="4.21.1")
    assert newer["failed"]
    assert "package nfd channel stable has no version 4.21.1; it has: 4.21.0 (nfd.v4.21.0)" in newer["msg"], newer["msg"]
    assert kube.list(path(*SUBS, namespace=namespace))["items"] == []
    mirrored = olm_operator(name="nfd", namespace=namespace, source_namespace=namespace, version="4.21.0", timeout=60)
    assert mirrored["installed_csv"] == "nfd.v4.21.0", mirrored.get("msg")
    other = olm_operator(name="trustee-operator", namespace=namespace, source="my-mirror", source_namespace=namespace,
                         operator_group="openshift-nfd", timeout=60)
    assert other["installed_csv"] == "trustee-operator.v1.1.0", other.get("msg")


def test_a_channel_change_with_a_pending_plan_makes_olm_resolve_again(twin, namespace, olm_operator):
    """nothingToUpdate: an UpgradePending Subscription is not resolved again; deleting its stale plan makes OLM do it."""
    kube = twin.kube
    operator_group(kube, namespace, name="nvidia-gpu-operator-group")
    subscribe(kube, namespace, "gpu-operator-certified", starting="gpu-operator-certified.v26.3.1", channel="v26.3")
    stale = wait_for(kube, *PLANS, namespace, lambda items: next(iter(items), None))
    wait_for(kube, *SUBS, namespace, lambda items: any(
        (s.get("status") or {}).get("state") == "UpgradePending" for s in items))
    result = olm_operator(name="gpu-operator-certified", namespace=namespace, channel="v26.7", version="26.7.0", timeout=60)
    assert not result.get("failed"), result["msg"]
    assert result["installed_csv"] == "gpu-operator-certified.v26.7.0"
    assert f"InstallPlan {namespace}/{stale['metadata']['name']}" in result["removed"]


def test_automatic_approval_follows_olm_past_the_pin_with_a_warning(twin, namespace, olm_operator):
    first = olm_operator(name="nfd", namespace=namespace, version="4.21.0", approval="Automatic", timeout=120)
    assert not first.get("failed"), first.get("msg")
    assert first["csv_phase"] == "Succeeded"
    # OLM upgrades to the channel's head on its own; a later run reports it instead of failing on a "downgrade".
    wait_for(twin.kube, "operators.coreos.com/v1alpha1", "clusterserviceversions", namespace, lambda items: any(
        c["metadata"]["name"] == "nfd.v4.21.1" and c.get("status", {}).get("phase") == "Succeeded" for c in items))
    again = olm_operator(name="nfd", namespace=namespace, version="4.21.0", approval="Automatic", timeout=60)
    assert not again.get("failed"), again.get("msg")
    assert again["changed"] is False and again["installed_csv"] == "nfd.v4.21.1"
    assert any("approval is Automatic" in w for w in again.get("warnings", []))
