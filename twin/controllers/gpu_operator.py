"""The NVIDIA GPU operator twin, for sandboxed (kata) workloads, and its cc-manager.

What the real operator does that the collection depends on:

* ``ClusterPolicy``: the oldest one is honoured (others report ``ignored``). On nodes NFD marks
  with an NVIDIA PCI device it sets ``nvidia.com/gpu.present`` and the ``nvidia.com/gpu.deploy.*``
  labels of the node's workload (``sandboxWorkloads.defaultWorkload`` unless the node label
  ``nvidia.com/gpu.workload.config`` names a valid one), for the operator version OLM installed
  (``client`` only from 26.7.0): a label already there keeps its value, ``gpu.deploy.operands=false``
  removes them all (see ``label_patch``). Operands are real DaemonSets in the operator's namespace
  selecting those labels, so KCM creates the pods, the real scheduler places them and the kubelet twin
  runs them.
* Node effects follow the operand pods: a running ``vfio-manager`` binds the node's GPUs to
  ``vfio-pci`` (only when the host's IOMMU is on, as the kernel requires); the sandbox validator is not
  ready until they are; a running kata sandbox device plugin advertises one device per IOMMU group, as
  ``nvidia.com/pgpu`` unless its ``P_GPU_ALIAS`` env is empty (see ``sandbox_plugin_resources``).
  ``status.state`` is ``ready`` when every operand DaemonSet is (``daemonset_ready``): whether GPUs are
  advertised plays no part.
* cc-manager (k8s-cc-manager v0.4.3): at each start of its container it applies the node's
  ``nvidia.com/cc.mode`` label, or its ``DEFAULT_CC_MODE`` (``ccManager.defaultMode``; ``off`` on a
  host without TDX/SNP); afterwards it acts only when the label changes. A switch pauses the
  operands it evicts, takes ``timings.cc_mode_switch`` seconds, then writes ``nvidia.com/cc.mode.state``
  and ``nvidia.com/cc.ready.state`` (``true`` for on/ppcie, ``false`` for off, empty otherwise). A GPU
  that cannot take the mode (``cc_capable`` false in the profile; PPCIe only on Hopper) makes it exit
  before writing anything: the pod crash-loops and the state label keeps its old value. Only a set
  or reset that errors writes ``failed`` (the pod keeps running). See ``cc_plan``.

Faults: ``{kind: gpu-cc-stuck-failed, node: N}`` (every switch on N errors and ends in ``failed``),
``{kind: cc-mode-switch-hangs, node: N}`` (a switch on N never completes) and
``{kind: cc-manager-crash-loop, node: N}`` (cc-manager on N exits whenever it applies a mode, at
start or on a label change, as for a GPU that cannot take it: a crash loop).
"""

import hashlib
import json
import logging
import re
import time

from .. import workloads
from ..controller import Controller
from ..kube import ApiError, path
from ..kubelet import crashed_container_status, now, restarted_container_status

log = logging.getLogger("twin.gpu-operator")

CP_API, CP_PLURAL = "nvidia.com/v1", "clusterpolicies"
CSV_API, CSV_PLURAL = "operators.coreos.com/v1alpha1", "clusterserviceversions"
CSV_PREFIX = "gpu-operator-certified."
DEFAULT_NAMESPACE = "nvidia-gpu-operator"

NFD_GPU_LABELS = ("feature.node.kubernetes.io/pci-10de.present", "feature.node.kubernetes.io/pci-0302_10de.present",
                  "feature.node.kubernetes.io/pci-0300_10de.present")
GPU_PRESENT = "nvidia.com/gpu.present"
WORKLOAD_CONFIG = "nvidia.com/gpu.workload.config"
WORKLOADS = ("container", "vm-passthrough", "vm-vgpu")
DEPLOY = "nvidia.com/gpu.deploy."
CC_MODE = "nvidia.com/cc.mode"
CC_MODE_STATE = "nvidia.com/cc.mode.state"
CC_READY_STATE = "nvidia.com/cc.ready.state"
CC_MODES = ("on", "off", "devtools", "ppcie")
PAUSED = "paused-for-cc-mode-change"
# cc-manager evicts these operands while it resets the GPUs (not the kata device plugin).
EVICTED_BY_CC_MANAGER = ("vfio-manager", "sandbox-validator", "sandbox-device-plugin")

# Deploy labels per workload (NVIDIA/gpu-operator v26.3.3 and v26.7.0 controllers/state_manager.go gpuStateLabels):
# vm-passthrough carries kata-manager in both versions; 26.7.0 adds nvidia.com/gpu.deploy.client to every workload.
# In kata mode getEffectiveStateLabels swaps the KubeVirt sandbox-device-plugin label for kata-sandbox-device-plugin.
STATE_LABELS = {
    "container": ("driver", "gpu-feature-discovery", "container-toolkit", "device-plugin", "dcgm", "dcgm-exporter",
                  "node-status-exporter", "operator-validator"),
    "vm-passthrough": ("sandbox-device-plugin", "sandbox-validator", "vfio-manager", "kata-manager", "cc-manager"),
    "vm-vgpu": ("sandbox-device-plugin", "vgpu-manager", "vgpu-device-manager", "sandbox-validator", "cc-manager"),
}
CLIENT_LABEL_SINCE = (26, 7, 0)
# The operator version the twin acts as when no gpu-operator-certified CSV has succeeded (tests that create a
# ClusterPolicy without OLM): the one the collection's tests render their policy for.
DEFAULT_VERSION = (26, 3, 3)
# Every key removeAllGPUStateLabels / removeGPUStateLabels may delete (mig-manager is set per MIG capability).
ALL_DEPLOY = sorted({d for v in STATE_LABELS.values() for d in v} | {"kata-sandbox-device-plugin", "mig-manager",
                                                                     "client"})
OPERANDS_LABEL = DEPLOY + "operands"

