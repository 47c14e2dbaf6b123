"""The NFD twin: nfd-worker, nfd-master and the NFD operator's rule copier, read from their sources.

Upstream it follows (OpenShift 4.21):

* openshift/node-feature-discovery release-4.21 @391c2bc (= kubernetes-sigs/node-feature-discovery
  v0.18): ``source/cpu/cpu.go`` (``newDefaultConfig`` cpuid blacklist, ``GetLabels`` with
  ``skipLabel``), ``source/cpu/security_amd64.go`` (``discoverSecurity``), ``source/pci/pci.go`` and
  ``utils.go`` (``GetLabels``, ``mandatoryDevAttrs``), ``pkg/nfd-worker/nfd-worker.go``
  (``GetFeatureLabels``: labels go into NodeFeature ``spec.labels``), ``pkg/nfd-master/nfd-master.go``
  (``getAndMergeNodeFeatures``, ``refreshNodeFeatures``, ``processNodeFeatureRule``,
  ``filterFeatureLabel``, ``updateNodeObject``), ``pkg/apis/nfd/nodefeaturerule/{rule,expression}.go``
  (``Execute``, ``evaluateFeatureMatcher``, ``MatchMulti``, ``evaluateMatchExpression``) and
  ``pkg/apis/nfd/validate/validate.go`` (``Label``).
* openshift/cluster-nfd-operator release-4.21 @bf1052c: ``internal/controllers/
  nodefeaturerule_reconciler.go`` (``Reconcile``: every ``nfd.openshift.io`` NodeFeatureRule is
  copied, ``spec.rules`` only, into an ``nfd.k8s-sigs.io`` one of the same name with a controller
  owner reference; nfd-master reads only the latter), and the CSV's six owned CRDs
  (``twin.crds.NFD_OPERATOR_CRDS``).

Active once a NodeFeatureDiscovery instance exists and the NFD operator's CSV has succeeded in its
namespace (before that no nfd-worker runs, so nothing is labelled). Per node the *worker* part builds
the features from the node's ``Host`` (cpuid flags, cpu.model, cpu.security from the kvm module
parameters of the running kernel and its misc cgroup capacities, loaded modules, every PCI device)
and the built-in labels the instance's ``workerConfig.configData`` asks for, and writes both into
the node's NodeFeature. The *master* part then labels the node from the NodeFeature objects alone
(all of them carrying ``nfd.node.kubernetes.io/node-name``, merged as upstream does) plus the
``nfd.k8s-sigs.io`` NodeFeatureRules, so a NodeFeature someone else writes counts and a label that is
not in ``spec.labels`` is not published. Like the real NFD, a rule field it does not know is
ignored (so a rule whose only matcher is misspelled matches every node, validatedpatterns/
coco-pattern docs/nfd-matchall-bug.md), and a rule whose expression is invalid is skipped whole.

Host changes (a reboot with new kernel arguments) arrive through ``world.changed`` and relabel the
node after the profile's ``nfd_relabel`` delay. Not modelled: nfd-master/worker/gc pods, the
topology updater, NodeFeatureGroups, taints, annotations from rules, ``labelsTemplate``/
``varsTemplate``, ``denyLabelNs``/``labelWhiteList``/restrictions of the master config, and feature
sources other than cpu, kernel, pci and system.
"""

import copy
import logging
import re

import yaml

from ..controller import Controller
from ..kube import ApiError, path
from ..kubelet import now
from . import olm

log = logging.getLogger("twin.nfd")

NFD_API = "nfd.openshift.io/v1"
RULE_API = "nfd.openshift.io/v1alpha1"
FEATURE_API = "nfd.k8s-sigs.io/v1alpha1"
SIGS_RULE_API = "nfd.k8s-sigs.io/v1alpha1"


