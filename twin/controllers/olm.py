"""The OLM twin: catalogs, PackageManifests, Subscriptions resolved into InstallPlans, and CSV phases.

What it keeps of OLM, because the collection has to cope with exactly this:

* Resolution is per namespace. Every Subscription of a namespace that wants a CSV it does not have
  yet lands in ONE InstallPlan; with Manual approval, approving it approves all of them
  (operator-lifecycle-manager#2352: a second operator's install upgrades a pinned first one).
* After an install, the next CSV of the channel (the one that ``replaces`` the installed CSV) is
  resolved at once: with Manual approval it waits in its own InstallPlan, so upgrades are one
  approval per step along the replaces chain.
* A CSV needs exactly one OperatorGroup in its namespace, with target namespaces its install modes
  support; otherwise it fails with OLM's reasons (NoOperatorGroup, TooManyOperatorGroups,
  UnsupportedOperatorGroup) and recovers when the OperatorGroups are fixed.
* CSV phases Pending -> InstallReady -> Installing -> Succeeded, paced by the profile's
  ``csv_install`` timing (the whole install; each step takes a third of it).

What it simplifies: no bundle unpacking and no operator Deployments. The operator's CRDs (the
kinds of its operands) appear when its CSV succeeds; the real InstallPlan creates them earlier,
but nothing can serve an operand before its operator runs, and other twins key off "the CRD
exists". In conformance mode the real CRD files replace the rows below.

Faults (profile ``faults:`` or the twin-faults ConfigMap):
``{kind: catalog-not-ready, catalog: NAME}``, ``{kind: package-missing, package: NAME}``,
``{kind: installplan-missing, package: NAME}``, ``{kind: csv-failed, package: NAME, csv: NAME}`` (with
``once: true``: fails once, then recovers; with ``reason: InstallComponentFailedNoRetry``: terminal),
``{kind: installplan-failed, package: NAME}``, ``{kind: bundle-unpack-failed, package: NAME}``. An unhealthy
catalog that no Subscription uses is ``catalog-not-ready`` on it: it still fails resolution everywhere
(ErrorPreventedResolution, retried), as OLM's resolver cache does.

Upstream read: openshift/operator-framework-olm release-4.21 @ 149d553b2057,
staging/operator-lifecycle-manager (cited per function below).
"""

import json
import logging
import time

from .. import crds as crd_table
from ..controller import Controller
from ..kube import ApiError, path
from ..kubelet import now
from ..world import FAULTS_CONFIGMAP, FAULTS_NAMESPACE

log = logging.getLogger("twin.olm")

MARKETPLACE = "openshift-marketplace"
OLM = "operators.coreos.com/v1alpha1"
OLM_V1 = "operators.coreos.com/v1"
PM_API = "packages.operators.coreos.com/v1"

CATALOGS = {
    "redhat-operators": {"display": "Red Hat Operators", "publisher": "Red Hat"},
    "certified-operators": {"display": "Certified Operators", "publisher": "Red Hat"},
}

# Own/SingleNamespace only: none of the four supports AllNamespaces (operators.md §2).
INSTALL_MODES = [
    {"type": "OwnNamespace", "supported": True},
    {"type": "SingleNamespace", "supported": True},
    {"type": "MultiNamespace", "supported": False},
    {"type": "AllNamespaces", "supported": False},
]