# Operand: (ClusterPolicy field, enabled when the field says nothing, DaemonSet name, app label,
# deploy label, container, image). Images are placeholders: the kubelet twin runs none.
OPERANDS = [
    ("driver", True, "nvidia-driver-daemonset", "nvidia-driver-daemonset", "driver", "nvidia-driver-ctr",
     "nvcr.io/nvidia/driver:580.95.05"),
    ("toolkit", True, "nvidia-container-toolkit-daemonset", "nvidia-container-toolkit-daemonset", "container-toolkit",
     "nvidia-container-toolkit-ctr", "nvcr.io/nvidia/k8s/container-toolkit:v1.18.0"),
    ("devicePlugin", True, "nvidia-device-plugin-daemonset", "nvidia-device-plugin-daemonset", "device-plugin",
     "nvidia-device-plugin", "nvcr.io/nvidia/k8s-device-plugin:v0.18.0"),
    ("gfd", True, "gpu-feature-discovery", "gpu-feature-discovery", "gpu-feature-discovery",
     "gpu-feature-discovery", "nvcr.io/nvidia/k8s-device-plugin:v0.18.0"),
    ("dcgmExporter", True, "nvidia-dcgm-exporter", "nvidia-dcgm-exporter", "dcgm-exporter", "nvidia-dcgm-exporter",
     "nvcr.io/nvidia/k8s/dcgm-exporter:4.4.1-4.6.0-ubi9"),
    ("nodeStatusExporter", False, "nvidia-node-status-exporter", "nvidia-node-status-exporter",
     "node-status-exporter", "nvidia-node-status-exporter", "nvcr.io/nvidia/cloud-native/gpu-operator-validator:v26.3.0"),
    ("validator", True, "nvidia-operator-validator", "nvidia-operator-validator", "operator-validator",
     "nvidia-operator-validator", "nvcr.io/nvidia/cloud-native/gpu-operator-validator:v26.3.0"),
    ("vfioManager", True, "nvidia-vfio-manager", "nvidia-vfio-manager", "vfio-manager", "nvidia-vfio-manager",
     "nvcr.io/nvidia/cuda:13.0.1-base-ubi9"),
    ("sandboxValidator", True, "nvidia-sandbox-validator", "nvidia-sandbox-validator", "sandbox-validator",
     "nvidia-sandbox-validator", "nvcr.io/nvidia/cloud-native/gpu-operator-validator:v26.3.0"),
    ("ccManager", False, "nvidia-cc-manager", "nvidia-cc-manager", "cc-manager", "nvidia-cc-manager",
     "nvcr.io/nvidia/cloud-native/k8s-cc-manager:v0.4.3"),
    ("kataSandboxDevicePlugin", False, "nvidia-kata-sandbox-device-plugin-daemonset",
     "nvidia-kata-sandbox-device-plugin-daemonset", "kata-sandbox-device-plugin", "nvidia-kata-sandbox-device-plugin-ctr",
     "nvcr.io/nvidia/cloud-native/nvidia-sandbox-device-plugin:v0.0.3"),
    ("sandboxDevicePlugin", True, "nvidia-sandbox-device-plugin-daemonset", "nvidia-sandbox-device-plugin-daemonset",
     "sandbox-device-plugin", "nvidia-sandbox-device-plugin-ctr", "nvcr.io/nvidia/kubevirt-gpu-device-plugin:v1.4.0"),
    ("kataManager", False, "nvidia-kata-manager", "nvidia-kata-manager", "kata-manager", "nvidia-kata-manager",
     "nvcr.io/nvidia/cloud-native/k8s-kata-manager:v0.2.3"),
]
# The operator's state of each operand (controllers/state_manager.go addState), as its not-ready message names them.
STATE_NAMES = {
    "driver": "state-driver", "toolkit": "state-container-toolkit", "devicePlugin": "state-device-plugin",
    "gfd": "gpu-feature-discovery", "dcgmExporter": "state-dcgm-exporter", "nodeStatusExporter": "state-node-status-exporter",
    "validator": "state-operator-validation", "vfioManager": "state-vfio-manager", "sandboxValidator": "state-sandbox-validation",
    "ccManager": "state-cc-manager", "kataSandboxDevicePlugin": "state-kata-device-plugin",
    "sandboxDevicePlugin": "state-sandbox-device-plugin", "kataManager": "state-kata-manager",
}
SANDBOX_FIELDS = {"vfioManager", "sandboxValidator", "ccManager", "kataSandboxDevicePlugin", "sandboxDevicePlugin",
                  "kataManager"}
APP = {field: app for field, _, _, app, _, _, _ in OPERANDS}
# The label the operand's pods carry: most DaemonSets select ``app: <name>``, but cc-manager, vfio-manager
# and kata-manager select ``name: <name>`` (their DaemonSet object alone carries ``app``). Upstream:
# NVIDIA/gpu-operator v26.3.3 (9a0c558) assets/state-{cc-manager,vfio-manager}/0500_daemonset.yaml,
# assets/state-kata-manager/0600_daemonset.yaml, spec.selector.matchLabels and spec.template.metadata.labels.
POD_LABEL = {"ccManager": "name", "vfioManager": "name", "kataManager": "name"}


def pod_label(field):
    """``(key, value)`` of the label a pod of this operand carries."""
    return POD_LABEL.get(field, "app"), APP[field]


