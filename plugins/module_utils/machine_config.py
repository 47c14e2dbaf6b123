# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""MachineConfigs and MachineConfigPools as the Machine Config Operator reads them (pure functions).

PRIVATE to this collection. Inputs are plain dicts as the API serves them; nothing here talks to a
cluster. Four questions are answered here so that modules stay thin and the answers are unit-tested:

* which pool a node belongs to, and which MachineConfigs a pool selects (:func:`pool_of_node`,
  :func:`selects`);
* what a pool renders from its MachineConfigs (:func:`merge`), so that a plan can leave out what
  other MachineConfigs already give;
* which MachineConfigs the TEE hosts need, and which nodes a change reboots (:func:`host_machine_configs`,
  :func:`plan`);
* where a rollout stands, in one line a person can read (:func:`rollout`).
"""

from __future__ import annotations

import base64
import copy
import urllib.parse

__all__ = [
    "ROLE_LABEL", "CURRENT_CONFIG", "DESIRED_CONFIG", "STATE", "REASON",
    "data_url", "decode_data_url", "selector_matches", "selects", "merge_order", "merge", "pool_of_node", "members",
    "custom_pool_selector", "pool_definition", "host_machine_configs", "plan", "node_phase", "rollout",
    "render_contains", "drain_blockers", "describe",
]

API_VERSION = "machineconfiguration.openshift.io/v1"
ROLE_LABEL = "machineconfiguration.openshift.io/role"
_ANN = "machineconfiguration.openshift.io/"
CURRENT_CONFIG = _ANN + "currentConfig"
DESIRED_CONFIG = _ANN + "desiredConfig"
STATE = _ANN + "state"
REASON = _ANN + "reason"
DESIRED_DRAIN = _ANN + "desiredDrain"
LAST_APPLIED_DRAIN = _ANN + "lastAppliedDrain"
MANAGED_BY = "app.kubernetes.io/managed-by"
# Set while this collection holds a pool paused, so that an interrupted run can tell its own pause from a person's.
PAUSED_BY = "confidential.gpu/paused"
MANAGER = "confidential.gpu"
# The pools every OpenShift cluster has; a node matching both master and a custom pool stays in master.
BUILTIN_POOLS = ("master", "worker")
# Ignition spec our MachineConfigs declare: the one the Red Hat guides use; the MCO converts it.
IGNITION_VERSION = "3.2.0"

VSOCK_FILE = "/etc/modules-load.d/vsock.conf"
TDX_KERNEL_ARGUMENTS = ("kvm_intel.tdx=1", "nohibernate")
IOMMU_KERNEL_ARGUMENTS = {"intel": ("intel_iommu=on",), "amd": ("amd_iommu=on",)}
# RHEL kernels turn SNP on by default once the firmware does; these only matter when something
# turned it off, which is why they are added only when the probe shows SNP off with working firmware.
SNP_KERNEL_ARGUMENTS = ("kvm_amd.sev=1", "kvm_amd.sev_snp=1")


# --------------------------------------------------------------------------------------------
# file contents


def data_url(text: str) -> str:
    """Ignition's ``contents.source`` for a text file (base64, as ``oc``-written MachineConfigs have it)."""
    return "data:text/plain;charset=utf-8;base64," + base64.b64encode(text.encode("utf-8")).decode("ascii")


def decode_data_url(source):
    """The text a ``data:`` URL holds, or None for any other source (http, s3: fetched by the node)."""
    if not isinstance(source, str) or not source.startswith("data:"):
        return None
    header, sep, payload = source[5:].partition(",")
    if not sep:
        return None
    if header.endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=True).decode("utf-8", "replace")
        except (ValueError, TypeError):
            return None
    return urllib.parse.unquote(payload)


# --------------------------------------------------------------------------------------------
# selectors and membership


def selector_matches(selector, labels) -> bool:
    """metav1.LabelSelector semantics: a missing selector matches nothing, an empty one everything."""
    if selector is None:
        return False
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


def _labels(obj):
    return (obj.get("metadata") or {}).get("labels") or {}


def _name(obj):
    return (obj.get("metadata") or {}).get("name")


def selects(pool, machine_config) -> bool:
    """Whether the pool's machineConfigSelector picks this MachineConfig."""
    return selector_matches((pool.get("spec") or {}).get("machineConfigSelector"), _labels(machine_config))


