"""The Machine Config Operator twin: render controller, node controller, pool status, and the daemon.

What the real MCO does, in the parts the collection depends on:

* every pool (master and worker are seeded; custom pools such as OSC's ``kata-oc`` appear later)
  renders the MachineConfigs its ``machineConfigSelector`` picks into ``rendered-<pool>-<md5>``
  (role ``worker`` MachineConfigs first, then the rest, each by name; files merged per path with later
  ones winning, kernel arguments and extensions concatenated with repeats kept) and targets it in ``spec.configuration``;
* a node belongs to master if it matches master, else to the one custom pool it matches, else to
  worker; a node matching two custom pools is left alone, as the MCO does;
* the node controller moves at most ``maxUnavailable`` nodes at a time by setting their
  ``desiredConfig``, never while the pool is paused;
* the daemon on a node whose ``desiredConfig`` differs from ``currentConfig`` cordons it, drains it
  through the Eviction API (so the API server evaluates PodDisruptionBudgets), reboots it (the
  kubelet twin reports NotReady for ``timings.reboot`` seconds), and afterwards the node's
  simulated host has the rendered kernel arguments and files; then ``currentConfig`` and
  ``state: Done`` are written and the node is uncordoned;
* pool status is computed the way the MCO's node controller computes it (counts, Updated,
  Updating, NodeDegraded, Degraded);
* the sub-controllers' generated MachineConfigs: ``97-``/``98-<pool>-generated-kubelet`` for every pool
  that exists when FeatureGate ``cluster`` is added or its spec changes (none for a pool created later until
  the next such change; :class:`KubeletConfigController`), ``99-<pool>-generated-registries`` for the built-in
  pools only, ``99-<pool>-generated-containerruntime`` per ContainerRuntimeConfig.

A change of the OS image, kernel arguments, extensions, FIPS, kernel type or systemd units reboots, and so
does a file change outside the MCO's default node disruption policies; a change of only files those
policies cover (registries, policy.json, the kubelet pull secret, …) or SSH keys is applied without a
reboot and, except for registries.conf, without a drain (:func:`disruption`). Faults: ``{kind: reboot-degrades, node: X}`` makes X come
back from its reboot on its old config and report Degraded; ``{kind: drain-blocked, node: X}``
makes X's drain fail as if a PodDisruptionBudget refused every eviction. The boots of each node are
on the node as the annotation ``twin.confidential.gpu/boots`` so that tests and benchmarks in other
processes can count reboots.
"""

import base64
import copy
import hashlib
import json
import logging
import time
import urllib.parse
import uuid

from ..controller import Controller
from ..kube import ApiError, path
from ..kubelet import now
from ..world import FAULTS_CONFIGMAP, FAULTS_NAMESPACE

log = logging.getLogger("twin.mco")

MC_API = "machineconfiguration.openshift.io/v1"
ROLE = "machineconfiguration.openshift.io/role"
ANN = "machineconfiguration.openshift.io/"
CURRENT = ANN + "currentConfig"
DESIRED = ANN + "desiredConfig"
STATE = ANN + "state"
REASON = ANN + "reason"
DESIRED_DRAIN = ANN + "desiredDrain"
LAST_DRAIN = ANN + "lastAppliedDrain"
BOOTS = "twin.confidential.gpu/boots"
CONTROLLER_VERSION = "twin-4.21"
GENERATED_BY = "machineconfiguration.openshift.io/generated-by-controller-version"
# What ignition spec the rendered configs are written in (the MCO converts every MachineConfig to it).
IGNITION_VERSION = "3.4.0"
DRAIN_RETRY = 5.0  # seconds between eviction attempts; the MCO's drain controller retries the same way
BUILTIN = ("master", "worker")
CRC_PLURAL = "containerruntimeconfigs"
KC_PLURAL = "kubeletconfigs"


# -- rendering ------------------------------------------------------------------------------------


def matches(selector, labels):
    if selector is None:
        return False
    labels = labels or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        have = key in labels
        ok = {"In": have and labels[key] in values, "NotIn": not have or labels[key] not in values,
              "Exists": have, "DoesNotExist": not have}.get(op, False)
        if not ok:
            return False
    return True


def _merge_named(base, extra, key):
    out = {item.get(key): item for item in base}
    for item in extra:
        out[item.get(key)] = item
    return list(out.values())


def merge_order(configs):
    """The order MergeMachineConfigs applies a pool's MachineConfigs in: those labelled role ``worker`` first,
    then all others, each group by name (openshift/machine-config-operator release-4.21 db84d836,
    pkg/controller/common/helpers.go MergeMachineConfigs: "custom pool configuration should take priority").
    It reorders the caller's slice in place, so the pool's ``spec.configuration.source`` that
    syncGeneratedMachineConfig (pkg/controller/render/render_controller.go) writes afterwards lists them in
    this order too."""
    by_name = sorted(configs, key=lambda mc: mc["metadata"]["name"])
    workers = [mc for mc in by_name if (mc["metadata"].get("labels") or {}).get(ROLE) == "worker"]
    return workers + [mc for mc in by_name if (mc["metadata"].get("labels") or {}).get(ROLE) != "worker"]


