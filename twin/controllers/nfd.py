"""The NFD twin: labels nodes from their simulated hardware, as NFD's cpu, kernel and pci sources would.

Active once a NodeFeatureDiscovery instance exists and the NFD operator's CSV has succeeded in its
namespace (before that no nfd-worker runs, so nothing is labelled). For every node it:

* builds the features NFD would discover from the node's ``Host`` (cpuid flags, cpu.model,
  cpu.security from the kvm module parameters the running kernel reports, loaded kvm modules,
  PCI devices) and publishes them as a NodeFeature object (nfd.k8s-sigs.io), as nfd-worker does;
* sets the built-in labels (``cpu-cpuid.*``, ``cpu-model.*``, ``cpu-security.tdx.enabled``,
  ``cpu-security.sev.snp.enabled``…, ``pci-10de.present``, ``kernel-version.*``);
* evaluates every NodeFeatureRule (nfd.openshift.io/v1alpha1): ``matchFeatures``, ``matchAny``,
  ``labels`` and ``extendedResources`` (``@cpu.security.tdx.total_keys``…). Like the real NFD, a field
  it does not know is ignored, so a rule whose only matcher is misspelled matches every node
  (validatedpatterns/coco-pattern docs/nfd-matchall-bug.md);
* remembers what it owns in the annotations NFD uses, and removes labels and extended resources
  that no longer apply.

Host changes (a reboot with new kernel arguments) arrive through ``world.changed`` and relabel the
node after the profile's ``nfd_relabel`` delay. Simplification: no nfd-master/worker pods.
"""

import logging
import re

from ..controller import Controller
from ..kube import ApiError, path
from ..kubelet import now
from . import olm

log = logging.getLogger("twin.nfd")

NFD_API = "nfd.openshift.io/v1"
RULE_API = "nfd.openshift.io/v1alpha1"
FEATURE_API = "nfd.k8s-sigs.io/v1alpha1"
PREFIX = "feature.node.kubernetes.io"
LABELS_ANNOTATION = "nfd.node.kubernetes.io/feature-labels"
RESOURCES_ANNOTATION = "nfd.node.kubernetes.io/extended-resources"
KERNEL = "5.14.0-570.el9_6.x86_64"

CPUID = {
    "intel": ["ADX", "AESNI", "AVX", "AVX2", "AVX512F", "FMA3", "SGX", "SGXLC", "SSE42", "VMX"],
    "amd": ["ADX", "AESNI", "AVX", "AVX2", "AVX512F", "FMA3", "SSE42", "SVM"],
}
VENDOR_ID = {"intel": "Intel", "amd": "AMD"}
# PCI classes the default workerConfig whitelists (network, display, processing accelerators).
PCI_CLASSES = ("0200", "03", "12")


def host_features(host):
    """NodeFeature ``spec.features`` of a host, from its current (running-kernel) state."""
    spec = host.spec
    vendor = host.cpu_vendor
    cpuid = list(CPUID[vendor])
    if spec.get("virtualized"):
        cpuid = [f for f in cpuid if f not in ("VMX", "SVM", "SGX", "SGXLC")] + ["HYPERVISOR"]
    if vendor == "amd" and spec["tee"]["type"] == "snp" and not spec.get("virtualized"):
        cpuid += ["SEV", "SEV_ES", "SEV_SNP"]
    modules = ["kvm", "kvm_intel" if vendor == "intel" else "kvm_amd"] if not spec.get("virtualized") else []
    if any(g.get("driver") == "vfio-pci" for g in host.gpus):
        modules += ["vfio", "vfio_pci"]
    params = host.module_params()
    security = {}
    if params.get("kvm_intel.tdx") == "Y":
        security["tdx.enabled"] = "true"
        security["tdx.total_keys"] = str(spec["tee"]["total_keys"])
    if params.get("kvm_amd.sev") == "Y":
        security["sev.enabled"] = "true"
        security["sev.asids"] = str(spec["tee"].get("asids", 100))
    if params.get("kvm_amd.sev_es") == "Y":
        security["sev.es.enabled"] = "true"
        security["sev.encrypted_state_ids"] = str(spec["tee"]["encrypted_state_ids"])
    if params.get("kvm_amd.sev_snp") == "Y":
        security["sev.snp.enabled"] = "true"
    major, minor, rest = KERNEL.split(".", 2)
    return {
        "flags": {
            "cpu.cpuid": {"elements": {f: {} for f in sorted(cpuid)}},
            "kernel.loadedmodule": {"elements": {m: {} for m in sorted(modules)}},
        },
        "attributes": {
            "cpu.model": {"elements": {"vendor_id": VENDOR_ID[vendor], "family": str(spec["cpu"]["family"]),
                                       "id": str(spec["cpu"]["model_id"])}},
            "cpu.security": {"elements": security},
            "kernel.version": {"elements": {"full": KERNEL, "major": major, "minor": minor,
                                            "revision": rest.split("-")[0]}},
            "kernel.config": {"elements": {"X86_SGX": "y", "KVM": "m", "VFIO_PCI": "m"}},
            "system.osrelease": {"elements": {"ID": "rhcos", "VERSION_ID": "4.21", "RHEL_VERSION": "9.6"}},
        },
        "instances": {
            "pci.device": {"elements": [{"attributes": {
                "vendor": g.get("vendor_id", "0x10de").lower().replace("0x", ""),
                "device": str(g["device_id"]).lower().replace("0x", ""),
                "class": "0302", "subsystem_vendor": g.get("vendor_id", "0x10de").lower().replace("0x", "")}}
                for g in host.gpus]},
        },
    }