def operator_namespaces(csvs):
    """Namespaces where the NFD operator's CSV has succeeded (it runs there)."""
    return {c["metadata"]["namespace"] for c in csvs.items()
            if olm.CSV_INDEX.get(c["metadata"]["name"], ("",))[0] == "nfd"
            and (c.get("status") or {}).get("phase") == "Succeeded"}
PREFIX = "feature.node.kubernetes.io"
NODE_NAME_LABEL = "nfd.node.kubernetes.io/node-name"
LABELS_ANNOTATION = "nfd.node.kubernetes.io/feature-labels"
RESOURCES_ANNOTATION = "nfd.node.kubernetes.io/extended-resources"
KERNEL = "5.14.0-570.el9_6.x86_64"

# What klauspost/cpuid reports on these CPUs (a subset); blacklisted ones are features, not labels.
CPUID = {
    "intel": ["ADX", "AESNI", "AVX", "AVX2", "AVX512F", "CMOV", "FMA3", "POPCNT", "SGX", "SGXLC", "SSE", "SSE2",
              "SSE4", "SSE42", "VMX"],
    "amd": ["ADX", "AESNI", "AVX", "AVX2", "AVX512F", "CMOV", "FMA3", "POPCNT", "SSE", "SSE2", "SSE4", "SSE42",
            "SVM"],
}
VENDOR_ID = {"intel": "Intel", "amd": "AMD"}
# source/cpu/cpu.go newDefaultConfig: cpuid flags that get no label unless a whitelist says so.
CPUID_BLACKLIST = ("AVX10", "BMI1", "BMI2", "CLMUL", "CMOV", "CX16", "ERMS", "F16C", "HTT", "LZCNT", "MMX", "MMXEXT",
                   "NX", "POPCNT", "RDRAND", "RDSEED", "RDTSCP", "SGX", "SGXLC", "SSE", "SSE2", "SSE3", "SSE4",
                   "SSE42", "SSSE3", "TDX_GUEST")
# source/cpu/cpu.go GetLabels skipLabel: security attributes kept for rules (extended resources) only.
SECURITY_SKIP_LABEL = ("tdx.total_keys", "sgx.epc", "sev.encrypted_state_ids", "sev.asids")
# source/pci/pci.go newDefaultConfig (used when the worker config has no pci section).
PCI_DEFAULT = {"deviceClassWhitelist": ["03", "0b40", "12"], "deviceLabelFields": ["class", "vendor"]}
PCI_FIELDS = ("class", "vendor", "device", "subsystem_vendor", "subsystem_device")  # utils.go mandatoryDevAttrs
# Devices every twin host has besides its GPUs: a host bridge and an Intel/Mellanox NIC.
PCI_PLATFORM = {
    "intel": [{"class": "0600", "vendor": "8086", "device": "09a2", "subsystem_vendor": "8086", "subsystem_device": "0000"},
              {"class": "0200", "vendor": "8086", "device": "159b", "subsystem_vendor": "8086", "subsystem_device": "0003"}],
    "amd": [{"class": "0600", "vendor": "1022", "device": "14a4", "subsystem_vendor": "1022", "subsystem_device": "14a4"},
            {"class": "0200", "vendor": "15b3", "device": "101d", "subsystem_vendor": "15b3", "subsystem_device": "0051"}],
}
SGX_EPC_DEFAULT = 68_589_453_312  # bytes of EPC an Intel TDX host's BIOS reserves (SGX is needed for quotes)


def worker_config(instance):
    """The cpu and pci source settings of the instance's ``workerConfig.configData`` (upstream defaults)."""
    text = (((instance or {}).get("spec") or {}).get("workerConfig") or {}).get("configData") or ""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        data = {}
    sources = (data.get("sources") or {}) if isinstance(data, dict) else {}
    cpuid = ((sources.get("cpu") or {}).get("cpuid") or {})
    pci = sources.get("pci") or {}
    return {
        "cpuid_whitelist": list(cpuid.get("attributeWhitelist") or []),
        "cpuid_blacklist": list(cpuid.get("attributeBlacklist") or []) if "attributeBlacklist" in cpuid
        else list(CPUID_BLACKLIST),
        "pci_classes": [str(c) for c in (pci.get("deviceClassWhitelist") or PCI_DEFAULT["deviceClassWhitelist"])],
        "pci_fields": [str(f) for f in (pci.get("deviceLabelFields") or PCI_DEFAULT["deviceLabelFields"])],
    }