def render(configs):
    """The rendered spec of a pool from its MachineConfigs (the MCO's MergeMachineConfigs, release-4.21):
    ignition merged in :func:`merge_order` (later ones win per file path / unit name / user name), kernel
    arguments and extensions concatenated in that order with repeats kept, FIPS if any asks."""
    # A copy: the MachineConfigs come from the informer's cache, which must never be changed in place.
    configs = copy.deepcopy(merge_order(configs))
    ignition = {"ignition": {"version": IGNITION_VERSION}, "storage": {"files": []}, "systemd": {"units": []},
                "passwd": {"users": []}}
    kargs, extensions = [], []
    fips = False
    kernel_type = "default"
    os_image = ""
    for mc in configs:
        spec = mc.get("spec") or {}
        config = spec.get("config") or {}
        storage = config.get("storage") or {}
        ignition["storage"]["files"] = _merge_named(ignition["storage"]["files"], storage.get("files") or [], "path")
        ignition["systemd"]["units"] = _merge_named(ignition["systemd"]["units"],
                                                    (config.get("systemd") or {}).get("units") or [], "name")
        ignition["passwd"]["users"] = _merge_named(ignition["passwd"]["users"],
                                                   (config.get("passwd") or {}).get("users") or [], "name")
        # MergeMachineConfigs: kargs = append(kargs, cfg.Spec.KernelArguments...) - no de-duplication.
        kargs.extend(spec.get("kernelArguments") or [])
        extensions.extend(spec.get("extensions") or [])
        fips = fips or bool(spec.get("fips"))
        if spec.get("kernelType") in ("realtime", "64k-pages"):
            kernel_type = spec["kernelType"]
        # Generated MachineConfigs (annotated generated-by-controller-version) cannot override osImageURL.
        if not _ann(mc).get("machineconfiguration.openshift.io/generated-by-controller-version"):
            os_image = spec.get("osImageURL") or os_image
    if not os_image:
        os_image = next((((mc.get("spec") or {}).get("osImageURL")) for mc in configs
                         if (mc.get("spec") or {}).get("osImageURL")), "")
    for entry in ignition["storage"]["files"]:
        entry.setdefault("overwrite", True)
    return {"config": ignition, "kernelArguments": kargs, "extensions": extensions, "fips": fips,
            "kernelType": kernel_type, "osImageURL": os_image}


