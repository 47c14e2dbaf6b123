# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a teardown removes, in which order, and which nodes reboot for it: plain functions over what was read.

Only what the collection made goes: objects labelled ``app.kubernetes.io/managed-by: confidential.gpu``
(its Subscriptions, OperatorGroups, the Namespaces it created, MachineConfigs, NodeFeatureRules and the
operands it declared), the CSV its Subscription installed, the operands inside a namespace it created,
and the ``confidential.gpu/`` labels and annotations it put on nodes.

The order is the bring-up's, reversed: confidential workloads, Trustee, the KataConfig (OSC's uninstall
moves the nodes of its ``kata-oc`` pool back to ``worker``: their one reboot), the GPU operator, our host
MachineConfigs (no reboot when they were written for ``kata-oc``, which is gone by then), NFD. Each
operator goes the way OLM documents it: its operands first (while the operator still runs to take
their finalizers off), then the Subscription and the CSV, then the namespace.
"""

from __future__ import annotations

from ansible_collections.confidential.gpu.plugins.module_utils.machine_config import members

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "confidential.gpu"
PREFIX = "confidential.gpu/"
ROLE_LABEL = "machineconfiguration.openshift.io/role"
# Labels outside our prefix that the collection set on a node (comma-separated): gpu_cc_mode's nvidia.com/cc.mode.
LABELS_SET = PREFIX + "labels-set"
KATA_POOL = "kata-oc"
KATA_EXTENSION = "50-enable-sandboxed-containers-extension"
MACHINE_CONFIG = ("machineconfiguration.openshift.io/v1", "MachineConfig")

# (component, its package, its operand kinds), in the order they go: the bring-up's reversed, but the KataConfig
# before the GPU operator (its uninstall is the reboot; the GPU operator's operands leave no node config behind).
COMPONENTS = (
    ("trustee", "trustee-operator", (("confidentialcontainers.org/v1alpha1", "TrusteeConfig"),
                                     ("confidentialcontainers.org/v1alpha1", "KbsConfig"))),
    ("sandboxed_containers", "sandboxed-containers-operator", (("kataconfiguration.openshift.io/v1", "KataConfig"),)),
    ("gpu_operator", "gpu-operator-certified", (("nvidia.com/v1", "ClusterPolicy"),)),
    ("tee_hosts", None, ()),
    ("nfd", "nfd", (("nfd.openshift.io/v1", "NodeFeatureDiscovery"), ("nfd.openshift.io/v1alpha1", "NodeFeatureRule"))),
)

# Kinds the teardown reads, with whether they are namespaced: what the roles write, and the operands above.
KINDS = (
    ("v1", "Namespace", False),
    ("operators.coreos.com/v1alpha1", "Subscription", True),
    ("operators.coreos.com/v1", "OperatorGroup", True),
    MACHINE_CONFIG + (False,),
) + tuple(sorted({(api, kind, kind not in ("KataConfig", "ClusterPolicy"))
                  for component in COMPONENTS for api, kind in component[2]}))


def owned(obj) -> bool:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY) == MANAGER


def ref(obj, api_version=None, kind=None):
    meta = obj.get("metadata") or {}
    out = {"api_version": api_version or obj.get("apiVersion"), "kind": kind or obj.get("kind"), "name": meta["name"]}
    if meta.get("namespace"):
        out["namespace"] = meta["namespace"]
    return out


def describe_ref(item) -> str:
    return "{0} {1}{2}".format(item["kind"], item["namespace"] + "/" if item.get("namespace") else "", item["name"])


def confidential_pods(pods, runtime_prefix="kata"):
    """Pods that run (or will) in a kata sandbox: the workloads a teardown must not pull the runtime from under."""
    return sorted((p for p in pods
                   if ((p.get("spec") or {}).get("runtimeClassName") or "").startswith(runtime_prefix)
                   and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
                   and not (p.get("metadata") or {}).get("deletionTimestamp")),
                  key=lambda p: (p["metadata"].get("namespace", ""), p["metadata"]["name"]))


def _pool_members(pool_name, pools, nodes):
    return members(pools, nodes).get(pool_name, [])


def node_leftovers(nodes):
    """The merge patch per node that removes this collection's labels and annotations (``confidential.gpu/``), and
    the labels it set outside that prefix (listed in the ``confidential.gpu/labels-set`` annotation)."""
    patches = {}
    for node in nodes:
        meta = node["metadata"]
        body = {}
        foreign = {k for k in ((meta.get("annotations") or {}).get(LABELS_SET) or "").split(",") if k}
        for field in ("labels", "annotations"):
            gone = {k: None for k in (meta.get(field) or {})
                    if k.startswith(PREFIX) or field == "labels" and k in foreign}
            if gone:
                body[field] = gone
        if body:
            patches[meta["name"]] = {"metadata": body}
    return patches


def plan(found, pods, pools, nodes, delete_workloads=False, csvs=None):
    """The teardown as ordered stages, the reboots per node, and a refusal (or None).

    ``found`` maps ``(api_version, kind)`` to the objects of that kind (all of them, or only ours: only
    owned ones and those in owned namespaces are taken); ``csvs`` the ClusterServiceVersions, to name
    the one each Subscription installed. A stage is ``{"name", "delete": [ref...], "pools": [...],
    "absent_machine_configs": [...]}``: delete everything, wait until it is gone, then wait for the pools.
    """
    csvs = csvs or []
    namespaces = {n["metadata"]["name"] for n in found.get(("v1", "Namespace"), []) if owned(n)}
    subscriptions = [s for s in found.get(("operators.coreos.com/v1alpha1", "Subscription"), []) if owned(s)]

    def ours(obj):
        return owned(obj) or (obj.get("metadata") or {}).get("namespace") in namespaces

    stages, reboots, refusal = [], {}, None
    running = confidential_pods(pods)
    if running and not delete_workloads:
        refusal = ("{0} confidential pod(s) still run: {1}. Delete them first, or set teardown_workloads: delete "
                   "to have the teardown delete them. Nothing was changed.".format(
                       len(running), ", ".join("{0}/{1}".format(p["metadata"].get("namespace"), p["metadata"]["name"])
                                               for p in running[:10]) + (" …" if len(running) > 10 else "")))
    if running and delete_workloads:
        stages.append({"name": "confidential workloads", "delete": [ref(p, "v1", "Pod") for p in running]})

    kata_goes = False
    for component, package, operands in COMPONENTS:
        if component == "tee_hosts":
            configs = [c for c in found.get(MACHINE_CONFIG, []) if owned(c)]
            if not configs:
                continue
            roles = sorted({(c["metadata"].get("labels") or {}).get(ROLE_LABEL) for c in configs} - {None})
            # kata-oc is gone with the KataConfig by now: its configs select no node any more.
            after = [p for p in pools if not (kata_goes and p["metadata"]["name"] == KATA_POOL)]
            live = [r for r in roles if any(p["metadata"]["name"] == r for p in after)]
            for role in live:
                for node in _pool_members(role, after, nodes):
                    reboots[node] = reboots.get(node, 0) + 1
            stages.append({"name": "host MachineConfigs", "delete": [ref(c, *MACHINE_CONFIG) for c in configs],
                           "pools": live, "absent_machine_configs": sorted(c["metadata"]["name"] for c in configs)})
            continue
        instances = [ref(o, api, kind) for api, kind in operands for o in found.get((api, kind), []) if ours(o)]
        if instances:
            stage = {"name": component + " operands", "delete": instances}
            if component == "sandboxed_containers" and any(i["kind"] == "KataConfig" for i in instances):
                kata_goes = True
                # kata-oc's nodes rejoin worker (without a kata-oc pool, worker's own nodes roll back)
                moving = _pool_members(KATA_POOL, pools, nodes) or _pool_members("worker", pools, nodes)
                for node in moving:
                    reboots[node] = reboots.get(node, 0) + 1
                stage.update(pools=["worker"], absent_machine_configs=[KATA_EXTENSION])
            stages.append(stage)
        subs = [s for s in subscriptions if (s.get("spec") or {}).get("name") == package]
        operator = []
        for sub in subs:
            operator.append(ref(sub, "operators.coreos.com/v1alpha1", "Subscription"))
            status = sub.get("status") or {}
            for name in sorted({status.get("installedCSV"), status.get("currentCSV")} - {None, ""}):
                if any(c["metadata"]["name"] == name and c["metadata"].get("namespace") == sub["metadata"]["namespace"]
                       for c in csvs):
                    operator.append({"api_version": "operators.coreos.com/v1alpha1", "kind": "ClusterServiceVersion",
                                     "name": name, "namespace": sub["metadata"]["namespace"]})
        groups = [g for g in found.get(("operators.coreos.com/v1", "OperatorGroup"), [])
                  if owned(g) and any(g["metadata"]["namespace"] == s["metadata"]["namespace"] for s in subs)]
        operator += [ref(g, "operators.coreos.com/v1", "OperatorGroup") for g in groups]
        if operator:
            stages.append({"name": component + " operator", "delete": operator})
        gone = sorted({s["metadata"]["namespace"] for s in subs} & namespaces)
        if gone:
            stages.append({"name": component + " namespace",
                           "delete": [{"api_version": "v1", "kind": "Namespace", "name": n} for n in gone]})
    leftover = sorted(namespaces - {i["name"] for s in stages for i in s["delete"] if i["kind"] == "Namespace"})
    if leftover:
        stages.append({"name": "other namespaces", "delete": [{"api_version": "v1", "kind": "Namespace", "name": n}
                                                              for n in leftover]})
    for stage in stages:
        stage.setdefault("pools", [])
        stage.setdefault("absent_machine_configs", [])
    return {"stages": stages, "reboots": dict(sorted(reboots.items())), "refusal": refusal,
            "node_patches": node_leftovers(nodes),
            "objects": [describe_ref(i) for s in stages for i in s["delete"]]}


def summary(result, check_mode):
    """Lines for the log: what goes (or would), stage by stage, and the reboots."""
    verb = "would delete" if check_mode else "deletes"
    lines = ["{0}: {1} {2}".format(s["name"], verb, ", ".join(describe_ref(i) for i in s["delete"]))
             for s in result["stages"]]
    if result["node_patches"]:
        lines.append("nodes: {0} this collection's labels and annotations on {1}".format(
            "would remove" if check_mode else "removes", ", ".join(sorted(result["node_patches"]))))
    if result["reboots"]:
        lines.append("reboots: " + ", ".join("{0} ×{1}".format(n, c) for n, c in result["reboots"].items()))
    else:
        lines.append("reboots: none")
    if not result["stages"] and not result["node_patches"]:
        lines.insert(0, "nothing of confidential.gpu's is on this cluster")
    return lines
