"""The OLM twin: catalogs, PackageManifests, Subscriptions resolved into InstallPlans, and CSV phases.

What it keeps of OLM, because the collection has to cope with exactly this:

* Resolution is per namespace (Resolver: catalog/operator.go syncResolvingNamespace). Every
  Subscription of a namespace that wants a CSV lands in ONE InstallPlan, Manual when ANY Subscription
  of the namespace is Manual; approving it approves all of them (operator-lifecycle-manager#2352).
  Only Subscriptions whose currentCSV changed point at a new plan; an UpgradePending Subscription
  with a plan is not resolved again until the plan is deleted; without exactly one OperatorGroup
  nothing resolves (no plan, no condition); a CSV no Subscription references is never adopted
  (ConstraintsNotSatisfiable); at most five plans are kept.
* The upgrade graph is ``replaces``, ``skips`` and ``olm.skipRange`` (NFD has only a skipRange): the
  candidate nearest the channel head that can replace the installed CSV is offered, with Manual
  approval in its own InstallPlan. ``startingCSV`` counts only while nothing is installed.
* Any CatalogSource of one of the twin's index images serves (a mirror, a private catalog in the
  operator's namespace), with PackageManifests in its own namespace (CatalogController).
* A CSV needs exactly one OperatorGroup in its namespace, with target namespaces its install modes
  support; otherwise it fails with OLM's reasons (NoOperatorGroup, TooManyOperatorGroups,
  UnsupportedOperatorGroup) and recovers when the OperatorGroups are fixed.
* CSV phases Pending -> InstallReady -> Installing -> Succeeded, paced by the profile's
  ``csv_install`` timing (the whole install; each step takes a third of it); a replaced CSV goes
  Replacing, then Deleting once its successor has Succeeded; the install timeout.

What it simplifies: no bundle unpacking and no operator Deployments. The operator's CRDs (the
kinds of its operands) appear when its CSV succeeds; the real InstallPlan creates them earlier,
but nothing can serve an operand before its operator runs, and other twins key off "the CRD
exists". In conformance mode the real CRD files replace the rows below.

Faults (profile ``faults:`` or the twin-faults ConfigMap):
``{kind: catalog-not-ready, catalog: NAME}``, ``{kind: package-missing, package: NAME}``,
``{kind: installplan-missing, package: NAME}``, ``{kind: csv-failed, package: NAME, csv: NAME}`` (with
``once: true``: fails once, then recovers; with ``reason: InstallComponentFailedNoRetry``: terminal),
``{kind: installplan-failed, package: NAME}``, ``{kind: bundle-unpack-failed, package: NAME}``,
``{kind: csv-unhealthy, package: NAME}`` (Installing until the install timeout, then Failed). An unhealthy
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
MAX_INSTALL_PLANS = 5  # catalog/operator.go maxInstallPlanCount

# The two seeded catalogs, and the index image each serves (twin/seed.py): any CatalogSource of that
# index image, in any namespace and under any name, serves the same packages (a mirror).
CATALOGS = {
    "redhat-operators": {"display": "Red Hat Operators", "publisher": "Red Hat", "index": "redhat-operator-index"},
    "certified-operators": {"display": "Certified Operators", "publisher": "Red Hat", "index": "certified-operator-index"},
}
# A twin-only knob for tests: a pruned mirror (what oc-mirror makes) serves only these versions,
# JSON ``{package: [version, ...]}``; packages not named are not served.
CONTENT_ANNOTATION = "twin.confidential.gpu/packages"

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
        # openshift/cluster-nfd-operator manifests/stable/manifests/nfd.clusterserviceversion.yaml: no
        # spec.replaces, an olm.skipRange '>=4.9.0 <VERSION' (ART stamps each z-stream's own bound).
        "replaces": False,
        "skip_range": {"4.21.0": ">=4.9.0 <4.21.0", "4.21.1": ">=4.9.0 <4.21.1"},
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
        # NVIDIA/gpu-operator bundle/*/manifests/gpu-operator-certified.clusterserviceversion.yaml (e.g. v25.3.1): no
        # spec.replaces, olm.skipRange '>=1.9.0 <VERSION': the channel head replaces any older version at once.
        "replaces": False,
        "skip_range": {v: f">=1.9.0 <{v}" for v in ("26.3.1", "26.3.3", "26.7.0")},
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
    """CSV name -> (package, version, the CSV its bundle replaces or None)."""
    found = {}
    for package, data in PACKAGES.items():
        previous = None
        for version in data["versions"]:
            replaces = csv_name(package, previous) if previous and data.get("replaces", True) else None
            found[csv_name(package, version)] = (package, version, replaces)
            previous = version
    return found


CSV_INDEX = _index()


# The resolver's reading of olm.skipRange is blang/semver/v4 v4.0.0's: operator-lifecycle-manager
# pkg/controller/registry/resolver/cache/operators.go NewOperatorFromBundle keeps
# ``semver.ParseRange(bundle.SkipRange)`` only when it parses, and predicates.go
# SkipRangeIncludesPredicate asks it about the installed CSV's version (``ParseTolerant``, as
# operator-framework/api pkg/lib/version OperatorVersion reads spec.version). A port of range.go and
# semver.go, quirks included; tests/unit/test_skiprange_differential.py runs the library itself on
# a corpus and holds this reading to it.

_NUM = frozenset("0123456789")
_ALNUM = _NUM | frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-")


class _Unparsable(Exception):
    pass


def _uint(text):
    if not text or not set(text) <= _NUM or (len(text) > 1 and text.startswith("0")) or int(text) >= 1 << 64:
        raise _Unparsable(text)
    return int(text)


def _parse_version(text):
    """blang Parse: (major, minor, patch, prerelease identifiers); build metadata checked, then ignored."""
    fields = text.split(".", 2)
    if len(fields) != 3:
        raise _Unparsable(text)
    patch, _, build = fields[2].partition("+")
    if "+" in fields[2] and not all(b and set(b) <= _ALNUM for b in build.split(".")):
        raise _Unparsable(text)
    patch, dash, pre = patch.partition("-")
    idents = []
    for ident in pre.split(".") if dash else []:
        if ident and set(ident) <= _NUM:
            idents.append((0, _uint(ident), ""))  # numeric identifiers sort before alphanumeric ones
        elif ident and set(ident) <= _ALNUM:
            idents.append((1, 0, ident))
        else:
            raise _Unparsable(text)
    return _uint(fields[0]), _uint(fields[1]), _uint(patch), tuple(idents)


def _parse_tolerant(text):
    """blang ParseTolerant: trims spaces, one leading 'v' and leading zeros; pads '4.21' to 4.21.0."""
    text = text.strip()
    fields = text.removeprefix("v").split(".", 2)
    for i, field in enumerate(fields):
        if len(field) > 1:
            field = field.lstrip("0")
            fields[i] = field if field[:1] in _NUM and field else "0" + field
    if len(fields) < 3:
        if "+" in fields[-1] or "-" in fields[-1]:
            raise _Unparsable(text)
        fields += ["0"] * (3 - len(fields))
    return _parse_version(".".join(fields))


def _cmp(a, b):
    """blang Version.Compare: a release is above its prereleases; a longer equal-prefixed prerelease is above."""
    if a[:3] != b[:3]:
        return 1 if a[:3] > b[:3] else -1
    if bool(a[3]) != bool(b[3]):
        return 1 if not a[3] else -1
    return (a[3] > b[3]) - (a[3] < b[3])


_OPS = {"": (0,), "=": (0,), "==": (0,), "!": (-1, 1), "!=": (-1, 1), ">": (1,), ">=": (0, 1), "<": (-1,),
        "<=": (-1, 0)}


def _words(expression):
    """blang splitAndTrim: spaces split, except right after '>', '<', '='; one-byte words vanish."""
    words, start, previous = [], 0, "\0"
    for i, char in enumerate(expression + " "):
        if char == " " and previous not in "<>=" or i == len(expression):
            word = expression[start:i]
            if len(word.encode()) > 1:
                words.append(word.replace(" ", ""))
            start = i + 1
        elif char != " ":
            previous = char
    return words


def _operator(word):
    """blang splitComparatorVersion: everything before the first digit is the operator."""
    for i, char in enumerate(word):
        if char.isdecimal():
            return word[:i].strip(), word[i:]
    raise _Unparsable(word)


def _bump(version, index):
    """blang increment{Major,Minor}Version (strconv.Atoi: an optional sign); '' where Atoi fails."""
    fields = version.split(".")
    digits = fields[index].removeprefix("+").removeprefix("-") if fields[index][:1] in "+-" else fields[index]
    if not digits or not set(digits) <= _NUM or not -(1 << 63) <= int(fields[index]) < 1 << 63:
        return ""
    value = int(fields[index]) + 1
    fields[index] = str(value if value < 1 << 63 else -(1 << 63))
    return ".".join(fields)


def _wildcard(word):
    """blang expandWildcardVersion for a word with an 'x' in it (its version or anywhere else)."""
    op, version = _operator(word)
    fields = version.split(".")
    kind = len(fields) if fields[-1] == "x" and len(fields) <= 3 else 0  # 3: patch, 2: minor wildcard
    flat = version.replace(".x.x", ".x", 1).replace(".x", ".0", 1)
    flat += ".0" if flat.count(".") == 1 else ""
    before, result_op, bump = {">": ([], ">=", True), ">=": ([], ">=", False), "<": ([], "<", False),
                               "<=": ([], "<", True), "": ([">=" + flat], "<", True), "=": ([">=" + flat], "<", True),
                               "==": ([">=" + flat], "<", True), "!=": (["<" + flat], ">=", True),
                               "!": (["<" + flat], ">=", True)}.get(op, ([], "", False))
    if not bump:
        return before + [result_op + flat]
    return before + [result_op + (_bump(flat, {3: 1, 2: 0}[kind]) if kind in (2, 3) else "")]


def _parse_range(expression):
    """blang ParseRange: alternatives ('||' as a word of its own), each a list of (sign set, version)."""
    words = _words(expression)
    if words[:1] == ["||"]:
        raise _Unparsable(expression)
    groups = [[]]
    for word in words:
        if word == "||":
            groups.append([])
        else:
            groups[-1].append(word)
    if not groups[-1]:
        raise _Unparsable(expression)
    alternatives = []
    for group in groups:
        expanded = [w for word in group for w in (_wildcard(word) if "x" in word else [word])]
        checks = []
        for word in expanded:
            op, version = _operator(word)
            if op not in _OPS:
                raise _Unparsable(word)
            checks.append((_OPS[op], _parse_version(version)))
        alternatives.append(checks)
    return alternatives


def in_range(version, expression):
    """Whether OLM's resolver puts ``version`` in the skipRange ``expression``; False when either does not parse.

    The twin offers the upgrades OLM offers, so an OpenShift build such as 4.21.0-202511121510 is below
    4.21.0, and a range OLM cannot parse ('>=4.9.0 <4.21', '>=4.9.0||<4.0.0') skips nothing.
    """
    try:
        alternatives = _parse_range(str(expression or ""))
        have = _parse_tolerant(str(version or ""))
    except _Unparsable:
        return False
    # An empty alternative ('a || || b') is a nil Range in Go, a panic when reached; it admits nothing here.
    return any(checks and all(_cmp(have, want) in signs for signs, want in checks) for checks in alternatives)


def skip_range(package, version):
    return (PACKAGES[package].get("skip_range") or {}).get(version, "")


def skips(package, version):
    return list((PACKAGES[package].get("skips") or {}).get(version, []))


def catalog_packages(catalog):
    """What a CatalogSource serves: package -> {channel: [CSV names, oldest first]}, and each default channel.

    The index image says which of the twin's catalogs it is; the content annotation prunes it.
    Returns ``({package: {"channels": {...}, "default_channel": name}})``; {} for an unknown image.
    """
    image = ((catalog or {}).get("spec") or {}).get("image") or ""
    index = next((name for name, data in CATALOGS.items() if data["index"] in image), None)
    if index is None:
        return {}
    pruned = None
    raw = ((catalog.get("metadata") or {}).get("annotations") or {}).get(CONTENT_ANNOTATION)
    if raw:
        try:
            pruned = {k: {str(v).lstrip("v") for v in vs} for k, vs in json.loads(raw).items()}
        except (ValueError, AttributeError):
            pruned = {}
    served = {}
    for package, data in PACKAGES.items():
        if data["catalog"] != index or (pruned is not None and package not in pruned):
            continue
        channels = {}
        for channel, versions in data["channels"].items():
            kept = [csv_name(package, v) for v in versions if pruned is None or v in pruned[package]]
            if kept:
                channels[channel] = kept
        if not channels:
            continue
        # provider/registry.go newPackageManifest: a default channel with no bundle is elided and the
        # first channel (sorted by name) becomes the default.
        default = data["default_channel"] if data["default_channel"] in channels else sorted(channels)[0]
        served[package] = {"channels": channels, "default_channel": default}
    return served


def upgrade_candidate(channel_entries, installed):
    """The CSV OLM offers to replace ``installed``: the one nearest the channel head that replaces it, lists it
    in ``skips`` or whose ``olm.skipRange`` includes its version (registry/resolver/resolver.go
    getSubscriptionVariables: ``Or(SkipRangeIncludesPredicate, ReplacesPredicate)``, candidates in channel
    order, head first), or None."""
    have = CSV_INDEX.get(installed)
    for name in reversed(channel_entries):
        package, version, replaces = CSV_INDEX[name]
        if name == installed:
            continue
        if replaces == installed or installed in skips(package, version) or (
                have and in_range(have[1], skip_range(package, version))):
            return name
    return None


def owned_crds(package):
    return [{"name": f"{plural}.{group}", "version": version, "kind": kind, "displayName": kind}
            for group, version, kind, plural, _scope, _extra in PACKAGES[package]["crds"]]


def csv_spec(package, version, replaces=None):
    """The CSV as its bundle has it; ``replaces`` is what the resolver sets: the installed CSV it upgrades
    (resolver.go: ``c.Replaces = current.Name``; steps.go NewStepResourceFromCSV writes it into spec.replaces),
    else the bundle's own."""
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
    replaces = replaces or CSV_INDEX[name][2]
    if replaces:
        spec["replaces"] = replaces
    if skips(package, version):
        spec["skips"] = skips(package, version)
    return spec


