# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What NFD's node labels say, and the TEE NodeFeatureRule the nfd role applies (pure functions).

PRIVATE to this collection. Inputs are Node objects as the API returns them. Used by the
wait_for_nodes module, the nfd role (through the nfd_tee_rule filter) and the preflight verdicts.
"""

from __future__ import annotations

import hashlib
import json

from ansible_collections.confidential.gpu.plugins.module_utils.cluster_facts import TEE_LABELS

PREFIX = "feature.node.kubernetes.io/"
VENDOR_LABEL = PREFIX + "cpu-model.vendor_id"
GPU_LABEL = PREFIX + "pci-10de.present"
# Every label that says "an NVIDIA GPU is here", as the GPU operator takes them (NVIDIA/gpu-operator
# controllers/state_manager.go gpuNodeLabels): pci-10de with the label fields narrowed to the vendor (our
# nfd role's worker config), pci-0302_10de (3D controller) and pci-0300_10de (VGA) with nfd-worker's default
# fields [class, vendor] (source/pci/pci.go newDefaultConfig, NFD v0.18), e.g. under an instance we did not write.
GPU_LABELS = (GPU_LABEL, PREFIX + "pci-0302_10de.present", PREFIX + "pci-0300_10de.present")
HYPERVISOR_LABEL = PREFIX + "cpu-cpuid.HYPERVISOR"
KATA_LABEL = PREFIX + "runtime.kata"
RULE_MARKER = PREFIX + "cgpu.tee-rule"
NFD_ANNOTATION = "nfd.node.kubernetes.io/feature-labels"
RULE_API = "nfd.openshift.io/v1alpha1"

# NFD's cpu-model.vendor_id values, and the TEE each vendor's CPUs can have.
VENDORS = {"Intel": "tdx", "AMD": "snp"}
TEE_VENDOR = {"tdx": "Intel", "snp": "AMD", "se": "IBM"}
# Every label that claims a TEE, including IBM SE (OSC counts it), for contradiction checks.
TEE_CLAIMS = dict(TEE_LABELS, se=("ibm.feature.node.kubernetes.io/se",))
TEE_RESOURCES = {"tdx": "tdx.intel.com/keys", "snp": "sev-snp.amd.com/esids"}


def _true(labels, key):
    return str(labels.get(key, "")).lower() == "true"


def node_view(node):
    """One node as NFD labelled it: vendor, TEE labels, GPU, hypervisor, extended resources."""
    meta = node.get("metadata") or {}
    labels = meta.get("labels") or {}
    capacity = ((node.get("status") or {}).get("capacity")) or {}
    claims = {tee: sorted(k for k in keys if _true(labels, k)) for tee, keys in TEE_CLAIMS.items()}
    return {
        "name": meta.get("name"),
        "roles": sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")),
        "labelled": NFD_ANNOTATION in (meta.get("annotations") or {}) or VENDOR_LABEL in labels,
        "vendor": labels.get(VENDOR_LABEL),
        "tee": sorted(t for t, keys in claims.items() if keys),
        "tee_labels": {k: labels[k] for keys in claims.values() for k in keys},
        "gpu": any(_true(labels, key) for key in GPU_LABELS),
        "hypervisor": _true(labels, HYPERVISOR_LABEL),
        "kata": _true(labels, KATA_LABEL),
        "tee_resources": {r: capacity[r] for r in TEE_RESOURCES.values() if r in capacity},
        "rule": labels.get(RULE_MARKER),
        "labels": labels,
    }


# -- label selectors (equality-based, as kubectl -l takes them) ------------------------------------------


def parse_selector(text):
    """``a=b,c!=d,e,!f`` -> list of (key, op, value); op is one of ``=``, ``!=``, ``exists``, ``!exists``."""
    terms = []
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        if "!=" in part:
            key, value = part.split("!=", 1)
            terms.append((key.strip(), "!=", value.strip()))
        elif "==" in part or "=" in part:
            key, value = part.replace("==", "=").split("=", 1)
            terms.append((key.strip(), "=", value.strip()))
        elif part.startswith("!"):
            terms.append((part[1:].strip(), "!exists", None))
        else:
            terms.append((part, "exists", None))
    return terms


def selected(labels, terms):
    for key, op, value in terms:
        if op == "=" and labels.get(key) != value:
            return False
        if op == "!=" and labels.get(key) == value:
            return False
        if op == "exists" and key not in labels:
            return False
        if op == "!exists" and key in labels:
            return False
    return True


# -- verdicts -----------------------------------------------------------------------------------------------


def contradictions(views):
    """Nodes carrying a TEE label their CPU vendor cannot have (e.g. a rule that matches every node)."""
    found = []
    for view in views:
        vendor = view["vendor"]
        if not vendor:
            continue
        for tee in view["tee"]:
            if TEE_VENDOR.get(tee) != vendor:
                found.append("{0} has an {1} CPU but carries {2} ({3}): the label is wrong, most likely a "
                             "NodeFeatureRule without a vendor guard".format(
                                 view["name"], vendor, tee.upper(), ", ".join(
                                     k for k in view["tee_labels"] if k in TEE_CLAIMS[tee])))
    return found


def tee_types(views):
    return sorted({t for v in views for t in v["tee"]})


def problems(targets, everyone):
    """Contradictions anywhere, and more than one TEE type among the target nodes."""
    found = contradictions(everyone)
    types = tee_types(targets)
    if len(types) > 1:
        per_type = {t: sorted(v["name"] for v in targets if t in v["tee"]) for t in types}
        found.append("target nodes show {0} TEE types ({1}); OpenShift sandboxed containers supports one per "
                     "cluster: select nodes of one type".format(len(types), "; ".join(
                         "{0}: {1}".format(t.upper(), ", ".join(n)) for t, n in per_type.items())))
    return found


def missing(view, labels, require_tee=False):
    """What a target node still lacks: wanted labels (value None = any value), and its vendor's TEE labels."""
    gaps = []
    for key, value in (labels or {}).items():
        have = view["labels"].get(key)
        if have is None or (value not in (None, "") and str(have) != str(value)):
            gaps.append("{0}={1}".format(key, "*" if value in (None, "") else value))
    if require_tee:
        tee = VENDORS.get(view["vendor"] or "")
        if tee is None:
            gaps.append("a CPU vendor label (no TEE without one)")
        else:
            gaps.extend("{0}=true".format(k) for k in TEE_LABELS[tee] if not _true(view["labels"], k))
    return gaps


