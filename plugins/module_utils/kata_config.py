# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""OpenShift sandboxed containers: the KataConfig, where its rollout stands, and the runtime classes it must give.

PRIVATE to this collection. Pure functions over plain dicts as the API serves them.

Facts this encodes (operators.md §4.3, §6): OSC uses the ``kata-oc`` MachineConfigPool on clusters with
worker-only nodes and ``master`` on compact and single-node ones; ``checkNodeEligibility`` narrows the
nodes to NFD's ``feature.node.kubernetes.io/runtime.kata=true``; the runtime classes come only at the
end of the rollout; ``kata-cc`` needs exactly one TEE type among the nodes' labels; and
``kata-cc-nvidia-gpu`` is decided when the KataConfig is reconciled, so GPUs labelled afterwards leave it
missing until something reconciles the KataConfig again.
"""

from __future__ import annotations

import copy

API_VERSION = "kataconfiguration.openshift.io/v1"
EXTENSION_MC = "50-enable-sandboxed-containers-extension"
ELIGIBLE = "feature.node.kubernetes.io/runtime.kata"
WORKER_ROLE = "node-role.kubernetes.io/worker"
MASTER_ROLE = "node-role.kubernetes.io/master"
RECONCILE_ANNOTATION = "confidential.gpu/reconcile"
GPU_CLASS = "kata-cc-nvidia-gpu"
CC_CLASS = "kata-cc"
# label, TEE, extended resource one pod VM takes (OSC's own table)
TEES = (
    ("intel.feature.node.kubernetes.io/tdx", "tdx", "tdx.intel.com/keys"),
    ("amd.feature.node.kubernetes.io/snp", "snp", "sev-snp.amd.com/esids"),
    ("ibm.feature.node.kubernetes.io/se", "se", None),
)
GPU_SELECTOR = {
    "nvidia.com/gpu.present": "true",
    "nvidia.com/gpu.deploy.vfio-manager": "true",
    "nvidia.com/gpu.deploy.kata-sandbox-device-plugin": "true",
    "nvidia.com/cc.mode.state": "on",
    "nvidia.com/cc.ready.state": "true",
}
FATAL_REASONS = ("UnsupportedOCPVersion",)
# Newer OSC (openshift/sandboxed-containers-operator controllers/confidential_handler.go, handleConfidentialBaremetal):
# with spec.unifiedKataCCHandler true, handleConfidentialBaremetalUnified creates a CRI-O drop-in MachineConfig and a
# MachineConfigPool per TEE type found on the nodes (createOrUpdateTEEPool) and one kata-cc class with handler kata-cc.
# Unset or false is the single-TEE path (kata-oc only) the one-reboot plan is measured on.
UNIFIED_HANDLER = "unifiedKataCCHandler"

__all__ = [
    "kataconfig", "feature_gates", "selector", "selected_nodes", "pool_name", "tee_of", "in_progress",
    "expected_runtime_classes", "runtime_class_problems", "gpu_nodes", "assess", "unified_handler_field",
    "unified_handler_problem",
]


def _labels(obj):
    return (obj.get("metadata") or {}).get("labels") or {}


def _name(obj):
    return (obj.get("metadata") or {}).get("name")


def kataconfig(name, node_selector=None, check_node_eligibility=True, log_level="info"):
    """The KataConfig for bare-metal confidential containers (no peer pods)."""
    spec = {"checkNodeEligibility": bool(check_node_eligibility), "enablePeerPods": False, "logLevel": log_level}
    if node_selector:
        spec["kataConfigPoolSelector"] = {"matchLabels": dict(node_selector)}
    return {"apiVersion": API_VERSION, "kind": "KataConfig", "metadata": {"name": name}, "spec": spec}


def feature_gates(namespace, confidential=True, extra=None):
    """The ``osc-feature-gates`` ConfigMap, read by OSC at the start of every KataConfig reconcile."""
    data = {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in (extra or {}).items()}
    data["confidential"] = "true" if confidential else "false"
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "osc-feature-gates", "namespace": namespace},
            "data": data}


def selector(kc):
    """The node selector a KataConfig stands for (workers when unset; eligibility on top when checked)."""
    spec = (kc or {}).get("spec") or {}
    out = copy.deepcopy(spec.get("kataConfigPoolSelector") or {"matchLabels": {WORKER_ROLE: ""}})
    if spec.get("checkNodeEligibility"):
        out.setdefault("matchLabels", {})[ELIGIBLE] = "true"
    return out


def matches(sel, labels):
    labels = labels or {}
    if any(labels.get(k) != v for k, v in (sel.get("matchLabels") or {}).items()):
        return False
    for expr in sel.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        have = key in labels
        ok = {"In": have and labels[key] in values, "NotIn": not have or labels[key] not in values,
              "Exists": have, "DoesNotExist": not have}.get(op, False)
        if not ok:
            return False
    return True


def converged(nodes):
    return not any(WORKER_ROLE in _labels(n) and MASTER_ROLE not in _labels(n) for n in nodes)


def pool_name(nodes):
    """``master`` on compact and single-node clusters, ``kata-oc`` elsewhere (where OSC puts kata)."""
    return "master" if converged(nodes) else "kata-oc"


def selected_nodes(kc, nodes):
    if converged(nodes):
        return [n for n in nodes if MASTER_ROLE in _labels(n)]
    sel = selector(kc)
    return [n for n in nodes if WORKER_ROLE in _labels(n) and matches(sel, _labels(n))]


def tee_of(nodes):
    """``(tee, label, resource)`` from the TEE labels of the nodes; ValueError with OSC's words otherwise."""
    found = [t for t in TEES if any(_labels(n).get(t[0]) == "true" for n in nodes)]
    if len(found) > 1:
        raise ValueError("multiple TEE platforms detected; only one per cluster supported (labels: {0})".format(
            ", ".join(t[0] for t in found)))
    if not found:
        raise ValueError("no TEE platform labels found (expected {0}) on {1}".format(
            " or ".join(t[0] for t in TEES), ", ".join(sorted(_name(n) for n in nodes)) or "no node"))
    label, tee, resource = found[0]
    return tee, label, resource


