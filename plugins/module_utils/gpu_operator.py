# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The NVIDIA GPU operator for confidential containers: the ClusterPolicy per operator version, and readiness.

PRIVATE to this collection. Pure functions over plain dicts as the API serves them.

The ClusterPolicy is the one Red Hat's confidential-GPU guide uses on OpenShift with OSC: sandboxed
workloads in ``kata`` mode with ``vm-passthrough`` as the default, cc-manager on, the kata sandbox
device plugin advertising GPUs as ``nvidia.com/pgpu``, vfio-manager binding them, and none of the
container stack (no host driver, toolkit or device plugin on passthrough nodes). ``sandboxWorkloads.mode``
and ``kataSandboxDevicePlugin`` first exist in 26.3.0; older operators would silently prune them and
deploy the KubeVirt stack instead, so they are refused. From 26.7.0 ``kataManager`` is no longer honoured
and is left out.

``ccManager.defaultMode`` is what cc-manager applies at its start on every GPU node without the
``nvidia.com/cc.mode`` label. Its schema allows only ``on``, ``off`` and ``devtools``
(gpu-operator api/nvidia/v1/clusterpolicy_types.go ``CCManagerSpec``, v26.3.3 and v26.7.0);
``ppcie`` exists only as that node label (NVIDIA's multi-GPU guide labels the node). So the policy
carries the requested mode only when it is ``on`` or ``off``; for ``ppcie`` and ``devtools`` it
carries ``off`` and the node labels (module ``gpu_cc_mode``, with its checks) bring the mode to
exactly the nodes asked for, never a default that reaches every node unchecked.
"""

from __future__ import annotations

import copy

MIN_VERSION = (26, 3, 0)
KATA_MANAGER_DROPPED = (26, 7, 0)
PGPU_ALIAS = "pgpu"
NVSWITCH_ALIAS = "nvswitch"
GPU_PRESENT = "nvidia.com/gpu.present"
NFD_GPU = "feature.node.kubernetes.io/pci-10de.present"

# The values ClusterPolicy's ccManager.defaultMode accepts (its CRD enum).
DEFAULT_MODES = ("on", "off", "devtools")
CC_MODES = ("on", "off", "ppcie", "devtools")

__all__ = ["parse_version", "version_problem", "policy_default_mode", "cluster_policy", "spec_problem", "policy_summary",
           "pgpu_expected", "pgpu_problems", "pgpu_report"]


def parse_version(text):
    """``(major, minor, patch)`` of ``26.3.1``, ``v26.3.1`` or a CSV name ``gpu-operator-certified.v26.3.1``."""
    if text is None:
        return None
    value = str(text).strip()
    if ".v" in value and not value[0].isdigit():
        value = value.split(".v", 1)[1]
    value = value.lstrip("v").split("-")[0].split("+")[0]
    try:
        parts = tuple(int(p) for p in value.split(".")[:3])
    except ValueError:
        return None
    return parts + (0,) * (3 - len(parts))


def version_problem(version):
    """None when this operator version can run confidential GPUs with OSC, else the sentence saying why not."""
    parsed = parse_version(version)
    if parsed is None:
        return "cannot read the GPU operator version {0!r}; expected X.Y.Z, e.g. 26.3.1".format(version)
    if parsed < MIN_VERSION:
        return ("NVIDIA GPU operator {0} is older than {1}: its ClusterPolicy has no sandboxWorkloads.mode (kata) "
                "and no kataSandboxDevicePlugin, so it would deploy the KubeVirt stack and no cc-manager for "
                "OpenShift sandboxed containers. Pin {1} or newer (channel v26.3 or later)".format(
                    ".".join(map(str, parsed)), ".".join(map(str, MIN_VERSION))))
    return None


def policy_default_mode(cc_mode):
    """The ``ccManager.defaultMode`` for a requested CC mode: the mode itself for ``on``/``off``, else ``off``.

    ``ppcie`` is not a value the CRD accepts, and ``devtools`` as a default would reach every GPU
    node without a label before any check; both are node labels only.
    """
    if cc_mode not in CC_MODES:
        raise ValueError("CC mode {0!r} is not one of {1}".format(cc_mode, ", ".join(CC_MODES)))
    return cc_mode if cc_mode in ("on", "off") else "off"


def cluster_policy(version, name="gpu-cluster-policy", cc_mode="on", extra_spec=None):
    """The ClusterPolicy for this operator version (26.3.0 or newer; ValueError otherwise)."""
    problem = version_problem(version)
    if problem:
        raise ValueError(problem)
    parsed = parse_version(version)
    spec = {
        "sandboxWorkloads": {"enabled": True, "defaultWorkload": "vm-passthrough", "mode": "kata"},
        "ccManager": {"enabled": True, "defaultMode": policy_default_mode(cc_mode)},
        "kataSandboxDevicePlugin": {"enabled": True, "env": [
            {"name": "P_GPU_ALIAS", "value": PGPU_ALIAS}, {"name": "NVSWITCH_ALIAS", "value": NVSWITCH_ALIAS}]},
        "vfioManager": {"enabled": True, "env": [{"name": "BIND_NVSWITCHES", "value": "true"}]},
        "cdi": {"enabled": True, "default": False, "nriPluginEnabled": False},
        # Passthrough nodes have no host driver: the GPU belongs to the confidential VM.
        "driver": {"enabled": False},
        "toolkit": {"enabled": False, "installDir": "/usr/local/nvidia"},
        "devicePlugin": {"enabled": False},
        "dcgm": {"enabled": False},
        "dcgmExporter": {"enabled": False},
        "gfd": {"enabled": True},
        "migManager": {"enabled": False},
        "vgpuManager": {"enabled": False},
        "vgpuDeviceManager": {"enabled": False},
        "nodeStatusExporter": {"enabled": True},
        "operator": {"defaultRuntime": "crio", "runtimeClass": "nvidia", "use_ocp_driver_toolkit": True},
        "validator": {"plugin": {"env": [{"name": "WITH_WORKLOAD", "value": "false"}]}},
        "daemonsets": {"updateStrategy": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "1"}},
    }
    if parsed < KATA_MANAGER_DROPPED:
        # The Kata runtime comes from OSC on OpenShift; the operator's own kata-manager stays off.
        spec["kataManager"] = {"enabled": False}
    if extra_spec:
        spec = _merge(spec, extra_spec)
    # The label marks it as this collection's, for the teardown.
    return {"apiVersion": "nvidia.com/v1", "kind": "ClusterPolicy",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "confidential.gpu"}}, "spec": spec}


def spec_problem(extra_spec):
    """None, or why ``gpu_operator_policy_extra_spec`` would make the GPUs something other than ``nvidia.com/pgpu``.

    The kata sandbox device plugin (NVIDIA/sandbox-device-plugin v0.0.3 cmd/main.go) names its resource after
    ``P_GPU_ALIAS``: ``pgpu`` when the variable is unset, the GPU model (``nvidia.com/GH100_H100_PCIE``) when it
    is empty. This collection's pods, checks and report ask for ``nvidia.com/pgpu``, so another name is refused.
    """
    plugin = (extra_spec or {}).get("kataSandboxDevicePlugin") or {}
    if "env" not in plugin:
        return None
    for env in plugin.get("env") or []:
        if isinstance(env, dict) and env.get("name") == "P_GPU_ALIAS" and (env.get("value") or "") != PGPU_ALIAS:
            return ("gpu_operator_policy_extra_spec sets kataSandboxDevicePlugin P_GPU_ALIAS={0!r}: the kata sandbox "
                    "device plugin would advertise the GPUs as nvidia.com/{1}, and this collection's pods and checks "
                    "ask for nvidia.com/{2}. Leave P_GPU_ALIAS out or set it to {2!r}".format(
                        env.get("value") or "", env.get("value") or "<GPU model name>", PGPU_ALIAS))
    return None


def _merge(base, extra):
    out = copy.deepcopy(base)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _pods_line(pods):
    bad = []
    for pod in pods:
        status = pod.get("status") or {}
        statuses = status.get("containerStatuses") or []
        if status.get("phase") == "Running" and statuses and all(s.get("ready") for s in statuses):
            continue
        meta = pod.get("metadata") or {}
        why = status.get("phase") or "Pending"
        for cs in statuses:
            waiting = (cs.get("state") or {}).get("waiting")
            if waiting:
                why += " ({0})".format(waiting.get("reason"))
            elif not cs.get("ready"):
                why += ", not ready"
                last = (cs.get("lastState") or {}).get("terminated") or {}
                if last.get("message"):
                    why += ": " + last["message"].strip()
        bad.append("{0} on {1}: {2}".format(meta.get("name"), (pod.get("spec") or {}).get("nodeName") or "no node", why))
    return bad


def policy_summary(policy, pods=()):
    """``(ready, line)`` for a ClusterPolicy; the line names what is not ready, operand pods included."""
    if policy is None:
        return False, "the ClusterPolicy does not exist"
    status = policy.get("status") or {}
    state = status.get("state") or "no state yet"
    if state == "ready":
        return True, "ClusterPolicy {0} is ready".format(policy["metadata"]["name"])
    parts = ["ClusterPolicy {0} is {1}".format(policy["metadata"]["name"], state)]
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") != "True" and cond.get("message"):
            parts.append(cond["message"])
    bad = _pods_line(pods)
    if bad:
        parts.append("operand pods not ready: " + "; ".join(bad))
    return False, ". ".join(parts)


def _gpus(facts):
    return [g for g in (facts or {}).get("gpus") or [] if isinstance(g, dict)]


def pgpu_expected(probe_nodes):
    """Node name to the ``nvidia.com/pgpu`` devices its host's GPUs make, from M(confidential.gpu.node_probe) facts.

    The kata sandbox device plugin advertises one device per IOMMU group (NVIDIA/sandbox-device-plugin v0.0.3
    pkg/device_plugin/device_plugin.go ``createIommuDeviceMap``): GPUs sharing a group go to one pod together and
    count once. A GPU the probe saw in no group counts on its own (the host checks refuse that case anyway).
    """
    counts = {}
    for name, facts in (probe_nodes or {}).items():
        groups = set()
        for gpu in _gpus(facts):
            group = gpu.get("iommu_group")
            groups.add(("group", str(group)) if group is not None else ("gpu", gpu.get("pci_address")))
        counts[name] = len(groups)
    return counts


def pgpu_problems(probe_nodes):
    """Why a node's GPUs could not all be advertised as one ``nvidia.com/pgpu`` resource: mixed GPU models.

    The plugin starts one device plugin per PCI device id, each under the same alias; the kubelet's device
    manager keeps the endpoint registered last for a resource name, so only one model's GPUs are advertised.
    """
    problems = []
    for name in sorted(probe_nodes or {}):
        models = sorted({str(g.get("device_id")).lower() for g in _gpus(probe_nodes[name])})
        if len(models) > 1:
            problems.append("{0} has GPUs of {1} models ({2}): the kata sandbox device plugin registers "
                            "nvidia.com/{3} once per model and the kubelet keeps only the last one registered, so "
                            "only one model's GPUs would be advertised. Use one GPU model per node".format(
                                name, len(models), ", ".join(models), PGPU_ALIAS))
    return problems


def pgpu_report(nodes, expected, resource="nvidia.com/" + PGPU_ALIAS):
    """Per node ``{name, expected, allocatable, ok}`` and the mismatches, for ``expected`` = {node: GPUs found}."""
    by_name = {(n.get("metadata") or {}).get("name"): n for n in nodes}
    report, mismatches = [], []
    for name in sorted(expected):
        node = by_name.get(name)
        allocatable = ((node or {}).get("status") or {}).get("allocatable") or {}
        try:
            have = int(allocatable.get(resource, 0))
        except (TypeError, ValueError):
            have = 0
        want = int(expected[name])
        entry = {"name": name, "expected": want, "allocatable": have, "ok": node is not None and have == want}
        report.append(entry)
        if not entry["ok"]:
            mismatches.append("{0}: {1} allocatable is {2}, {3} GPU(s) found on the host{4}".format(
                name, resource, have, want, "" if node is not None else " (node not found)"))
    return report, mismatches