def pool_of_node(node, pools):
    """(pool name, problem) for a node, as the MCO decides it.

    A node matching master stays in master; otherwise a node matching exactly one custom pool belongs
    to it (custom pools take nodes out of worker); two custom pools are an error the MCO refuses.
    """
    labels = _labels(node)
    matching = sorted(_name(p) for p in pools if selector_matches((p.get("spec") or {}).get("nodeSelector"), labels))
    if not matching:
        return None, None
    if "master" in matching:
        return "master", None
    custom = [p for p in matching if p not in BUILTIN_POOLS]
    if len(custom) > 1:
        return None, "node {0} belongs to {1} custom pools ({2}); the MCO will not manage it".format(
            _name(node), len(custom), ", ".join(custom))
    if custom:
        return custom[0], None
    return matching[0], None


def members(pools, nodes):
    """{pool name: [node names]} for every pool (empty lists included), names sorted."""
    out = {_name(p): [] for p in pools}
    for node in nodes:
        pool, _problem = pool_of_node(node, pools)
        if pool:
            out.setdefault(pool, []).append(_name(node))
    return {k: sorted(v) for k, v in out.items()}


def custom_pool_selector(pool: str) -> dict:
    """What OSC gives kata-oc: the pool's own MachineConfigs and every worker one."""
    return {"matchExpressions": [{"key": ROLE_LABEL, "operator": "In", "values": [pool, "worker"]}]}


def pool_definition(pool: str, node_selector: dict, max_unavailable=1) -> dict:
    return {
        "apiVersion": API_VERSION, "kind": "MachineConfigPool",
        "metadata": {"name": pool, "labels": {"pools.operator.machineconfiguration.openshift.io/" + pool: "",
                                              MANAGED_BY: MANAGER}},
        "spec": {"machineConfigSelector": custom_pool_selector(pool),
                 "nodeSelector": {"matchLabels": dict(node_selector)},
                 "maxUnavailable": max_unavailable, "paused": False},
    }


# --------------------------------------------------------------------------------------------
# rendering


def _files(machine_config):
    config = (machine_config.get("spec") or {}).get("config") or {}
    return ((config.get("storage") or {}).get("files")) or []


def merge_order(configs):
    """The order the MCO merges a pool's MachineConfigs in: those labelled role C(worker) first, then all
    others (the custom pool's own), each group by name, so that a custom pool's MachineConfigs win over the
    worker ones whatever their names (machine-config-operator release-4.21, MergeMachineConfigs)."""
    ordered = sorted(configs, key=lambda mc: _name(mc) or "")
    workers = [mc for mc in ordered if _labels(mc).get(ROLE_LABEL) == "worker"]
    return workers + [mc for mc in ordered if _labels(mc).get(ROLE_LABEL) != "worker"]


def merge(configs) -> dict:
    """What the MCO renders from these MachineConfigs: in :func:`merge_order`, later files win per path,
    kernel arguments and extensions concatenated as they are (repeats kept), FIPS if any asks."""
    ordered = merge_order(configs)
    kargs = []
    extensions = []
    files = {}
    fips = False
    kernel_type = "default"
    for mc in ordered:
        spec = mc.get("spec") or {}
        kargs.extend(spec.get("kernelArguments") or [])
        extensions.extend(spec.get("extensions") or [])
        fips = fips or bool(spec.get("fips"))
        if spec.get("kernelType") in ("realtime", "64k-pages"):
            kernel_type = spec["kernelType"]
        for entry in _files(mc):
            source = (entry.get("contents") or {}).get("source")
            files[entry["path"]] = {"contents": decode_data_url(source), "source": source,
                                    "mode": entry.get("mode"), "from": _name(mc)}
    return {"kernelArguments": kargs, "extensions": extensions, "files": files, "fips": fips,
            "kernelType": kernel_type, "sources": [_name(mc) for mc in ordered]}


def render_contains(rendered_spec, machine_config) -> bool:
    """Whether a rendered config (its spec) carries everything this MachineConfig asks for."""
    rendered = merge([{"metadata": {"name": "rendered"}, "spec": rendered_spec}])
    spec = machine_config.get("spec") or {}
    if not set(spec.get("kernelArguments") or []) <= set(rendered["kernelArguments"]):
        return False
    if not set(spec.get("extensions") or []) <= set(rendered["extensions"]):
        return False
    for entry in _files(machine_config):
        have = rendered["files"].get(entry["path"])
        if have is None or have["source"] != (entry.get("contents") or {}).get("source"):
            return False
    return True