def _hex(value):
    return str(value).lower().replace("0x", "")


def host_features(host):
    """NodeFeature ``spec.features`` of a host, from its current (running-kernel) state."""
    spec = host.spec
    vendor = host.cpu_vendor
    tee = spec.get("tee") or {}
    cpuid = list(CPUID[vendor])
    if spec.get("virtualized"):
        cpuid = [f for f in cpuid if f not in ("VMX", "SVM", "SGX", "SGXLC")] + ["HYPERVISOR"]
    if vendor == "amd" and tee.get("type") == "snp" and not spec.get("virtualized"):
        cpuid += ["SEV", "SEV_ES", "SEV_SNP"]
    modules = ["kvm", "kvm_intel" if vendor == "intel" else "kvm_amd"] if not spec.get("virtualized") else []
    if any(g.get("driver") == "vfio-pci" for g in host.gpus):
        modules += ["vfio", "vfio_pci"]
    params = host.module_params()
    # security_amd64.go discoverSecurity: sgx.* from the EPC sections cpuid reports; the counts
    # from the misc cgroup's capacity file, which a kernel may not have (profile: null = absent).
    security = {}
    epc = tee.get("sgx_epc", SGX_EPC_DEFAULT if tee.get("type") == "tdx" and tee.get("bios_enabled") else 0)
    if "SGX" in cpuid and epc:
        security["sgx.enabled"] = "true"
        security["sgx.epc"] = str(epc)
    if params.get("kvm_intel.tdx") == "Y":
        security["tdx.enabled"] = "true"
        if tee.get("total_keys") is not None:
            security["tdx.total_keys"] = str(tee["total_keys"])
    if params.get("kvm_amd.sev") == "Y":
        security["sev.enabled"] = "true"
        if tee.get("asids", 100) is not None:
            security["sev.asids"] = str(tee.get("asids", 100))
    if params.get("kvm_amd.sev_es") == "Y":
        security["sev.es.enabled"] = "true"
        if tee.get("encrypted_state_ids") is not None:
            security["sev.encrypted_state_ids"] = str(tee["encrypted_state_ids"])
    if params.get("kvm_amd.sev_snp") == "Y":
        security["sev.snp.enabled"] = "true"
    devices = [dict(d) for d in PCI_PLATFORM[vendor]] if not spec.get("virtualized") else []
    for g in host.gpus:
        gpu_vendor = _hex(g.get("vendor_id", "0x10de"))
        devices.append({"class": "0302", "vendor": gpu_vendor, "device": _hex(g["device_id"]),
                        "subsystem_vendor": gpu_vendor, "subsystem_device": _hex(g.get("subsystem_device", "0x1839")),
                        "iommu_group/type": "DMA"})
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
        "instances": {"pci.device": {"elements": [{"attributes": d} for d in devices]}},
    }