def csv_annotations(package, version=None):
    data = PACKAGES[package]
    return {
        "alm-examples": json.dumps([data["example"]]),
        "operatorframework.io/suggested-namespace": data["namespace"],
        "capabilities": "Basic Install",
        "olm.skipRange": skip_range(package, version) if version else "",
    }


def package_manifest(package, catalog, served):
    """The PackageManifest the packageserver makes of one package of one catalog
    (pkg/package-server/provider/registry.go newPackageManifest): in the catalog's namespace, labelled
    ``catalog``/``catalog-namespace``, channels sorted by name."""
    data = PACKAGES[package]
    meta = catalog["metadata"]
    spec = catalog.get("spec") or {}
    channels = []
    for channel in sorted(served["channels"]):
        names = served["channels"][channel]
        head = CSV_INDEX[names[-1]][1]
        channels.append({
            "name": channel,
            "currentCSV": names[-1],
            "currentCSVDesc": {"displayName": data["display"], "version": head, "installModes": INSTALL_MODES,
                               "provider": {"name": data["provider"]},
                               "annotations": {"operatorframework.io/suggested-namespace": data["namespace"],
                                               "olm.skipRange": skip_range(package, head)}},
            "entries": [{"name": n, "version": CSV_INDEX[n][1]} for n in reversed(names)],
        })
    return {
        "apiVersion": PM_API, "kind": "PackageManifest",
        "metadata": {"name": package, "namespace": meta["namespace"], "labels": {
            **(meta.get("labels") or {}),
            "catalog": meta["name"], "catalog-namespace": meta["namespace"], "provider-url": "",
            # packageserver labels are not validated; a CRD stand-in must use a valid label value.
            "provider": data["provider"].replace(" ", "-"),
            "operatorframework.io/arch.amd64": "supported", "operatorframework.io/os.linux": "supported"}},
        "spec": {},
        "status": {
            "catalogSource": meta["name"], "catalogSourceDisplayName": spec.get("displayName", ""),
            "catalogSourceNamespace": meta["namespace"], "catalogSourcePublisher": spec.get("publisher", ""),
            "packageName": package, "provider": {"name": data["provider"]},
            "defaultChannel": served["default_channel"], "channels": channels,
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
    """Connection state of each CatalogSource, and the PackageManifests the packageserver makes of it.

    Any CatalogSource whose image is one of the twin's index images is served, in any namespace and
    under any name (a mirror or a private catalog), so several catalogs may serve one package. As
    pkg/package-server/provider/registry.go does, each package of a READY catalog is a PackageManifest in
    the catalog's namespace labelled ``catalog``/``catalog-namespace``, and a catalog in
    TRANSIENT_FAILURE has its packages dropped (syncSourceState -> gcPackages). The packageserver keys
    its cache by catalog/namespace/name and answers a GET by name with the first match of any catalog;
    the twin's CRD stand-in holds one object per name and namespace, so of two catalogs of ONE
    namespace serving one package only the first by name is served (across namespaces both are).
    """

    name = "olm-catalog"
    api_version = OLM
    plural = "catalogsources"

    def setup(self, manager):
        super().setup(manager)
        manager.informer(PM_API, "packagemanifests").add_handler(self._manifest_event)
        manager.informer("v1", "configmaps").add_handler(self._configmap_event)

    def _manifest_event(self, kind, obj):
        labels = obj.get("metadata", {}).get("labels") or {}
        if labels.get("catalog"):
            self.queue.add((labels.get("catalog-namespace") or obj["metadata"].get("namespace"), labels["catalog"]))
        # A manifest removed from under a catalog that sorts later in the same namespace: it may serve it now.
        for catalog in self.cache(OLM, "catalogsources").items():
            if catalog["metadata"]["namespace"] == obj["metadata"].get("namespace"):
                self.queue.add((catalog["metadata"]["namespace"], catalog["metadata"]["name"]))

    def _configmap_event(self, kind, obj):
        if _faults_changed(self.world, kind, obj):
            for catalog in self.cache(OLM, "catalogsources").items():
                self.queue.add((catalog["metadata"]["namespace"], catalog["metadata"]["name"]))

    def reconcile(self, key):
        namespace, name = key
        catalog = self.cache(OLM, "catalogsources").get(name, namespace)
        manifests = self.cache(PM_API, "packagemanifests")
        p = path(PM_API, "packagemanifests", namespace=namespace)
        if catalog is None or catalog["metadata"].get("deletionTimestamp"):
            # catalogSourceDeleted -> gcPackages: its packages go.
            for manifest in manifests.items():
                if manifest["metadata"]["namespace"] == namespace and (
                        manifest["metadata"].get("labels") or {}).get("catalog") == name:
                    self._delete(f"{p}/{manifest['metadata']['name']}")
            return None
        served = catalog_packages(catalog)
        if not served and not (catalog.get("spec") or {}).get("image"):
            return None  # not a catalog the twin knows how to serve (e.g. configMap-based): left alone
        broken = self.world.fault("catalog-not-ready", catalog=name, namespace=namespace)
        state = "TRANSIENT_FAILURE" if broken else "READY"
        current = (catalog.get("status") or {}).get("connectionState") or {}
        if current.get("lastObservedState") != state:
            self.kube.merge_patch(path(OLM, "catalogsources", name, namespace, "status"), {"status": {
                "connectionState": {"address": f"{name}.{namespace}.svc:50051", "lastObservedState": state,
                                    "lastConnect": now()},
                "registryService": {"createdAt": now(), "port": "50051", "protocol": "grpc",
                                    "serviceName": name, "serviceNamespace": namespace}}})
        if broken:
            served = {}
        first = {}  # package -> name of the first catalog of this namespace that serves it
        for other in sorted(self.cache(OLM, "catalogsources").items(), key=lambda c: c["metadata"]["name"]):
            if other["metadata"]["namespace"] != namespace or other["metadata"].get("deletionTimestamp"):
                continue
            if self.world.fault("catalog-not-ready", catalog=other["metadata"]["name"], namespace=namespace):
                continue
            for package in catalog_packages(other):
                first.setdefault(package, other["metadata"]["name"])
        for package in PACKAGES:
            existing = manifests.get(package, namespace)
            owner = ((existing or {}).get("metadata", {}).get("labels") or {}).get("catalog")
            missing = self.world.fault("package-missing", package=package, catalog=name)
            wanted = package in served and not missing and first.get(package) == name
            if wanted and existing is None:
                self.kube.create_or_get(p, package_manifest(package, catalog, served[package]))
            elif not wanted and existing is not None and owner == name:
                self._delete(f"{p}/{package}")
        return None

    def _delete(self, p):
        try:
            self.kube.delete(p)
        except ApiError as exc:
            if exc.status != 404:
                raise


# -- subscriptions and install plans ----------------------------------------------------------------


class Resolver(Controller):
    """Resolves all Subscriptions of a namespace together, as OLM's catalog operator does
    (catalog/operator.go syncResolvingNamespace, registry/resolver, catalog/subscription/state.go).

    * gcInstallPlans first: at most five InstallPlans per namespace, the lowest generations go.
    * Bookkeeping per Subscription before any resolution: a referenced InstallPlan that is gone clears
      the reference of an UpgradePending Subscription (InstallPlanNotFound), else InstallPlanMissing; a
      ``currentCSV`` that exists makes the Subscription AtLatestKnown with it as ``installedCSV``
      (ensureSubscriptionCSVState); the plan's phase gives InstallPlanPending / InstallPlanFailed.
    * Not exactly one OperatorGroup: resolution stops there (resolver.IsFailForwardEnabled returns
      "found N operatorGroups, expected 1" as an error): no InstallPlan, no condition.
    * Nothing resolves while every Subscription is UpgradePending with an InstallPlan (nothingToUpdate);
      once one is not, ALL of the namespace's Subscriptions are resolved together.
    * A new InstallPlan only when some Subscription's ``currentCSV`` changed; it is Manual when ANY
      Subscription of the namespace is Manual, and only those Subscriptions point at it (setIPReference
      on updatedSubs): the others keep their reference.
    * Any failure fails the whole namespace's resolution, with one condition on every Subscription.
    """

    name = "olm-resolver"

    def setup(self, manager):
        super().setup(manager)
        for plural in ("subscriptions", "installplans", "clusterserviceversions"):
            manager.informer(OLM, plural).add_handler(
                lambda kind, obj: self.queue.add((obj["metadata"].get("namespace"), "")))
        manager.informer(OLM_V1, "operatorgroups").add_handler(  # syncOperatorGroups requeues the namespace
            lambda kind, obj: self.queue.add((obj["metadata"].get("namespace"), "")))
        manager.informer(OLM, "catalogsources").add_handler(lambda kind, obj: self._everywhere())
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
        plans = self._gc_plans(namespace, self.kube.list(path(OLM, "installplans", namespace=namespace))["items"])
        csvs = {c["metadata"]["name"]: c for c in self.kube.list(
            path(OLM, "clusterserviceversions", namespace=namespace))["items"]}
        by_name = {p["metadata"]["name"]: p for p in plans}
        records = {s["metadata"]["name"]: self._observe(s, csvs, by_name) for s in subs}
        groups = [g for g in self.cache(OLM_V1, "operatorgroups").items() if g["metadata"]["namespace"] == namespace]
        if len(groups) != 1:
            log.info("%s: found %d operatorGroups, expected 1: not resolving", namespace, len(groups))
        elif any(not (r["ref"] and r["state"] == "UpgradePending") for r in records.values()):
            self._resolve_namespace(namespace, subs, records, csvs, plans)
        for sub in subs:
            self._write_status(sub, records[sub["metadata"]["name"]])
        return None

    # -- before resolution ------------------------------------------------------------------------

    def _gc_plans(self, namespace, plans):
        """catalog/operator.go gcInstallPlans: keep maxInstallPlanCount (5), deleting whole generations, oldest first."""
        if len(plans) <= MAX_INSTALL_PLANS:
            return plans
        doomed = []
        for plan in sorted(plans, key=lambda p: (p["spec"].get("generation") or 0,
                                                 p["metadata"].get("creationTimestamp") or "")):
            if len(plans) - len(doomed) <= MAX_INSTALL_PLANS:
                break
            doomed.append(plan)
        for plan in doomed:
            try:
                self.kube.delete(path(OLM, "installplans", plan["metadata"]["name"], namespace))
            except ApiError as exc:
                if exc.status != 404:
                    raise
            log.info("%s: InstallPlan %s garbage-collected", namespace, plan["metadata"]["name"])
        return [p for p in plans if p not in doomed]

    def _observe(self, sub, csvs, plans):
        """What OLM records for one Subscription before resolving: health, plan reference, CSV state."""
        status = sub.get("status") or {}
        previous = status.get("conditions") or []
        health, health_condition = self._health(sub)
        record = {"sub": sub, "health": health, "conditions": [health_condition], "previous": previous,
                  "installed": status.get("installedCSV"), "current": status.get("currentCSV"),
                  "state": status.get("state"), "ref": None, "generation": status.get("installPlanGeneration"),
                  "unhealthy": health_condition["status"] == "True", "want": None, "replaces": None}
        # Conditions of an earlier resolution stay until a resolution succeeds (removeSubsCond).
        record["kept"] = [c for c in previous if c.get("type") in ("ResolutionFailed", "BundleUnpackFailed")]
        ref = (status.get("installPlanRef") or {}).get("name")
        if ref:
            plan = plans.get(ref)
            if plan is None and record["state"] == "UpgradePending":
                # subscription/state.go InstallPlanNotFound: clear the reference so resolution happens again.
                record.update(current=None, state=None, generation=None)
            elif plan is None:
                record["ref"] = {"metadata": {"name": ref}, "missing": True}
                record["conditions"].append(_condition("InstallPlanMissing", "True", "ReferencedInstallPlanNotFound",
                                                       "", previous))
            else:
                record["ref"] = plan
        # ensureSubscriptionCSVState: a currentCSV that exists is the installed one.
        if record["current"]:
            if record["current"] in csvs:
                record.update(state="AtLatestKnown", installed=record["current"])
            else:
                record["state"] = "UpgradePending"
        return record

    def _health(self, sub):
        spec = sub.get("spec") or {}
        source, source_ns = spec.get("source"), spec.get("sourceNamespace") or MARKETPLACE
        previous = (sub.get("status") or {}).get("conditions") or []
        catalogs = self.cache(OLM, "catalogsources")
        # Health of every catalog in the Subscription's namespace and in the global one, sorted by
        # namespace+name (catalog/subscription/reconciler.go catalogHealth); the condition is True when
        # any of them is unhealthy, naming the targeted one only when it is that one or missing
        # (catalog/subscription/state.go UpdateHealth; otherwise the previous message is kept).
        scope = {sub["metadata"]["namespace"], MARKETPLACE}
        health, unhealthy = [], []
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
            return health, _condition("CatalogSourcesUnhealthy", "True", "UnhealthyCatalogSourceFound",
                                      f"targeted catalogsource {targeted} missing", previous)
        if unhealthy:
            message = f"targeted catalogsource {targeted} unhealthy" if targeted in unhealthy else old.get("message", "")
            return health, _condition("CatalogSourcesUnhealthy", "True", "UnhealthyCatalogSourceFound", message, previous)
        return health, _condition("CatalogSourcesUnhealthy", "False", "AllCatalogSourcesHealthy",
                                  "all available catalogsources are healthy", previous)

    # -- resolution -------------------------------------------------------------------------------

    def _resolve_namespace(self, namespace, subs, records, csvs, plans):
        catalogs = self.cache(OLM, "catalogsources")
        scope = {namespace, MARKETPLACE}
        unhealthy = sorted(f"{c['metadata']['namespace']}/{c['metadata']['name']}" for c in catalogs.items()
                           if c["metadata"]["namespace"] in scope and ((c.get("status") or {}).get(
                               "connectionState") or {}).get("lastObservedState") != "READY")
        failure = None
        if unhealthy:
            # The resolver's cache takes a snapshot of every catalog in scope and fails the whole
            # resolution when any snapshot failed (registry/resolver/cache/cache.go
            # NamespacedOperatorCache.Error, checked in resolver.go SolveOperators), even one the
            # Subscription does not use; syncResolvingNamespace sets ErrorPreventedResolution and
            # requeues (it is retried, unlike ConstraintsNotSatisfiable).
            failure = ("ErrorPreventedResolution", "; ".join(
                f"error using catalogsource {c}: failed to list bundles: rpc error: code = Unavailable desc = "
                "connection error: desc = \"transport: Error while dialing: dial tcp: connect: connection refused\""
                for c in unhealthy))
        else:
            referenced = {r["installed"] for r in records.values()} | {r["current"] for r in records.values()}
            problems = []
            for sub in subs:
                problem = self._want(sub, records[sub["metadata"]["name"]], csvs, catalogs, referenced)
                if problem:
                    problems.append(problem)
            if problems:
                failure = ("ConstraintsNotSatisfiable", "constraints not satisfiable: " + ", ".join(problems))
        for record in records.values():
            record["kept"] = []
        if failure:
            # setSubsCond(subs, ...): every Subscription of the namespace carries the failure.
            for record in records.values():
                record["kept"] = [_condition("ResolutionFailed", "True", failure[0], failure[1], record["previous"])]
            return
        wanted = {}
        for record in records.values():
            want = record["want"]
            sub = record["sub"]
            if want and want not in csvs and not self.world.fault("installplan-missing", package=sub["spec"].get("name")):
                wanted[want] = record
        updated = [r for r in wanted.values() if r["want"] != r["current"]]
        if not updated:
            return
        unpack = next((f for f in (self.world.fault("bundle-unpack-failed", package=r["sub"]["spec"].get("name"))
                                   for r in wanted.values()) if f), None)
        if unpack:
            # The bundles are unpacked before any InstallPlan exists; a failed unpack Job (BundleLookupFailed)
            # puts BundleUnpackFailed on every Subscription of the namespace and creates no plan
            # (syncResolvingNamespace, hasBundleLookupFailureCondition); a periodic resync retries.
            for record in records.values():
                record["kept"] = [_condition(
                    "BundleUnpackFailed", "True", "BundleUnpackFailed",
                    "bundle unpacking failed. Reason: DeadlineExceeded, and Message: Job was active longer than "
                    "specified deadline", record["previous"])]
            return
        generation = max([r["generation"] or 0 for r in records.values()]
                         + [p["spec"].get("generation") or 0 for p in plans] + [0]) + 1
        manual = any((s["spec"].get("installPlanApproval") or "Automatic") == "Manual" for s in subs)
        plan = self._create_plan(namespace, plans, wanted, generation, manual, subs)
        if plan is None:
            return
        for record in updated:
            record.update(ref=plan, current=record["want"], state="UpgradePending", generation=generation)

    def _want(self, sub, record, csvs, catalogs, referenced):
        """Set ``record['want']`` to the CSV this Subscription resolves to; return why not (a solver message) or None."""
        spec = sub.get("spec") or {}
        package, source = spec.get("name"), spec.get("source")
        source_ns = spec.get("sourceNamespace") or MARKETPLACE
        name = sub["metadata"]["name"]
        exists = f"subscription {name} exists"
        served = catalog_packages(catalogs.get(source, source_ns))
        if not served:
            return (f"no operators found from catalog {source} in namespace {source_ns} referenced by subscription "
                    f"{name}, {exists}")
        suffix = f"in the catalog referenced by subscription {name}, {exists}"
        if package not in served or self.world.fault("package-missing", package=package, catalog=source):
            return f"no operators found in package {package} {suffix}"
        channel = spec.get("channel") or served[package]["default_channel"]
        entries = served[package]["channels"].get(channel)
        if not entries:
            return f"no operators found in channel {channel} of package {package} {suffix}"
        # resolver.go: the current operator is status.installedCSV, found among the namespace's CSVs;
        # startingCSV counts only while there is none.
        current = record["installed"] if record["installed"] in csvs else None
        start = spec.get("startingCSV")
        if current is None:
            if start and start not in entries:
                return f"no operators found with name {start} in channel {channel} of package {package} {suffix}"
            want = start or entries[-1]
        else:
            want = upgrade_candidate(entries, current) or current
            if want != current:
                record["replaces"] = current
        # source_csvs.go + variable_types.go: a CSV no Subscription references must stay in any solution, and
        # there can be only one operator per package, so a new Subscription cannot take over an existing CSV.
        for other, csv in sorted(csvs.items()):
            if CSV_INDEX.get(other, (None,))[0] != package or other in referenced:
                continue
            if (csv.get("status") or {}).get("phase") in ("Replacing", "Deleting") or any(
                    (c.get("spec") or {}).get("replaces") == other for c in csvs.values()):
                continue
            bundle = f"{source}/{source_ns}/{channel}/{want}"
            return (f"{exists}, subscription {name} requires {bundle}, @existing/{sub['metadata']['namespace']}//{other} "
                    f"and {bundle} originate from package {package}, clusterserviceversion {other} exists and is not "
                    "referenced by a subscription")
        if want not in csvs:
            record["want"] = want
        return None

    def _create_plan(self, namespace, plans, wanted, generation, manual, subs):
        names = sorted(wanted)
        # ensureInstallPlan: a plan of this generation already made is the one.
        same = next((p for p in plans if p["spec"].get("generation") == generation), None)
        if same is not None:
            return same
        records = [wanted[n] for n in names]
        labels = {operator_label(r["sub"]["spec"]["name"], namespace): "" for r in records}
        body = {
            "apiVersion": OLM, "kind": "InstallPlan",
            "metadata": {"generateName": "install-", "namespace": namespace, "labels": labels,
                         # createInstallPlan: every Subscription of the namespace owns it (AddNonBlockingOwner).
                         "ownerReferences": [{"apiVersion": OLM, "kind": "Subscription",
                                              "name": s["metadata"]["name"], "uid": s["metadata"]["uid"],
                                              "blockOwnerDeletion": False, "controller": False} for s in subs]},
            "spec": {"approval": "Manual" if manual else "Automatic", "approved": not manual,
                     "clusterServiceVersionNames": names, "generation": generation},
        }
        try:
            plan = self.kube.create(path(OLM, "installplans", namespace=namespace), body)
        except ApiError as exc:
            if exc.status == 403 and "being terminated" in exc.message:
                return None  # the namespace goes away with its Subscriptions
            raise
        steps = []
        for csv in names:
            spec = wanted[csv]["sub"]["spec"]
            package, version, _ = CSV_INDEX[csv]
            # steps.go NewStepResourceFromCSV: the step carries the CSV's manifest, spec.replaces included.
            manifest = {"apiVersion": OLM, "kind": "ClusterServiceVersion",
                        "metadata": {"name": csv, "annotations": csv_annotations(package, version)},
                        "spec": csv_spec(package, version, wanted[csv]["replaces"])}
            steps.append({"resolving": csv, "resource": {
                "group": "operators.coreos.com", "version": "v1alpha1", "kind": "ClusterServiceVersion", "name": csv,
                "sourceName": spec["source"], "sourceNamespace": spec.get("sourceNamespace") or MARKETPLACE,
                "manifest": json.dumps(manifest)}, "status": "Unknown"})
        plan = self.kube.merge_patch(path(OLM, "installplans", plan["metadata"]["name"], namespace, "status"), {"status": {
            "phase": "RequiresApproval" if manual else "Installing",
            "catalogSources": sorted({r["sub"]["spec"]["source"] for r in records}), "plan": steps,
            "bundleLookups": [], "startTime": now()}})
        plans.append(plan)
        log.info("%s: InstallPlan %s (generation %d, %s) for %s", namespace, plan["metadata"]["name"], generation,
                 "Manual" if manual else "Automatic", ", ".join(names))
        return plan

    # -- status -----------------------------------------------------------------------------------

    def _write_status(self, sub, record):
        status = dict(sub.get("status") or {})
        previous = record["previous"]
        conditions = list(record["conditions"]) + list(record["kept"])
        plan = record["ref"]
        if plan is not None and not plan.get("missing"):
            phase = (plan.get("status") or {}).get("phase")
            if phase in ("RequiresApproval", "Installing") and record["state"] == "UpgradePending":
                conditions.append(_condition("InstallPlanPending", "True", phase, "", previous))
            elif phase == "Failed":
                # subscription/state.go CheckInstallPlanStatus: a Failed plan gives InstallPlanFailed with the reason
                # and message of the plan's Installed condition.
                cond = next((c for c in (plan.get("status") or {}).get("conditions") or []
                             if c.get("type") == "Installed" and c.get("status") == "False"), {})
                conditions.append(_condition("InstallPlanFailed", "True", cond.get("reason") or "InstallPlanFailed",
                                             cond.get("message") or (plan.get("status") or {}).get("message") or "",
                                             previous))
        new = {"catalogHealth": record["health"], "conditions": conditions, "lastUpdated": now()}
        for field, value in (("installedCSV", record["installed"]), ("currentCSV", record["current"]),
                             ("state", record["state"]), ("installPlanGeneration", record["generation"])):
            if value:
                new[field] = value
        if plan is not None:
            meta = plan["metadata"]
            if plan.get("missing"):
                new["installPlanRef"] = status.get("installPlanRef")
                new["installplan"] = status.get("installplan")
            else:
                new["installPlanRef"] = {"apiVersion": OLM, "kind": "InstallPlan", "name": meta["name"],
                                         "namespace": meta["namespace"], "resourceVersion": meta["resourceVersion"],
                                         "uid": meta["uid"]}
                new["installplan"] = {"apiVersion": OLM, "kind": "InstallPlan", "name": meta["name"], "uuid": meta["uid"]}
        if _strip_times(status) == _strip_times(new):
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
        manifests = {s.get("resolving"): (s.get("resource") or {}).get("manifest")
                     for s in (plan.get("status") or {}).get("plan") or []}
        for csv in plan["spec"]["clusterServiceVersionNames"]:
            self._create_csv(namespace, csv, groups, manifests.get(csv))
        steps = [dict(s, status="Created") for s in (plan.get("status") or {}).get("plan") or []]
        self.kube.merge_patch(p, {"status": {"phase": "Complete", "plan": steps, "conditions": [
            {"type": "Installed", "status": "True", "lastTransitionTime": now(), "lastUpdateTime": now()}]}})
        return None

    def _create_csv(self, namespace, name, groups, manifest=None):
        package, version, _ = CSV_INDEX[name]
        body = json.loads(manifest) if manifest else {
            "apiVersion": OLM, "kind": "ClusterServiceVersion",
            "metadata": {"name": name, "annotations": csv_annotations(package, version)},
            "spec": csv_spec(package, version)}
        annotations = body["metadata"].setdefault("annotations", {})
        if len(groups) == 1:
            group = groups[0]
            annotations.update({
                "olm.operatorGroup": group["metadata"]["name"], "olm.operatorNamespace": namespace,
                "olm.targetNamespaces": ",".join((group.get("spec") or {}).get("targetNamespaces") or [])})
        body["metadata"].update(namespace=namespace, labels={operator_label(package, namespace): ""})
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
    InstallReady with an unrecoverable error, which OLM never retries. ``csv-unhealthy`` keeps the
    deployment unavailable but within its progress deadline: the CSV stays Installing until OLM's
    5-minute install timeout (scaled: ``timings.csv_install_timeout``, default 300 s x csv_install / 60,
    a real install taking about a minute) fails it with "install timeout"; cleared, it recovers.

    Replacement (transitionCSVState, checkReplacementsAndUpdateStatus): a Succeeded CSV that another CSV
    of the namespace replaces goes Replacing; the new one waits in Pending until it does; once the new
    one has Succeeded the old one goes Deleting and is deleted.
    """

    name = "olm-csv"
    api_version = OLM
    plural = "clusterserviceversions"
    watches = ((OLM_V1, "operatorgroups"),)

    def __init__(self, world):
        super().__init__(world)
        self.due = {}  # key -> monotonic time of the next phase
        self.failed_once = set()  # uids of CSVs a ``once`` fault has failed already
        self.installing_since = {}  # key -> monotonic time the CSV went Installing

    def setup(self, manager):
        super().setup(manager)
        manager.informer("v1", "configmaps").add_handler(self._configmap_event)
        # A replacement moves with its neighbour's phase: any CSV event requeues its namespace's CSVs.
        manager.informer(OLM, "clusterserviceversions").add_handler(
            lambda kind, obj: [self.queue.add(k) for k in self.map_event(kind, obj)])

    def install_timeout(self):
        timings = self.world.timings
        return timings.get("csv_install_timeout") or 300.0 * timings["csv_install"] / 60.0

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
        csvs = [c for c in self.cache(OLM, "clusterserviceversions").items() if c["metadata"]["namespace"] == namespace]
        replacement = next((c for c in csvs if (c.get("spec") or {}).get("replaces") == name), None)
        previous = next((c for c in csvs if c["metadata"]["name"] == (csv.get("spec") or {}).get("replaces")), None)
        if phase == "Succeeded":
            if replacement is not None:
                self._phase(key, csv, "Replacing", "BeingReplaced", f"being replaced by csv: {replacement['metadata']['name']}")
            return None
        if phase == "Replacing":
            if previous is not None:
                return None  # being replaced, but not a leaf of the chain: skipping gc
            if replacement is not None and (replacement.get("status") or {}).get("phase") == "Succeeded":
                self._phase(key, csv, "Deleting", "Replaced",
                            "has been replaced by a newer ClusterServiceVersion that has successfully installed.")
            return None
        if phase == "Deleting":
            try:
                self.kube.delete(path(OLM, "clusterserviceversions", name, namespace))
            except ApiError as exc:
                if exc.status != 404:
                    raise
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
            if previous is not None and (previous.get("status") or {}).get("phase") != "Replacing":
                return None  # "CSV being replaced is in phase X instead of Replacing": wait for it
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
            self.installing_since[key] = time.monotonic()
        elif phase in ("Installing", "Failed"):
            unhealthy = self.world.fault("csv-unhealthy", package=package, csv=name, namespace=namespace)
            if unhealthy:
                if phase == "Installing":
                    left = self.installing_since.setdefault(key, time.monotonic()) + self.install_timeout() - time.monotonic()
                    if left > 0:
                        return left
                    # Installing: "Set phase to failed if it's been a long time since the last transition (5 minutes)".
                    self._phase(key, csv, "Failed", "InstallCheckFailed", "install timeout")
                return None
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
            self.due.pop(key, None)
            self.installing_since.pop(key, None)
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
    """PackageManifests of the seeded catalogs (twin/seed.py creates them first), before any controller runs."""
    faults = profile.get("faults") or []
    for catalog in kube.list(path(OLM, "catalogsources", namespace=MARKETPLACE))["items"]:
        p = path(PM_API, "packagemanifests", namespace=MARKETPLACE)
        for package, served in catalog_packages(catalog).items():
            if any(f.get("kind") == "package-missing" and f.get("package") in (None, package) for f in faults):
                continue
            kube.create_or_get(p, package_manifest(package, catalog, served))


def register(manager, world):
    for controller in (CatalogController, Resolver, InstallPlanController, CSVController, OperatorGroupController):
        manager.add(controller(world))