def builtin_labels(features):
    """The labels nfd-worker's default sources publish (names without the feature.node.kubernetes.io/ prefix)."""
    labels = {}
    for flag in features["flags"]["cpu.cpuid"]["elements"]:
        labels[f"cpu-cpuid.{flag}"] = "true"
    for key, value in features["attributes"]["cpu.model"]["elements"].items():
        labels[f"cpu-model.{key}"] = value
    security = features["attributes"]["cpu.security"]["elements"]
    for key in ("tdx.enabled", "sev.enabled", "sev.es.enabled", "sev.snp.enabled", "sgx.enabled"):
        if security.get(key) == "true":
            labels[f"cpu-security.{key}"] = "true"
    for key, value in features["attributes"]["kernel.version"]["elements"].items():
        labels[f"kernel-version.{key}"] = value
    for key in ("ID", "VERSION_ID"):
        labels[f"system-os_release.{key}"] = features["attributes"]["system.osrelease"]["elements"][key]
    for device in features["instances"]["pci.device"]["elements"]:
        attrs = device["attributes"]
        if any(attrs["class"].startswith(c) for c in PCI_CLASSES):
            labels[f"pci-{attrs['vendor']}.present"] = "true"  # deviceLabelFields: [vendor]
    return labels


# -- rules -------------------------------------------------------------------------------------------


def _match_value(op, values, present, value):
    values = [str(v) for v in values or []]
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if not present:
        return False
    value = str(value)
    try:
        if op == "In":
            return value in values
        if op == "NotIn":
            return value not in values
        if op == "InRegexp":
            return any(re.search(v, value) for v in values)
        if op == "Gt":
            return int(value) > int(values[0])
        if op == "Lt":
            return int(value) < int(values[0])
        if op == "GtLt":
            return int(values[0]) < int(value) < int(values[1])
        if op == "IsTrue":
            return value == "true"
        if op == "IsFalse":
            return value == "false"
    except (ValueError, IndexError, re.error):
        return False
    return False


def _match_term(term, features):
    name = term.get("feature")
    expressions = term.get("matchExpressions") or {}
    by_name = term.get("matchName")
    if name in features["flags"] or name in features["attributes"]:
        kind = "flags" if name in features["flags"] else "attributes"
        elements = features[kind][name]["elements"]
        if by_name and not any(_match_value(by_name.get("op"), by_name.get("value"), True, e) for e in elements):
            return False
        return all(_match_value(expr.get("op"), expr.get("value"), key in elements, elements.get(key))
                   for key, expr in expressions.items())
    if name in features["instances"]:
        return any(all(_match_value(expr.get("op"), expr.get("value"), key in inst["attributes"], inst["attributes"].get(key))
                       for key, expr in expressions.items())
                   for inst in features["instances"][name]["elements"])
    return False  # a feature this node does not have


def rule_matches(rule, features):
    """NFD's rule semantics: all matchFeatures terms, and any matchAny alternative; no matcher matches all."""
    terms = rule.get("matchFeatures") or []
    if terms and not all(_match_term(t, features) for t in terms):
        return False
    alternatives = rule.get("matchAny") or []
    if alternatives and not any(all(_match_term(t, features) for t in (a.get("matchFeatures") or []))
                                for a in alternatives):
        return False
    return True