def builtin_labels(features, config=None):
    """The labels nfd-worker puts in NodeFeature ``spec.labels`` (names with the feature.node.kubernetes.io/ prefix)."""
    config = config or worker_config(None)
    labels = {}
    whitelist, blacklist = set(config["cpuid_whitelist"]), set(config["cpuid_blacklist"])
    for flag in features["flags"]["cpu.cpuid"]["elements"]:
        if (flag in whitelist) if whitelist else (flag not in blacklist):  # cpu.go keyFilter.unmask
            labels[f"cpu-cpuid.{flag}"] = "true"
    for key, value in features["attributes"]["cpu.model"]["elements"].items():
        labels[f"cpu-model.{key}"] = value
    for key, value in features["attributes"]["cpu.security"]["elements"].items():
        if key not in SECURITY_SKIP_LABEL:
            labels[f"cpu-security.{key}"] = value
    for key, value in features["attributes"]["kernel.version"]["elements"].items():
        labels[f"kernel-version.{key}"] = value
    for key in ("ID", "VERSION_ID"):
        labels[f"system-os_release.{key}"] = features["attributes"]["system.osrelease"]["elements"][key]
    # pci.go GetLabels: valid fields in mandatoryDevAttrs order, the defaults if none is valid.
    fields = [f for f in PCI_FIELDS if f in config["pci_fields"]] or ["class", "vendor"]
    for device in features["instances"]["pci.device"]["elements"]:
        attrs = device["attributes"]
        if any(attrs["class"].startswith(c.lower()) for c in config["pci_classes"]):
            name = "_".join(attrs.get(f, "") for f in fields)
            labels[f"pci-{name}.present"] = "true"
            if "sriov_totalvfs" in attrs:
                labels[f"pci-{name}.sriov.capable"] = "true"
    return {f"{PREFIX}/{k}": v for k, v in labels.items()}


# -- rules (pkg/apis/nfd/nodefeaturerule) ----------------------------------------------------------------------


class RuleError(Exception):
    """An invalid expression: upstream's Execute returns an error and the whole rule is skipped."""


OPS = ("In", "NotIn", "InRegexp", "Exists", "DoesNotExist", "Gt", "Ge", "Lt", "Le", "GtLt", "GeLe", "IsTrue",
       "IsFalse", "Any")
# Masterminds/semver NewVersion (loose), as extractVersion uses it; the pre-release part is ignored.
SEMVER = re.compile(r"^v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
                    r"(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?$")


def _version(text):
    found = SEMVER.match(text)
    if not found:
        raise RuleError(f"not a version {text!r}")
    return tuple(int((found.group(i) or ".0").lstrip(".")) for i in (1, 2, 3))


def _number(text):
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise RuleError(f"not a number {text!r}")
    return int(text)


def match_expression(expr, valid, value):
    """expression.go evaluateMatchExpression: does one element (present or not, its value) match."""
    expr = expr or {}
    op, values, kind = expr.get("op"), [str(v) for v in expr.get("value") or []], expr.get("type") or ""
    if op not in OPS:
        raise RuleError(f"invalid Op {op!r}")
    if op in ("Any", "Exists", "DoesNotExist"):
        if values:
            raise RuleError(f"invalid expression, 'value' field must be empty for Op {op!r} (have {values})")
        return True if op == "Any" else valid if op == "Exists" else not valid
    if not valid or value is None:
        return False
    value = str(value)
    if op in ("In", "NotIn", "InRegexp"):
        if not values:
            raise RuleError(f"invalid expression, 'value' field must be non-empty for Op {op!r}")
        if op == "In":
            return value in values
        if op == "NotIn":
            return value not in values
        try:
            return any(re.search(v, value) for v in values)
        except re.error as exc:
            raise RuleError(f"invalid expression, 'value' field must only contain valid regexps ({exc})") from exc
    if op in ("IsTrue", "IsFalse"):
        if values:
            raise RuleError(f"invalid expression, 'value' field must be empty for Op {op!r} (have {values})")
        return value == ("true" if op == "IsTrue" else "false")
    if kind not in ("", "version"):
        raise RuleError(f"invalid expression, 'type' field only accepts 'version' for Op {op!r} (have {kind!r})")
    parse = _version if kind == "version" else _number
    if op in ("Gt", "Ge", "Lt", "Le"):
        if len(values) != 1:
            raise RuleError(f"invalid expression, 'value' field must contain exactly one element for Op {op!r}")
        left, right = parse(value), parse(values[0])
        return {"Gt": left > right, "Ge": left >= right, "Lt": left < right, "Le": left <= right}[op]
    if len(values) != 2:
        raise RuleError(f"invalid expression, 'value' field must contain exactly two elements for Op {op!r}")
    v, low, high = parse(value), parse(values[0]), parse(values[1])
    if kind == "" and low >= high:
        raise RuleError(f"invalid expression, value[0] must be less than Value[1] for Op {op!r} (have {values})")
    return low < v < high if op == "GtLt" else low <= v <= high