def operand_of(pod):
    """The ClusterPolicy field of an operand pod, from its labels, or None."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    for field in APP:
        key, value = pod_label(field)
        if labels.get(key) == value:
            return field
    return None


# -- pure helpers --------------------------------------------------------------------------------


def _spec(cp):
    return cp.get("spec") or {}


def sandbox(cp):
    sw = _spec(cp).get("sandboxWorkloads") or {}
    return bool(sw.get("enabled")), sw.get("defaultWorkload") or "container", sw.get("mode") or "kubevirt"


def enabled_operands(cp):
    """The operands this ClusterPolicy deploys, as (field, ds_name, app, deploy, container, image, env)."""
    spec = _spec(cp)
    sandbox_on, _, mode = sandbox(cp)
    found = []
    for field, default, ds, app, deploy, container, image in OPERANDS:
        component = spec.get(field) or {}
        on = component.get("enabled", default)
        if field in SANDBOX_FIELDS and not sandbox_on:
            on = False
        if field == "sandboxValidator":
            on = sandbox_on
        if field == "kataSandboxDevicePlugin" and mode != "kata":
            on = False
        if field == "sandboxDevicePlugin" and mode == "kata":
            on = False  # kata mode deploys the kata plugin instead of the KubeVirt one
        if field == "ccManager" and mode != "kata":
            on = False  # cc-manager is deployed only in kata mode
        if not on:
            continue
        if component.get("repository") and component.get("image") and component.get("version"):
            image = "{0}/{1}:{2}".format(component["repository"], component["image"], component["version"])
        env = [e for e in component.get("env") or [] if isinstance(e, dict) and e.get("name")]
        default_mode = (spec.get("ccManager") or {}).get("defaultMode")
        if field == "ccManager" and default_mode:
            # set only when given (gpu-operator v26.3.3 controllers/object_controls.go, TransformCCManager)
            env = [{"name": "DEFAULT_CC_MODE", "value": default_mode}] + env
        found.append((field, ds, app, deploy, container, image, env))
    return found


def workload_of(cp, labels):
    """The node's workload: a valid override label wins, anything else falls back to the default."""
    sandbox_on, default, _ = sandbox(cp)
    if not sandbox_on:
        return "container"
    override = labels.get(WORKLOAD_CONFIG)
    if override in WORKLOADS:
        return override
    if override:
        log.info("invalid GPU workload config %r on a node; using the default %s", override, default)
    return default if default in WORKLOADS else "container"


def state_labels(workload, mode, version=DEFAULT_VERSION):
    """The deploy components the operator labels a node of this workload with (getEffectiveStateLabels)."""
    labels = set(STATE_LABELS[workload])
    if tuple(version) >= CLIENT_LABEL_SINCE:
        labels.add("client")
    if workload == "vm-passthrough" and mode == "kata":
        labels.discard("sandbox-device-plugin")
        labels.add("kata-sandbox-device-plugin")
    return labels


def label_patch(cp, labels, version=DEFAULT_VERSION):
    """The merge patch the operator makes on a node's labels, or {} (``None`` removes a label).

    NVIDIA/gpu-operator v26.3.3 controllers/state_manager.go ``labelGPUNodes`` and ``updateGPUStateLabels``
    (v26.7.0: the same in its node-labelling reconciler): a node NFD shows an NVIDIA device on gets
    ``gpu.present=true``; one that had it and lost its GPUs gets ``false`` and no state label. On a GPU node
    ``gpu.deploy.operands=false`` removes every state label; otherwise the labels of other workloads are removed
    and the missing ones added as ``true``. A label already there keeps its value (``false`` keeps that operand
    off the node, cc-manager's ``paused-…`` values stay); 26.7.0 treats an empty value as missing.
    """
    gpu = any(str(labels.get(k, "")) == "true" for k in NFD_GPU_LABELS)
    present = labels.get(GPU_PRESENT) == "true"
    patch = {}
    if gpu and not present:
        patch[GPU_PRESENT] = "true"
        present = True
    elif present and not gpu:
        patch[GPU_PRESENT] = "false"
        present = False
        patch.update({DEPLOY + d: None for d in ALL_DEPLOY if DEPLOY + d in labels})
    if not present:
        return patch
    if labels.get(OPERANDS_LABEL) == "false":
        patch.update({DEPLOY + d: None for d in ALL_DEPLOY if DEPLOY + d in labels})
        return patch
    _, _, mode = sandbox(cp)
    workload = workload_of(cp, labels)
    effective = state_labels(workload, mode, version)
    for d in ALL_DEPLOY:
        key = DEPLOY + d
        if d in effective:
            value = labels.get(key)
            if value is None or (value == "" and tuple(version) >= CLIENT_LABEL_SINCE):
                patch[key] = "true"
        elif key in labels and not (d == "mig-manager" and workload == "container"):
            patch[key] = None
    return patch


# The chip part of pci.ids' device names, for GPUs whose profile entry gives no ``pci_name``.
CHIPS = {"hopper": "GH100", "blackwell": "GB202", "ampere": "GA100"}


def pci_name(gpu):
    """The device's name as pci.ids gives it (``GH100 [H100 PCIe]``): the profile's ``pci_name`` or one made up."""
    if gpu.get("pci_name"):
        return gpu["pci_name"]
    chip = CHIPS.get(str(gpu.get("architecture", "")).lower(), "GPU")
    return "{0} [{1}]".format(chip, str(gpu.get("model", "GPU")).replace("NVIDIA ", ""))


def format_device_name(name):
    """NVIDIA/sandbox-device-plugin v0.0.3 pkg/device_plugin/device_plugin.go ``formatDeviceName``."""
    name = re.sub(r"\s+", "_", str(name).upper().replace("/", "_").replace(".", "_"))
    return re.sub(r"[^a-zA-Z0-9_-]+", "", name)


def plugin_alias(env):
    """P_GPU_ALIAS as the plugin reads it (cmd/main.go ``os.LookupEnv``): unset is ``pgpu``, empty is no alias."""
    for e in env or []:
        if isinstance(e, dict) and e.get("name") == "P_GPU_ALIAS":
            return e.get("value") or ""
    return "pgpu"


