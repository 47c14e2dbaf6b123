"""The CRDs a twin cluster serves: the team's own by default, the real upstream ones in conformance mode.

The team's CRDs are structural but permissive (typed where the collection and the twins rely on a
field, open elsewhere): they let the twin run anywhere. Conformance mode loads the real CRDs from
the shared folder instead, for every kind that folder has, so that everything the collection
writes is proven against the real schemas (enums, required fields, CEL rules).
"""

import time
from pathlib import Path

import yaml

from .kube import ApiError, path

OPEN = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}

# group, version, kind, plural, scope, extra: served kinds of OpenShift and its operators.
# Later twins append their kinds here (one table, one place).
TABLE = [
    ("config.openshift.io", "v1", "ClusterVersion", "clusterversions", "Cluster", {}),
    ("config.openshift.io", "v1", "Infrastructure", "infrastructures", "Cluster", {}),
    ("config.openshift.io", "v1", "FeatureGate", "featuregates", "Cluster", {}),
    ("config.openshift.io", "v1", "Ingress", "ingresses", "Cluster", {}),
    # Read by the Trustee operator: APIServer ``cluster``'s TLS profile, Proxy ``cluster``'s proxy env.
    ("config.openshift.io", "v1", "APIServer", "apiservers", "Cluster", {}),
    ("config.openshift.io", "v1", "Proxy", "proxies", "Cluster", {}),
    ("machineconfiguration.openshift.io", "v1", "MachineConfigPool", "machineconfigpools", "Cluster",
     {"shortNames": ["mcp"]}),
    ("machineconfiguration.openshift.io", "v1", "MachineConfig", "machineconfigs", "Cluster",
     {"shortNames": ["mc"], "status": False}),
    # Read by the MCO's render controller (no upstream copy in the shared folder: the twin's, also in conformance mode).
    ("machineconfiguration.openshift.io", "v1", "ContainerRuntimeConfig", "containerruntimeconfigs", "Cluster",
     {"shortNames": ["ctrcfg"]}),
    ("machineconfiguration.openshift.io", "v1", "KubeletConfig", "kubeletconfigs", "Cluster", {}),
    ("operators.coreos.com", "v1alpha1", "CatalogSource", "catalogsources", "Namespaced", {"shortNames": ["catsrc"]}),
    ("operators.coreos.com", "v1alpha1", "ClusterServiceVersion", "clusterserviceversions", "Namespaced",
     {"shortNames": ["csv", "csvs"]}),
    ("operators.coreos.com", "v1alpha1", "Subscription", "subscriptions", "Namespaced", {"shortNames": ["sub", "subs"]}),
    ("operators.coreos.com", "v1alpha1", "InstallPlan", "installplans", "Namespaced", {"shortNames": ["ip"]}),
    ("operators.coreos.com", "v1", "OperatorGroup", "operatorgroups", "Namespaced", {"shortNames": ["og"]}),
    # PackageManifest is an aggregated API on OpenShift; a read-only CRD stands in. No status
    # subresource, so fixtures can create it with its status in one request.
    ("packages.operators.coreos.com", "v1", "PackageManifest", "packagemanifests", "Namespaced", {"status": False}),
    ("route.openshift.io", "v1", "Route", "routes", "Namespaced", {}),
    ("security.openshift.io", "v1", "SecurityContextConstraints", "securitycontextconstraints", "Cluster",
     {"shortNames": ["scc"], "status": False, "open_root": True}),
]


# The CRDs the NFD operator's CSV owns (openshift/cluster-nfd-operator release-4.21 @bf1052c,
# manifests/stable/manifests/nfd.clusterserviceversion.yaml, spec.customresourcedefinitions.owned):
# the operator's own group (the instance, the rules users write, a NodeFeature nothing reads) and
# upstream NFD's group, which nfd-worker writes NodeFeatures to and nfd-master reads rules from.
# The OLM twin installs them when that CSV succeeds (PACKAGES["nfd"]["crds"] in controllers/olm.py).
NFD_OPERATOR_CRDS = [
    ("nfd.openshift.io", "v1", "NodeFeatureDiscovery", "nodefeaturediscoveries", "Namespaced", {}),
    ("nfd.openshift.io", "v1alpha1", "NodeFeatureRule", "nodefeaturerules", "Namespaced", {}),
    ("nfd.openshift.io", "v1alpha1", "NodeFeature", "nodefeatures", "Namespaced", {"status": False}),
    ("nfd.k8s-sigs.io", "v1alpha1", "NodeFeature", "nodefeatures", "Namespaced", {"status": False}),
    ("nfd.k8s-sigs.io", "v1alpha1", "NodeFeatureRule", "nodefeaturerules", "Namespaced",
     {"shortNames": ["nfr"]}),
    ("nfd.k8s-sigs.io", "v1alpha1", "NodeFeatureGroup", "nodefeaturegroups", "Namespaced", {"shortNames": ["nfg"]}),
]