def _match_multi(expressions, keys, values, instances):
    """expression.go MatchMulti (fail fast): keys and values as a union, instances each on their own."""
    matched = keys is not None or values is not None
    for name, expr in expressions.items():
        match_k = match_v = False
        if keys is not None:
            match_k = match_expression(expr, name in keys, None)
            if not match_k and (expr or {}).get("op") == "DoesNotExist":
                matched = False
                break
        if values is not None:
            match_v = match_expression(expr, name in values, values.get(name))
            if not match_v and (expr or {}).get("op") == "DoesNotExist":
                matched = False
                break
        if not match_k and not match_v:
            matched = False
            break
    by_instance = False
    for instance in instances or ():
        attributes = instance.get("attributes") or {}
        if all(match_expression(e, n in attributes, attributes.get(n)) for n, e in expressions.items()):
            by_instance = True
    return matched or by_instance


def _match_names(expr, keys, values, instances):
    """expression.go MatchNamesMulti: some element name matches."""
    names = list(keys or ()) + list(values or ()) + [n for i in instances or () for n in (i.get("attributes") or {})]
    return any([match_expression(expr, True, n) for n in names])


def _match_features(terms, features):
    """rule.go evaluateFeatureMatcher (fail fast): AND over the terms; feature names ignore case."""
    for term in terms:
        name = str(term.get("feature") or "").lower()
        flags = (features["flags"].get(name) or {}).get("elements") if name in features["flags"] else None
        attributes = (features["attributes"].get(name) or {}).get("elements") if name in features["attributes"] else None
        instances = (features["instances"].get(name) or {}).get("elements") if name in features["instances"] else None
        if flags is None and attributes is None and instances is None:
            return False  # "feature not available"
        if flags is not None:
            flags = dict(flags)
        if attributes is not None:
            attributes = {k: str(v) for k, v in attributes.items()}
        matched = True
        if term.get("matchExpressions") is not None:
            matched = _match_multi(term["matchExpressions"] or {}, flags, attributes, instances)
        if matched and term.get("matchName") is not None:
            matched = _match_names(term["matchName"], flags, attributes, instances)
        if not matched:
            return False
    return True


def rule_matches(rule, features):
    """rule.go Execute: matchAny (OR) first, then matchFeatures (AND); no matcher matches all. May raise RuleError."""
    alternatives = rule.get("matchAny") or []
    if alternatives and not any(_match_features(a.get("matchFeatures") or [], features) for a in alternatives):
        return False
    terms = rule.get("matchFeatures") or []
    return not terms or _match_features(terms, features)


def _qualified(name, namespace=PREFIX):
    return name if "/" in name else f"{namespace}/{name}"


NFD_NAMESPACES = (PREFIX, "profile.node.kubernetes.io")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def label_allowed(name, value="true", extra_namespaces=()):
    """validate.go Label + nfd-master filterFeatureLabel: only kubernetes.io namespaces are off limits."""
    ns = name.split("/", 1)[0] if "/" in name else ""
    if not ns:
        return False
    if (ns == "kubernetes.io" or ns.endswith(".kubernetes.io")) and ns not in NFD_NAMESPACES and not any(
            ns.endswith("." + n) for n in NFD_NAMESPACES) and ns not in extra_namespaces:
        return False
    return len(str(value)) <= 63 and bool(LABEL_VALUE.match(str(value)))


def _dynamic(value, features):
    """nfd-master getDynamicValue: ``@domain.feature.element`` of an attribute feature, or None."""
    parts = value[1:].split(".", 2)
    if len(parts) != 3:
        return None
    return ((features["attributes"].get(".".join(parts[:2])) or {}).get("elements") or {}).get(parts[2])