def in_progress(kc):
    for cond in ((kc or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "InProgress":
            return cond
    return {}


def gpu_nodes(nodes):
    return sorted(_name(n) for n in nodes if _labels(n).get("nvidia.com/gpu.present") == "true")


def expected_runtime_classes(tee, label, resource, gpu=True):
    """Handler, nodeSelector that must be there, and extended-resource overhead, per runtime class."""
    out = {
        "kata": {"handler": "kata", "node_selector": {}, "overhead": None},
        CC_CLASS: {"handler": "kata-" + tee, "node_selector": {label: "true"}, "overhead": resource},
    }
    if gpu:
        out[GPU_CLASS] = {"handler": "kata-{0}-nvidia-gpu".format(tee),
                          "node_selector": dict(GPU_SELECTOR, **{label: "true"}), "overhead": resource}
    return out


def runtime_class_problems(runtime_classes, expected):
    """Sentences naming each runtime class that is missing or differs from what OSC must create."""
    by_name = {_name(rc): rc for rc in runtime_classes}
    problems = []
    for name, want in expected.items():
        rc = by_name.get(name)
        if rc is None:
            problems.append("runtime class {0} does not exist".format(name))
            continue
        if rc.get("handler") != want["handler"]:
            problems.append("runtime class {0} has handler {1!r}, expected {2!r}".format(
                name, rc.get("handler"), want["handler"]))
        have = ((rc.get("scheduling") or {}).get("nodeSelector")) or {}
        missing = {k: v for k, v in want["node_selector"].items() if have.get(k) != v}
        if missing:
            problems.append("runtime class {0} does not schedule on {1} (its nodeSelector is {2})".format(
                name, ", ".join("{0}={1}".format(k, v) for k, v in sorted(missing.items())), have))
        if want["overhead"] and want["overhead"] not in ((rc.get("overhead") or {}).get("podFixed") or {}):
            problems.append("runtime class {0} has no {1} overhead: pods would not take one TEE slot each".format(
                name, want["overhead"]))
    return problems


def assess(kc, nodes, pool_rollout, runtime_classes, want_classes, confidential=True):
    """Where a KataConfig stands, for waiting and verifying.

    ``pool_rollout`` is machine_config.rollout() of the KataConfig's pool (None while it does not exist).
    Returns ``done``, ``fatal`` (stop now), ``failure`` (a reported failure that may clear, e.g. TEE
    labels that come a moment after a reboot), ``line``, ``problems`` (runtime classes),
    ``gpu_class_missing`` and ``tee``.
    """
    name = _name(kc) or "?"
    status = (kc or {}).get("status") or {}
    kata_nodes = status.get("kataNodes") or {}
    cond = in_progress(kc)
    count, ready = kata_nodes.get("nodeCount") or 0, kata_nodes.get("readyNodeCount") or 0
    reason = cond.get("reason") or ""
    state = {"True": reason or "InProgress", "False": "installed" if not reason else reason}.get(
        cond.get("status"), "not reconciled yet")
    parts = ["KataConfig {0}: {1}, {2}/{3} nodes ready".format(name, state, ready, count)]
    if pool_rollout:
        parts.append(pool_rollout["line"])
    if status.get("waitingForMcoToStart"):
        parts.append("waiting for the MCO to start")
    out = {"done": False, "fatal": None, "failure": None, "problems": [], "gpu_class_missing": False, "tee": None}
    failed_nodes = kata_nodes.get("failedToInstall") or []
    if reason in FATAL_REASONS:
        out["fatal"] = "KataConfig {0}: {1}: {2}".format(name, reason, cond.get("message"))
    elif failed_nodes or (reason == "Failed" and str(cond.get("message", "")).startswith("Node ")):
        out["fatal"] = "KataConfig {0} failed to install on {1}: {2}".format(
            name, ", ".join(failed_nodes) or "a node", cond.get("message") or (pool_rollout or {}).get("message"))
    elif reason == "Failed":
        out["failure"] = "KataConfig {0}: {1}".format(name, cond.get("message"))
        parts.append("failed: " + str(cond.get("message")))
    installed = cond.get("status") == "False" and not reason and count > 0 and ready == count
    selected = selected_nodes(kc, nodes)
    present = {_name(rc) for rc in runtime_classes}
    listed = set(status.get("runtimeClasses") or [])
    if installed:
        missing = [c for c in want_classes if c not in present or c not in listed]
        gpus = gpu_nodes(selected)
        if confidential and GPU_CLASS not in present and gpus and CC_CLASS in present:
            out["gpu_class_missing"] = True
        if missing:
            parts.append("runtime classes missing: " + ", ".join(missing))
        else:
            out["done"] = True
        if confidential:
            try:
                tee, label, resource = tee_of(selected)
            except ValueError as exc:
                out["problems"].append(str(exc))
            else:
                out["tee"] = tee
                expected = expected_runtime_classes(tee, label, resource, gpu=GPU_CLASS in want_classes)
                expected = {k: v for k, v in expected.items() if k in want_classes}
                out["problems"] = runtime_class_problems(runtime_classes, expected)
    out["line"] = "; ".join(parts)
    return out


def unified_handler_field(crd):
    """Whether a served version of the KataConfig CRD has ``spec.unifiedKataCCHandler`` (newer OSC). OSC 1.8's CRD and
    an open schema do not: there the field must not be written (the API server would prune it, and every run would
    report a change)."""
    for version in ((crd or {}).get("spec") or {}).get("versions") or []:
        if not version.get("served", True):
            continue
        schema = (version.get("schema") or {}).get("openAPIV3Schema") or {}
        spec = (schema.get("properties") or {}).get("spec") or {}
        if UNIFIED_HANDLER in (spec.get("properties") or {}):
            return True
    return False


def unified_handler_problem(existing):
    """Why an existing KataConfig cannot be taken over (its ``unifiedKataCCHandler`` is on), or None."""
    spec = (existing or {}).get("spec") or {}
    if spec.get(UNIFIED_HANDLER) is not True:
        return None
    return ("KataConfig {0} has spec.{1} true: OSC then creates a CRI-O drop-in MachineConfig and a MachineConfigPool "
            "per TEE type, so the kata nodes change pool and reboot again, outside this collection's one-reboot plan. "
            "Set spec.{1} to false (or remove it) on KataConfig {0}, or delete it, then run again.").format(
                _name(existing), UNIFIED_HANDLER)
