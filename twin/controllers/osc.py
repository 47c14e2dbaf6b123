"""The OpenShift sandboxed containers (OSC) operator twin: KataConfig in MachineConfig mode.

What the real operator does that the collection depends on (operators.md §4.3, §6):

* every reconcile reads the ``osc-feature-gates`` ConfigMap of its namespace (``confidential: "true"``);
* with ``confidential`` on, OpenShift older than 4.20.6 (``ClusterVersion.status.desired.version``)
  stops everything: ``InProgress`` with reason ``UnsupportedOCPVersion``;
* the pool is ``kata-oc`` on clusters with worker-only nodes (the nodes matching
  ``kataConfigPoolSelector``, all workers if unset, get the role label ``node-role.kubernetes.io/kata-oc``
  and the pool selects MachineConfigs of roles ``kata-oc`` and ``worker``), ``master`` on compact and
  single-node clusters; ``checkNodeEligibility`` narrows the nodes to NFD's
  ``feature.node.kubernetes.io/runtime.kata=true``;
* the MachineConfig ``50-enable-sandboxed-containers-extension`` (the RHCOS extension) for that
  pool, rolled out by the MCO twin (node by node, one reboot each, counted there);
* ``status.kataNodes`` from each node's MCO annotations against its pool's target, the
  ``InProgress`` condition (``Installing``, ``Updating``, reset to ``False`` with no reason when done,
  ``Failed`` with the node's reason when the MCO degrades it), ``waitingForMcoToStart``;
* only after the rollout: RuntimeClass ``kata``, then with ``confidential`` on and exactly one TEE
  type among the selected nodes' labels, ``kata-cc`` (handler ``kata-tdx``/``kata-snp``, overhead
  with the TEE extended resource) and, when a selected node has GPUs from the GPU operator,
  ``kata-cc-nvidia-gpu`` whose nodeSelector asks for CC mode on and ready. Two TEE types or none:
  the operator's own error, retried with backoff (shown here in the ``InProgress`` condition);
* with ``logLevel`` other than ``info``, the ContainerRuntimeConfig ``kata-crio-config`` for the pool
  (``processLogLevel``), from which the MCO twin generates ``99-<pool>-generated-containerruntime``; upstream
  creates it just after the pool, racing the first render. The twin creates it just before, so the render
  waits for it (one rendered config); the fault ``{kind: osc-crc-late}`` creates it only once a node applies
  the pool's first render (with the extension), and a second rendered config and a second update of that
  node follow, as when upstream loses the race;
* reconciles on KataConfig, MachineConfigPool and feature-gate changes, and on node changes only
  when a node's MCO state or its match of the selector changes. So GPUs that appear after the
  KataConfig was reconciled do not bring ``kata-cc-nvidia-gpu``: another reconcile does (a changed
  annotation on the KataConfig, for instance), as on a real cluster.
"""

import copy
import logging

from ..controller import Controller
from ..kube import ApiError, path
from ..kubelet import now

log = logging.getLogger("twin.osc")

KC_API, KC_PLURAL = "kataconfiguration.openshift.io/v1", "kataconfigs"
MC_API = "machineconfiguration.openshift.io/v1"
RC_API = "node.k8s.io/v1"
CSV_API, CSV_PLURAL = "operators.coreos.com/v1alpha1", "clusterserviceversions"
CSV_PREFIX = "sandboxed-containers-operator."
DEFAULT_NAMESPACE = "openshift-sandboxed-containers-operator"
FEATURE_GATES = "osc-feature-gates"
EXTENSION_MC = "50-enable-sandboxed-containers-extension"
CRC_NAME, CRC_PLURAL = "kata-crio-config", "containerruntimeconfigs"
FINALIZER = "kataconfiguration.openshift.io/finalizer"
KATA_ROLE = "node-role.kubernetes.io/kata-oc"
WORKER_ROLE = "node-role.kubernetes.io/worker"
MASTER_ROLE = "node-role.kubernetes.io/master"
ELIGIBLE = "feature.node.kubernetes.io/runtime.kata"
MCO_STATE = "machineconfiguration.openshift.io/state"
MCO_CURRENT = "machineconfiguration.openshift.io/currentConfig"
MCO_REASON = "machineconfiguration.openshift.io/reason"
MIN_OCP = (4, 20, 6)
TEES = (  # label, runtime handler, extended resource one pod VM uses
    ("intel.feature.node.kubernetes.io/tdx", "tdx", "tdx.intel.com/keys"),
    ("amd.feature.node.kubernetes.io/snp", "snp", "sev-snp.amd.com/esids"),
    ("ibm.feature.node.kubernetes.io/se", "se", None),
)
GPU_LABELS = {
    "nvidia.com/gpu.present": "true",
    "nvidia.com/gpu.deploy.vfio-manager": "true",
    "nvidia.com/gpu.deploy.kata-sandbox-device-plugin": "true",
    "nvidia.com/cc.mode.state": "on",
    "nvidia.com/cc.ready.state": "true",
}
OVERHEAD = {"cpu": "250m", "memory": "350Mi"}
RETRY = (2.0, 5.0, 15.0, 30.0, 60.0)  # controller-runtime's backoff on a reconcile error, shortened