def merge_node_features(objects, node_name, namespace):
    """nfd-master getAndMergeNodeFeatures: every NodeFeature labelled for the node, NFD's namespace first."""
    mine = [o for o in objects if ((o.get("metadata") or {}).get("labels") or {}).get(NODE_NAME_LABEL) == node_name]
    mine.sort(key=lambda o: (o["metadata"]["namespace"] != namespace, o["metadata"]["name"], o["metadata"]["namespace"]))
    merged = {"labels": {}, "features": {"flags": {}, "attributes": {}, "instances": {}}}
    for obj in mine:
        spec = obj.get("spec") or {}
        merged["labels"].update({_qualified(k): str(v) for k, v in (spec.get("labels") or {}).items()})
        for kind in ("flags", "attributes", "instances"):
            for name, feature in ((spec.get("features") or {}).get(kind) or {}).items():
                into = merged["features"][kind].setdefault(name, {"elements": [] if kind == "instances" else {}})
                elements = copy.deepcopy((feature or {}).get("elements") or ([] if kind == "instances" else {}))
                if kind == "instances":
                    into["elements"].extend(elements)
                else:
                    into["elements"].update(elements)
    return merged if mine else None


def evaluate_rules(rules, features, extra_namespaces=()):
    """(labels, extended resources) the rules give a node, as processNodeFeatureRule and the filters do."""
    features = copy.deepcopy(features)
    labels, resources = {}, {}
    for rule_object in sorted(rules, key=lambda r: r["metadata"]["name"]):
        for rule in ((rule_object.get("spec") or {}).get("rules") or []):
            try:
                if not rule_matches(rule, features):
                    continue
            except RuleError as exc:
                log.info("rule %s of %s failed: %s", rule.get("name"), rule_object["metadata"]["name"], exc)
                continue
            out = {str(k): str(v) for k, v in (rule.get("labels") or {}).items()}
            labels.update({_qualified(k): v for k, v in out.items()})
            resources.update({_qualified(k): str(v) for k, v in (rule.get("extendedResources") or {}).items()})
            # Rule output is fed back as rule.matched for the rules after it.
            back = features["attributes"].setdefault("rule.matched", {"elements": {}})["elements"]
            back.update(out)
            back.update({str(k): str(v) for k, v in (rule.get("vars") or {}).items()})
    return labels, resources


def node_outputs(merged, rules, extra_namespaces=()):
    """nfd-master refreshNodeFeatures: the labels and extended resources a node gets."""
    if merged is None:
        return {}, {}
    features = merged["features"]
    rule_labels, rule_resources = evaluate_rules(rules, features, extra_namespaces)
    wanted = dict(merged["labels"])
    wanted.update(rule_labels)
    labels = {}
    for name, value in wanted.items():
        if value.startswith("@"):
            value = _dynamic(value, features)
            if value is None:
                continue
        if label_allowed(name, value, extra_namespaces):
            labels[name] = value
        else:
            log.info("label %s=%s is not allowed; ignored", name, value)
    resources = {}
    for name, value in rule_resources.items():
        if value.startswith("@"):
            value = _dynamic(value, features)
            if value is None:
                log.info("extended resource %s: %s not found; not created", name, rule_resources[name])
                continue
        if re.fullmatch(r"[0-9]+", value):
            resources[name] = value
    return labels, resources


# -- controllers -----------------------------------------------------------------------------------


