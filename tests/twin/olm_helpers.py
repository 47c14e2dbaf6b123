"""Helpers for tests that drive the OLM twin by hand: wait by watching, subscribe, approve."""

import json
import time

from twin.controllers import olm
from twin.kube import ApiError, path

SUBS = ("operators.coreos.com/v1alpha1", "subscriptions")
PLANS = ("operators.coreos.com/v1alpha1", "installplans")
CSVS = ("operators.coreos.com/v1alpha1", "clusterserviceversions")


def _list(kube, p, selector, attempts=50):
    """A list right after start-up may meet a watch cache still initialising (429): retry as clients do."""
    for attempt in range(attempts):
        try:
            return kube.list(p, fieldSelector=selector)
        except ApiError as exc:
            if exc.status != 429 or attempt == attempts - 1:
                raise
            time.sleep(0.2)


def wait_for(kube, api_version, plural, namespace, predicate, timeout=30, name=None):
    """List, then follow the watch until ``predicate(items)`` returns something truthy."""
    p = path(api_version, plural, namespace=namespace)
    selector = f"metadata.name={name}" if name else None
    listing = _list(kube, p, selector)
    items = {o["metadata"]["name"]: o for o in listing["items"]}
    found = predicate(list(items.values()))
    if found:
        return found
    for kind, obj in kube.watch(p, listing["metadata"]["resourceVersion"], timeout_seconds=timeout, fieldSelector=selector):
        if kind == "DELETED":
            items.pop(obj["metadata"]["name"], None)
        elif kind in ("ADDED", "MODIFIED"):
            items[obj["metadata"]["name"]] = obj
        found = predicate(list(items.values()))
        if found:
            return found
    raise AssertionError(f"{plural} in {namespace} never matched; last: {[o.get('status') for o in items.values()]}")


def operator_group(kube, namespace, name=None, targets=None):
    kube.create(path("operators.coreos.com/v1", "operatorgroups", namespace=namespace), {
        "apiVersion": "operators.coreos.com/v1", "kind": "OperatorGroup", "metadata": {"name": name or namespace},
        "spec": {"targetNamespaces": [namespace] if targets is None else targets}})


def subscribe(kube, namespace, package, approval="Manual", starting=None, channel=None, source=None,
              source_namespace="openshift-marketplace", name=None):
    spec = {"name": package, "source": source or olm.PACKAGES[package]["catalog"], "sourceNamespace": source_namespace,
            "installPlanApproval": approval}
    if starting:
        spec["startingCSV"] = starting
    if channel:
        spec["channel"] = channel
    kube.create(path(*SUBS, namespace=namespace), {"apiVersion": "operators.coreos.com/v1alpha1", "kind": "Subscription",
                                                   "metadata": {"name": name or package}, "spec": spec})


def catalog(kube, namespace, name, index="redhat-operator-index", packages=None):
    """A CatalogSource of one of the twin's index images in ``namespace``; ``packages`` prunes it like a mirror."""
    meta = {"name": name, "namespace": namespace}
    if packages is not None:
        meta["annotations"] = {olm.CONTENT_ANNOTATION: json.dumps(packages)}
    kube.create(path("operators.coreos.com/v1alpha1", "catalogsources", namespace=namespace), {
        "apiVersion": "operators.coreos.com/v1alpha1", "kind": "CatalogSource", "metadata": meta,
        "spec": {"sourceType": "grpc", "displayName": f"Mirror of {index}", "publisher": "test",
                 "image": f"mirror.example/{index}:v4.21"}})


def nothing_for(kube, api_version, plural, namespace, predicate, seconds=3):
    """True when ``predicate(items)`` stays false for ``seconds`` of watching (a negative check: OLM does not act)."""
    try:
        wait_for(kube, api_version, plural, namespace, predicate, timeout=seconds)
    except AssertionError:
        return True
    return False


def approve(kube, namespace, plan):
    kube.merge_patch(path(*PLANS, plan["metadata"]["name"], namespace), {"spec": {"approved": True}})