# -- pure helpers --------------------------------------------------------------------------------


def version_tuple(text):
    core = str(text or "").split("-")[0].split("+")[0]
    try:
        parts = tuple(int(p) for p in core.split(".")[:3])
    except ValueError:
        return None
    return parts + (0,) * (3 - len(parts))


def matches(selector, labels):
    labels = labels or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        have = key in labels
        ok = {"In": have and labels[key] in values, "NotIn": not have or labels[key] not in values,
              "Exists": have, "DoesNotExist": not have}.get(op, False)
        if not ok:
            return False
    return True


def kata_selector(kc):
    """The node selector KataConfig stands for: the pool selector (workers by default), eligibility on top."""
    spec = kc.get("spec") or {}
    selector = copy.deepcopy(spec.get("kataConfigPoolSelector") or {"matchLabels": {WORKER_ROLE: ""}})
    if spec.get("checkNodeEligibility"):
        selector.setdefault("matchLabels", {})[ELIGIBLE] = "true"
    return selector


def converged(nodes):
    """Compact and single-node clusters: no node is a worker without being a master too."""
    return not any(WORKER_ROLE in _labels(n) and MASTER_ROLE not in _labels(n) for n in nodes)


def compute_tee(nodes):
    """(tee, label, resource) for the selected nodes, or raise ValueError with the operator's message."""
    found = [t for t in TEES if any(_labels(n).get(t[0]) == "true" for n in nodes)]
    if len(found) > 1:
        raise ValueError("multiple TEE platforms detected; only one per cluster supported")
    if not found:
        raise ValueError("no TEE platform labels found (expected {0})".format(
            ", ".join(t[0] for t in TEES[:-1]) + " or " + TEES[-1][0]))
    label, tee, resource = found[0]
    return tee, label, resource


def runtime_class(name, handler, node_selector, extra_overhead=None):
    overhead = dict(OVERHEAD)
    if extra_overhead:
        overhead[extra_overhead] = "1"
    return {"apiVersion": RC_API, "kind": "RuntimeClass",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "sandboxed-containers-operator"}},
            "handler": handler, "overhead": {"podFixed": overhead}, "scheduling": {"nodeSelector": node_selector}}


def _labels(obj):
    return (obj.get("metadata") or {}).get("labels") or {}


def _ann(obj):
    return (obj.get("metadata") or {}).get("annotations") or {}