class NodeLabeller(Controller):
    """nfd-worker (features and built-in labels into the node's NodeFeature) and nfd-master (node labels)."""

    name = "nfd-labeller"

    def setup(self, manager):
        super().setup(manager)
        manager.informer("v1", "nodes").add_handler(lambda kind, obj: self.queue.add(("", obj["metadata"]["name"])))
        for api_version, plural in ((NFD_API, "nodefeaturediscoveries"), (SIGS_RULE_API, "nodefeaturerules"),
                                    (olm.OLM, "clusterserviceversions")):
            manager.informer(api_version, plural).add_handler(lambda kind, obj: self._all_nodes())
        manager.informer(FEATURE_API, "nodefeatures").add_handler(self._feature_changed)
        self.world.subscribe(self._host_changed)

    def _all_nodes(self):
        for name in self.world.hosts:
            self.queue.add(("", name), self.world.timings["nfd_relabel"])

    def _host_changed(self, host):
        self.queue.add(("", host.name), self.world.timings["nfd_relabel"])

    def _feature_changed(self, kind, obj):
        node = ((obj.get("metadata") or {}).get("labels") or {}).get(NODE_NAME_LABEL)
        if node:
            self.queue.add(("", node))

    def instance(self):
        """The NodeFeatureDiscovery instance served by a succeeded NFD CSV, or None."""
        succeeded = operator_namespaces(self.cache(olm.OLM, "clusterserviceversions"))
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
        namespace = instance["metadata"]["namespace"]
        if host.ready:  # nfd-worker runs again once the node is back; the host-change event brings us here
            features = host_features(host)
            self._publish(namespace, node_name, features, builtin_labels(features, worker_config(instance)))
        # nfd-master: only what the NodeFeature objects say (the informer brings our own write back).
        merged = merge_node_features(self.cache(FEATURE_API, "nodefeatures").items(), node_name, namespace)
        extra = tuple((instance.get("spec") or {}).get("extraLabelNs") or ())
        rules = [r for r in self.cache(SIGS_RULE_API, "nodefeaturerules").items()
                 if not r["metadata"].get("deletionTimestamp")]
        labels, resources = node_outputs(merged, rules, extra)
        self._label(node, labels, resources)
        return None

    def _publish(self, namespace, node_name, features, labels):
        """nfd-worker updateNodeFeatureObject: spec.features and spec.labels of the node's NodeFeature."""
        p = path(FEATURE_API, "nodefeatures", namespace=namespace)
        spec = {"features": features, "labels": labels}
        body = {"apiVersion": FEATURE_API, "kind": "NodeFeature",
                "metadata": {"name": node_name, "namespace": namespace, "labels": {NODE_NAME_LABEL: node_name}},
                "spec": spec}
        existing = self.cache(FEATURE_API, "nodefeatures").get(node_name, namespace)
        if existing is None:
            try:
                self.kube.create(p, body)
                return
            except ApiError as exc:
                if exc.status != 409:
                    raise
        elif (existing.get("spec") or {}) == spec:
            return
        # A replace, not a merge: a label or element that went away must go from the object too.
        current = self.kube.get(f"{p}/{node_name}")
        current["spec"] = spec
        current.setdefault("metadata", {}).setdefault("labels", {})[NODE_NAME_LABEL] = node_name
        self.kube.replace(f"{p}/{node_name}", current)

    def _label(self, node, wanted, resources):
        """nfd-master updateNodeObject: extended resources (status) first, then labels and annotations."""
        meta = node["metadata"]
        labels = meta.get("labels") or {}
        annotations = meta.get("annotations") or {}
        previous = {_qualified(n) for n in (annotations.get(RESOURCES_ANNOTATION) or "").split(",") if n}
        capacity = (node.get("status") or {}).get("capacity") or {}
        changes = {k: v for k, v in resources.items() if capacity.get(k) != v}
        changes.update({k: None for k in previous - set(resources) if k in capacity})
        if changes:
            self.kube.merge_patch(path("v1", "nodes", meta["name"], subresource="status"),
                                  {"status": {"capacity": changes, "allocatable": changes}})
        owned = {_qualified(n) for n in (annotations.get(LABELS_ANNOTATION) or "").split(",") if n}
        patch_labels = {k: v for k, v in wanted.items() if labels.get(k) != v}
        patch_labels.update({k: None for k in owned - set(wanted) if k in labels})
        short = lambda k: k[len(PREFIX) + 1:] if k.startswith(PREFIX + "/") else k  # noqa: E731
        owned_names = ",".join(sorted(short(k) for k in wanted)) or None
        resource_names = ",".join(sorted(short(k) for k in resources)) or None
        patch_annotations = {}
        if annotations.get(LABELS_ANNOTATION) != owned_names:
            patch_annotations[LABELS_ANNOTATION] = owned_names
        if annotations.get(RESOURCES_ANNOTATION) != resource_names:
            patch_annotations[RESOURCES_ANNOTATION] = resource_names
        if patch_labels or patch_annotations:
            self.kube.merge_patch(path("v1", "nodes", meta["name"]),
                                  {"metadata": {"labels": patch_labels, "annotations": patch_annotations}})
            log.info("node %s: labels %s", meta["name"], ", ".join(
                f"{k}={'-' if v is None else v}" for k, v in sorted(patch_labels.items()) if "cpu-cpuid" not in k))