def resource_gaps(views):
    """TEE nodes NFD gave the TEE label but not the extended resource each pod VM takes.

    NFD publishes C(tdx.intel.com/keys) from C(@cpu.security.tdx.total_keys), which exists only
    when the kernel reports a misc cgroup capacity for TDX (source/cpu/security_amd64.go
    discoverSecurity); without it nfd-master creates no resource while the TDX labels stay. OSC's
    TEE RuntimeClass asks every pod VM for one, so such a node can never run a confidential pod.
    """
    found = []
    for view in views:
        for tee in view.get("tee") or []:
            resource = TEE_RESOURCES.get(tee)
            if resource and str((view.get("tee_resources") or {}).get(resource, "0")) in ("", "0"):
                found.append("{0}: {1} is enabled but the node has no {2} (NFD reads it from the kernel's misc "
                             "cgroup capacity, which this kernel does not report); OSC's RuntimeClass asks each pod "
                             "VM for one, so no confidential pod can be scheduled there".format(
                                 view.get("name"), tee.upper(), resource))
    return found


def describe(views, labels, require_tee=False):
    parts = []
    for view in views:
        gaps = missing(view, labels, require_tee)
        parts.append("{0}: {1}".format(view["name"], "lacks " + ", ".join(gaps) if gaps else "ok"))
    return "; ".join(parts) if parts else "no node matches the selector"


# -- the TEE NodeFeatureRule ----------------------------------------------------------------------------------


def _exists(*keys):
    return {k: {"op": "Exists"} for k in keys}


def _vendor_guard(vendor):
    return {"feature": "cpu.model", "matchExpressions": {"vendor_id": {"op": "In", "value": [vendor]}}}


def tee_rule(vendor, namespace="openshift-nfd", name=None):
    """The NodeFeatureRule OSC needs for one CPU vendor, every rule guarded by that vendor.

    The forms are OSC's (runtime.kata, intel.tdx / amd.sev-snp with their extended resources); the
    vendor guard keeps a TDX label off AMD nodes and back. A last rule labels the vendor's nodes
    with a digest of the rules, so a caller can tell that NFD applies this very version.
    """
    if vendor not in VENDORS:
        raise ValueError("CPU vendor {0!r} has no TEE rule; known: {1}".format(vendor, ", ".join(sorted(VENDORS))))
    if vendor == "Intel":
        kata = [_vendor_guard(vendor), {"feature": "cpu.cpuid", "matchExpressions": _exists("SSE42", "VMX")},
                {"feature": "kernel.loadedmodule", "matchExpressions": _exists("kvm", "kvm_intel")}]
        tee = {"name": "intel.tdx", "labels": {"intel.feature.node.kubernetes.io/tdx": "true"},
               "extendedResources": {"tdx.intel.com/keys": "@cpu.security.tdx.total_keys"},
               "matchFeatures": [_vendor_guard(vendor), {"feature": "cpu.cpuid", "matchExpressions": _exists("VMX")},
                                 {"feature": "cpu.security", "matchExpressions": _exists("tdx.enabled")}]}
    else:
        kata = [_vendor_guard(vendor), {"feature": "cpu.cpuid", "matchExpressions": _exists("SSE42", "SVM")},
                {"feature": "kernel.loadedmodule", "matchExpressions": _exists("kvm", "kvm_amd")}]
        tee = {"name": "amd.sev-snp", "labels": {"amd.feature.node.kubernetes.io/snp": "true"},
               "extendedResources": {"sev-snp.amd.com/esids": "@cpu.security.sev.encrypted_state_ids"},
               "matchFeatures": [_vendor_guard(vendor), {"feature": "cpu.cpuid", "matchExpressions": _exists("SVM")},
                                 {"feature": "cpu.security", "matchExpressions": _exists("sev.snp.enabled")}]}
    rules = [{"name": "runtime.kata", "labels": {KATA_LABEL: "true"}, "matchFeatures": kata}, tee]
    digest = hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()[:12]
    rules.append({"name": "cgpu.tee-rule", "labels": {RULE_MARKER: digest}, "matchFeatures": [_vendor_guard(vendor)]})
    return {
        "apiVersion": RULE_API, "kind": "NodeFeatureRule",
        "metadata": {"name": name or rule_name(vendor), "namespace": namespace,
                     "labels": {"app.kubernetes.io/managed-by": "confidential.gpu"}},
        "spec": {"rules": rules},
    }


def rule_name(vendor):
    return {"Intel": "tdx-features", "AMD": "snp-features"}[vendor]


def rule_digest(rule):
    for item in rule["spec"]["rules"]:
        if RULE_MARKER in (item.get("labels") or {}):
            return item["labels"][RULE_MARKER]
    return None