# Per package: catalog, channels (oldest -> newest), and the operator's CRD rows (twin.crds format).
# Each version replaces the one before it in the package's ``versions`` list.
PACKAGES = {
    "nfd": {
        "catalog": "redhat-operators",
        "display": "Node Feature Discovery Operator",
        "provider": "Red Hat",
        "namespace": "openshift-nfd",
        "deployment": "nfd-controller-manager",
        "versions": ["4.21.0", "4.21.1"],
        "channels": {"stable": ["4.21.0", "4.21.1"]},
        "default_channel": "stable",
        "crds": crd_table.NFD_OPERATOR_CRDS,  # the 4.21 CSV owns six
        "example": {"apiVersion": "nfd.openshift.io/v1", "kind": "NodeFeatureDiscovery",
                    "metadata": {"name": "nfd-instance", "namespace": "openshift-nfd"},
                    "spec": {"operand": {"imagePullPolicy": "IfNotPresent", "servicePort": 12000},
                             "workerConfig": {"configData": ""}}},
    },
    "gpu-operator-certified": {
        "catalog": "certified-operators",
        "display": "NVIDIA GPU Operator",
        "provider": "NVIDIA Corporation",
        "namespace": "nvidia-gpu-operator",
        "deployment": "gpu-operator",
        "versions": ["26.3.1", "26.3.3", "26.7.0"],
        "channels": {"v26.3": ["26.3.1", "26.3.3"], "v26.7": ["26.7.0"], "stable": ["26.3.1", "26.3.3", "26.7.0"]},
        "default_channel": "v26.7",
        "crds": [
            # Open but for what the real CRD refuses that the collection could send: the CC default mode's enum
            # (nvidia.com_clusterpolicies.yaml: ccManager.defaultMode on|off|devtools; ppcie only as a node label).
            ("nvidia.com", "v1", "ClusterPolicy", "clusterpolicies", "Cluster", {"spec": {
                "type": "object", "x-kubernetes-preserve-unknown-fields": True,
                "properties": {"ccManager": {
                    "type": "object", "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {"defaultMode": {"type": "string", "enum": ["on", "off", "devtools"]}}}}}}),
            ("nvidia.com", "v1alpha1", "NVIDIADriver", "nvidiadrivers", "Cluster", {}),
        ],
        "example": {"apiVersion": "nvidia.com/v1", "kind": "ClusterPolicy", "metadata": {"name": "gpu-cluster-policy"},
                    "spec": {"operator": {"defaultRuntime": "crio", "use_ocp_driver_toolkit": True},
                             "sandboxWorkloads": {"enabled": False, "defaultWorkload": "container"}}},
    },
    "sandboxed-containers-operator": {
        "catalog": "redhat-operators",
        "display": "OpenShift sandboxed containers Operator",
        "provider": "Red Hat",
        "namespace": "openshift-sandboxed-containers-operator",
        "deployment": "controller-manager",
        "versions": ["1.12.0", "1.12.1"],
        "channels": {"stable": ["1.12.0", "1.12.1"]},
        "default_channel": "stable",
        "crds": [("kataconfiguration.openshift.io", "v1", "KataConfig", "kataconfigs", "Cluster", {})],
        "example": {"apiVersion": "kataconfiguration.openshift.io/v1", "kind": "KataConfig",
                    "metadata": {"name": "example-kataconfig"}, "spec": {"checkNodeEligibility": False}},
    },
    "trustee-operator": {
        "catalog": "redhat-operators",
        "display": "Red Hat build of Trustee",
        "provider": "Red Hat",
        "namespace": "trustee-operator-system",
        "deployment": "trustee-operator-controller-manager",
        "versions": ["1.1.0", "1.2.1"],
        "channels": {"stable": ["1.1.0", "1.2.1"]},
        "default_channel": "stable",
        "crds": [
            ("confidentialcontainers.org", "v1alpha1", "TrusteeConfig", "trusteeconfigs", "Namespaced", {}),
            ("confidentialcontainers.org", "v1alpha1", "KbsConfig", "kbsconfigs", "Namespaced", {}),
        ],
        "example": {"apiVersion": "confidentialcontainers.org/v1alpha1", "kind": "TrusteeConfig",
                    "metadata": {"name": "trustee-config", "namespace": "trustee-operator-system"},
                    "spec": {"profileType": "Permissive", "kbsServiceType": "ClusterIP"}},
    },
}


def operator_label(package, namespace):
    """OLM's ``operators.coreos.com/<package>.<namespace>`` label key, its name part cut to 63 characters."""
    return "operators.coreos.com/" + f"{package}.{namespace}"[:63].rstrip(".-_")


def csv_name(package, version):
    return f"{package}.v{version}"


def _index():
    """CSV name -> (package, version, the CSV it replaces or None)."""
    found = {}
    for package, data in PACKAGES.items():
        previous = None
        for version in data["versions"]:
            found[csv_name(package, version)] = (package, version, csv_name(package, previous) if previous else None)
            previous = version
    return found


CSV_INDEX = _index()


def channel_csvs(package, channel):
    return [csv_name(package, v) for v in PACKAGES[package]["channels"].get(channel, [])]


def successor(package, channel, installed):
    """The CSV of the channel that replaces ``installed`` (OLM's next upgrade step), or None."""
    for name in channel_csvs(package, channel):
        if CSV_INDEX[name][2] == installed:
            return name
    return None


def owned_crds(package):
    return [{"name": f"{plural}.{group}", "version": version, "kind": kind, "displayName": kind}
            for group, version, kind, plural, _scope, _extra in PACKAGES[package]["crds"]]


def csv_spec(package, version):
    data = PACKAGES[package]
    name = csv_name(package, version)
    labels = {"app": data["deployment"]}
    spec = {
        "displayName": data["display"],
        "version": version,
        "provider": {"name": data["provider"]},
        "maturity": "stable",
        "installModes": INSTALL_MODES,
        "customresourcedefinitions": {"owned": owned_crds(package)},
        "install": {"strategy": "deployment", "spec": {"deployments": [{
            "name": data["deployment"],
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "serviceAccountName": data["deployment"],
                         "containers": [{"name": "manager", "image": f"registry.example/{package}:{version}"}]}}},
        }]}},
    }
    replaces = CSV_INDEX[name][2]
    if replaces:
        spec["replaces"] = replaces
    return spec


def csv_annotations(package):
    data = PACKAGES[package]
    return {
        "alm-examples": json.dumps([data["example"]]),
        "operatorframework.io/suggested-namespace": data["namespace"],
        "capabilities": "Basic Install",
        "olm.skipRange": "",
    }


def package_manifest(package):
    data = PACKAGES[package]
    catalog = data["catalog"]
    channels = []
    for channel, versions in data["channels"].items():
        head = versions[-1]
        channels.append({
            "name": channel,
            "currentCSV": csv_name(package, head),
            "currentCSVDesc": {"displayName": data["display"], "version": head, "installModes": INSTALL_MODES,
                               "provider": {"name": data["provider"]},
                               "annotations": {"operatorframework.io/suggested-namespace": data["namespace"]}},
            "entries": [{"name": csv_name(package, v), "version": v} for v in reversed(versions)],
        })
    return {
        "apiVersion": PM_API, "kind": "PackageManifest",
        "metadata": {"name": package, "namespace": MARKETPLACE, "labels": {
            "catalog": catalog, "catalog-namespace": MARKETPLACE, "provider-url": "",
            # packageserver labels are not validated; a CRD stand-in must use a valid label value.
            "provider": data["provider"].replace(" ", "-"),
            "operatorframework.io/arch.amd64": "supported", "operatorframework.io/os.linux": "supported"}},
        "spec": {},
        "status": {
            "catalogSource": catalog, "catalogSourceDisplayName": CATALOGS[catalog]["display"],
            "catalogSourceNamespace": MARKETPLACE, "catalogSourcePublisher": CATALOGS[catalog]["publisher"],
            "packageName": package, "provider": {"name": data["provider"]},
            "defaultChannel": data["default_channel"], "channels": channels,
        },
    }


def _faults_changed(world, kind, obj):
    """Apply the faults ConfigMap to the world first: handlers of one informer run in no set order."""
    meta = obj.get("metadata", {})
    if (meta.get("namespace"), meta.get("name")) != (FAULTS_NAMESPACE, FAULTS_CONFIGMAP):
        return False
    world.set_runtime_faults((obj.get("data") or {}).get("faults.yaml", "[]") if kind != "DELETED" else "[]")
    return True


def _condition(ctype, status, reason, message, previous=()):
    """A condition whose lastTransitionTime stays put while its status does not change."""
    old = next((c for c in previous or () if c.get("type") == ctype), None)
    since = old["lastTransitionTime"] if old and old.get("status") == status and old.get("lastTransitionTime") else now()
    return {"type": ctype, "status": status, "reason": reason, "message": message, "lastTransitionTime": since}


def _strip_times(value):
    if isinstance(value, dict):
        return {k: _strip_times(v) for k, v in value.items()
                if k not in ("lastUpdated", "lastTransitionTime", "lastUpdateTime", "resourceVersion")}
    if isinstance(value, list):
        return [_strip_times(v) for v in value]
    return value


# -- catalogs ------------------------------------------------------------------------------------


class CatalogController(Controller):
    """Connection state of each CatalogSource, and the PackageManifests it serves."""

    name = "olm-catalog"
    api_version = OLM
    plural = "catalogsources"

    def setup(self, manager):
        super().setup(manager)
        manager.informer(PM_API, "packagemanifests").add_handler(self._manifest_event)
        manager.informer("v1", "configmaps").add_handler(self._configmap_event)

    def _manifest_event(self, kind, obj):
        catalog = (obj.get("metadata", {}).get("labels") or {}).get("catalog")
        if catalog:
            self.queue.add((MARKETPLACE, catalog))

    def _configmap_event(self, kind, obj):
        if _faults_changed(self.world, kind, obj):
            for name in CATALOGS:
                self.queue.add((MARKETPLACE, name))

    def reconcile(self, key):
        namespace, name = key
        if namespace != MARKETPLACE or name not in CATALOGS:
            return None
        catalog = self.cache(OLM, "catalogsources").get(name, namespace)
        if catalog is None:
            return None
        broken = self.world.fault("catalog-not-ready", catalog=name)
        state = "TRANSIENT_FAILURE" if broken else "READY"
        current = (catalog.get("status") or {}).get("connectionState") or {}
        if current.get("lastObservedState") != state:
            self.kube.merge_patch(path(OLM, "catalogsources", name, namespace, "status"), {"status": {
                "connectionState": {"address": f"{name}.{MARKETPLACE}.svc:50051", "lastObservedState": state,
                                    "lastConnect": now()},
                "registryService": {"createdAt": now(), "port": "50051", "protocol": "grpc",
                                    "serviceName": name, "serviceNamespace": MARKETPLACE}}})
        manifests = self.cache(PM_API, "packagemanifests")
        for package, data in PACKAGES.items():
            if data["catalog"] != name:
                continue
            missing = self.world.fault("package-missing", package=package, catalog=name)
            exists = manifests.get(package, MARKETPLACE) is not None
            p = path(PM_API, "packagemanifests", namespace=MARKETPLACE)
            if missing and exists:
                self.kube.delete(f"{p}/{package}")
            elif not missing and not exists:
                self.kube.create_or_get(p, package_manifest(package))
        return None


# -- subscriptions and install plans ----------------------------------------------------------------


class Resolver(Controller):
    """Resolves all Subscriptions of a namespace together, as OLM's catalog operator does."""

    name = "olm-resolver"

    def setup(self, manager):
        super().setup(manager)
        for plural in ("subscriptions", "installplans", "clusterserviceversions"):
            manager.informer(OLM, plural).add_handler(
                lambda kind, obj: self.queue.add((obj["metadata"].get("namespace"), "")))
        manager.informer(OLM, "catalogsources").add_handler(lambda kind, obj: self._everywhere())
        manager.informer(PM_API, "packagemanifests").add_handler(lambda kind, obj: self._everywhere())
        manager.informer("v1", "configmaps").add_handler(
            lambda kind, obj: _faults_changed(self.world, kind, obj) and self._everywhere())

    def _everywhere(self):
        for namespace in {s["metadata"]["namespace"] for s in self.cache(OLM, "subscriptions").items()}:
            self.queue.add((namespace, ""))

    def reconcile(self, key):
        namespace, _ = key
        # Straight from the API, not the cache: an InstallPlan made a moment ago must be seen.
        subs = [s for s in self.kube.list(path(OLM, "subscriptions", namespace=namespace))["items"]
                if not s["metadata"].get("deletionTimestamp")]
        if not subs:
            return None
        plans = self.kube.list(path(OLM, "installplans", namespace=namespace))["items"]
        # CSVs after plans, and live too: a plan seen Complete has created its CSVs, and a CSV the cache has
        # not seen yet would be wanted again in a new plan.
        csvs = {c["metadata"]["name"]: c for c in self.kube.list(
            path(OLM, "clusterserviceversions", namespace=namespace))["items"]}
        resolved = {s["metadata"]["name"]: self._resolve(s, csvs) for s in subs}
        by_name = {p["metadata"]["name"]: p for p in plans}

        wanted = {}
        for sub in subs:
            r = resolved[sub["metadata"]["name"]]
            status = sub.get("status") or {}
            held = by_name.get((status.get("installPlanRef") or {}).get("name"))
            if status.get("state") == "UpgradePending" and held is not None \
                    and (held.get("status") or {}).get("phase") == "Failed":
                # nothingToUpdate (catalog/operator.go): an UpgradePending Subscription with an InstallPlan is
                # not resolved again, so a Failed plan stays its plan until someone deletes it.
                r["held"] = held
                continue
            if r["want"] and not self.world.fault("installplan-missing", package=sub["spec"].get("name")):
                wanted[r["want"]] = sub
        blocked = any(r["blocked"] for r in resolved.values())
        unpack = next((f for f in (self.world.fault("bundle-unpack-failed", package=s["spec"].get("name"))
                                   for s in wanted.values()) if f), None)
        plan = None
        if wanted and unpack and not blocked:
            # The bundles are unpacked before any InstallPlan exists; a failed unpack Job (BundleLookupFailed)
            # puts BundleUnpackFailed on every Subscription of the namespace and creates no plan
            # (catalog/operator.go syncResolvingNamespace, hasBundleLookupFailureCondition).
            for sub in subs:
                resolved[sub["metadata"]["name"]]["conditions"].append(_condition(
                    "BundleUnpackFailed", "True", "BundleUnpackFailed",
                    "bundle unpacking failed. Reason: DeadlineExceeded, and Message: Job was active longer than "
                    "specified deadline", (sub.get("status") or {}).get("conditions")))
        elif wanted:
            # A resolution that failed creates nothing; existing plans for the wanted CSVs are still found.
            plan = self._plan_for(namespace, plans, wanted, create=not blocked)
        for sub in subs:
            self._write_status(sub, resolved[sub["metadata"]["name"]], plan, plans)
        return None

    def _resolve(self, sub, csvs):
        """What one Subscription has and wants; conditions say why it wants nothing."""
        spec = sub.get("spec") or {}
        status = sub.get("status") or {}
        package, source = spec.get("name"), spec.get("source")
        source_ns = spec.get("sourceNamespace") or MARKETPLACE
        name = sub["metadata"]["name"]
        previous = status.get("conditions") or []
        catalogs = self.cache(OLM, "catalogsources")
        # Health of every catalog in the Subscription's namespace and in the global one, sorted by
        # namespace+name (catalog/subscription/reconciler.go catalogHealth); the condition is True when
        # any of them is unhealthy, naming the targeted one only when it is that one or missing
        # (catalog/subscription/state.go UpdateHealth; otherwise the previous message is kept).
        scope = {sub["metadata"]["namespace"], MARKETPLACE}
        health = []
        unhealthy = []
        for catalog in sorted(catalogs.items(), key=lambda c: c["metadata"]["namespace"] + c["metadata"]["name"]):
            meta = catalog["metadata"]
            if meta["namespace"] not in scope:
                continue
            ok = ((catalog.get("status") or {}).get("connectionState") or {}).get("lastObservedState") == "READY"
            if not ok:
                unhealthy.append(f"{meta['namespace']}/{meta['name']}")
            health.append({"catalogSourceRef": {"apiVersion": OLM, "kind": "CatalogSource", "name": meta["name"],
                                                "namespace": meta["namespace"], "uid": meta["uid"]},
                           "healthy": ok, "lastUpdated": now()})
        targeted = f"{source_ns}/{source}"
        old = next((c for c in previous if c.get("type") == "CatalogSourcesUnhealthy"), {})
        if catalogs.get(source, source_ns) is None:
            conditions = [_condition("CatalogSourcesUnhealthy", "True", "UnhealthyCatalogSourceFound",
                                     f"targeted catalogsource {targeted} missing", previous)]
        elif unhealthy:
            message = f"targeted catalogsource {targeted} unhealthy" if targeted in unhealthy else old.get("message", "")
            conditions = [_condition("CatalogSourcesUnhealthy", "True", "UnhealthyCatalogSourceFound", message, previous)]
        else:
            conditions = [_condition("CatalogSourcesUnhealthy", "False", "AllCatalogSourcesHealthy",
                                     "all available catalogsources are healthy", previous)]
        # What is installed stays in the status whatever resolution says (OLM never clears installedCSV).
        result = {"health": health, "conditions": conditions, "want": None, "blocked": False,
                  "installed": status.get("installedCSV") if status.get("installedCSV") in csvs else None}

        def failed(reason, message):
            if not any(c["type"] == "ResolutionFailed" for c in conditions):  # one resolution, one failure
                conditions.append(_condition("ResolutionFailed", "True", reason, message, previous))
            return result

        if unhealthy:
            # The resolver's cache takes a snapshot of every catalog in scope and fails the whole
            # resolution when any snapshot failed (registry/resolver/cache/cache.go
            # NamespacedOperatorCache.Error, checked in resolver.go SolveOperators), even one the
            # Subscription does not use; catalog/operator.go syncResolvingNamespace sets
            # ErrorPreventedResolution and requeues (it is retried, unlike ConstraintsNotSatisfiable).
            result["blocked"] = True
            failed("ErrorPreventedResolution", "; ".join(
                f"error using catalogsource {c}: failed to list bundles: rpc error: code = Unavailable desc = "
                "connection error: desc = \"transport: Error while dialing: dial tcp: connect: connection refused\""
                for c in unhealthy))
        if catalogs.get(source, source_ns) is None:
            result["blocked"] = True
            return failed("ConstraintsNotSatisfiable", f"constraints not satisfiable: no operators found from catalog "
                          f"{source} in namespace {source_ns} referenced by subscription {name}, subscription {name} exists")
        manifest = self.cache(PM_API, "packagemanifests").get(package, MARKETPLACE)
        suffix = f"in the catalog referenced by subscription {name}, subscription {name} exists"
        if package not in PACKAGES or PACKAGES[package]["catalog"] != source or manifest is None:
            return failed("ConstraintsNotSatisfiable", f"constraints not satisfiable: no operators found in package {package} {suffix}")
        channel = spec.get("channel") or PACKAGES[package]["default_channel"]
        entries = channel_csvs(package, channel)
        if not entries:
            return failed("ConstraintsNotSatisfiable",
                          f"constraints not satisfiable: no operators found in channel {channel} of package {package} {suffix}")
        installed = status.get("installedCSV") if status.get("installedCSV") in csvs else None
        start = spec.get("startingCSV")
        if installed is None:
            if start and start not in entries:
                return failed("ConstraintsNotSatisfiable",
                              f"constraints not satisfiable: no operators found with name {start} in channel {channel} "
                              f"of package {package} {suffix}")
            target = start or entries[-1]
            if target in csvs:
                installed = target
        # A CSV an InstallPlan created for this Subscription's next step makes it the installed one.
        while installed:
            following = successor(package, channel, installed)
            if following and following in csvs:
                installed = following
                continue
            break
        result["installed"] = installed
        result["want"] = successor(package, channel, installed) if installed else target
        return result

    def _plan_for(self, namespace, plans, wanted, create=True):
        """The InstallPlan naming exactly the wanted CSVs: an existing one, or a new generation."""
        names = sorted(wanted)
        for plan in sorted(plans, key=lambda p: -(p["spec"].get("generation") or 0)):
            phase = (plan.get("status") or {}).get("phase")
            if sorted(plan["spec"].get("clusterServiceVersionNames") or []) == names and phase not in ("Failed", "Complete"):
                return plan
        if not create:
            return None
        manual = any((s["spec"].get("installPlanApproval") or "Automatic") == "Manual" for s in wanted.values())
        generation = max([p["spec"].get("generation") or 0 for p in plans] + [0]) + 1
        labels = {operator_label(s["spec"]["name"], namespace): "" for s in wanted.values()}
        body = {
            "apiVersion": OLM, "kind": "InstallPlan",
            "metadata": {"generateName": "install-", "namespace": namespace, "labels": labels,
                         "ownerReferences": [{"apiVersion": OLM, "kind": "Subscription", "name": s["metadata"]["name"],
                                              "uid": s["metadata"]["uid"], "blockOwnerDeletion": False,
                                              "controller": False} for s in wanted.values()]},
            "spec": {"approval": "Manual" if manual else "Automatic", "approved": not manual,
                     "clusterServiceVersionNames": names, "generation": generation},
        }
        try:
            plan = self.kube.create(path(OLM, "installplans", namespace=namespace), body)
        except ApiError as exc:
            if exc.status == 403 and "being terminated" in exc.message:
                return None  # the namespace goes away with its Subscriptions
            raise
        sources = sorted({s["spec"]["source"] for s in wanted.values()})
        steps = [{"resolving": csv, "resource": {"group": "operators.coreos.com", "version": "v1alpha1",
                                                 "kind": "ClusterServiceVersion", "name": csv,
                                                 "sourceName": wanted[csv]["spec"]["source"],
                                                 "sourceNamespace": wanted[csv]["spec"].get("sourceNamespace") or MARKETPLACE},
                  "status": "Unknown"} for csv in names]
        plan = self.kube.merge_patch(path(OLM, "installplans", plan["metadata"]["name"], namespace, "status"), {"status": {
            "phase": "RequiresApproval" if manual else "Installing", "catalogSources": sources, "plan": steps,
            "bundleLookups": [], "startTime": now()}})
        plans.append(plan)
        log.info("%s: InstallPlan %s (generation %d, %s) for %s", namespace, plan["metadata"]["name"], generation,
                 "Manual" if manual else "Automatic", ", ".join(names))
        return plan

    def _write_status(self, sub, resolved, plan, plans):
        status = dict(sub.get("status") or {})
        previous = status.get("conditions") or []
        conditions = list(resolved["conditions"])
        want, installed = resolved["want"], resolved["installed"]
        ref_plan = None
        if resolved.get("held"):
            ref_plan = plan = resolved["held"]
        elif want and plan and want in plan["spec"]["clusterServiceVersionNames"]:
            ref_plan = plan
        elif status.get("installPlanRef"):
            ref_plan = next((p for p in plans if p["metadata"]["name"] == status["installPlanRef"]["name"]), None)
        new = {"catalogHealth": resolved["health"], "conditions": conditions, "lastUpdated": now()}
        if installed:
            new["installedCSV"] = installed
        if resolved.get("held"):
            # catalog/subscription/state.go CheckInstallPlanStatus: a Failed plan gives InstallPlanFailed with
            # the reason and message of the plan's Installed condition.
            cond = next((c for c in (plan.get("status") or {}).get("conditions") or []
                         if c.get("type") == "Installed" and c.get("status") == "False"), {})
            conditions.append(_condition("InstallPlanFailed", "True", cond.get("reason") or "InstallPlanFailed",
                                         cond.get("message") or (plan.get("status") or {}).get("message") or "",
                                         previous))
            new["state"] = "UpgradePending"
            new["currentCSV"] = status.get("currentCSV")
        elif want and ref_plan is plan and plan is not None:
            phase = (plan.get("status") or {}).get("phase")
            if phase == "RequiresApproval":
                conditions.append(_condition("InstallPlanPending", "True", "RequiresApproval", "", previous))
            elif phase == "Installing":
                conditions.append(_condition("InstallPlanPending", "True", "Installing", "", previous))
            new["state"] = "UpgradePending"
            new["currentCSV"] = want
        elif installed:
            new["state"] = "AtLatestKnown"
            new["currentCSV"] = installed
        if ref_plan is not None:
            meta = ref_plan["metadata"]
            new["installPlanRef"] = {"apiVersion": OLM, "kind": "InstallPlan", "name": meta["name"],
                                     "namespace": meta["namespace"], "resourceVersion": meta["resourceVersion"],
                                     "uid": meta["uid"]}
            new["installplan"] = {"apiVersion": OLM, "kind": "InstallPlan", "name": meta["name"], "uuid": meta["uid"]}
            new["installPlanGeneration"] = ref_plan["spec"].get("generation")
        if _strip_times({k: v for k, v in status.items()}) == _strip_times(new):
            return
        # Merge patch: keys absent from ``new`` are removed explicitly so stale fields do not linger.
        body = dict(new)
        for stale in ("state", "currentCSV", "installedCSV", "installPlanRef", "installplan", "installPlanGeneration"):
            if stale in status and stale not in new:
                body[stale] = None
        self.kube.merge_patch(path(OLM, "subscriptions", sub["metadata"]["name"], sub["metadata"]["namespace"], "status"),
                              {"status": body})


class InstallPlanController(Controller):
    """Approved InstallPlans create their CSVs, stamped with the namespace's OperatorGroup."""

    name = "olm-installplan"
    api_version = OLM
    plural = "installplans"

    def reconcile(self, key):
        namespace, name = key
        plan = self.cache(OLM, "installplans").get(name, namespace)
        if plan is None or plan["metadata"].get("deletionTimestamp"):
            return None
        p = path(OLM, "installplans", name, namespace, "status")
        phase = (plan.get("status") or {}).get("phase")
        if phase == "RequiresApproval" and plan["spec"].get("approved"):
            self.kube.merge_patch(p, {"status": {"phase": "Installing"}})
            return None
        if phase != "Installing":
            return None
        failing = next((f for f in (self.world.fault("installplan-failed", package=CSV_INDEX[c][0], namespace=namespace)
                                    for c in plan["spec"]["clusterServiceVersionNames"] if c in CSV_INDEX) if f), None)
        if failing:
            # catalog/operator.go transitionInstallPlanState: ExecutePlan kept failing past the install plan
            # timeout -> phase Failed, condition Installed=False/InstallComponentFailed with the error. A Failed
            # plan is never synced again (syncInstallPlans returns for Failed and Complete).
            group, _version, _kind, plural, *_ = PACKAGES[failing.get("package") or CSV_INDEX[
                plan["spec"]["clusterServiceVersionNames"][0]][0]]["crds"][0]
            message = failing.get("message") or (
                f"error validating existing CRs against new CRD's schema for \"{plural}.{group}\": "
                "error validating custom resource against new schema")
            stamp = now()
            self.kube.merge_patch(p, {"status": {"phase": "Failed", "message": message, "conditions": [
                {"type": "Installed", "status": "False", "reason": "InstallComponentFailed", "message": message,
                 "lastTransitionTime": stamp, "lastUpdateTime": stamp}]}})
            return None
        groups = [g for g in self.cache(OLM_V1, "operatorgroups").items() if g["metadata"]["namespace"] == namespace]
        for csv in plan["spec"]["clusterServiceVersionNames"]:
            self._create_csv(namespace, csv, groups)
        steps = [dict(s, status="Created") for s in (plan.get("status") or {}).get("plan") or []]
        self.kube.merge_patch(p, {"status": {"phase": "Complete", "plan": steps, "conditions": [
            {"type": "Installed", "status": "True", "lastTransitionTime": now(), "lastUpdateTime": now()}]}})
        return None

    def _create_csv(self, namespace, name, groups):
        package, version, _ = CSV_INDEX[name]
        annotations = csv_annotations(package)
        if len(groups) == 1:
            group = groups[0]
            annotations.update({
                "olm.operatorGroup": group["metadata"]["name"], "olm.operatorNamespace": namespace,
                "olm.targetNamespaces": ",".join((group.get("spec") or {}).get("targetNamespaces") or [])})
        body = {"apiVersion": OLM, "kind": "ClusterServiceVersion",
                "metadata": {"name": name, "namespace": namespace, "annotations": annotations,
                             "labels": {operator_label(package, namespace): ""}},
                "spec": csv_spec(package, version)}
        try:
            self.kube.create(path(OLM, "clusterserviceversions", namespace=namespace), body)
        except ApiError as exc:
            if exc.status != 409:
                raise


# -- ClusterServiceVersions ------------------------------------------------------------------------------

OPERATOR_GROUP_REASONS = ("NoOperatorGroup", "TooManyOperatorGroups", "UnsupportedOperatorGroup")
NO_RETRY = "InstallComponentFailedNoRetry"

# What OLM does with a Failed CSV (operator-framework-olm release-4.21 @ 149d553b,
# staging/operator-lifecycle-manager/pkg/controller/operators/olm/operator.go, transitionCSVState):
# * reason InstallComponentFailedNoRetry: "skipping sync for CSV in failed-no-retry state" - terminal;
# * the OperatorGroup reasons: back to Pending/RequirementsUnknown once the OperatorGroup is fixed;
# * any other reason (case CSVPhaseFailed): updateInstallStatus(..., Pending, NeedsReinstall) - healthy
#   deployments make it Succeeded again; a deployment past its progress deadline (an unrecoverable
#   install-check error) keeps it Failed/InstallCheckFailed (SetPhaseWithEventIfChanged: no new write),
#   which is the stuck CSV the documented recovery is for.


class CSVController(Controller):
    """CSV phases as olm-operator's transitionCSVState moves them.

    Faults: ``csv-failed`` makes the install check fail (the deployment exceeded its progress
    deadline) for as long as the fault is active; with ``once: true`` only the first install of each
    CSV fails and the next sync finds the deployment healthy (a temporarily Failed CSV that OLM
    recovers); with ``reason: InstallComponentFailedNoRetry`` the install strategy fails in
    InstallReady with an unrecoverable error, which OLM never retries.
    """

    name = "olm-csv"
    api_version = OLM
    plural = "clusterserviceversions"
    watches = ((OLM_V1, "operatorgroups"),)

    def __init__(self, world):
        super().__init__(world)
        self.due = {}  # key -> monotonic time of the next phase
        self.failed_once = set()  # uids of CSVs a ``once`` fault has failed already

    def setup(self, manager):
        super().setup(manager)
        manager.informer("v1", "configmaps").add_handler(self._configmap_event)

    def _configmap_event(self, kind, obj):
        # A fault cleared is a deployment that became healthy: OLM's resync sees it; the twin requeues.
        if _faults_changed(self.world, kind, obj):
            for csv in self.cache(OLM, "clusterserviceversions").items():
                self.queue.add((csv["metadata"]["namespace"], csv["metadata"]["name"]))

    def map_event(self, kind, obj):
        namespace = obj["metadata"].get("namespace")
        return [(namespace, c["metadata"]["name"]) for c in self.cache(OLM, "clusterserviceversions").items()
                if c["metadata"]["namespace"] == namespace]

    def _fault(self, csv):
        name, namespace = csv["metadata"]["name"], csv["metadata"]["namespace"]
        fault = self.world.fault("csv-failed", package=CSV_INDEX[name][0], csv=name, namespace=namespace)
        if fault and fault.get("once") and csv["metadata"].get("uid") in self.failed_once:
            return None
        return fault

    def reconcile(self, key):
        namespace, name = key
        csv = self.cache(OLM, "clusterserviceversions").get(name, namespace)
        if csv is None or csv["metadata"].get("deletionTimestamp") or name not in CSV_INDEX:
            self.due.pop(key, None)
            return None
        status = csv.get("status") or {}
        phase = status.get("phase") or ""
        if phase in ("Succeeded", "Replacing", "Deleting"):
            return None
        if status.get("reason") == NO_RETRY:
            return None  # transitionCSVState: skipping sync for CSV in failed-no-retry state
        problem = self._operator_group_problem(namespace, csv)
        if phase == "Failed" and status.get("reason") in OPERATOR_GROUP_REASONS:
            if problem is None:
                self._phase(key, csv, "Pending", "RequirementsUnknown", "InstallModes now support target namespaces")
            elif problem[0] != status.get("reason"):
                self._phase(key, csv, "Failed", *problem)
            return None
        if problem:
            self._phase(key, csv, "Failed", *problem)
            return None
        wait = self.due.get(key, 0) - time.monotonic()
        if phase and wait > 0:
            return wait
        package = CSV_INDEX[name][0]
        deployment = PACKAGES[package]["deployment"]
        fault = self._fault(csv)
        if phase == "":
            self._phase(key, csv, "Pending", "RequirementsUnknown", "requirements not yet checked")
        elif phase == "Pending":
            self._phase(key, csv, "InstallReady", "AllRequirementsMet", "all requirements found, attempting install")
        elif phase == "InstallReady":
            if fault and fault.get("reason") == NO_RETRY:
                # installer.Install returned an unrecoverable error (install.IsErrorUnrecoverable), e.g. an
                # existing Deployment whose immutable selector differs from the bundle's.
                self._phase(key, csv, "Failed", NO_RETRY,
                            f"install strategy failed: Deployment.apps \"{deployment}\" is invalid: spec.selector: "
                            "Invalid value: field is immutable")
                return None
            self._phase(key, csv, "Installing", "InstallSucceeded", "waiting for install components to report healthy")
        elif phase in ("Installing", "Failed"):
            if fault:
                if fault.get("once"):
                    self.failed_once.add(csv["metadata"].get("uid"))
                if phase == "Installing":
                    self._phase(key, csv, "Failed", "InstallCheckFailed",
                                f"install failed: deployment {deployment} not ready before timeout: "
                                f"deployment \"{deployment}\" exceeded its progress deadline")
                return None  # Failed and still unhealthy: the phase does not change (SetPhaseWithEventIfChanged)
            self._install_crds(package)
            self._phase(key, csv, "Succeeded", "InstallSucceeded", "install strategy completed with no errors")
            replaced = (csv.get("spec") or {}).get("replaces")
            if replaced:
                self.kube.delete(path(OLM, "clusterserviceversions", replaced, namespace))
            self.due.pop(key, None)
            return None
        return self.world.timings["csv_install"] / 3.0 or 0.01

    def _phase(self, key, csv, phase, reason, message):
        stamp = now()
        conditions = list((csv.get("status") or {}).get("conditions") or [])
        conditions.append({"phase": phase, "reason": reason, "message": message,
                           "lastTransitionTime": stamp, "lastUpdateTime": stamp})
        self.kube.merge_patch(path(OLM, "clusterserviceversions", csv["metadata"]["name"], csv["metadata"]["namespace"],
                                   "status"), {"status": {
            "phase": phase, "reason": reason, "message": message, "conditions": conditions[-10:],
            "lastTransitionTime": stamp, "lastUpdateTime": stamp}})
        self.due[key] = time.monotonic() + self.world.timings["csv_install"] / 3.0
        log.info("CSV %s/%s: %s (%s)", key[0], key[1], phase, reason)

    def _operator_group_problem(self, namespace, csv):
        groups = [g for g in self.cache(OLM_V1, "operatorgroups").items() if g["metadata"]["namespace"] == namespace]
        if not groups:
            return "NoOperatorGroup", "csv in namespace with no operatorgroups"
        if len(groups) > 1:
            return "TooManyOperatorGroups", "csv created in namespace with multiple operatorgroups, can't pick one automatically"
        spec = groups[0].get("spec") or {}
        targets = spec.get("targetNamespaces") or []
        if not targets and not spec.get("selector"):
            mode = "AllNamespaces"
        elif targets == [namespace]:
            mode = "OwnNamespace"
        elif len(targets) == 1:
            mode = "SingleNamespace"
        else:
            mode = "MultiNamespace"
        modes = {m["type"]: m["supported"] for m in (csv.get("spec") or {}).get("installModes") or []}
        if not modes.get(mode, False):
            return "UnsupportedOperatorGroup", f"{mode} InstallModeType not supported, cannot configure to watch " + (
                "all namespaces" if mode == "AllNamespaces" else "namespaces " + ",".join(targets))
        return None

    def _install_crds(self, package):
        rows = PACKAGES[package]["crds"]
        conformance = conformance_dir(self.world)
        definitions = [crd_table.twin_crd(*row) for row in rows]
        if conformance:
            wanted = {(group, kind) for group, _v, kind, *_ in rows}
            real = {}
            for crd in crd_table.real_crds(conformance):
                ident = (crd["spec"]["group"], crd["spec"]["names"]["kind"])
                if ident in wanted:
                    real.setdefault(ident, crd)  # the first file wins: the operator's own copy sorts first
            definitions = [real.get((group, kind), crd) for (group, _v, kind, *_), crd in zip(rows, definitions)]
        existing = {c["metadata"]["name"] for c in self.kube.list(
            path("apiextensions.k8s.io/v1", "customresourcedefinitions"))["items"]}
        missing = [c for c in definitions if c["metadata"]["name"] not in existing]
        if missing:
            crd_table.install(self.kube, missing)
            log.info("CRDs of %s installed: %s", package, ", ".join(c["metadata"]["name"] for c in missing))


class OperatorGroupController(Controller):
    name = "olm-operatorgroup"
    api_version = OLM_V1
    plural = "operatorgroups"

    def reconcile(self, key):
        namespace, name = key
        group = self.cache(OLM_V1, "operatorgroups").get(name, namespace)
        if group is None or group["metadata"].get("deletionTimestamp"):
            return None
        spec = group.get("spec") or {}
        namespaces = spec.get("targetNamespaces") or ([] if spec.get("selector") else [""])
        if (group.get("status") or {}).get("namespaces") == namespaces:
            return None
        self.kube.merge_patch(path(OLM_V1, "operatorgroups", name, namespace, "status"),
                              {"status": {"namespaces": namespaces, "lastUpdated": now()}})
        return None


def conformance_dir(world):
    """The shared CRD folder when the twin runs in conformance mode (cluster.json), else None."""
    if not world.state_dir:
        return None
    try:
        with open(f"{world.state_dir}/cluster.json", encoding="utf-8") as handle:
            return json.load(handle).get("conformance")
    except (OSError, ValueError):
        return None


def seed(kube, profile):
    p = path(PM_API, "packagemanifests", namespace=MARKETPLACE)
    for package in PACKAGES:
        if any(f.get("kind") == "package-missing" and f.get("package") in (None, package) for f in profile.get("faults") or []):
            continue
        kube.create_or_get(p, package_manifest(package))


def register(manager, world):
    for controller in (CatalogController, Resolver, InstallPlanController, CSVController, OperatorGroupController):
        manager.add(controller(world))