# API groups an operator brings with its CSV: the OLM twin (twin/controllers/olm.py) installs them
# when that CSV succeeds, so they are not loaded at start-up, not even in conformance mode.
DEFERRED_GROUPS = frozenset({
    "nfd.openshift.io", "nfd.k8s-sigs.io", "nvidia.com", "kataconfiguration.openshift.io", "confidentialcontainers.org",
})


def twin_crd(group, version, kind, plural, scope, extra):
    root = OPEN if extra.get("open_root") else {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": extra.get("spec", OPEN),
            "status": OPEN,
        },
        "x-kubernetes-preserve-unknown-fields": True,
    }
    version_def = {"name": version, "served": True, "storage": True, "schema": {"openAPIV3Schema": root}}
    if extra.get("status", True):
        version_def["subresources"] = {"status": {}}
    names = {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"}
    if extra.get("shortNames"):
        names["shortNames"] = extra["shortNames"]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}", "labels": {"twin.confidential.gpu/crd": "twin"}},
        "spec": {"group": group, "scope": scope, "names": names, "versions": [version_def]},
    }


def real_crds(shared_crds: Path):
    """Every CRD document in the shared folder (the real upstream schemas)."""
    found = []
    # Sorted as strings, so "nfd-operator/..." (the 4.21 operator's own, Namespaced NodeFeatureRule)
    # comes before "nfd/..." (upstream NFD's, cluster-scoped); Path ordering put nfd/ first.
    for file in sorted(Path(shared_crds).rglob("*.yaml"), key=str):
        for doc in yaml.safe_load_all(file.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                doc.setdefault("metadata", {}).setdefault("labels", {})["twin.confidential.gpu/crd"] = "upstream"
                found.append(doc)
    return found


def definitions(conformance_dir=None, extra_table=()):
    """The CRDs to load: real ones where given, the team's own for every other kind."""
    crds = {}
    for row in list(TABLE) + list(extra_table):
        if row[0] in DEFERRED_GROUPS:
            continue
        crd = twin_crd(*row)
        crds[crd["metadata"]["name"]] = crd
    if conformance_dir:
        for crd in real_crds(conformance_dir):
            if crd["spec"]["group"] in DEFERRED_GROUPS:
                continue
            crds[crd["metadata"]["name"]] = crd
    return list(crds.values())


def install(kube, crds, timeout=60):
    """Server-side apply each CRD (the CSV CRD is too big for client-side apply), then wait Established."""
    p = path("apiextensions.k8s.io/v1", "customresourcedefinitions")
    for crd in crds:
        kube.apply(f"{p}/{crd['metadata']['name']}", crd)
    deadline = time.monotonic() + timeout
    pending = {c["metadata"]["name"] for c in crds}
    listing = kube.list(p)
    version = listing["metadata"]["resourceVersion"]
    pending -= {c["metadata"]["name"] for c in listing["items"] if _established(c)}
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"CRDs not Established after {timeout}s: {sorted(pending)}")
        try:
            for kind, obj in kube.watch(p, version, timeout_seconds=max(1, int(remaining))):
                if kind == "ERROR":
                    break
                if _established(obj):
                    pending.discard(obj["metadata"]["name"])
                if not pending:
                    return
        except ApiError:
            pass
        listing = kube.list(p)
        version = listing["metadata"]["resourceVersion"]
        pending -= {c["metadata"]["name"] for c in listing["items"] if _established(c)}


def _established(crd):
    return any(c.get("type") == "Established" and c.get("status") == "True"
               for c in (crd.get("status") or {}).get("conditions") or [])