# --------------------------------------------------------------------------------------------
# what TEE hosts need


def _machine_config(name, pool, kargs=(), files=(), purpose=""):
    spec = {"config": {"ignition": {"version": IGNITION_VERSION}}}
    if kargs:
        spec["kernelArguments"] = list(kargs)
    if files:
        spec["config"]["storage"] = {"files": [
            {"path": f["path"], "mode": f.get("mode", 0o644), "overwrite": True,
             "contents": {"source": data_url(f["contents"])}} for f in files]}
    return {
        "apiVersion": API_VERSION, "kind": "MachineConfig",
        "metadata": {"name": name, "labels": {ROLE_LABEL: pool, MANAGED_BY: MANAGER},
                     "annotations": {"confidential.gpu/purpose": purpose} if purpose else {}},
        "spec": spec,
    }


def host_machine_configs(pool, tee, iommu=True, snp_kernel_arguments=False, prefix="99"):
    """The MachineConfigs for TEE hosts in ``pool``: one per concern, named for a person reading ``oc get mc``.

    ``tee`` is ``tdx`` or ``snp`` (the CPU vendor follows); ``snp_kernel_arguments`` adds the SNP
    switches only when the probe found SNP off with working firmware.
    """
    if tee not in ("tdx", "snp"):
        raise ValueError("tee is {0!r}; valid: tdx, snp".format(tee))
    vendor = "intel" if tee == "tdx" else "amd"
    out = []
    if tee == "tdx":
        out.append(_machine_config(
            "{0}-{1}-cgpu-tdx".format(prefix, pool), pool, TDX_KERNEL_ARGUMENTS,
            [{"path": VSOCK_FILE, "contents": "vsock-loopback\n"}],
            "Intel TDX host: KVM TDX support, no hibernation (TDX keys cannot survive it), vsock loopback"))
    elif snp_kernel_arguments:
        out.append(_machine_config("{0}-{1}-cgpu-snp".format(prefix, pool), pool, SNP_KERNEL_ARGUMENTS,
                                   purpose="AMD SEV-SNP host: KVM SEV and SEV-SNP support"))
    if iommu:
        out.append(_machine_config("{0}-{1}-cgpu-iommu".format(prefix, pool), pool, IOMMU_KERNEL_ARGUMENTS[vendor],
                                   purpose="IOMMU on, so GPUs can be passed to confidential VMs through VFIO"))
    return out


def _without(machine_config, provided):
    """The MachineConfig minus what ``provided`` (a merge of other MachineConfigs) already gives; None if empty."""
    mc = copy.deepcopy(machine_config)
    spec = mc["spec"]
    kargs = [a for a in spec.get("kernelArguments") or [] if a not in provided["kernelArguments"]]
    files = [f for f in _files(mc) if (provided["files"].get(f["path"]) or {}).get("source")
             != (f.get("contents") or {}).get("source")]
    if not kargs and not files:
        return None
    # Explicit empties, so that an update by merge patch removes what is no longer ours.
    spec["kernelArguments"] = kargs
    config = spec.get("config")
    if config is not None and (files or "storage" in config):
        config["storage"] = {"files": files}
    return mc


def _providers(machine_config, others):
    """Names of the other MachineConfigs that give some of this one's kernel arguments or files."""
    kargs = set((machine_config.get("spec") or {}).get("kernelArguments") or [])
    paths = {f["path"] for f in _files(machine_config)}
    return sorted(_name(o) for o in others
                  if kargs & set((o.get("spec") or {}).get("kernelArguments") or [])
                  or paths & {f["path"] for f in _files(o)})


def _same(existing, desired):
    """Whether an existing MachineConfig already has the desired labels and spec (server fields ignored)."""
    if existing is None:
        return False
    labels = _labels(existing)
    if any(labels.get(k) != v for k, v in _labels(desired).items()):
        return False
    have = existing.get("spec") or {}
    want = desired.get("spec") or {}
    if list(have.get("kernelArguments") or []) != list(want.get("kernelArguments") or []):
        return False
    if list(have.get("extensions") or []) != list(want.get("extensions") or []):
        return False
    have_files = [(f["path"], (f.get("contents") or {}).get("source"), f.get("mode")) for f in _files(existing)]
    want_files = [(f["path"], (f.get("contents") or {}).get("source"), f.get("mode")) for f in _files(desired)]
    return have_files == want_files