class RuleCopier(Controller):
    """cluster-nfd-operator nodefeaturerule_reconciler.go Reconcile: nfd.openshift.io rules into nfd.k8s-sigs.io.

    CreateOrPatch of a same-named ``nfd.k8s-sigs.io`` NodeFeatureRule whose ``spec`` is the source's
    ``rules`` only, with a controller owner reference (the garbage collector deletes the copy with
    its source). The operator runs once its CSV has succeeded.
    """

    name = "nfd-rule-copier"
    api_version = RULE_API
    plural = "nodefeaturerules"
    # The copies too (the operator Owns() them): an edited or deleted copy is put back from its source.
    watches = ((olm.OLM, "clusterserviceversions"), (SIGS_RULE_API, "nodefeaturerules"))

    def map_event(self, kind, obj):
        if obj.get("apiVersion") == SIGS_RULE_API:  # a copy: its source has the same namespace and name
            return [(obj["metadata"].get("namespace"), obj["metadata"]["name"])]
        return super().map_event(kind, obj)

    def reconcile(self, key):
        namespace, name = key
        source = self.cache(RULE_API, "nodefeaturerules").get(name, namespace)
        if source is None or source["metadata"].get("deletionTimestamp"):
            return None
        if not operator_namespaces(self.cache(olm.OLM, "clusterserviceversions")):
            return None
        owner = {"apiVersion": RULE_API, "kind": "NodeFeatureRule", "name": name, "uid": source["metadata"]["uid"],
                 "controller": True, "blockOwnerDeletion": True}
        spec = {"rules": copy.deepcopy((source.get("spec") or {}).get("rules"))}
        if spec["rules"] is None:
            spec = {}
        p = path(SIGS_RULE_API, "nodefeaturerules", namespace=namespace)
        current = copy.deepcopy(self.cache(SIGS_RULE_API, "nodefeaturerules").get(name, namespace))
        if current is None:  # a copy made meanwhile answers 409: the reconcile runs again on fresh state
            self.kube.create(p, {"apiVersion": SIGS_RULE_API, "kind": "NodeFeatureRule",
                                 "metadata": {"name": name, "namespace": namespace, "ownerReferences": [owner]},
                                 "spec": spec})
            log.info("NodeFeatureRule %s/%s copied into nfd.k8s-sigs.io", namespace, name)
            return None
        refs = [r for r in current["metadata"].get("ownerReferences") or [] if r.get("uid") != owner["uid"]]
        if current.get("spec") != spec or len(refs) == len(current["metadata"].get("ownerReferences") or []):
            current["spec"] = spec
            current["metadata"]["ownerReferences"] = [r for r in refs if not r.get("controller")] + [owner]
            self.kube.replace(f"{p}/{name}", current)
        return None


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
        if namespace not in operator_namespaces(self.cache(olm.OLM, "clusterserviceversions")):
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
    manager.add(RuleCopier(world))
    manager.add(InstanceStatus(world))