def pgpu_resource(cp, gpu):
    """The extended resource the kata sandbox device plugin advertises a passthrough GPU as, for this policy."""
    alias = plugin_alias((_spec(cp).get("kataSandboxDevicePlugin") or {}).get("env"))
    return "nvidia.com/" + (alias or format_device_name(pci_name(gpu)))


def sandbox_plugin_resources(env, gpus):
    """What the kubelet ends up with from the kata sandbox device plugin: ``{resource: devices}``.

    NVIDIA/sandbox-device-plugin v0.0.3 pkg/device_plugin/device_plugin.go: only GPUs bound to vfio-pci count;
    a device is an IOMMU group (a group is added once, under the device id that found it first, however many
    functions it holds); one plugin per PCI device id, named by P_GPU_ALIAS or, when that is empty, after the
    model. Two device ids with one alias register the same resource twice, and the kubelet's device manager keeps
    the endpoint registered last (the plugin iterates a Go map: which one is not defined; the twin takes the
    highest device id), so the node advertises one model's groups only.
    """
    alias = plugin_alias(env)
    groups, by_id = set(), {}
    for index, gpu in enumerate(gpus):
        if gpu.get("driver") != "vfio-pci":
            continue
        group = gpu.get("iommu_group", "gpu-{0}".format(index))
        if group in groups:
            continue
        groups.add(group)
        by_id.setdefault(str(gpu.get("device_id")).lower(), []).append(gpu)
    found = {}
    for device_id in sorted(by_id):
        members = by_id[device_id]
        found["nvidia.com/" + (alias or format_device_name(pci_name(members[0])))] = len(members)
    return found


def ppcie_capable(gpu):
    if "ppcie_capable" in gpu:
        return bool(gpu["ppcie_capable"])
    return bool(gpu.get("cc_capable")) and str(gpu.get("architecture", "")).lower() == "hopper"


def host_cc_enabled(host):
    """Whether the host runs a CPU TEE, as k8s-cc-manager reads it: ``kvm_intel`` ``tdx`` or ``kvm_amd``
    ``sev_snp`` is Y (NVIDIA/k8s-cc-manager v0.4.3 (785d77e) main.py ``is_host_cc_enabled``)."""
    params = host.module_params()
    return params.get("kvm_intel.tdx") == "Y" or params.get("kvm_amd.sev_snp") == "Y"


def cc_manager_mode(label, env, host_cc):
    """The mode cc-manager applies (NVIDIA/k8s-cc-manager v0.4.3 main.py ``with_default`` and ``main``): the
    node's ``nvidia.com/cc.mode`` label when set, else ``DEFAULT_CC_MODE`` (``on`` when absent), which ``main``
    overrides to ``off`` on a host without TDX/SNP. A label is applied even there (``set_cc_mode`` only warns)."""
    if label:
        return label
    default = next((e.get("value") for e in env or [] if isinstance(e, dict) and e.get("name") == "DEFAULT_CC_MODE"),
                   None)
    if not host_cc:
        return "off"
    return "on" if default is None else default  # set but empty: no mode, cc-manager skips


def cc_plan(mode, gpus):
    """What k8s-cc-manager does for ``mode`` on these GPUs: ``(action, detail)``.

    NVIDIA/k8s-cc-manager v0.4.3 (785d77e) main.py ``CCManager.set_cc_mode`` and ``set_ppcie_mode``:

    * ``("exit", line)``: a GPU cannot take the mode (not CC-capable for anything but ``off``, or a
      device without PPCIe for ``ppcie``): it logs the line and calls ``sys.exit(1)`` *before* writing
      any label, so the container crash-loops and ``cc.mode.state`` keeps its old value;
    * ``("skip", None)``: no GPUs, or no mode asked for: nothing is written;
    * ``("label", state)``: the GPUs are already there (or none is CC-capable and the mode is ``off``):
      the state label is written without a reset;
    * ``("switch", state)``: evict the operands, set and reset the GPUs, write ``state``; an unknown
      mode gets as far as the set, which raises, and that is the one path that writes ``failed``.
    """
    if mode == "ppcie":
        bad = [g["pci_address"] for g in gpus if not ppcie_capable(g)]
        if bad:
            return "exit", "Some devices do not support PPCIe mode: {0}".format(set(bad))
        if not gpus:
            return "skip", None
        if all(g.get("cc_mode", "off") == "ppcie" for g in gpus):
            return "label", "ppcie"
        return "switch", "ppcie"
    if mode != "off":
        bad = [g["pci_address"] for g in gpus if not g.get("cc_capable")]
        if bad:
            return "exit", "Some GPUs are not cc-capable: {0}".format(set(bad))
    if not gpus or not mode:
        return "skip", None
    capable = [g for g in gpus if g.get("cc_capable")]
    if not capable:
        return "label", "off"
    if all(g.get("cc_mode", "off") == mode for g in capable):
        return "label", mode
    return "switch", mode if mode in CC_MODES else "failed"


def ready_state(state):
    if state in ("on", "ppcie"):
        return "true"
    if state == "off":
        return "false"
    return ""


def honoured(policies):
    """The ClusterPolicy the operator acts on: the oldest (others are ignored, as upstream)."""
    live = [p for p in policies if not p["metadata"].get("deletionTimestamp")]
    if not live:
        return None
    return sorted(live, key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))[0]