def plan(pool, desired, pools, machine_configs, nodes):
    """What applying ``desired`` MachineConfigs to ``pool`` does.

    Returns ``{machine_configs: [{name, action, definition, reason}], changed, pool_exists,
    affected_pools, reboot_nodes, members, updating_nodes}``. ``action`` is ``create``, ``update``,
    ``unchanged`` or ``provided`` (other MachineConfigs of the pool already give all of it: creating
    it would reboot every node for nothing). Kernel arguments and files that other MachineConfigs
    already give are left out of ours for the same reason.
    """
    by_name = {_name(mc): mc for mc in machine_configs}
    pool_obj = next((p for p in pools if _name(p) == pool), None)
    selector_pool = pool_obj or {"metadata": {"name": pool}, "spec": {"machineConfigSelector": custom_pool_selector(pool)}}
    ours = {_name(mc) for mc in desired}
    others = [mc for mc in machine_configs if _name(mc) not in ours and selects(selector_pool, mc)
              and not _name(mc).startswith("rendered-")]
    provided = merge(others)
    entries = []
    for mc in desired:
        name = _name(mc)
        existing = by_name.get(name)
        wanted = _without(mc, provided)
        if wanted is None:
            if existing is None:
                entries.append({"name": name, "action": "provided", "definition": None,
                                "reason": "already given by " + ", ".join(_providers(mc, others))})
                continue
            wanted = existing  # ours from an earlier run: removing it would re-render and reboot for nothing
        if existing is None:
            entries.append({"name": name, "action": "create", "definition": wanted, "reason": ""})
        elif _same(existing, wanted):
            entries.append({"name": name, "action": "unchanged", "definition": wanted, "reason": ""})
        else:
            entries.append({"name": name, "action": "update", "definition": wanted, "reason": ""})
    changing = [e["definition"] for e in entries if e["action"] in ("create", "update")]
    membership = members(pools, nodes)
    affected = sorted({_name(p) for p in pools for mc in changing if selects(p, mc)})
    reboot = sorted({n for p in affected for n in membership.get(p, [])})
    by_node = {_name(n): n for n in nodes}
    target_members = membership.get(pool, [])
    updating = []
    if pool_obj is not None:
        target = ((pool_obj.get("spec") or {}).get("configuration") or {}).get("name")
        for name in target_members:
            ann = (by_node[name].get("metadata") or {}).get("annotations") or {}
            if ann.get(CURRENT_CONFIG) != target or ann.get(DESIRED_CONFIG) != target:
                updating.append(name)
    return {
        "machine_configs": entries,
        "changed": bool(changing),
        "pool_exists": pool_obj is not None,
        "affected_pools": affected,
        "reboot_nodes": reboot,
        "members": target_members,
        "updating_nodes": updating,
    }


# --------------------------------------------------------------------------------------------
# rollout progress


def _ready(node):
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def node_phase(node, target):
    """(phase, detail) of one node against the pool's target rendered config.

    Phases: ``updated``, ``degraded``, ``rebooting``, ``draining``, ``updating``, ``waiting``.
    """
    ann = (node.get("metadata") or {}).get("annotations") or {}
    current, desired, state = ann.get(CURRENT_CONFIG), ann.get(DESIRED_CONFIG), ann.get(STATE)
    unschedulable = bool((node.get("spec") or {}).get("unschedulable"))
    if state in ("Degraded", "Unreconcilable"):
        return "degraded", ann.get(REASON) or state
    if current == target and desired == target and state == "Done":
        if not _ready(node):
            return "rebooting", "NotReady"
        return "updated", ""
    if desired != target and desired == current and state in ("Done", None):
        return "waiting", ""
    if not _ready(node):
        return "rebooting", ""
    want_drain = ann.get(DESIRED_DRAIN)
    if state == "Working" and want_drain and want_drain.startswith("drain-") and ann.get(LAST_APPLIED_DRAIN) != want_drain:
        return "draining", ""
    if unschedulable or state == "Working" or desired != current:
        return "updating", ""
    return "waiting", ""