def rendered_name(pool, spec):
    digest = hashlib.md5(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()  # noqa: S324
    return f"rendered-{pool}-{digest}"


def selected(pool, machine_configs):
    selector = (pool.get("spec") or {}).get("machineConfigSelector")
    return [mc for mc in machine_configs
            if not _owned_by_pool(mc) and matches(selector, mc["metadata"].get("labels"))]


def _owned_by_pool(mc):
    return any(o.get("kind") == "MachineConfigPool" for o in mc["metadata"].get("ownerReferences") or [])


def pool_of(node, pools):
    labels = node["metadata"].get("labels") or {}
    names = sorted(p["metadata"]["name"] for p in pools
                   if matches((p.get("spec") or {}).get("nodeSelector"), labels))
    if "master" in names:
        return "master"
    custom = [n for n in names if n not in BUILTIN]
    if len(custom) > 1:
        return None  # the MCO refuses nodes in two custom pools
    if custom:
        return custom[0]
    return names[0] if names else None


def decode(source):
    if not source or not source.startswith("data:"):
        return ""
    header, _, payload = source[5:].partition(",")
    if header.endswith(";base64"):
        return base64.b64decode(payload).decode("utf-8", "replace")
    return urllib.parse.unquote(payload)


# -- what a node does to go from one rendered config to the next ---------------------------------

# The MCO's default node disruption policies (openshift/machine-config-operator release-4.21 db84d836,
# pkg/apihelpers/apihelpers.go defaultClusterPolicies; paths from pkg/daemon/constants/constants.go):
# a change of a file at (or under) one of these paths needs only the action named, no reboot.
DEFAULT_FILE_POLICIES = (
    ("/var/lib/kubelet/config.json", ("None",)),
    ("/etc/machine-config-daemon/no-reboot/containers-gpg.pub", ("Reload crio.service",)),
    ("/etc/containers/policy.json", ("Reload crio.service",)),
    ("/etc/containers/registries.conf", ("Special",)),
    ("/etc/containers/registries.d", ("Reload crio.service",)),
    ("/etc/crio/policies", ("Reload crio.service",)),
    ("/etc/nmstate/openshift", ("None",)),
    ("/etc/pki/ca-trust/source/anchors/openshift-config-user-ca-bundle.crt",
     ("Restart coreos-update-ca-trust.service", "Restart crio.service")),
)


def _file_policy(file_path):
    """FindClosestFilePolicyPathMatch (pkg/controller/common/helpers.go): the exact path or the longest
    policy directory holding it; None when no policy covers it."""
    best = None
    for policy, actions in DEFAULT_FILE_POLICIES:
        if file_path == policy or file_path.startswith(policy.rstrip("/") + "/"):
            if best is None or len(policy) > len(best[0]):
                best = (policy, actions)
    return best[1] if best else None


def _by(items, key):
    return {item.get(key): item for item in items or []}


def disruption(old, new):
    """(actions, drain) for a node going from rendered spec ``old`` to ``new``, as the daemon decides after
    the first boot (pkg/daemon/update.go ``update``: newMachineConfigDiff, calculatePostConfigChange-
    NodeDisruptionAction, calculatePostConfigChangeNodeDisruptionActionFromMCDiffs; pkg/daemon/drain.go
    isDrainRequiredForNodeDisruptionActions), with the default policies only.

    Not modelled: user policies in MachineConfiguration ``cluster`` spec.nodeDisruptionPolicy, the force
    file, and the registries.conf safety check (a Special action always drains here)."""
    if old is None:
        return ["Reboot"], True
    def both_empty(key):
        return not old.get(key) and not new.get(key)
    if (old.get("osImageURL") != new.get("osImageURL")
            or not both_empty("kernelArguments") and list(old.get("kernelArguments") or []) != list(new.get("kernelArguments") or [])
            or bool(old.get("fips")) != bool(new.get("fips"))
            or (old.get("kernelType") or "default") != (new.get("kernelType") or "default")
            or not both_empty("extensions") and list(old.get("extensions") or []) != list(new.get("extensions") or [])):
        return ["Reboot"], True
    old_ign, new_ign = old.get("config") or {}, new.get("config") or {}
    old_files = _by((old_ign.get("storage") or {}).get("files"), "path")
    new_files = _by((new_ign.get("storage") or {}).get("files"), "path")
    changed_files = sorted(p for p in set(old_files) | set(new_files) if old_files.get(p) != new_files.get(p))
    old_units = _by((old_ign.get("systemd") or {}).get("units"), "name")
    new_units = _by((new_ign.get("systemd") or {}).get("units"), "name")
    changed_units = sorted(u for u in set(old_units) | set(new_units) if old_units.get(u) != new_units.get(u))
    passwd = (old_ign.get("passwd") or {}) != (new_ign.get("passwd") or {})
    if not changed_files and not changed_units and not passwd:
        return ["None"], False
    actions = []
    for file_path in changed_files:
        found = _file_policy(file_path)
        if found is None:
            return ["Reboot"], True
        actions.extend(found)
    if changed_units:  # the default policies name no units
        return ["Reboot"], True
    if passwd:
        actions.append("None")  # the SSH key policy
    real = [a for a in dict.fromkeys(actions) if a != "None"]
    actions = real or ["None"]
    return actions, "Special" in actions


# -- the MachineConfigs the MCO's sub-controllers generate per pool -----------------------------------

FG_API, FG_PLURAL = "config.openshift.io/v1", "featuregates"
# container_runtime_config_controller.go builtInLabelKey: the label of the pools the MCO itself ships.
BUILT_IN = "machineconfiguration.openshift.io/mco-built-in"
KUBELET_CONF = "/etc/kubernetes/kubelet.conf"
REGISTRIES_CONF = "/etc/containers/registries.conf"
# kubelet-config/helpers.go updateMachineConfigwithCgroup, cgroup mode v2 (the default): only for the roles
# master, worker and arbiter (kubelet_config_nodes.go syncNodeConfigHandler), never for a custom pool.
CGROUP_V2_KARGS = ("systemd.unified_cgroup_hierarchy=1", 'cgroup_no_v1="all"')
CGROUP_ROLES = ("master", "worker", "arbiter")


def _file_entry(file_path, text):
    return {"path": file_path, "mode": 0o644, "overwrite": True,
            "contents": {"source": "data:text/plain;charset=utf-8;base64," + base64.b64encode(text.encode()).decode()}}


def _generated_mc(name, role, files, kargs=()):
    spec = {"config": {"ignition": {"version": IGNITION_VERSION}, "storage": {"files": files}}}
    if kargs:
        spec["kernelArguments"] = list(kargs)
    return {"apiVersion": MC_API, "kind": "MachineConfig",
            "metadata": {"name": name, "labels": {ROLE: role}, "annotations": {GENERATED_BY: CONTROLLER_VERSION}},
            "spec": spec}


def kubelet_conf(featuregate):
    """The kubelet configuration the kubelet-config controller renders: the worker templates for every pool that is
    not master or arbiter (pkg/controller/template/render.go GenerateMachineConfigsForRole: custom pools reuse the
    worker templates), with the feature gates FeatureGate ``cluster`` lists in its status (the twin has no
    operator that moves that status, so a spec change alone changes no content)."""
    gates = {}
    for entry in ((featuregate or {}).get("status") or {}).get("featureGates") or []:
        for name in [g.get("name") for g in entry.get("enabled") or []]:
            gates[name] = True
        for name in [g.get("name") for g in entry.get("disabled") or []]:
            gates[name] = False
    lines = ["apiVersion: kubelet.config.k8s.io/v1beta1", "kind: KubeletConfiguration"]
    lines += ["featureGates:"] + [f"  {k}: {str(v).lower()}" for k, v in sorted(gates.items())] if gates else \
        ["featureGates: {}"]
    return "\n".join(lines) + "\n"


def generated_kubelet_configs(pool_name, featuregate):
    """``97-<pool>-generated-kubelet`` (node config: kubelet.conf, the cgroup v2 kernel arguments for built-in
    roles) and ``98-<pool>-generated-kubelet`` (feature gates: kubelet.conf), role label = the pool's name
    (openshift/machine-config-operator release-4.21, pkg/controller/kubelet-config/helpers.go
    managedNodeConfigKeyPrefix "97", managedFeaturesKeyPrefix "98"; kubelet_config_nodes.go,
    kubelet_config_features.go; the worker latency profile of nodes.config, worker only, is not modelled)."""
    conf = kubelet_conf(featuregate)
    kargs = CGROUP_V2_KARGS if pool_name in CGROUP_ROLES else ()
    return [_generated_mc(f"97-{pool_name}-generated-kubelet", pool_name, [_file_entry(KUBELET_CONF, conf)], kargs),
            _generated_mc(f"98-{pool_name}-generated-kubelet", pool_name, [_file_entry(KUBELET_CONF, conf)])]


def generated_registries(pool_name):
    """``99-<pool>-generated-registries`` (container-runtime-config/helpers.go getManagedKeyReg), which
    syncImageConfig (container_runtime_config_controller.go, release-4.21) writes only for pools labelled
    :data:`BUILT_IN`: a custom pool such as ``kata-oc`` has none and takes the worker one through its selector.
    The twin has no image config: the default registries.conf, written when the cluster is seeded."""
    conf = 'unqualified-search-registries = ["registry.access.redhat.com", "docker.io"]\nshort-name-mode = ""\n'
    return _generated_mc(f"99-{pool_name}-generated-registries", pool_name, [_file_entry(REGISTRIES_CONF, conf)])


# -- the objects a fresh cluster has ------------------------------------------------------------


def base_configs(profile, featuregate=None):
    """A few of the MachineConfigs the installer and the MCO's template controller create per role, and the ones
    its sub-controllers generate for the built-in pools (:func:`generated_kubelet_configs`,
    :func:`generated_registries`)."""
    out = []
    version = profile["openshift"]["version"]
    os_image = "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:" + hashlib.sha256(
        ("rhel-coreos " + version).encode()).hexdigest()
    for role in BUILTIN:
        generated = {"machineconfiguration.openshift.io/generated-by-controller-version": CONTROLLER_VERSION}
        out.append({
            "apiVersion": MC_API, "kind": "MachineConfig",
            "metadata": {"name": f"00-{role}", "labels": {ROLE: role}, "annotations": dict(generated)},
            "spec": {"osImageURL": os_image, "config": {"ignition": {"version": IGNITION_VERSION}, "storage": {"files": [
                {"path": "/etc/kubernetes/kubelet-plugins/volume/exec/.dummy", "mode": 0o644,
                 "contents": {"source": "data:,"}},
                {"path": "/etc/containers/storage.conf", "mode": 0o644,
                 "contents": {"source": "data:,%5Bstorage%5D%0Adriver%20%3D%20%22overlay%22%0A"}},
            ]}}},
        })
        out.append({
            "apiVersion": MC_API, "kind": "MachineConfig",
            "metadata": {"name": f"01-{role}-kubelet", "labels": {ROLE: role}, "annotations": dict(generated)},
            "spec": {"config": {"ignition": {"version": IGNITION_VERSION}, "storage": {"files": [
                {"path": "/etc/kubernetes/kubelet.conf", "mode": 0o644, "contents": {"source": "data:," + urllib.parse.quote(
                    f"kind: KubeletConfiguration\nnodeLabels: node-role.kubernetes.io/{role}\n")}}]},
                "systemd": {"units": [{"name": "kubelet.service", "enabled": True}]}}},
        })
        out.append({
            "apiVersion": MC_API, "kind": "MachineConfig",
            "metadata": {"name": f"99-{role}-ssh", "labels": {ROLE: role}},
            "spec": {"config": {"ignition": {"version": "3.2.0"}, "passwd": {"users": [
                {"name": "core", "sshAuthorizedKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAItwin twin@example.com"]}]}}},
        })
        out.extend(generated_kubelet_configs(role, featuregate))
        out.append(generated_registries(role))
    return out