def _qualified(name):
    return name if "/" in name else f"{PREFIX}/{name}"


def label_allowed(name, extra_namespaces=()):
    ns = name.split("/", 1)[0]
    return (ns in (PREFIX, "profile.node.kubernetes.io") or ns.endswith("." + PREFIX)
            or ns.endswith(".profile.node.kubernetes.io") or ns in extra_namespaces)


def evaluate_rules(rules, features, extra_namespaces=()):
    """(labels, extended resources) the rules give a node; disallowed label namespaces are dropped."""
    labels, resources = {}, {}
    for rule_object in rules:
        for rule in ((rule_object.get("spec") or {}).get("rules") or []):
            if not rule_matches(rule, features):
                continue
            for key, value in (rule.get("labels") or {}).items():
                name = _qualified(key)
                if label_allowed(name, extra_namespaces):
                    labels[name] = str(value)
                else:
                    log.info("rule %s: label %s is outside the allowed namespaces; dropped", rule.get("name"), name)
            for key, value in (rule.get("extendedResources") or {}).items():
                value = str(value)
                if value.startswith("@"):
                    parts = value[1:].split(".")
                    feature, element = ".".join(parts[:2]), ".".join(parts[2:])
                    value = ((features["attributes"].get(feature) or {}).get("elements") or {}).get(element)
                    if value is None:
                        continue
                resources[_qualified(key)] = value
    return labels, resources


# -- controllers -----------------------------------------------------------------------------------


class NodeLabeller(Controller):
    name = "nfd-labeller"

    def setup(self, manager):
        super().setup(manager)
        manager.informer("v1", "nodes").add_handler(lambda kind, obj: self.queue.add(("", obj["metadata"]["name"])))
        for api_version, plural in ((NFD_API, "nodefeaturediscoveries"), (RULE_API, "nodefeaturerules"),
                                    (olm.OLM, "clusterserviceversions")):
            manager.informer(api_version, plural).add_handler(lambda kind, obj: self._all_nodes())
        manager.informer(FEATURE_API, "nodefeatures")  # read in _publish; informers start with the manager
        self.world.subscribe(self._host_changed)

    def _all_nodes(self):
        for name in self.world.hosts:
            self.queue.add(("", name), self.world.timings["nfd_relabel"])

    def _host_changed(self, host):
        self.queue.add(("", host.name), self.world.timings["nfd_relabel"])

    def instance(self):
        """The NodeFeatureDiscovery instance served by a succeeded NFD CSV, or None."""
        succeeded = {c["metadata"]["namespace"] for c in self.cache(olm.OLM, "clusterserviceversions").items()
                     if olm.CSV_INDEX.get(c["metadata"]["name"], ("",))[0] == "nfd"
                     and (c.get("status") or {}).get("phase") == "Succeeded"}
        for item in sorted(self.cache(NFD_API, "nodefeaturediscoveries").items(), key=lambda i: i["metadata"]["name"]):
            if item["metadata"]["namespace"] in succeeded and not item["metadata"].get("deletionTimestamp"):
                return item
        return None

    def reconcile(self, key):
        _, node_name = key
        host = self.world.host(node_name)
        node = self.cache("v1", "nodes").get(node_name)
        instance = self.instance()
        if host is None or node is None or instance is None:
            return None
        if not host.ready:
            return None  # nfd-worker runs again once the node is back; the host-change event brings us here
        features = host_features(host)
        extra = tuple((instance.get("spec") or {}).get("extraLabelNs") or ())
        rules = [r for r in self.cache(RULE_API, "nodefeaturerules").items() if not r["metadata"].get("deletionTimestamp")]
        rule_labels, resources = evaluate_rules(rules, features, extra)
        wanted = {_qualified(k): v for k, v in builtin_labels(features).items()}
        wanted.update(rule_labels)
        self._publish(instance["metadata"]["namespace"], node_name, features, wanted)
        self._label(node, wanted, resources)
        return None

    def _publish(self, namespace, node_name, features, labels):
        p = path(FEATURE_API, "nodefeatures", namespace=namespace)
        body = {"apiVersion": FEATURE_API, "kind": "NodeFeature",
                "metadata": {"name": node_name, "namespace": namespace,
                             "labels": {"nfd.node.kubernetes.io/node-name": node_name}},
                "spec": {"features": features, "labels": {}}}
        existing = self.cache(FEATURE_API, "nodefeatures").get(node_name, namespace)
        if existing is None:
            try:
                self.kube.create(p, body)
                return
            except ApiError as exc:
                if exc.status != 409:
                    raise
        elif (existing.get("spec") or {}).get("features") == features:
            return
        self.kube.merge_patch(f"{p}/{node_name}", {"spec": {"features": features}})

    def _label(self, node, wanted, resources):
        meta = node["metadata"]
        labels = meta.get("labels") or {}
        annotations = meta.get("annotations") or {}
        owned = {_qualified(n) for n in (annotations.get(LABELS_ANNOTATION) or "").split(",") if n}
        patch_labels = {k: v for k, v in wanted.items() if labels.get(k) != v}
        patch_labels.update({k: None for k in owned - set(wanted) if k in labels})
        owned_names = ",".join(sorted(k[len(PREFIX) + 1:] if k.startswith(PREFIX + "/") else k for k in wanted))
        patch_annotations = {}
        if annotations.get(LABELS_ANNOTATION) != owned_names:
            patch_annotations[LABELS_ANNOTATION] = owned_names
        resource_names = ",".join(sorted(resources))
        if annotations.get(RESOURCES_ANNOTATION, "") != resource_names:
            patch_annotations[RESOURCES_ANNOTATION] = resource_names or None
        if patch_labels or patch_annotations:
            self.kube.merge_patch(path("v1", "nodes", meta["name"]),
                                  {"metadata": {"labels": patch_labels, "annotations": patch_annotations}})
            log.info("node %s: labels %s", meta["name"], ", ".join(
                f"{k}={'-' if v is None else v}" for k, v in sorted(patch_labels.items()) if "cpu-cpuid" not in k))
        previous = {n for n in (annotations.get(RESOURCES_ANNOTATION) or "").split(",") if n}
        capacity = (node.get("status") or {}).get("capacity") or {}
        changes = {k: v for k, v in resources.items() if capacity.get(k) != v}
        changes.update({k: None for k in previous - set(resources) if k in capacity})
        if changes:
            self.kube.merge_patch(path("v1", "nodes", meta["name"], subresource="status"),
                                  {"status": {"capacity": changes, "allocatable": changes}})