def _condition(pool, kind):
    for cond in (pool.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return {}


def rollout(pool, nodes, blockers=None):
    """Where a pool's rollout stands: ``{done, degraded, line, nodes: {name: phase}, message}``.

    ``nodes`` are the pool's members; ``blockers`` ({node: text}) explain a stuck drain. Done means
    every member runs the pool's target config and is Ready, and the pool says Updated.
    """
    blockers = blockers or {}
    name = _name(pool)
    spec = pool.get("spec") or {}
    target = (spec.get("configuration") or {}).get("name")
    status = pool.get("status") or {}
    phases = {}
    details = {}
    for node in sorted(nodes, key=_name):
        phase, detail = node_phase(node, target)
        phases[_name(node)] = phase
        details[_name(node)] = blockers.get(_name(node)) or detail
    updated = sum(1 for p in phases.values() if p == "updated")
    count = len(phases)
    parts = ["{0}: {1}/{2} nodes updated".format(name, updated, count)]
    for node, phase in phases.items():
        if phase in ("updated", "waiting"):
            continue
        text = "{0} {1}".format(node, phase)
        if details[node]:
            text += " ({0})".format(details[node])
        parts.append(text)
    waiting = sum(1 for p in phases.values() if p == "waiting")
    if waiting and spec.get("paused"):
        parts.append("paused with {0} waiting".format(waiting))
    elif waiting:
        parts.append("{0} waiting".format(waiting))
    degraded_cond = _condition(pool, "Degraded")
    degraded = degraded_cond.get("status") == "True" or any(p == "degraded" for p in phases.values())
    rendered_ok = (status.get("configuration") or {}).get("name") == target and target is not None
    done = (updated == count and rendered_ok and _condition(pool, "Updated").get("status") == "True"
            and not degraded)
    message = ""
    if degraded:
        # The MCO's own words when its pool status already says so; the same words from the nodes before.
        message = degraded_cond.get("message") or ", ".join(
            'Node {0} is reporting: "{1}"'.format(n, details[n]) for n, p in phases.items() if p == "degraded")
    return {"done": done, "degraded": degraded, "paused": bool(spec.get("paused")), "line": ", ".join(parts),
            "nodes": phases, "target": target, "message": message, "updated": updated, "count": count}


def describe(name, node_selector, pools, nodes, configs):
    """A pool as ``machine_config_pool_info`` reports it: members, selected MachineConfigs, rollout.

    For a pool that does not exist yet, the members are the nodes matching ``node_selector`` and the
    MachineConfigs are those a custom pool would select.
    """
    pool = next((p for p in pools if _name(p) == name), None)
    problems = [problem for problem in (pool_of_node(n, pools)[1] for n in nodes) if problem]
    if pool is not None:
        names = members(pools, nodes).get(name, [])
        selector_pool = pool
    else:
        names = sorted(_name(n) for n in nodes if selector_matches({"matchLabels": node_selector or {}}, _labels(n)))
        selector_pool = {"metadata": {"name": name}, "spec": {"machineConfigSelector": custom_pool_selector(name)}}
    selected = sorted(_name(c) for c in configs if selects(selector_pool, c) and not _name(c).startswith("rendered-"))
    by_name = {_name(n): n for n in nodes}
    if pool is not None:
        state = rollout(pool, [by_name[m] for m in names])
    else:
        state = {"done": False, "degraded": False, "paused": False, "nodes": {}, "message": "", "target": None,
                 "updated": 0, "count": len(names),
                 "line": "{0}: pool does not exist yet ({1} nodes would join it)".format(name, len(names))}
    annotations = ((pool or {}).get("metadata") or {}).get("annotations") or {}
    return {
        "exists": pool is not None,
        "paused": bool(pool and (pool.get("spec") or {}).get("paused")),
        "paused_by_collection": PAUSED_BY in annotations,
        "members": names,
        "machine_configs": selected,
        "target": (((pool or {}).get("spec") or {}).get("configuration") or {}).get("name"),
        "rollout": state,
        "problems": problems,
    }


def drain_blockers(pods, pdbs):
    """Which PodDisruptionBudgets stop the eviction of these pods: {"ns/pod": "ns/pdb"} for pods whose
    PDB allows no disruption now (the API's ``status.disruptionsAllowed``)."""
    out = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp") or any(o.get("kind") == "DaemonSet" for o in meta.get("ownerReferences") or []):
            continue
        for pdb in pdbs:
            pmeta = pdb.get("metadata") or {}
            if pmeta.get("namespace") != meta.get("namespace"):
                continue
            if not selector_matches((pdb.get("spec") or {}).get("selector"), meta.get("labels") or {}):
                continue
            if int((pdb.get("status") or {}).get("disruptionsAllowed") or 0) < 1:
                out["{0}/{1}".format(meta.get("namespace"), meta.get("name"))] = "{0}/{1}".format(
                    pmeta.get("namespace"), pmeta.get("name"))
    return out