def rendered_object(pool, spec):
    return {
        "apiVersion": MC_API, "kind": "MachineConfig",
        "metadata": {
            "name": rendered_name(pool["metadata"]["name"], spec),
            "annotations": {"machineconfiguration.openshift.io/generated-by-controller-version": CONTROLLER_VERSION},
            "ownerReferences": [{"apiVersion": MC_API, "kind": "MachineConfigPool", "name": pool["metadata"]["name"],
                                 "uid": pool["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": spec,
    }


def seed(kube, profile):
    """Base MachineConfigs, rendered configs for master and worker, pools targeting them, nodes on them."""
    mc_path = path(MC_API, "machineconfigs")
    for mc in base_configs(profile, kube.get_or_none(path(FG_API, FG_PLURAL, "cluster"))):
        kube.create_or_get(mc_path, mc)
    configs = kube.list(mc_path)["items"]
    for name in BUILTIN:  # the MCO's own manifests label the pools it ships
        kube.merge_patch(path(MC_API, "machineconfigpools", name), {"metadata": {"labels": {BUILT_IN: ""}}})
    pools = kube.list(path(MC_API, "machineconfigpools"))["items"]
    nodes = kube.list(path("v1", "nodes"))["items"]
    targets = {}
    for pool in pools:
        spec = render(selected(pool, configs))
        rendered = kube.create_or_get(mc_path, rendered_object(pool, spec))
        name = rendered["metadata"]["name"]
        targets[pool["metadata"]["name"]] = name
        source = _source(selected(pool, configs))
        pool_path = path(MC_API, "machineconfigpools", pool["metadata"]["name"])
        kube.merge_patch(pool_path, {"spec": {"configuration": {"name": name, "source": source}}})
        count = sum(1 for n in nodes if pool_of(n, pools) == pool["metadata"]["name"])
        kube.merge_patch(pool_path + "/status", {"status": {
            "configuration": {"name": name, "source": source},
            "machineCount": count, "updatedMachineCount": count, "readyMachineCount": count,
            "unavailableMachineCount": 0, "degradedMachineCount": 0}})
    for node in nodes:
        target = targets.get(pool_of(node, pools))
        if target:
            kube.merge_patch(path("v1", "nodes", node["metadata"]["name"]), {"metadata": {"annotations": {
                CURRENT: target, DESIRED: target, STATE: "Done", REASON: "", BOOTS: "1"}}})


def _source(configs):
    return [{"apiVersion": MC_API, "kind": "MachineConfig", "name": mc["metadata"]["name"]}
            for mc in merge_order(configs)]


# -- node state as the API shows it -------------------------------------------------------------


def _ann(node):
    return node["metadata"].get("annotations") or {}


def _ready(node):
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def _done(node, target):
    ann = _ann(node)
    return ann.get(CURRENT) == target and ann.get(DESIRED) == target and ann.get(STATE) == "Done"


def _unavailable(node):
    ann = _ann(node)
    return (not _ready(node) or bool((node.get("spec") or {}).get("unschedulable"))
            or ann.get(STATE) in ("Working", "Degraded", "Unreconcilable") or ann.get(DESIRED) != ann.get(CURRENT))


def _max_unavailable(pool, count):
    value = (pool.get("spec") or {}).get("maxUnavailable", 1)
    if value is None:
        return 1
    if isinstance(value, str) and value.endswith("%"):
        return max(1, int(count * int(value[:-1]) / 100))
    return max(1, int(value))


def _condition(kind, status, message="", reason="", previous=None):
    old = next((c for c in previous or [] if c.get("type") == kind), None)
    since = old["lastTransitionTime"] if old and old.get("status") == status else now()
    return {"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": since}


# -- the controllers --------------------------------------------------------------------------------


class PoolController(Controller):
    """Render, node and status controllers of the MCO for one pool per reconcile."""

    name = "mco-pools"
    api_version = MC_API
    plural = "machineconfigpools"
    watches = ((MC_API, "machineconfigs"), ("v1", "nodes"), (MC_API, CRC_PLURAL), (MC_API, KC_PLURAL))

    def reconcile(self, key):
        _, name = key
        pool = self.cache(MC_API, "machineconfigpools").get(name)
        if pool is None or pool["metadata"].get("deletionTimestamp"):
            return None
        pools = self.cache(MC_API, "machineconfigpools").items()
        configs = self.cache(MC_API, "machineconfigs").items()
        pending = generators_pending(pool, self.cache(MC_API, CRC_PLURAL).items(), self.cache(MC_API, KC_PLURAL).items())
        if pending:
            # syncMachineConfigPool returns this error before it renders; the sub-controller's status update
            # (an event here) brings the pool back.
            self.log.info("pool %s: not rendering: %s", name, pending)
            return None
        chosen = selected(pool, configs)
        spec = render(chosen)
        target = rendered_name(name, spec)
        p = path(MC_API, "machineconfigpools", name)
        if self.cache(MC_API, "machineconfigs").get(target) is None:
            self.kube.create_or_get(path(MC_API, "machineconfigs"), rendered_object(pool, spec))
        configuration = {"name": target, "source": _source(chosen)}
        if (pool.get("spec") or {}).get("configuration") != configuration:
            self.log.info("pool %s now targets %s", name, target)
            self.kube.merge_patch(p, {"spec": {"configuration": configuration}})
            return None  # the pool's update event brings us back with the new target
        nodes = sorted((n for n in self.cache("v1", "nodes").items() if pool_of(n, pools) == name),
                       key=lambda n: n["metadata"]["name"])
        if not pool["spec"].get("paused"):
            self._advance(pool, nodes, target)
        self._status(pool, nodes, target)
        return None

    def _advance(self, pool, nodes, target):
        """Hand the target to as many nodes as maxUnavailable allows (busy ones first: they cost nothing)."""
        budget = _max_unavailable(pool, len(nodes)) - sum(1 for n in nodes if _unavailable(n))
        for node in nodes:
            if _ann(node).get(DESIRED) == target:
                continue
            if not _unavailable(node):
                if budget <= 0:
                    continue
                budget -= 1
            self.log.info("node %s: desiredConfig %s", node["metadata"]["name"], target)
            self.kube.merge_patch(path("v1", "nodes", node["metadata"]["name"]),
                                  {"metadata": {"annotations": {DESIRED: target}}})

    def _status(self, pool, nodes, target):
        previous = (pool.get("status") or {}).get("conditions") or []
        count = len(nodes)
        updated = [n for n in nodes if _done(n, target)]
        ready = [n for n in updated if _ready(n) and not (n.get("spec") or {}).get("unschedulable")]
        unavailable = [n for n in nodes if _unavailable(n)]
        degraded = [n for n in nodes if _ann(n).get(STATE) in ("Degraded", "Unreconcilable")]
        status = {
            "observedGeneration": pool["metadata"].get("generation", 1),
            "machineCount": count, "updatedMachineCount": len(updated), "readyMachineCount": len(ready),
            "unavailableMachineCount": len(unavailable), "degradedMachineCount": len(degraded),
            "configuration": (pool.get("status") or {}).get("configuration") or {},
        }
        all_updated = len(updated) == count and len(ready) == count and not unavailable
        line = f"MachineConfig {target}"
        conditions = []
        if all_updated:
            conditions.append(_condition("Updated", "True", f"All nodes are updated with {line}", previous=previous))
            conditions.append(_condition("Updating", "False", previous=previous))
            status["configuration"] = pool["spec"]["configuration"]
        else:
            conditions.append(_condition("Updated", "False", previous=previous))
            if pool["spec"].get("paused"):
                conditions.append(_condition("Updating", "False", f"Pool is paused; will not update to {line}",
                                             previous=previous))
            else:
                conditions.append(_condition("Updating", "True", f"All nodes are updating to {line}", previous=previous))
        if degraded:
            reasons = ", ".join(f"Node {n['metadata']['name']} is reporting: {json.dumps(_ann(n).get(REASON, ''))}"
                                for n in degraded)
            conditions.append(_condition("NodeDegraded", "True", reasons,
                                         f"{len(degraded)} nodes are reporting degraded status on sync", previous))
            conditions.append(_condition("Degraded", "True", reasons, previous=previous))
        else:
            conditions.append(_condition("NodeDegraded", "False", previous=previous))
            conditions.append(_condition("Degraded", "False", previous=previous))
        conditions.append(_condition("RenderDegraded", "False", previous=previous))
        status["conditions"] = conditions
        old = copy.deepcopy(pool.get("status") or {})
        if {k: old.get(k) for k in status} == status:
            return
        self.kube.merge_patch(path(MC_API, "machineconfigpools", pool["metadata"]["name"], subresource="status"),
                              {"status": status})

    def map_event(self, kind, obj):
        # Any MachineConfig or node change may concern any pool: they are few, reconcile them all.
        return [(None, p["metadata"]["name"]) for p in self.cache(MC_API, "machineconfigpools").items()]


# -- ContainerRuntimeConfig: the MCO's container-runtime-config controller ----------------------------

CRIO_LOG_LEVEL_FILE = "/etc/crio/crio.conf.d/01-ctrcfg-logLevel"  # pkg/controller/container-runtime-config/helpers.go
MAX_RETRIES = 15  # container_runtime_config_controller.go maxRetries; afterwards one retry a minute


def generators_pending(pool, crcs, kcs):
    """AreMCGeneratingSubControllersCompletedForPool (pkg/apihelpers/apihelpers.go, release-4.21): an error text
    while a ContainerRuntimeConfig or KubeletConfig selecting this pool (by its labels) has not reported
    Success for its current generation; the render controller does not render the pool meanwhile."""
    labels = pool["metadata"].get("labels") or {}
    for kind, items, success in (("ContainerRuntimeConfig", crcs, "Success"), ("KubeletConfig", kcs, "Success")):
        for obj in items:
            if not matches((obj.get("spec") or {}).get("machineConfigPoolSelector"), labels):
                continue
            status = obj.get("status") or {}
            if obj["metadata"].get("generation") != status.get("observedGeneration"):
                return (f"status for {kind} {obj['metadata']['name']} is being reported for "
                        f"{status.get('observedGeneration')}, expecting it for {obj['metadata'].get('generation')}")
            conditions = status.get("conditions") or []
            if not conditions or conditions[-1].get("type") != success:
                return f"{kind} has not completed"
    return None


def crio_drop_in(log_level):
    """The TOML the controller writes for spec.containerRuntimeConfig.logLevel (createCRIODropinFiles)."""
    return f'[crio]\n  [crio.runtime]\n    log_level = "{log_level}"\n'


class ContainerRuntimeConfigController(Controller):
    """syncContainerRuntimeConfig (pkg/controller/container-runtime-config/container_runtime_config_controller.go,
    release-4.21) for the log level: one MachineConfig ``99-<pool>-generated-containerruntime`` per selected pool
    (role label = the pool's name, owned by the ContainerRuntimeConfig, annotated generated-by-controller-version),
    then a status condition. It watches no pools: one created before its pool fails "does not match any
    MachineConfigPools" and is retried rate-limited (15 times, then once a minute), as upstream.
    Not modelled: pidsLimit, logSizeMax, overlaySize, defaultRuntime, several ContainerRuntimeConfigs per pool
    (name suffixes -1, -2…), the finalizers."""

    name = "mco-containerruntimeconfig"
    api_version = MC_API
    plural = CRC_PLURAL
    watches = ((MC_API, "machineconfigpools"), (MC_API, "machineconfigs"))

    def __init__(self, world):
        super().__init__(world)
        self.retries = {}

    def map_event(self, kind, obj):
        return []  # informers for the caches only (upstream uses the pool lister, no handler)

    def reconcile(self, key):
        _, name = key
        cfg = self.cache(MC_API, CRC_PLURAL).get(name)
        if cfg is None or cfg["metadata"].get("deletionTimestamp"):
            self.retries.pop(name, None)
            return None
        pools = [p for p in self.cache(MC_API, "machineconfigpools").items()
                 if matches((cfg.get("spec") or {}).get("machineConfigPoolSelector"), p["metadata"].get("labels"))]
        if not pools:
            self._status(cfg, f"Error: containerRuntimeConfig {name} does not match any MachineConfigPools")
            count = self.retries.get(name, 0)
            self.retries[name] = count + 1
            return 0.005 * 2 ** count if count < MAX_RETRIES else 60.0
        self.retries.pop(name, None)
        level = ((cfg.get("spec") or {}).get("containerRuntimeConfig") or {}).get("logLevel")
        for pool in pools:
            mc_name = f"99-{pool['metadata']['name']}-generated-containerruntime"
            files = []
            if level:
                files.append({"path": CRIO_LOG_LEVEL_FILE, "mode": 0o644, "overwrite": True,
                              "contents": {"source": "data:text/plain;charset=utf-8;base64,"
                                           + base64.b64encode(crio_drop_in(level).encode()).decode()}})
            body = {"apiVersion": MC_API, "kind": "MachineConfig", "metadata": {
                "name": mc_name, "labels": {ROLE: pool["metadata"]["name"]},
                "annotations": {GENERATED_BY: CONTROLLER_VERSION},
                "ownerReferences": [{"apiVersion": MC_API, "kind": "ContainerRuntimeConfig", "name": name,
                                     "uid": cfg["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]},
                "spec": {"config": {"ignition": {"version": IGNITION_VERSION}, "storage": {"files": files}}}}
            existing = self.cache(MC_API, "machineconfigs").get(mc_name)
            if existing is None:
                self.kube.create_or_get(path(MC_API, "machineconfigs"), body)
                self.log.info("ContainerRuntimeConfig %s: created %s", name, mc_name)
            elif (existing.get("spec") or {}).get("config") != body["spec"]["config"]:
                self.kube.merge_patch(path(MC_API, "machineconfigs", mc_name), {"spec": body["spec"]})
        self._status(cfg, "Success")
        return None

    def _status(self, cfg, message):
        status = copy.deepcopy(cfg.get("status") or {})
        conditions = status.get("conditions") or []
        kind = "Success" if message == "Success" else "Failure"
        entry = {"type": kind, "status": "True" if kind == "Success" else "False", "message": message,
                 "lastTransitionTime": now()}
        if conditions and conditions[-1].get("message") == message:
            if status.get("observedGeneration") == cfg["metadata"].get("generation"):
                return
            conditions[-1] = entry
        else:
            conditions.append(entry)
        status["conditions"] = conditions
        status["observedGeneration"] = cfg["metadata"].get("generation")
        body = copy.deepcopy(cfg)
        body["status"] = status
        self.kube.replace(path(MC_API, CRC_PLURAL, cfg["metadata"]["name"], subresource="status"), body)


class KubeletConfigController(Controller):
    """The kubelet-config controller's FeatureGate handler (pkg/controller/kubelet-config/kubelet_config_features.go
    syncFeatureHandler and kubelet_config_nodes.go syncNodeConfigHandler, release-4.21): on FeatureGate ``cluster``
    added (the controller's start) or its spec changed (updateFeature compares the specs), the 97- and
    98-<pool>-generated-kubelet MachineConfigs of every pool that exists then are created or updated. No pool
    handler: a pool created later, such as OSC's ``kata-oc``, gets its own only at the next such event (or a
    controller restart); until then it renders with the worker ones its selector takes.
    Not modelled: nodes.config.openshift.io and APIServer events (the same sync), KubeletConfig objects
    (``99-<pool>-generated-kubelet``), cleanUpDuplicatedMC."""

    name = "mco-kubelet-config"
    api_version = FG_API
    plural = FG_PLURAL
    watches = ((MC_API, "machineconfigpools"), (MC_API, "machineconfigs"))

    def __init__(self, world):
        super().__init__(world)
        self.synced_spec = {}  # FeatureGate name -> the spec last synced (the informer's old object upstream)

    def map_event(self, kind, obj):
        return []  # listers only

    def reconcile(self, key):
        _, name = key
        gate = self.cache(FG_API, FG_PLURAL).get(name)
        if gate is None or name != "cluster":
            self.synced_spec.pop(name, None)
            return None
        spec = gate.get("spec") or {}
        if name in self.synced_spec and self.synced_spec[name] == spec:
            return None  # a status change or a relist: updateFeature does not enqueue
        self.synced_spec[name] = copy.deepcopy(spec)
        configs = self.cache(MC_API, "machineconfigs")
        for pool in self.cache(MC_API, "machineconfigpools").items():
            for body in generated_kubelet_configs(pool["metadata"]["name"], gate):
                mc_name = body["metadata"]["name"]
                existing = configs.get(mc_name) or self.kube.get_or_none(path(MC_API, "machineconfigs", mc_name))
                if existing is None:
                    self.kube.create_or_get(path(MC_API, "machineconfigs"), body)
                    self.log.info("FeatureGate %s: created %s", name, mc_name)
                elif existing.get("spec") != body["spec"] or \
                        (existing["metadata"].get("labels") or {}).get(ROLE) != body["metadata"]["labels"][ROLE]:
                    self.kube.merge_patch(path(MC_API, "machineconfigs", mc_name),
                                          {"metadata": {"labels": body["metadata"]["labels"]}, "spec": body["spec"]})
                    self.log.info("FeatureGate %s: updated %s", name, mc_name)
        return None


class Daemon(Controller):
    """The machine-config-daemon (and the drain controller) of every twin node."""

    name = "mco-daemon"
    api_version = "v1"
    plural = "nodes"

    def __init__(self, world):
        super().__init__(world)
        self.ops = {}  # node -> what its daemon is doing (a real daemon keeps this on the node's disk)
        self.finished = {}  # node -> config it just finished; its Node event may not be in the cache yet

    def setup(self, manager):
        super().setup(manager)
        manager.informer("v1", "pods").add_handler(self._pod_event)
        manager.informer("policy/v1", "poddisruptionbudgets").add_handler(self._pdb_event)
        manager.informer("v1", "configmaps").add_handler(self._configmap_event)

    def _pod_event(self, kind, pod):
        node = (pod.get("spec") or {}).get("nodeName")
        if node in self.ops:
            self.queue.add((None, node))

    def _pdb_event(self, kind, pdb):
        for node, op in list(self.ops.items()):
            if op["phase"] == "drain":
                self.queue.add((None, node))

    def _configmap_event(self, kind, cm):
        if (cm["metadata"].get("namespace"), cm["metadata"]["name"]) != (FAULTS_NAMESPACE, FAULTS_CONFIGMAP):
            return
        # The faults watcher applies the new faults on this same event: look a moment later.
        for node in self.world.hosts:
            self.queue.add((None, node), after=0.3)

    def reconcile(self, key):
        _, name = key
        node = self.cache("v1", "nodes").get(name)
        host = self.world.host(name)
        if node is None or host is None:
            return None
        ann = _ann(node)
        current, desired, state = ann.get(CURRENT), ann.get(DESIRED), ann.get(STATE)
        op = self.ops.get(name)
        if not desired:
            return None  # not managed by the MCO (yet)
        if self.finished.get(name) == desired and current != desired and not op:
            return 0.05  # our own "currentConfig: <desired>" is still on its way to the cache
        self.finished.pop(name, None)
        if desired == current:
            if op and op["phase"] == "reboot":
                return self._reboot(node, host, op)
            self.ops.pop(name, None)
            if state != "Done" or (node.get("spec") or {}).get("unschedulable") and \
                    (ann.get(DESIRED_DRAIN) or "").startswith("drain-"):
                self._finish(name, current, uncordon=True)
            return None
        if state in ("Degraded", "Unreconcilable"):
            if self.world.fault("reboot-degrades", node=name) and (op is None or op.get("target") == desired):
                return None  # stays degraded until the fault is lifted or the target changes
            op = None
        if op is not None and op["target"] != desired and op["phase"] in ("drain", "apply") and not op.get("blocked"):
            # The daemon runs an update it has started to its end (pkg/daemon/update.go update(): drain, files,
            # rpm-ostree, reboot) and reads the next desiredConfig only afterwards: a config rendered meanwhile
            # is a second update.
            pass
        elif op is None or op["target"] != desired:
            if op and op["phase"] == "reboot":
                return self._reboot(node, host, op)  # a reboot in progress finishes first
            actions, drain = disruption(self._spec(current), self._spec(desired))
            op = {"target": desired, "phase": "drain" if drain else "apply", "started": time.monotonic(),
                  "reboot": actions == ["Reboot"], "actions": actions}
            self.ops[name] = op
            self.log.info("node %s: updating %s -> %s (%s, drain %s)", name, current, desired, actions, drain)
            body = {"metadata": {"annotations": {STATE: "Working", REASON: ""}}}
            if drain:
                body["metadata"]["annotations"][DESIRED_DRAIN] = f"drain-{desired}"
                body["spec"] = {"unschedulable": True}
            self.kube.merge_patch(path("v1", "nodes", name), body)
            return 0.05
        if op["phase"] == "drain":
            return self._drain(node, host, op)
        if op["phase"] == "apply":
            return self._apply(node, host, op)
        if op["phase"] == "reboot":
            return self._reboot(node, host, op)
        return None

    # -- drain -------------------------------------------------------------------------------

    def _drain(self, node, host, op):
        name = node["metadata"]["name"]
        if self.world.fault("drain-blocked", node=name):
            op["blocked"] = "drain blocked by fault drain-blocked"
            return self._drain_retry(name, op)
        remaining = []
        blocked = None
        for pod in self.cache("v1", "pods").items():
            if pod["spec"].get("nodeName") != name:
                continue
            meta = pod["metadata"]
            if any(o.get("kind") == "DaemonSet" for o in meta.get("ownerReferences") or []):
                continue
            if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
                continue
            remaining.append(pod)
            if meta.get("deletionTimestamp"):
                continue
            try:
                self.kube.create(path("v1", "pods", meta["name"], meta["namespace"], "eviction"), {
                    "apiVersion": "policy/v1", "kind": "Eviction",
                    "metadata": {"name": meta["name"], "namespace": meta["namespace"]}})
            except ApiError as exc:
                if exc.status == 404:
                    continue
                if exc.status == 429:
                    blocked = f"error when evicting pods/{meta['name']} -n {meta['namespace']}: {exc.message}"
                    continue
                raise
        if blocked:
            op["blocked"] = blocked
            return self._drain_retry(name, op)
        if remaining:
            return 1.0  # pod deletions bring us back sooner; this only guards a missed event
        op.pop("blocked", None)
        self.kube.merge_patch(path("v1", "nodes", name),
                              {"metadata": {"annotations": {LAST_DRAIN: f"drain-{op['target']}"}}})
        if not op["reboot"]:
            return self._apply(node, host, op)
        # Down it goes: the kubelet twin reports NotReady and stops renewing the lease.
        op["phase"] = "reboot"
        op["until"] = time.monotonic() + float(self.world.timings["reboot"])
        host.ready = False
        self.world.changed(host)
        self.log.info("node %s: rebooting into %s", name, op["target"])
        return float(self.world.timings["reboot"])

    def _drain_retry(self, name, op):
        timeout = float(self.world.timings.get("drain_timeout", 3600))
        if time.monotonic() - op["started"] > timeout:
            self.kube.merge_patch(path("v1", "nodes", name), {"metadata": {"annotations": {
                STATE: "Degraded",
                REASON: f"failed to drain node: {name} after {int(timeout)} seconds: {op['blocked']}"}}})
            return None
        self.log.info("node %s: %s (will retry after %ss)", name, op["blocked"], DRAIN_RETRY)
        return DRAIN_RETRY

    # -- reboot --------------------------------------------------------------------------------

    def _reboot(self, node, host, op):
        name = node["metadata"]["name"]
        left = op["until"] - time.monotonic()
        if left > 0:
            return left
        rendered = self.cache(MC_API, "machineconfigs").get(op["target"])
        if rendered is None:
            rendered = self.kube.get_or_none(path(MC_API, "machineconfigs", op["target"]))
        host.boots += 1
        fault = self.world.fault("reboot-degrades", node=name)
        if rendered is None or fault:
            # Back on the old deployment (rpm-ostree keeps it), reporting why the update failed.
            host.ready = True
            self.world.changed(host)
            reason = fault.get("reason") if fault and fault.get("reason") else (
                f"unexpected on-disk state validating against {op['target']}: "
                f"expected target osImageURL, booted into the previous deployment")
            if rendered is None:
                reason = f"machineconfig.machineconfiguration.openshift.io \"{op['target']}\" not found"
            self.kube.merge_patch(path("v1", "nodes", name), {"metadata": {"annotations": {
                STATE: "Degraded", REASON: reason, BOOTS: str(host.boots)}}})
            self._boot_id(name)
            op["phase"] = "degraded"
            self.log.info("node %s: degraded after reboot: %s", name, reason)
            return None
        self._write(host, rendered.get("spec") or {})
        host.ready = True
        self.world.changed(host)
        self._boot_id(name)
        self.ops.pop(name, None)
        self.finished[name] = op["target"]
        self._finish(name, op["target"], uncordon=True, boots=host.boots)
        self.log.info("node %s: now on %s (boot %d)", name, op["target"], host.boots)
        return None

    def _spec(self, name):
        if not name:
            return None
        found = self.cache(MC_API, "machineconfigs").get(name) or self.kube.get_or_none(path(MC_API, "machineconfigs", name))
        return (found or {}).get("spec") if found else None

    def _write(self, host, spec):
        """The node's disk after an update: rendered files and extensions; kernel arguments as the daemon
        applies them (pkg/daemon/update.go generateKargs: the old ones deleted, every new one appended with
        rpm-ostree --append, so a repeated argument is on the command line twice)."""
        base = host.spec["kernel_cmdline"].split()
        host.cmdline = base + [a for arg in spec.get("kernelArguments") or [] for a in arg.split()]
        host.files = {f["path"]: decode((f.get("contents") or {}).get("source"))
                      for f in ((spec.get("config") or {}).get("storage") or {}).get("files") or []}
        host.extensions = list(spec.get("extensions") or [])

    def _apply(self, node, host, op):
        """A rebootless update (performPostConfigChangeNodeDisruptionAction): files written, the named
        services reloaded or restarted, the node stays up; uncordoned only if it was drained."""
        name = node["metadata"]["name"]
        spec = self._spec(op["target"])
        if spec is None:
            self.kube.merge_patch(path("v1", "nodes", name), {"metadata": {"annotations": {
                STATE: "Degraded", REASON: f"machineconfig.machineconfiguration.openshift.io \"{op['target']}\" not found"}}})
            op["phase"] = "degraded"
            return None
        self._write(host, spec)
        self.world.changed(host)
        self.ops.pop(name, None)
        self.finished[name] = op["target"]
        self._finish(name, op["target"], uncordon=op["phase"] == "drain")
        self.log.info("node %s: now on %s without a reboot (%s)", name, op["target"], ", ".join(op["actions"]))
        return None

    def _finish(self, name, config, uncordon, boots=None):
        annotations = {CURRENT: config, STATE: "Done", REASON: ""}
        if config:
            annotations[DESIRED_DRAIN] = f"uncordon-{config}"
            annotations[LAST_DRAIN] = f"uncordon-{config}"
        if boots is not None:
            annotations[BOOTS] = str(boots)
        body = {"metadata": {"annotations": annotations}}
        if uncordon:
            body["spec"] = {"unschedulable": None}
        self.kube.merge_patch(path("v1", "nodes", name), body)

    def _boot_id(self, name):
        try:
            self.kube.merge_patch(path("v1", "nodes", name, subresource="status"),
                                  {"status": {"nodeInfo": {"bootID": str(uuid.uuid4())}}})
        except ApiError as exc:  # cosmetic: a reboot shows as a new bootID, as on a real node
            self.log.debug("bootID of %s: %s", name, exc)


def register(manager, world):
    manager.add(PoolController(world))
    manager.add(ContainerRuntimeConfigController(world))
    manager.add(KubeletConfigController(world))
    manager.add(Daemon(world))