class InstanceStatus(Controller):
    """NodeFeatureDiscovery status conditions, as the NFD operator reports them once its operands run."""

    name = "nfd-instance"
    api_version = NFD_API
    plural = "nodefeaturediscoveries"
    watches = ((olm.OLM, "clusterserviceversions"),)

    def reconcile(self, key):
        namespace, name = key
        item = self.cache(NFD_API, "nodefeaturediscoveries").get(name, namespace)
        if item is None or item["metadata"].get("deletionTimestamp"):
            return None
        running = any(olm.CSV_INDEX.get(c["metadata"]["name"], ("",))[0] == "nfd"
                      and c["metadata"]["namespace"] == namespace
                      and (c.get("status") or {}).get("phase") == "Succeeded"
                      for c in self.cache(olm.OLM, "clusterserviceversions").items())
        if not running:
            return None
        current = {c["type"]: c["status"] for c in (item.get("status") or {}).get("conditions") or []}
        wanted = {"Available": "True", "Upgradeable": "True", "Progressing": "False", "Degraded": "False"}
        if current == wanted:
            return None
        generation = item["metadata"].get("generation", 1)
        reasons = {"Available": ("AllInstanceComponentsAreDeployedSuccessfully", "all NFD operands are running"),
                   "Upgradeable": ("CanBeUpgraded", "can be upgraded"),
                   "Progressing": ("AllInstanceComponentsAreDeployedSuccessfully", ""),
                   "Degraded": ("AllInstanceComponentsAreDeployedSuccessfully", "")}
        conditions = [{"type": t, "status": s, "reason": reasons[t][0], "message": reasons[t][1],
                       "lastTransitionTime": now(), "observedGeneration": generation} for t, s in wanted.items()]
        self.kube.merge_patch(path(NFD_API, "nodefeaturediscoveries", name, namespace, "status"),
                              {"status": {"conditions": conditions}})
        return None


def register(manager, world):
    manager.add(NodeLabeller(world))
    manager.add(InstanceStatus(world))