def _hash(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _owned(obj):
    return any(o.get("kind") == "ClusterPolicy" for o in obj["metadata"].get("ownerReferences") or [])


def daemonset_ready(ds):
    """NVIDIA/gpu-operator v26.3.3 controllers/object_controls.go ``isDaemonSetReady``: no pod desired is ready,
    an unavailable pod is not; with ``OnDelete`` every pod must also run the current template and be ready
    (the twin checks running and ready)."""
    status = (ds or {}).get("status") or {}
    if int(status.get("desiredNumberScheduled") or 0) == 0:
        return True
    if int(status.get("numberUnavailable") or 0) != 0:
        return False
    if ((ds.get("spec") or {}).get("updateStrategy") or {}).get("type") != "OnDelete":
        return True
    return int(status.get("numberReady") or 0) >= int(status.get("desiredNumberScheduled") or 0)


def _ready_pod(pod):
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or pod["metadata"].get("deletionTimestamp"):
        return False
    return all((cs.get("state") or {}).get("running") for cs in status.get("containerStatuses") or [{}])


# -- the operator --------------------------------------------------------------------------------


class GpuOperator(Controller):
    """ClusterPolicy → node labels, operand DaemonSets, status."""

    name = "gpu-operator"
    api_version = CP_API
    plural = CP_PLURAL

    def setup(self, manager):
        super().setup(manager)
        everything = lambda kind, obj: self._all()  # noqa: E731
        manager.informer("v1", "nodes").add_handler(everything)
        manager.informer(CSV_API, CSV_PLURAL).add_handler(everything)
        manager.informer("apps/v1", "daemonsets").add_handler(
            lambda kind, obj: self._all() if _owned(obj) else None)

    def _all(self):
        for p in self.cache(CP_API, CP_PLURAL).items():
            self.queue.add((None, p["metadata"]["name"]))

    def _csv(self):
        for csv in self.cache(CSV_API, CSV_PLURAL).items():
            status = csv.get("status") or {}
            if csv["metadata"]["name"].startswith(CSV_PREFIX) and status.get("phase") == "Succeeded" \
                    and status.get("reason") != "Copied":
                return csv
        return None

    def namespace(self):
        csv = self._csv()
        return csv["metadata"]["namespace"] if csv else DEFAULT_NAMESPACE

    def version(self):
        """The operator version the twin acts as: that of the CSV OLM installed, else DEFAULT_VERSION."""
        csv = self._csv()
        if csv:
            text = csv["metadata"]["name"][len(CSV_PREFIX):].lstrip("v").split("-")[0]
            try:
                return tuple(int(p) for p in text.split(".")[:3])
            except ValueError:
                pass
        return DEFAULT_VERSION

    def reconcile(self, key):
        _, name = key
        policies = self.cache(CP_API, CP_PLURAL).items()
        cp = next((p for p in policies if p["metadata"]["name"] == name), None)
        if cp is None or cp["metadata"].get("deletionTimestamp"):
            return None
        chosen = honoured(policies)
        if chosen["metadata"]["name"] != name:
            self._status(cp, "ignored", [self._condition("Ready", "False", "Ignored",
                         "another ClusterPolicy ({0}) is in effect".format(chosen["metadata"]["name"]))])
            return None
        namespace = self.namespace()
        version = self.version()
        nodes = self.cache("v1", "nodes").items()
        for node in nodes:
            patch = label_patch(cp, node["metadata"].get("labels") or {}, version)
            if patch:
                self.kube.merge_patch(path("v1", "nodes", node["metadata"]["name"]), {"metadata": {"labels": patch}})
        operands = enabled_operands(cp)
        wanted = {ds for _, ds, *_ in operands}
        try:
            for operand in operands:
                self._ensure_daemonset(cp, namespace, operand)
        except ApiError as exc:
            if exc.status != 404:
                raise
            self._status(cp, "notReady", [self._condition("Ready", "False", "OperandNotReady",
                         "namespace {0} of the operator does not exist".format(namespace))], namespace)
            return 5.0
        for ds in self.cache("apps/v1", "daemonsets").items():
            meta = ds["metadata"]
            owned = any(o.get("kind") == "ClusterPolicy" for o in meta.get("ownerReferences") or [])
            if owned and meta.get("namespace") == namespace and meta["name"] not in wanted:
                self.kube.delete(path("apps/v1", "daemonsets", meta["name"], namespace))
        problems = self._problems(namespace, operands)
        if problems:
            # clusterpolicy_controller.go: "ClusterPolicy is not ready, states not ready: %v" of the state names
            message = "ClusterPolicy is not ready, states not ready: [{0}]".format(" ".join(problems))
            self._status(cp, "notReady", [self._condition("Ready", "False", "OperandNotReady", message),
                                          self._condition("Error", "True", "OperandNotReady", message)],
                         namespace)
        else:
            self._status(cp, "ready", [self._condition("Ready", "True", "Reconciled", "ClusterPolicy is ready as all "
                                                       "resources have been successfully reconciled"),
                                       self._condition("Error", "False", "Ready", "")], namespace)
        return None

    def _ensure_daemonset(self, cp, namespace, operand):
        field, ds_name, app, deploy, container, image, env = operand
        update = (_spec(cp).get("daemonsets") or {})
        pod_key = POD_LABEL.get(field, "app")
        body = {
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {
                "name": ds_name, "namespace": namespace,
                "labels": {"app": app, "app.kubernetes.io/managed-by": "gpu-operator",
                           "app.kubernetes.io/part-of": "nvidia-gpu"},
                "ownerReferences": [{"apiVersion": CP_API, "kind": "ClusterPolicy", "name": cp["metadata"]["name"],
                                     "uid": cp["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": {
                "selector": {"matchLabels": {pod_key: app}},
                "updateStrategy": {"type": update.get("updateStrategy") or "RollingUpdate"},
                "template": {
                    "metadata": {"labels": {pod_key: app, "app.kubernetes.io/part-of": "nvidia-gpu"}},
                    "spec": {
                        "nodeSelector": {DEPLOY + deploy: "true"},
                        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                        "containers": [{"name": container, "image": image, "env": env or None}],
                    },
                },
            },
        }
        if body["spec"]["updateStrategy"]["type"] == "RollingUpdate":
            # ClusterPolicy carries it as a string; the DaemonSet wants an int or a percentage.
            unavailable = str((update.get("rollingUpdate") or {}).get("maxUnavailable") or "1")
            body["spec"]["updateStrategy"]["rollingUpdate"] = {
                "maxUnavailable": int(unavailable) if unavailable.isdigit() else unavailable}
        container_spec = body["spec"]["template"]["spec"]["containers"][0]
        if not container_spec["env"]:
            container_spec.pop("env")
        digest = _hash(body["spec"])
        body["metadata"]["annotations"] = {"twin.confidential.gpu/spec-hash": digest}
        existing = self.cache("apps/v1", "daemonsets").get(ds_name, namespace)
        p = path("apps/v1", "daemonsets", namespace=namespace)
        if existing is None:
            try:
                self.kube.create(p, body)
            except ApiError as exc:
                if exc.status != 409:
                    raise
        elif (existing["metadata"].get("annotations") or {}).get("twin.confidential.gpu/spec-hash") != digest:
            self.kube.merge_patch(f"{p}/{ds_name}", {"metadata": {"annotations": body["metadata"]["annotations"]},
                                                    "spec": body["spec"]})

    def _problems(self, namespace, operands):
        """The states not ready, by their upstream names. Readiness is the DaemonSets' alone (isDaemonSetReady):
        whether GPUs are bound or advertised plays no part, except through the sandbox validator's pods, which
        stay unready until the node's GPUs are bound to vfio-pci (GpuNodeAgent._validate)."""
        problems = []
        for field, ds_name, *_ in operands:
            ds = self.cache("apps/v1", "daemonsets").get(ds_name, namespace)
            # Not modelled: upstream reads a DaemonSet its cache has not seen yet as "desired 0", i.e. ready; the
            # twin waits until the DaemonSet controller has observed it, so no transient ready right after create.
            if ds is None or ((ds.get("status") or {}).get("observedGeneration", 0) < ds["metadata"].get("generation", 1)) \
                    or not daemonset_ready(ds):
                problems.append(STATE_NAMES.get(field, ds_name))
        return problems

    @staticmethod
    def _condition(kind, status, reason, message):
        return {"type": kind, "status": status, "reason": reason, "message": message}

    def _status(self, cp, state, conditions, namespace=None):
        old = cp.get("status") or {}
        old_conditions = {c.get("type"): c for c in old.get("conditions") or []}
        stamped = []
        for cond in conditions:
            before = old_conditions.get(cond["type"]) or {}
            same = before.get("status") == cond["status"] and before.get("reason") == cond["reason"]
            stamped.append(dict(cond, lastTransitionTime=before.get("lastTransitionTime") if same else now()))
        status = {"state": state, "conditions": stamped}
        if namespace:
            status["namespace"] = namespace
        if all(old.get(k) == v for k, v in status.items() if k != "conditions") and \
                [{k: c.get(k) for k in ("type", "status", "reason", "message")} for c in old.get("conditions") or []] == \
                [{k: c.get(k) for k in ("type", "status", "reason", "message")} for c in stamped]:
            return
        self.kube.merge_patch(path(CP_API, CP_PLURAL, cp["metadata"]["name"], subresource="status"), {"status": status})


class GpuNodeAgent(Controller):
    """What the operands do on each GPU node: vfio binding, the pgpu device plugin, cc-manager."""

    name = "gpu-node-agent"
    api_version = "v1"
    plural = "nodes"

    def __init__(self, world):
        super().__init__(world)
        self.switching = {}  # node -> (state the switch ends in, monotonic deadline)
        self.acted = {}  # node -> the cc.mode label value cc-manager last acted on
        self.incarnations = {}  # node -> container runs of its cc-manager already started
        self.restart_at = {}  # node -> (pod uid, monotonic time its crashed container restarts)
        world.subscribe(lambda host: self.queue.add((None, host.name)))

    def setup(self, manager):
        super().setup(manager)
        manager.informer(CP_API, CP_PLURAL).add_handler(
            lambda kind, obj: [self.queue.add((None, n)) for n in self.world.hosts])
        manager.informer("v1", "pods").add_handler(self._pod_event)

    def _pod_event(self, kind, obj):
        node = (obj.get("spec") or {}).get("nodeName")
        if node and operand_of(obj):
            self.queue.add((None, node))

    def _policy(self):
        return honoured(self.cache(CP_API, CP_PLURAL).items())

    def _pod(self, node, field):
        for pod in self.cache("v1", "pods").items():
            if (pod.get("spec") or {}).get("nodeName") == node and operand_of(pod) == field:
                if not pod["metadata"].get("deletionTimestamp"):
                    return pod
        return None

    def reconcile(self, key):
        _, name = key
        node = self.cache("v1", "nodes").get(name)
        host = self.world.host(name)
        cp = self._policy()
        if node is None or host is None or cp is None or not host.gpus or not host.ready:
            return None
        labels = node["metadata"].get("labels") or {}
        if labels.get(GPU_PRESENT) != "true":
            return None
        fields = {o[0] for o in enabled_operands(cp)}
        vfio = self._pod(name, "vfioManager")
        if "vfioManager" in fields and vfio and _ready_pod(vfio) and host.iommu_enabled():
            if any(g["driver"] != "vfio-pci" for g in host.gpus):
                for gpu in host.gpus:
                    gpu["driver"] = "vfio-pci"
                log.info("%s: GPUs bound to vfio-pci", name)
                self.world.changed(host)
        self._advertise(cp, node, host, fields)
        self._validate(name, host)
        if "ccManager" in fields:
            return self._cc_manager(cp, node, host)
        return None

    def _validate(self, name, host):
        """The sandbox validator's vfio-pci validation (NVIDIA/gpu-operator v26.3.3
        assets/state-sandbox-validation/0500_daemonset.yaml, init container vfio-pci-validation, WITH_WAIT): it
        waits until the node's GPUs are bound to vfio-pci, so the validator pod is not ready before, which is what
        keeps the ClusterPolicy notReady on a node whose IOMMU is off. Shown as a running container that is not
        ready (the real pod waits in its init container)."""
        pod = self._pod(name, "sandboxValidator")
        if pod is None or (pod.get("status") or {}).get("phase") != "Running":
            return
        want = vfio_validated(host)
        cs = ((pod.get("status") or {}).get("containerStatuses") or [{}])[0]
        if bool(cs.get("ready")) != want and (cs.get("state") or {}).get("running"):
            ready = {"type": "Ready", "status": str(want), "lastTransitionTime": now()}
            if not want:
                ready.update(reason="ContainersNotReady", message="containers with unready status: [{0}]".format(
                    cs.get("name")))
            self._patch_container(pod, dict(cs, ready=want), ready)

    def _advertise(self, cp, node, host, fields):
        plugin = self._pod(node["metadata"]["name"], "kataSandboxDevicePlugin")
        counts = {}
        if "kataSandboxDevicePlugin" in fields and plugin is not None and _ready_pod(plugin):
            env = ((plugin.get("spec") or {}).get("containers") or [{}])[0].get("env")
            counts = sandbox_plugin_resources(env, host.gpus)
        status = node.get("status") or {}
        capacity, allocatable = status.get("capacity") or {}, status.get("allocatable") or {}
        patch_cap, patch_alloc = {}, {}
        for resource, count in counts.items():
            if capacity.get(resource) != str(count):
                patch_cap[resource] = str(count)
            if allocatable.get(resource) != str(count):
                patch_alloc[resource] = str(count)
        # A device plugin that stops running leaves the capacity but nothing allocatable (kubelet).
        for resource, value in allocatable.items():
            if resource.startswith("nvidia.com/") and resource not in counts and value != "0":
                patch_alloc[resource] = "0"
        patch = {k: v for k, v in (("capacity", patch_cap), ("allocatable", patch_alloc)) if v}
        if patch:
            self.kube.merge_patch(path("v1", "nodes", node["metadata"]["name"], subresource="status"),
                                  {"status": patch})

    # -- cc-manager ---------------------------------------------------------------------------
    #
    # NVIDIA/k8s-cc-manager v0.4.3 (785d77e) main.py: at every container start ``watch_and_apply``
    # reads the node's ``nvidia.com/cc.mode`` label and applies it, or the default mode when the
    # label is empty (``with_default``); then it watches the node and acts again only when the label
    # value changes. The default is ``DEFAULT_CC_MODE`` of its container (the operator copies
    # ``ccManager.defaultMode`` there: gpu-operator controllers/object_controls.go, DefaultCCModeEnvName;
    # ``on`` when the variable is absent, argparse default), forced to ``off`` on a host without TDX/SNP
    # (``main``, ``is_host_cc_enabled``). A GPU that cannot take the mode makes it exit(1) before any
    # label is written: the kubelet restarts it with back-off, each start tries again (a crash loop).

    def _cc_manager(self, cp, node, host):
        name = node["metadata"]["name"]
        labels = node["metadata"].get("labels") or {}
        pod = self._pod(name, "ccManager")
        if pod is None or (pod.get("status") or {}).get("phase") != "Running":
            return None  # cc-manager not running here (yet, or evicted); its pod event brings us back
        label = labels.get(CC_MODE) or ""
        incarnation = _incarnation(pod)
        known = self.incarnations.setdefault(name, set())
        crashed = self.restart_at.get(name)
        if crashed is not None and crashed[0] == pod["metadata"]["uid"]:
            remaining = crashed[1] - time.monotonic()
            if remaining > 0:
                return remaining
            # the kubelet's back-off is over: the container starts again and re-applies the mode
            self.restart_at.pop(name)
            pod = self._container_up(pod)
            known.add(_incarnation(pod))
            return self._start(node, host, pod, label)
        self.restart_at.pop(name, None)
        if incarnation not in known:
            known.add(incarnation)
            return self._start(node, host, pod, label)
        if label != self.acted.get(name):
            self.acted[name] = label
            return self._apply(node, host, pod, label)
        return self._finish_switch(node, host, pod)

    def _start(self, node, host, pod, label):
        name = node["metadata"]["name"]
        self.acted[name] = label
        self.switching.pop(name, None)
        return self._apply(node, host, pod, label)

    def _default_mode(self, pod, host):
        env = [e for c in (pod.get("spec") or {}).get("containers") or [] for e in c.get("env") or []]
        return cc_manager_mode("", env, host_cc_enabled(host))

    def _apply(self, node, host, pod, label):
        name = node["metadata"]["name"]
        mode = label or self._default_mode(pod, host)  # cc_manager_mode: with_default
        action, detail = cc_plan(mode, host.gpus)
        if self.world.fault("cc-manager-crash-loop", node=name):
            action, detail = "exit", "GPU {0} cannot take CC mode {1!r} (fault injected)".format(
                host.gpus[0]["pci_address"], mode)
        if action == "exit":
            self.switching.pop(name, None)
            return self._crash(pod, detail)
        if action in ("skip", "label"):
            self.switching.pop(name, None)
            self._pause(node, False)
            if action == "label":
                self._publish(node, detail)
            return None
        duration = float(self.world.timings.get("cc_mode_switch", 1.0))
        self.switching[name] = (detail, time.monotonic() + duration)
        self._pause(node, True)
        return duration or 0.01

    def _finish_switch(self, node, host, pod):
        name = node["metadata"]["name"]
        started = self.switching.get(name)
        if started is None:
            return None
        state, deadline = started
        remaining = deadline - time.monotonic()
        if remaining > 0:
            return remaining
        if self.world.fault("cc-mode-switch-hangs", node=name):
            return None  # the GPU reset never comes back: the state label keeps its old value
        if self.world.fault("gpu-cc-stuck-failed", node=name):
            state = "failed"  # a set or reset raised: _set_cc_mode_direct writes failed, the pod keeps running
        self.switching.pop(name, None)
        if state != "failed":
            for gpu in host.gpus:
                gpu["cc_mode"] = state
            self.world.changed(host)
        self._pause(node, False)
        self._publish(node, state)
        return None

    def _pause(self, node, pause):
        labels = node["metadata"].get("labels") or {}
        patch = {}
        for component in EVICTED_BY_CC_MANAGER:
            key = DEPLOY + component
            value = labels.get(key)
            if pause and value == "true":
                patch[key] = PAUSED
            elif not pause and value == PAUSED:
                patch[key] = "true"
        if patch:
            self.kube.merge_patch(path("v1", "nodes", node["metadata"]["name"]), {"metadata": {"labels": patch}})

    def _publish(self, node, state):
        labels = node["metadata"].get("labels") or {}
        if labels.get(CC_MODE_STATE) != state or labels.get(CC_READY_STATE) != ready_state(state):
            self.kube.merge_patch(path("v1", "nodes", node["metadata"]["name"]), {"metadata": {"labels": {
                CC_MODE_STATE: state, CC_READY_STATE: ready_state(state)}}})
            log.info("%s: %s=%s", node["metadata"]["name"], CC_MODE_STATE, state)

    def _crash(self, pod, message):
        """The container exits 1; the kubelet restarts it after a back-off that doubles (10 s to 5 min on a
        real kubelet; ``timings.crash_loop_backoff`` doubling here). Meanwhile it shows what the kubelet shows:
        waiting in ``CrashLoopBackOff``, the exit in ``lastState``, the restarts so far (twin.kubelet)."""
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        node = pod["spec"]["nodeName"]
        if not statuses:
            return 0.5
        cs = statuses[0]
        restarts = int(cs.get("restartCount", 0))
        backoff = float(self.world.timings.get("crash_loop_backoff", 1.0)) * 2 ** min(restarts, 5)
        meta = pod["metadata"]
        new = crashed_container_status(cs, 1, message, backoff, meta["name"], meta["namespace"], meta["uid"])
        ready = {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": now(),
                 "message": "containers with unready status: [{0}]".format(cs.get("name"))}
        self._patch_container(pod, new, ready)
        self.incarnations.setdefault(node, set()).add((meta["uid"], restarts, None))
        self.restart_at[node] = (meta["uid"], time.monotonic() + backoff)
        log.info("%s: cc-manager exited (%s); restart %d in %.1fs", node, message, restarts + 1, backoff)
        return backoff

    def _container_up(self, pod):
        cs = ((pod.get("status") or {}).get("containerStatuses") or [{}])[0]
        new = restarted_container_status(cs)
        self._patch_container(pod, new, {"type": "Ready", "status": "True", "lastTransitionTime": now()})
        # the pod as it is now: a crash right after this start counts from this run, not the cached one
        return dict(pod, status=dict(pod.get("status") or {}, containerStatuses=[new]))

    def _patch_container(self, pod, status, ready):
        meta = pod["metadata"]
        try:
            self.kube.request("PATCH", path("v1", "pods", meta["name"], meta["namespace"], subresource="status"),
                              {"status": {"containerStatuses": [status], "conditions": [
                                  ready, dict(ready, type="ContainersReady")]}},
                              content_type="application/strategic-merge-patch+json")
        except ApiError as exc:
            if exc.status != 404:
                raise


def vfio_validated(host):
    """Whether the validator's vfio-pci validation passes on this host: every GPU bound to vfio-pci."""
    return bool(host.gpus) and all(g.get("driver") == "vfio-pci" for g in host.gpus)


def _incarnation(pod):
    """One run of the pod's container: a new pod, a restart or a kubelet start each make a new one."""
    cs = ((pod.get("status") or {}).get("containerStatuses") or [{}])[0]
    started = ((cs.get("state") or {}).get("running") or {}).get("startedAt")
    return pod["metadata"]["uid"], int(cs.get("restartCount", 0)), started


class OperandWorkload(workloads.Workload):
    """Operand containers keep running; their logs say what they found on the node."""

    name = "gpu-operand"

    def claims(self, ctx):
        return operand_of(ctx.pod) is not None

    def run(self, ctx):
        app = APP[operand_of(ctx.pod)]
        host = ctx.host
        lines = []
        if app == APP["ccManager"]:
            env = {e.get("name"): e.get("value") for e in ctx.container.get("env") or []}
            lines.append("k8s-cc-manager: node {0}, default CC mode {1!r}".format(host.name, env.get("DEFAULT_CC_MODE", "")))
            for gpu in host.gpus:
                lines.append("GPU {0} {1}: cc capable {2}, ppcie capable {3}, current mode {4}".format(
                    gpu["pci_address"], gpu["model"], bool(gpu.get("cc_capable")), ppcie_capable(gpu),
                    gpu.get("cc_mode", "off")))
        elif app == APP["vfioManager"]:
            if not host.iommu_enabled():
                lines.append("vfio-manager: IOMMU is not enabled on {0}; cannot bind GPUs to vfio-pci".format(host.name))
            for gpu in host.gpus:
                lines.append("binding {0} ({1}) to vfio-pci".format(gpu["pci_address"], gpu["device_id"]))
        elif app == APP["sandboxValidator"]:
            if not vfio_validated(host):
                # what its vfio-pci-validation init container prints while it waits (WITH_WAIT)
                lines.append("waiting for vfio-pci driver ...")
                return workloads.Result(running=True, ready=False, log="\n".join(lines) + "\n")
            lines.append("all validations are successful")
        else:
            lines.append("{0}: started on {1}".format(app, host.name))
        return workloads.Result(running=True, log="\n".join(lines) + "\n")


def register(manager, world):
    workloads.register(OperandWorkload())
    manager.add(GpuOperator(world))
    manager.add(GpuNodeAgent(world))