def _condition(pool, kind):
    for cond in (pool or {}).get("status", {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond.get("status") == "True"
    return False


def pool_done(pool):
    """The pool runs its current target everywhere (status caught up with spec, as the MCO reports it)."""
    if pool is None:
        return False
    status = pool.get("status") or {}
    target = ((pool.get("spec") or {}).get("configuration") or {}).get("name")
    return (_condition(pool, "Updated") and not _condition(pool, "Updating") and target is not None
            and (status.get("configuration") or {}).get("name") == target
            and status.get("updatedMachineCount") == status.get("machineCount"))


def _sources(pool):
    return {s.get("name") for s in ((pool or {}).get("spec", {}).get("configuration") or {}).get("source") or []}


# -- the operator --------------------------------------------------------------------------------


class KataConfigController(Controller):
    name = "osc"
    api_version = KC_API
    plural = KC_PLURAL

    def __init__(self, world):
        super().__init__(world)
        self._seen_nodes = {}  # node -> (MCO state, matches a KataConfig)
        self._failures = {}  # KataConfig -> consecutive failed reconciles, for the backoff

    def setup(self, manager):
        super().setup(manager)
        manager.informer(MC_API, "machineconfigpools").add_handler(self._pool_event)
        manager.informer("v1", "nodes").add_handler(self._node_event)
        manager.informer("v1", "configmaps").add_handler(self._configmap_event)
        for api_version, plural in ((RC_API, "runtimeclasses"), ("config.openshift.io/v1", "clusterversions"),
                                    (CSV_API, CSV_PLURAL), (MC_API, "machineconfigs"), (MC_API, CRC_PLURAL)):
            manager.informer(api_version, plural)

    def _all(self):
        for kc in self.cache(KC_API, KC_PLURAL).items():
            self.queue.add((None, kc["metadata"]["name"]))

    def _pool_event(self, kind, pool):
        if pool["metadata"]["name"] in ("kata-oc", "worker", "master"):
            self._all()

    def _node_event(self, kind, node):
        kcs = self.cache(KC_API, KC_PLURAL).items()
        name = node["metadata"]["name"]
        seen = (_ann(node).get(MCO_STATE), tuple(matches(kata_selector(kc), _labels(node)) for kc in kcs))
        if self._seen_nodes.get(name) != seen:
            self._seen_nodes[name] = seen
            self._all()

    def _configmap_event(self, kind, cm):
        if cm["metadata"]["name"] == FEATURE_GATES:
            self._all()

    def namespace(self):
        for csv in self.cache(CSV_API, CSV_PLURAL).items():
            status = csv.get("status") or {}
            if csv["metadata"]["name"].startswith(CSV_PREFIX) and status.get("phase") == "Succeeded" \
                    and status.get("reason") != "Copied":
                return csv["metadata"]["namespace"]
        return DEFAULT_NAMESPACE

    # -- reconcile ------------------------------------------------------------------------------

    def reconcile(self, key):
        _, name = key
        kc = self.cache(KC_API, KC_PLURAL).get(name)
        if kc is None:
            self._failures.pop(name, None)
            return None
        if kc["metadata"].get("deletionTimestamp"):
            return self._uninstall(kc)
        if FINALIZER not in (kc["metadata"].get("finalizers") or []):
            self.kube.merge_patch(path(KC_API, KC_PLURAL, name), {"metadata": {
                "finalizers": list(kc["metadata"].get("finalizers") or []) + [FINALIZER]}})
            return None  # the update brings us back
        status = copy.deepcopy(kc.get("status") or {})
        error = self._install(kc, status)
        self._write_status(kc, status)
        if not error:
            self._log_level(kc, converged(self.cache("v1", "nodes").items()))
        if error:
            count = self._failures.get(name, 0)
            self._failures[name] = count + 1
            return RETRY[min(count, len(RETRY) - 1)]
        self._failures.pop(name, None)
        return None

    def _feature_gates(self):
        cm = self.cache("v1", "configmaps").get(FEATURE_GATES, self.namespace()) or {}
        return {k: v for k, v in (cm.get("data") or {}).items()}

    def _install(self, kc, status):
        """One pass of the operator's install logic; returns an error text when it must be retried."""
        gates = self._feature_gates()
        confidential = gates.get("confidential") == "true"
        cv = self.cache("config.openshift.io/v1", "clusterversions").get("version") or {}
        version = ((cv.get("status") or {}).get("desired") or {}).get("version")
        if confidential and (version_tuple(version) or (0,)) < MIN_OCP:
            self._set_condition(status, "False", "UnsupportedOCPVersion",
                                "OpenShift {0} is not supported for confidential containers on bare metal; "
                                "{1} or newer is required".format(version, ".".join(map(str, MIN_OCP))))
            return None
        nodes = self.cache("v1", "nodes").items()
        selector = kata_selector(kc)
        is_converged = converged(nodes)
        pool_name = "master" if is_converged else "kata-oc"
        candidates = [n for n in nodes if (MASTER_ROLE if is_converged else WORKER_ROLE) in _labels(n)]
        selected = [n for n in candidates if matches(selector, _labels(n))] if not is_converged else candidates
        if (kc.get("spec") or {}).get("checkNodeEligibility") and not selected:
            self._set_condition(status, "True", "Failed",
                                "no node is eligible for kata: none of the nodes selected by kataConfigPoolSelector "
                                "has {0}=true (checkNodeEligibility)".format(ELIGIBLE))
            return "no eligible nodes"

        if self._ensure_extension_mc(pool_name):
            self._set_condition(status, "True", "Installing", "Performing initial installation of kata on cluster")
        if not is_converged:
            if self._label_nodes(candidates, selector):
                status["waitingForMcoToStart"] = True
            pools = self.cache(MC_API, "machineconfigpools")
            if pools.get("kata-oc") is None:
                if not self.world.fault("osc-crc-late"):
                    # Upstream creates the pool, then (processLogLevel, later in the same Reconcile) the
                    # ContainerRuntimeConfig: a race with the render controller. The twin lets the good side
                    # win by default; the fault "osc-crc-late" makes it land after the first render.
                    self._log_level(kc, is_converged)
                self._create_pool()
        pools = self.cache(MC_API, "machineconfigpools")
        pool = pools.get(pool_name)
        rendered = EXTENSION_MC in _sources(pool)
        # Nodes leave the worker pool for kata-oc: both must have settled.
        settled = pool_done(pool) and (is_converged or pool_done(pools.get("worker")))
        if not rendered:
            status["waitingForMcoToStart"] = True
        elif not settled:
            status["waitingForMcoToStart"] = False
        self._node_lists(status, nodes, pools, selector, is_converged)
        degraded = [n for n in nodes if _ann(n).get(MCO_STATE) == "Degraded"
                    and n["metadata"]["name"] in status["kataNodes"].get("failedToInstall", [])]
        if degraded:
            node = degraded[0]
            self._set_condition(status, "True", "Failed", "Node {0} Degraded: {1}".format(
                node["metadata"]["name"], _ann(node).get(MCO_REASON, "")))
            return None
        if not rendered or not settled:
            cond = self._get_condition(status)
            if cond is None or cond.get("status") == "False":
                reason = "Installing" if not status.get("runtimeClasses") else "Updating"
                message = "Performing initial installation of kata on cluster" if reason == "Installing" \
                    else "Updating kata installation"
                self._set_condition(status, "True", reason, message)
            return None  # the pool's next status change brings us back

        status["waitingForMcoToStart"] = False
        self._set_condition(status, "False", "", "")
        node_selector = {MASTER_ROLE: ""} if is_converged else {KATA_ROLE: ""}
        classes = ["kata"]
        self._ensure_runtime_class(runtime_class("kata", "kata", node_selector))
        error = None
        if confidential:
            try:
                tee, label, resource = compute_tee(selected)
            except ValueError as exc:
                error = str(exc)
                log.info("KataConfig %s: failed to detect TEE platform: %s", kc["metadata"]["name"], error)
                self._set_condition(status, "True", "Failed", error)
            else:
                self._ensure_runtime_class(runtime_class("kata-cc", "kata-" + tee, {label: "true"}, resource))
                classes.append("kata-cc")
                # Decided from the nodes as they are now: GPUs that show up later need another reconcile.
                if any(_labels(n).get("nvidia.com/gpu.present") == "true" for n in selected):
                    self._ensure_runtime_class(runtime_class(
                        "kata-cc-nvidia-gpu", "kata-{0}-nvidia-gpu".format(tee), dict(GPU_LABELS, **{label: "true"}),
                        resource))
                    classes.append("kata-cc-nvidia-gpu")
        else:
            for name in ("kata-cc", "kata-cc-nvidia-gpu"):
                if self.cache(RC_API, "runtimeclasses").get(name) is not None:
                    self.kube.delete(path(RC_API, "runtimeclasses", name))
        status["runtimeClasses"] = classes
        return error

    # -- pieces ---------------------------------------------------------------------------------

    def _log_level(self, kc, is_converged):
        """processLogLevel (openshift/sandboxed-containers-operator controllers/openshift_controller.go, devel
        d0632e5, called after processKataConfigInstallRequest in every Reconcile): with ``logLevel`` other than
        ``info`` (empty counts as info), the ContainerRuntimeConfig ``kata-crio-config`` selecting the pool by its
        ``pools.operator.machineconfiguration.openshift.io/<kata-oc|master>`` label; an existing one gets the new
        level (its selector is left alone); with ``info`` and none there, nothing is created."""
        level = (kc.get("spec") or {}).get("logLevel") or "info"
        existing = self.cache(MC_API, CRC_PLURAL).get(CRC_NAME)
        if existing is None:
            if level == "info":
                return
            pool_name = "master" if is_converged else "kata-oc"
            if self.world.fault("osc-crc-late") and not self._a_node_updates_to_the_first_render(pool_name):
                return  # the fault: only once a node applies the pool's render with our extension (the race lost)
            body = {"apiVersion": MC_API, "kind": "ContainerRuntimeConfig", "metadata": {"name": CRC_NAME},
                    "spec": {"machineConfigPoolSelector": {"matchLabels": {
                        "pools.operator.machineconfiguration.openshift.io/" + pool_name: ""}},
                        "containerRuntimeConfig": {"logLevel": level}}}
            try:
                self.kube.create(path(MC_API, CRC_PLURAL), body)
                log.info("created ContainerRuntimeConfig %s (logLevel %s)", CRC_NAME, level)
            except ApiError as exc:
                if exc.status != 409:
                    raise
            return
        if ((existing.get("spec") or {}).get("containerRuntimeConfig") or {}).get("logLevel") != level:
            self.kube.merge_patch(path(MC_API, CRC_PLURAL, CRC_NAME),
                                  {"spec": {"containerRuntimeConfig": {"logLevel": level}}})

    def _a_node_updates_to_the_first_render(self, pool_name):
        """Whether the pool has rendered our extension and a node's daemon is already applying that render.

        The daemon finishes an update it has started, so that node takes the second render after it
        (two updates) while the nodes not yet started go straight to the second: deterministic.
        """
        pool = self.cache(MC_API, "machineconfigpools").get(pool_name)
        if EXTENSION_MC not in _sources(pool):
            return False
        target = ((pool.get("spec") or {}).get("configuration") or {}).get("name")
        return any(_ann(n).get("machineconfiguration.openshift.io/desiredConfig") == target
                   and _ann(n).get(MCO_STATE) == "Working" for n in self.cache("v1", "nodes").items())

    def _ensure_extension_mc(self, pool_name):
        existing = self.cache(MC_API, "machineconfigs").get(EXTENSION_MC)
        if existing is not None:
            return False
        body = {"apiVersion": MC_API, "kind": "MachineConfig",
                "metadata": {"name": EXTENSION_MC, "labels": {"machineconfiguration.openshift.io/role": pool_name,
                                                              "app": "sandboxed-containers-operator"}},
                "spec": {"config": {"ignition": {"version": "3.2.0"}}, "extensions": ["sandboxed-containers"]}}
        try:
            self.kube.create(path(MC_API, "machineconfigs"), body)
        except ApiError as exc:
            if exc.status != 409:
                raise
            return False
        log.info("created MachineConfig %s for pool %s", EXTENSION_MC, pool_name)
        return True

    def _label_nodes(self, workers, selector):
        changed = False
        for node in workers:
            want = matches(selector, _labels(node))
            have = KATA_ROLE in _labels(node)
            if want != have:
                self.kube.merge_patch(path("v1", "nodes", node["metadata"]["name"]),
                                      {"metadata": {"labels": {KATA_ROLE: "" if want else None}}})
                changed = True
        return changed

    def _create_pool(self):
        body = {"apiVersion": MC_API, "kind": "MachineConfigPool",
                "metadata": {"name": "kata-oc", "labels": {"pools.operator.machineconfiguration.openshift.io/kata-oc": ""}},
                "spec": {"machineConfigSelector": {"matchExpressions": [{
                    "key": "machineconfiguration.openshift.io/role", "operator": "In", "values": ["kata-oc", "worker"]}]},
                    "nodeSelector": {"matchLabels": {KATA_ROLE: ""}}, "paused": False, "maxUnavailable": 1}}
        try:
            self.kube.create(path(MC_API, "machineconfigpools"), body)
            log.info("created MachineConfigPool kata-oc")
        except ApiError as exc:
            if exc.status != 409:
                raise

    def _ensure_runtime_class(self, body):
        existing = self.cache(RC_API, "runtimeclasses").get(body["metadata"]["name"])
        p = path(RC_API, "runtimeclasses")
        if existing is None:
            try:
                self.kube.create(p, body)
            except ApiError as exc:
                if exc.status != 409:
                    raise
            return
        if existing.get("handler") != body["handler"]:  # the handler is immutable
            self.kube.delete(f"{p}/{body['metadata']['name']}")
            self.kube.create(p, body)
        elif existing.get("overhead") != body["overhead"] or existing.get("scheduling") != body["scheduling"]:
            self.kube.merge_patch(f"{p}/{body['metadata']['name']}",
                                  {"overhead": body["overhead"], "scheduling": body["scheduling"]})

    def _node_lists(self, status, nodes, pools, selector, is_converged):
        lists = {k: [] for k in ("installed", "installing", "waitingToInstall", "failedToInstall",
                                 "uninstalling", "waitingToUninstall", "failedToUninstall")}
        count = 0
        for node in nodes:
            labels = _labels(node)
            if is_converged:
                if MASTER_ROLE not in labels:
                    continue
                target_pool, enabled = pools.get("master"), True
            else:
                if WORKER_ROLE not in labels:
                    continue
                enabled = matches(selector, labels)
                target_pool = pools.get("kata-oc" if KATA_ROLE in labels else "worker")
            count += 1 if enabled else 0
            target = ((target_pool or {}).get("spec", {}).get("configuration") or {}).get("name")
            state, current = _ann(node).get(MCO_STATE), _ann(node).get(MCO_CURRENT)
            if target is None or state is None:
                bucket = "waitingToInstall" if enabled else None
            elif state == "Degraded":
                bucket = "failedToInstall" if enabled else "failedToUninstall"
            elif state == "Working":
                bucket = "installing" if enabled else "uninstalling"
            elif current == target:
                bucket = "installed" if enabled and EXTENSION_MC in _sources(target_pool) else (
                    "waitingToInstall" if enabled else None)
            else:
                bucket = "waitingToInstall" if enabled else "waitingToUninstall"
            if bucket:
                lists[bucket].append(node["metadata"]["name"])
        kata_nodes = {k: sorted(v) for k, v in lists.items() if v}
        kata_nodes["nodeCount"] = count
        kata_nodes["readyNodeCount"] = len(lists["installed"])
        status["kataNodes"] = kata_nodes

    @staticmethod
    def _get_condition(status):
        return next((c for c in status.get("conditions") or [] if c.get("type") == "InProgress"), None)

    def _set_condition(self, status, value, reason, message):
        cond = self._get_condition(status)
        if cond is None:
            cond = {"type": "InProgress"}
            status.setdefault("conditions", []).append(cond)
        if cond.get("status") != value or cond.get("reason") != reason:
            cond["lastTransitionTime"] = now()
        cond.setdefault("lastTransitionTime", now())
        cond.update({"status": value, "reason": reason, "message": message})

    def _write_status(self, kc, status):
        if status == (kc.get("status") or {}):
            return
        # The OSC operator writes status with Status().Update (openshift/sandboxed-containers-operator
        # controllers/openshift_controller.go, Reconcile): the whole status is replaced, so a list that emptied
        # (a node no longer failing) is gone. A merge patch would keep the stale key.
        body = copy.deepcopy(kc)
        body["status"] = status
        self.kube.replace(path(KC_API, KC_PLURAL, kc["metadata"]["name"], subresource="status"), body)

    def _uninstall(self, kc):
        """Remove what the KataConfig brought; the pool's rollout back is the MCO's business."""
        if any((p.get("spec") or {}).get("runtimeClassName", "").startswith("kata")
               for p in self.kube.list(path("v1", "pods"))["items"]
               if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")):
            status = copy.deepcopy(kc.get("status") or {})
            self._set_condition(status, "False", "BlockedByExistingKataPods",
                                "Existing pods using \"kata\" RuntimeClass found. Please delete the pods manually "
                                "for KataConfig deletion to proceed")
            self._write_status(kc, status)
            return 15.0
        for name in ("kata-cc-nvidia-gpu", "kata-cc", "kata"):
            self.kube.delete(path(RC_API, "runtimeclasses", name))
        for node in self.cache("v1", "nodes").items():
            if KATA_ROLE in _labels(node):
                self.kube.merge_patch(path("v1", "nodes", node["metadata"]["name"]),
                                      {"metadata": {"labels": {KATA_ROLE: None}}})
        self.kube.delete(path(MC_API, CRC_PLURAL, CRC_NAME))  # removeLogLevel
        self.kube.delete(path(MC_API, "machineconfigs", EXTENSION_MC))
        # The nodes leave kata-oc to rejoin worker, and the finalizer stays until worker is fully updated; only
        # then kata-oc goes (openshift/sandboxed-containers-operator controllers/openshift_controller.go,
        # processKataConfigDeleteRequest: "Waiting for MachineConfigPool to be fully updated", targetPool "worker").
        # Pool and node events bring us back.
        nodes = self.cache("v1", "nodes").items()
        target = "master" if converged(nodes) else "worker"  # a compact cluster's nodes stay in master
        if not pool_done(self.cache(MC_API, "machineconfigpools").get(target)) or any(
                (_ann(n).get(MCO_CURRENT) or "").startswith("rendered-kata-oc-") for n in nodes):
            return 5.0
        self.kube.delete(path(MC_API, "machineconfigpools", "kata-oc"))
        finalizers = [f for f in kc["metadata"].get("finalizers") or [] if f != FINALIZER]
        self.kube.merge_patch(path(KC_API, KC_PLURAL, kc["metadata"]["name"]), {"metadata": {"finalizers": finalizers}})
        return None


def register(manager, world):
    manager.add(KataConfigController(world))
